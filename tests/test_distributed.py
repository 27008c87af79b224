"""Data-parallel runs (gloo, two CPU processes, uneven shards) give the single-process result on all the
data, for every quantity: the Objective's loss, gradient and products, the dense exact matrices (structured
and generic paths), diagonals, blocks, K-FAC and the estimators."""
import faulthandler
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import losstools as lt
from losstools import curvature as C
from losstools.curvature import _columns

from . import zoo

CASES = ["conv-bn-pool-dropout", "mlp-relu-mse-loader", "mlp-gelu-weighted-ce-loader", "multihead-attention",
         "tied-embedding"]


def quantities(case, data):
    """Everything that reduces over data, in one dict (identical seeds on every rank)."""
    obj = lt.Objective(case.model, case.loss_fn, data, case.params)
    v = torch.randn(obj.num_params, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = {"loss": obj.loss(), "grad": obj.grad(), "hvp": obj.hvp(v), "hvp1": obj.hvp(v[:, 0]),
           "hessian": lt.hessian(obj), "hessian_diag": lt.hessian_diag(obj), "ggn": lt.ggn(obj),
           "examples": torch.tensor(float(obj.num_examples))}
    out.update({f"block.{k}": b for k, b in lt.hessian_blocks(obj).items()})
    for op in (C.Hessian(obj), C.GGN(obj), C.EmpiricalFisher(obj)):
        out[f"{op.name} @ v"] = op @ v
        out[f"{op.name} diagonal"] = op.diagonal()
    out["to_dense"] = C.EmpiricalFisher(obj).to_dense()  # chunked products: chunk sizes agree across ranks
    if case.layers:
        out.update({f"kfac.{k}.{i}": f for k, fs in C.KFAC(obj, progress=False).factors.items()
                    for i, f in enumerate(fs)})
    G = C.GGN(obj)
    out["hutchinson_trace"] = torch.as_tensor(C.hutchinson_trace(G, 6, seed=1, progress=False))
    out["lanczos"] = C.lanczos(G, k=2, tol=1e-10)[0]
    return out


def _shard(case, rank):
    X, y = zoo._all_data(case.data)
    return [(X[:7], y[:7])] if rank == 0 else [(X[7:9], y[7:9]), (X[9:], y[9:])]  # uneven shards


SMALL_CHUNKS = 2**15  # bytes of tangents per chunk: chunk sizes then depend on each rank's largest batch


def _done(result_file, rank: int) -> Path:
    """The file a rank touches once all its computations and collectives are over."""
    return Path(f"{result_file}.rank{rank}.done")


def _worker(rank, world, init_file, result_file):
    faulthandler.enable()  # a crash in a rank (e.g. an abort inside gloo) prints every thread's Python stack
    torch.set_num_threads(1)
    _columns._CHUNK_BYTES = SMALL_CHUNKS  # without agreeing on one chunk size, to_dense's collectives would abort
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {}
        for name in CASES:
            case = zoo.cases()[name]
            results[name] = quantities(case, _shard(case, rank))
        if rank == 0:
            torch.save(results, result_file)
        dist.barrier()  # no rank tears gloo down while the other still works: a one-sided teardown can abort
        _done(result_file, rank).touch()
    finally:
        dist.destroy_process_group()


def _spawn(nprocs: int, init_file: Path, result_file: Path) -> None:
    """Run the ranks. A rank that dies in gloo's teardown, after every rank passed the final barrier, leaves
    the results whole: that is warned about (the abort is torch's, not this package's); any other death fails."""
    try:
        mp.spawn(_worker, args=(nprocs, str(init_file), str(result_file)), nprocs=nprocs, join=True)
    except mp.ProcessExitedException as crash:
        if not all(_done(result_file, r).exists() for r in range(nprocs)):
            raise
        warnings.warn(f"a rank died while tearing the gloo process group down, after all ranks finished: {crash}")


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this build")
def test_two_gloo_processes_with_uneven_shards_match_one_process(tmp_path, monkeypatch):
    monkeypatch.setattr(_columns, "_CHUNK_BYTES", SMALL_CHUNKS)
    case = zoo.cases()["mlp-relu-mse-loader"]
    local = [_columns.auto_chunk(lt.Objective(case.model, case.loss_fn, _shard(case, r)), None) for r in (0, 1)]
    assert local[0] != local[1]  # the ranks alone would pick different chunk sizes
    _spawn(2, tmp_path / "init", tmp_path / "result.pt")
    parallel = torch.load(tmp_path / "result.pt")
    for name in CASES:
        case = zoo.cases()[name]
        single = quantities(case, case.data)
        assert parallel[name].keys() == single.keys()
        for key in single:
            torch.testing.assert_close(parallel[name][key], single[key], rtol=1e-9, atol=1e-12,
                                       msg=lambda m: f"{name} {key}: {m}")
