"""Passes over the data: sums over batches, reduced across ``torch.distributed`` ranks, divided by N.

Every approximate curvature in this package is a mean over examples, (1/N) sum_n q_n. A pass sums
q_n over the local batches (any sizes), then, when a process group is initialised, sums the totals
and the example counts over all ranks, so a data-parallel run returns exactly the single-process
result on the union of the ranks' data. Long passes show a tqdm bar (after ``delay`` seconds).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..objective import Objective

PROGRESS_DELAY = 1.0  # seconds before a bar appears: short passes stay silent


def distributed() -> bool:
    """True when a ``torch.distributed`` process group is initialised (sums are then all-reduced)."""
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks (in place, returned); the identity without a process group."""
    if distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def global_count(obj: Objective) -> int:
    """Number of examples over all ranks (the local ``obj.num_examples`` without a process group)."""
    count = torch.tensor([float(obj.num_examples)], dtype=torch.float64, device=obj.device)
    return int(all_reduce_sum(count).item())


def progress_bar(items: Iterable, progress: bool, desc: str, total: int | None = None) -> Iterable:
    """``items`` wrapped in a tqdm bar when ``progress`` (shown only if the loop lasts over PROGRESS_DELAY s)."""
    if not progress:
        return items
    return tqdm(items, desc=desc, total=total, delay=PROGRESS_DELAY, leave=False)


def data_mean(obj: Objective, batch_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              progress: bool = True, desc: str = "data pass") -> torch.Tensor:
    """(1/N) sum over all batches (and ranks) of ``batch_sum(X, y)``, a tensor summed over the batch.

    N counts the examples of every rank. The result is on the parameters' device and dtype.
    """
    total, count = None, 0
    for X, y in progress_bar(obj.batches(), progress, desc):
        part = batch_sum(X, y)
        total = part if total is None else total + part
        count += len(X)
    packed = torch.cat([total.reshape(-1), total.new_tensor([float(count)])])
    all_reduce_sum(packed)
    return (packed[:-1] / packed[-1]).view_as(total)


def generator(seed: int | torch.Generator | None, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device``: the given one, or a new one seeded with ``seed`` (None -> 0)."""
    if isinstance(seed, torch.Generator):
        if seed.device.type != torch.device(device).type:
            raise ValueError(f"the generator is on {seed.device} but the parameters are on {device}; "
                             f"pass torch.Generator(device={str(device)!r}) or an int seed")
        return seed
    return torch.Generator(device=device).manual_seed(0 if seed is None else int(seed))
