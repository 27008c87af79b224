"""Passes over the data for the curvature package: the Objective's one data pass and its helpers.

Every curvature quantity is a mean over the data, (1/Z) sum_n q_n with Z the loss's normaliser (the
number of examples for an unweighted per-example loss): ``Objective.data_mean`` sums q_n over the local
batches (any sizes), then, when a process group is initialised, sums the totals and the normalisers over
all ranks, so a data-parallel run returns exactly the single-process result on the union of the data.
"""
from __future__ import annotations

from typing import Callable

import torch

from .._distributed import all_reduce_sum, distributed
from .._progress import PROGRESS_DELAY, progress_bar
from ..objective import Objective

__all__ = ["PROGRESS_DELAY", "all_reduce_sum", "data_mean", "distributed", "generator", "global_count", "progress_bar"]


def global_count(obj: Objective) -> int:
    """Number of examples over all ranks (``obj.num_examples``)."""
    return obj.num_examples


def data_mean(obj: Objective, batch_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              progress: bool = True, desc: str = "data pass") -> torch.Tensor:
    """``obj.data_mean(batch_sum)``: the sum over all batches and ranks of ``batch_sum(X, y)`` (a sum
    over the batch's loss terms) divided by the loss's total normaliser."""
    return obj.data_mean(batch_sum, None, progress, desc)


def generator(seed: int | torch.Generator | None, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device``: the given one, or a new one seeded with ``seed`` (None -> 0)."""
    if isinstance(seed, torch.Generator):
        if seed.device.type != torch.device(device).type:
            raise ValueError(f"the generator is on {seed.device} but the parameters are on {device}; "
                             f"pass torch.Generator(device={str(device)!r}) or an int seed")
        return seed
    return torch.Generator(device=device).manual_seed(0 if seed is None else int(seed))
