"""Sums over the ranks of a ``torch.distributed`` process group (the identity without one).

Every collective in losstools reduces a tensor whose shape is fixed by the parameters and the
request, never by a rank's local data, so ranks holding different numbers of examples stay in step.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def distributed() -> bool:
    """True when a ``torch.distributed`` process group is initialised (sums are then all-reduced)."""
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks (in place, returned); the identity without a process group."""
    if distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_min(value: int, device: torch.device | str = "cpu") -> int:
    """The smallest of an integer over all ranks (e.g. a chunk size that every rank can use)."""
    if not distributed():
        return value
    t = torch.tensor([-value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(-t.item())
