"""Cumulative sparsity schedules kappa_1 <= ... <= kappa_pi = kappa of an iterative pruning run."""
from __future__ import annotations

SCHEDULES = ("exponential", "linear")


def check_sparsity(sparsity: float) -> float:
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity (the fraction of weights to remove) must be in [0, 1), got {sparsity}")
    return float(sparsity)


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or int(steps) != steps or int(steps) < 1:
        raise ValueError(f"steps (the number of pruning iterations) must be an integer >= 1, got {steps!r}")
    return int(steps)


def schedule(sparsity: float, steps: int, kind: str = "exponential") -> list[float]:
    """Cumulative sparsities kappa_i, i = 1..steps, ending at ``sparsity``.

    ``"linear"``: kappa_i = i kappa / pi. ``"exponential"`` (the paper's choice for LM/QM/OBD):
    kappa_i = 1 - (1 - kappa)^(i / pi), so every step removes the same fraction of what is left.

    >>> [round(k, 4) for k in schedule(0.75, 2)]
    [0.5, 0.75]
    """
    kappa, pi = check_sparsity(sparsity), check_steps(steps)
    if kind == "linear":
        return [kappa * i / pi for i in range(1, pi + 1)]
    if kind == "exponential":
        return [1.0 - (1.0 - kappa) ** (i / pi) for i in range(1, pi + 1)]
    raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
