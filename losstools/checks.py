"""Self-checks for classroom exercises: each prints a short verdict with a hint and returns True or False."""
from __future__ import annotations

import math

import torch


# ------------------------------------------------------------------------------ pruning (notebook 03)
def check_qm_saliency(answer, theta: float, grad: float, diag: float, reg: float = 0.0) -> bool:
    """Check a hand-computed QM saliency r = |-g theta + 1/2 d theta^2| + 1/2 lambda theta^2 of one weight."""
    from .pruning import saliency

    expected = float(saliency("qm", *(torch.tensor([float(v)], dtype=torch.float64) for v in (theta, grad, diag)),
                              reg=float(reg))[0])
    if answer is None:
        print("No answer yet: replace None by your number.")
        return False
    value = float(answer)
    if math.isclose(value, expected, rel_tol=1e-6, abs_tol=1e-9):
        print(f"Correct: r = {expected:.6g}.")
        return True
    inner = -grad * theta + 0.5 * diag * theta**2
    if math.isclose(value, abs(grad * theta + 0.5 * diag * theta**2) + 0.5 * reg * theta**2, rel_tol=1e-6):
        hint = "the step is dtheta = -theta, so the linear term is g * dtheta = -g * theta"
    elif math.isclose(value, inner + 0.5 * reg * theta**2, rel_tol=1e-6):
        hint = "take the absolute value of the predicted change before adding the penalty"
    elif math.isclose(value, abs(inner), rel_tol=1e-6):
        hint = "add the step-norm penalty 1/2 lambda theta^2"
    else:
        hint = "r = |-g theta + 1/2 d theta^2| + 1/2 lambda theta^2"
    print(f"Not yet: {value:.6g} is not the QM saliency. Hint: {hint}.")
    return False
