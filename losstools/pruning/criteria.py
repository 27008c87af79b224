"""Per-weight saliencies of the paper's criteria and the loss models' predicted change of a pruning step.

Pruning weight i is the step dtheta_i = -theta_i. With the mean gradient g and a curvature diagonal d,
every criterion ranks by (smallest first removed)

    r_i = | -g_i theta_i + 1/2 d_i theta_i^2 | + 1/2 lambda theta_i^2

with (g, d) = (0, 1) for MP, (g, 0) for LM, (g, diag C) for QM and (0, diag C) for OBD. The absolute
value aims to *preserve* the loss; ``signed=True`` drops it (a predicted decrease then ranks first).
"""
from __future__ import annotations

import torch

from .._validate import choice, finite

#: The pruning criteria (magnitude MP, the linear and quadratic models LM and QM, OBD and OBS).
CRITERIA = ("mp", "lm", "qm", "obd", "obs")
#: The criteria whose saliency needs at most a curvature diagonal (all but OBS).
DIAGONAL_CRITERIA = ("mp", "lm", "qm", "obd")
NEEDS_GRAD = {"mp": False, "lm": True, "qm": True, "obd": False, "obs": False}
NEEDS_CURVATURE = {"mp": False, "lm": False, "qm": True, "obd": True, "obs": True}


def check_criterion(criterion: str) -> str:
    """Lower-cased ``criterion`` or a ValueError naming the known ones."""
    if not isinstance(criterion, str):
        raise TypeError(f"the pruning criterion must be a name ({', '.join(CRITERIA)}), got {type(criterion).__name__}")
    return choice(criterion.lower(), CRITERIA, "pruning criterion")


def saliency(criterion: str, theta: torch.Tensor, grad: torch.Tensor | None = None, diag: torch.Tensor | None = None,
             reg: float = 0.0, signed: bool = False) -> torch.Tensor:
    """Saliency r (same shape as ``theta``) of removing each weight; the smallest are pruned first.

    ``grad`` (mean gradient) is needed by LM and QM, ``diag`` (curvature diagonal) by QM and OBD;
    ``reg`` is the step-norm penalty lambda >= 0.

    >>> saliency("qm", torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([3.0]), reg=1.0)
    tensor([7.])
    """
    name = check_criterion(criterion)
    if name not in DIAGONAL_CRITERIA:
        raise ValueError(f"{name!r} is not a diagonal criterion; OBS is run by losstools.pruning.obs")
    reg = finite(reg, "the step-norm penalty reg (lambda)", low=0.0)
    zeros = torch.zeros_like(theta)
    g = grad if NEEDS_GRAD[name] else zeros
    d = diag if NEEDS_CURVATURE[name] else (torch.ones_like(theta) if name == "mp" else zeros)
    if g is None or d is None:
        raise ValueError(f"criterion {name!r} needs {'the gradient' if g is None else 'a curvature diagonal'}")
    change = -g * theta + 0.5 * d * theta**2
    return (change if signed else change.abs()) + 0.5 * reg * theta**2


def predicted_change(delta: dict[str, torch.Tensor], grad: dict[str, torch.Tensor] | None,
                     diag: dict[str, torch.Tensor] | None) -> dict[str, float]:
    """The loss models' prediction of L(theta + delta) - L(theta) for a step ``delta`` ({name: tensor}).

    LM: g^T delta; OBD: 1/2 sum_i d_i delta_i^2; QM: their sum. Models whose statistics are missing
    (``grad`` or ``diag`` None) are left out.
    """
    out: dict[str, float] = {}
    linear = sum(float((grad[n] * v).sum()) for n, v in delta.items()) if grad is not None else None
    quadratic = 0.5 * sum(float((diag[n] * v**2).sum()) for n, v in delta.items()) if diag is not None else None
    if linear is not None:
        out["lm"] = linear
    if linear is not None and quadratic is not None:
        out["qm"] = linear + quadratic
    if quadratic is not None:
        out["obd"] = quadratic
    return out
