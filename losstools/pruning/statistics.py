"""The statistics a pruning step needs, at the current (masked) weights on one sample: gradient and curvature.

Thin wrappers over :mod:`losstools.curvature`, restricted to the prunable weights (``params="weights"``).
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn

from .._validate import choice
from ..curvature import diag_fisher, diag_ggn, ggn, hessian, hessian_diag, kfac
from ..objective import WEIGHTS, Batch, Objective

#: The curvature diagonals QM and OBD can use, by the name ``curvature=`` takes.
SALIENCY_CURVATURES = {
    "ggn": "exact Gauss-Newton diagonal (= true Fisher for softmax cross-entropy; the paper's choice)",
    "mc": "Monte-Carlo Fisher diagonal (labels sampled from the model, mc_samples per example)",
    "empirical": "empirical Fisher diagonal (squared per-example gradients with the data's labels)",
    "hessian": "exact Hessian diagonal (toy nets only: costs one Hessian-vector product per weight)",
}
DENSE_CURVATURES = ("ggn", "hessian", "kfac")  # what OBS can invert (kfac: the K-FAC approximation of the GGN)


# diag_ggn / diag_fisher may show a progress bar of their own; a pruning run calls them once per step.
_QUIET = {"progress": False} if "progress" in inspect.signature(diag_ggn).parameters else {}


def check_curvature(curvature: str, dense: bool = False) -> str:
    """``curvature`` if it names a saliency curvature (one OBS can invert when ``dense``), else a ValueError."""
    return choice(curvature, DENSE_CURVATURES if dense else tuple(SALIENCY_CURVATURES),
                  "curvature for OBS" if dense else "curvature")


def gradient(model: nn.Module, loss_fn: Callable, sample: Batch) -> dict[str, torch.Tensor]:
    """Mean gradient of the loss on ``sample`` w.r.t. the prunable weights, ``{name: tensor}``."""
    return loss_and_gradient(model, loss_fn, sample)[1]


def loss_and_gradient(model: nn.Module, loss_fn: Callable, sample: Batch) -> tuple[float, dict[str, torch.Tensor]]:
    """Mean loss on ``sample`` and its gradient w.r.t. the prunable weights, from the same forward pass."""
    obj = Objective(model, loss_fn, sample, WEIGHTS)
    loss, grad = obj.loss_and_grad()
    return float(loss), obj.unflatten(grad)


def curvature_diagonal(model: nn.Module, loss_fn: Callable, sample: Batch, curvature: str = "ggn",
                       mc_samples: int = 1, seed: int | torch.Generator = 0) -> dict[str, torch.Tensor]:
    """Diagonal of the chosen curvature of the mean loss on ``sample``, for the prunable weights."""
    check_curvature(curvature)
    if curvature == "ggn":
        return diag_ggn(model, loss_fn, sample, params=WEIGHTS, **_QUIET)
    if curvature == "mc":
        return diag_ggn(model, loss_fn, sample, mc_samples=mc_samples, params=WEIGHTS, seed=seed, **_QUIET)
    if curvature == "empirical":
        return diag_fisher(model, loss_fn, sample, kind="empirical", params=WEIGHTS, **_QUIET)
    obj = Objective(model, loss_fn, sample, WEIGHTS)
    return obj.unflatten(hessian_diag(obj))


def curvature_matrix(model: nn.Module, loss_fn: Callable, sample: Batch, curvature: str = "ggn") -> torch.Tensor:
    """The dense (P, P) GGN, Hessian or K-FAC matrix (block-diagonal, Kronecker-factored GGN) over the prunable
    weights, for OBS on toy nets; refused above the memory budget."""
    if check_curvature(curvature, dense=True) == "kfac":
        return kfac(model, loss_fn, sample, params=WEIGHTS, progress=False).to_dense()
    obj = Objective(model, loss_fn, sample, WEIGHTS)
    return ggn(obj) if curvature == "ggn" else hessian(obj)
