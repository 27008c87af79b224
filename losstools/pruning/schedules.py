"""Cumulative sparsity schedules kappa_1 <= ... <= kappa_pi = kappa of an iterative pruning run."""
from __future__ import annotations

from .._validate import choice, fraction, positive_int

#: The pruning schedules (how the fraction of weights removed grows with the steps).
SCHEDULES = ("exponential", "linear")


def check_sparsity(sparsity: float) -> float:
    return fraction(sparsity, "sparsity (the fraction of weights to remove)")


def check_steps(steps: int) -> int:
    return positive_int(steps, "steps (the number of pruning iterations)")


def schedule(sparsity: float, steps: int, kind: str = "exponential") -> list[float]:
    """Cumulative sparsities kappa_i, i = 1..steps, ending at ``sparsity``.

    ``"linear"``: kappa_i = i kappa / pi. ``"exponential"`` (the paper's choice for LM/QM/OBD):
    kappa_i = 1 - (1 - kappa)^(i / pi), so every step removes the same fraction of what is left.

    >>> [round(k, 4) for k in schedule(0.75, 2)]
    [0.5, 0.75]
    """
    kappa, pi = check_sparsity(sparsity), check_steps(steps)
    choice(kind, SCHEDULES, "schedule")
    if kind == "linear":
        return [kappa * i / pi for i in range(1, pi + 1)]
    return [1.0 - (1.0 - kappa) ** (i / pi) for i in range(1, pi + 1)]
