"""Numerical probes: verify, then trust.

Every path is checked once (per model structure) in float64 on a few examples, against a reference that
shares none of its derivative rules:

- the product paths against central finite differences of first derivatives: H v against differences of
  the gradient, J v against differences of the outputs (this catches torch's own wrong second-derivative
  rules, e.g. the double backward of ``torch._weight_norm`` in torch 2.13);
- each fast path against the product path, on a few random coordinates.

A difference that persists while the finite-difference step shrinks from 1e-5 to 1e-11 is a wrong rule; one that
does not was a kink (ReLU, max-pooling) straddled by the step. Verdicts are cached by the model's structure
(module types and names, selected parameters, loss type, differentiation mode), so the Objectives a pruning
loop builds on one model pay once; under ``torch.distributed`` every rank adopts the worst verdict.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch

from ._distributed import all_reduce_min

TOLERANCE = 1e-4  # relative: float64 round-off and O(step^2) truncation stay far below; wrong rules are % off
STEPS = (1e-5, 1e-7, 1e-9, 1e-11)  # finite-difference steps relative to max(1, |theta|_inf)
PROBE_EXAMPLES = 4
COORDINATES = 3  # random coordinates on which a fast path is compared with products

_verdicts: dict[tuple, str | None] = {}


class VerificationError(ValueError):
    """A path disagreed with its reference in float64: torch's rules or an assumption are wrong for this model."""


class PathFallbackWarning(UserWarning):
    """A fast path disagreed with the product path on this model; the product path is used instead."""


def relative_error(actual: torch.Tensor, expected: torch.Tensor, floor: float = 0.0) -> float:
    """max |actual - expected| over the larger of their max magnitudes and ``floor`` (the round-off level below which
    a difference says nothing)."""
    actual, expected = actual.detach(), expected.detach()
    scale = max(float(expected.abs().max()), float(actual.abs().max()), floor, 1e-30)
    return float((actual - expected).abs().max()) / scale


def verdict(key: tuple, check: Callable[[], str | None]) -> str | None:
    """``check()`` once per ``key``: None if the path is right, else what went wrong; the same on every rank."""
    if key not in _verdicts:
        problem = check()
        if all_reduce_min(0 if problem else 1) == 0 and problem is None:
            problem = "another rank's probe disagreed"
        _verdicts[key] = problem
    return _verdicts[key]


def central_difference(f: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, v: torch.Tensor,
                       step: float) -> tuple[torch.Tensor, float]:
    """(f(theta + h v) - f(theta - h v)) / 2h, h = step max(1, |theta|_inf) / |v|_inf, and its round-off level
    (100 eps max|f| / h: a true derivative of 0 gives differences of that size, not 0)."""
    h = step * max(1.0, float(theta.abs().max())) / float(v.abs().max())
    plus, minus = f(theta + h * v), f(theta - h * v)
    noise = 100 * torch.finfo(plus.dtype).eps * max(float(plus.abs().max()), float(minus.abs().max())) / h
    return (plus - minus) / (2 * h), noise


def matches_differences(product: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor,
                        v: torch.Tensor) -> float:
    """The relative error of ``product`` (a derivative of f along v), the smallest over the step sizes ``STEPS``
    (fewer and fewer ReLU / max-pool kinks are straddled as the step shrinks: on a 1M-parameter CNN one was still
    straddled at 1e-7; float64 round-off stays near 1e-5 at 1e-11), differences within round-off counting as none.
    Stops at the first step that agrees."""
    errors = []
    for step in STEPS:
        difference, noise = central_difference(f, theta, v, step)
        errors.append(relative_error(product, difference, floor=noise / TOLERANCE))
        if errors[-1] <= TOLERANCE:
            break
    return min(errors)


def random_directions(P: int, k: int, like: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(P, k) random signs (any direction serves a check; signs are cheaper to draw than normals for large P)."""
    gen = torch.Generator(device=like.device).manual_seed(seed)
    return torch.randint(0, 2, (P, k), generator=gen, device=like.device).to(like.dtype).mul_(2).sub_(1)


def random_coordinates(P: int, seed: int = 1) -> torch.Tensor:
    """A few distinct coordinates of 0..P-1, sorted."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, P, (4 * COORDINATES,), generator=gen).unique()[:COORDINATES]


def fall_back(path: str, problem: str, fallback: str) -> None:
    warnings.warn(f"losstools: the {path} disagreed with the product path on this model ({problem}); using "
                  f"{fallback} instead. Please report this model: it is a bug in losstools", PathFallbackWarning,
                  stacklevel=4)
