"""Passes over the data for the curvature package: the Objective's one data pass and its helpers.

Every curvature quantity is a mean over the data, (1/Z) sum_n q_n with Z the loss's normaliser (the
number of examples for an unweighted per-example loss): ``Objective.data_mean`` sums q_n over the local
batches (any sizes), then, when a process group is initialised, sums the totals and the normalisers over
all ranks, so a data-parallel run returns exactly the single-process result on the union of the data.
"""
from __future__ import annotations

import torch

from .._distributed import all_reduce_sum, distributed
from .._progress import PROGRESS_DELAY, progress_bar

__all__ = ["PROGRESS_DELAY", "all_reduce_sum", "distributed", "generator", "progress_bar"]


def generator(seed: int | torch.Generator | None, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device``: the given one, or a new one seeded with ``seed`` (None -> 0)."""
    if isinstance(seed, torch.Generator):
        if seed.device.type != torch.device(device).type:
            raise ValueError(f"the generator is on {seed.device} but the parameters are on {device}; "
                             f"pass torch.Generator(device={str(device)!r}) or an int seed")
        return seed
    return torch.Generator(device=device).manual_seed(0 if seed is None else int(seed))
