"""Data-parallel runs (gloo, two CPU processes) give the single-process result on all the data."""
import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from losstools import curvature as C

from .curvature_cases import cases


def quantities(model, loss_fn, data, v):
    """Everything that reduces over data, in one dict (identical seeds on every rank)."""
    out = {f"diag_ggn.{k}": t for k, t in C.diag_ggn(model, loss_fn, data).items()}
    out.update({f"diag_ef.{k}": t for k, t in C.diag_fisher(model, loss_fn, data).items()})
    K = C.kfac(model, loss_fn, data, progress=False)
    out.update({f"kfac.{k}.{i}": f for k, fs in K.factors.items() for i, f in enumerate(fs)})
    for cls in (C.HessianOperator, C.GGNOperator, C.EmpiricalFisherOperator):
        out[cls.__name__] = cls(model, loss_fn, data) @ v
    op = C.GGNOperator(model, loss_fn, data)
    out["hutchinson_trace"] = C.hutchinson_trace(op, 6, seed=1, progress=False)
    out["lanczos"] = C.lanczos(op, k=2, tol=1e-10)[0]
    return out


def _worker(rank, world, init_file, result_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, loss_fn, (X, y) = cases()["cnn-ce"]
        shard = [(X[:7], y[:7])] if rank == 0 else [(X[7:9], y[7:9]), (X[9:], y[9:])]  # uneven shards
        v = torch.randn(sum(p.numel() for p in model.parameters()), 2, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(0))
        result = quantities(model, loss_fn, shard, v)
        if rank == 0:
            torch.save(result, result_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this build")
def test_two_gloo_processes_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "result.pt")), nprocs=2, join=True)
    parallel = torch.load(tmp_path / "result.pt")
    model, loss_fn, (X, y) = cases()["cnn-ce"]
    v = torch.randn(sum(p.numel() for p in model.parameters()), 2, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    single = quantities(model, loss_fn, (X, y), v)
    assert parallel.keys() == single.keys()
    for key in single:
        torch.testing.assert_close(parallel[key], single[key], msg=key)
