"""Self-checks for the classroom exercises in ``notebooks/``.

Every check recomputes the answer exactly and returns a :class:`Feedback`: true when the answer is right,
and shown (as the last expression of a cell, or printed) as a message that names the likely mistake (a
wrong sign, a missing factor 1/2, a sum instead of a mean, ...) without giving the answer away. Each
notebook's checks live in their own block below.
"""
from __future__ import annotations

import math

import torch

from .objective import Objective


# ======================================================================= shared helpers
def _as_number(answer) -> float | None:
    """A Python float from a number or a one-element tensor/array; None if it is not one."""
    if isinstance(answer, bool) or answer is None or answer is Ellipsis:
        return None
    try:
        value = float(answer.item() if hasattr(answer, "item") else answer)
    except (TypeError, ValueError, RuntimeError):
        return None
    return value if math.isfinite(value) else None


def _close(a: float, b: float, rtol: float) -> bool:
    return abs(a - b) <= rtol * max(abs(b), 1e-12)


class Feedback:
    """The result of a check: ``bool(feedback)`` says whether the answer is right; its text explains."""

    def __init__(self, ok: bool, message: str):
        self.ok, self.message = bool(ok), message

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return ("Correct! " if self.ok else "Not yet: ") + self.message

    __str__ = __repr__


# ======================================================================= notebook 01: Taylor error
def check_quadratic_prediction(answer, obj: Objective, step: torch.Tensor, theta: torch.Tensor | None = None,
                               rtol: float = 1e-6) -> Feedback:
    """Exercise of notebook 01: the quadratic model's prediction of the change of the loss for ``step``.

    The expected answer is g.s + 1/2 s.H.s for the step s (P,) at ``theta`` (default: the Objective's
    parameters), with g and H the gradient and exact Hessian of the **mean** training loss. ``answer`` is a
    number (or a one-element tensor). The :class:`Feedback` is true when it matches to ``rtol``.
    """
    value = _as_number(answer)
    if value is None:
        return Feedback(False, f"the answer should be one finite number (a float or a 0-d tensor), got {answer!r}. "
                              "Replace the ... with your computation.")
    t = obj._theta_or_default(theta)
    s = obj.check_vector(step, "step")
    gs, sHs = float(obj.grad(t) @ s), float(s @ obj.hvp(s, t))
    loss0, loss1 = float(obj.loss(t)), float(obj.loss(t + s))
    truth = gs + sHs / 2
    if _close(value, truth, rtol):
        return Feedback(True, f"the quadratic model predicts ΔL = {value:.6g} (the actual change is {loss1 - loss0:.6g}).")
    n = obj.num_examples
    mistakes = [
        (-gs + sHs / 2, "the sign of the gradient term is wrong: the step is s = θ_pruned − θ = −θ ⊙ (1 − m), "
                        "and the first-order term is + gᵀs."),
        (gs - sHs / 2, "the sign of the curvature term is wrong: it is + ½ sᵀHs."),
        (-truth, "the overall sign is wrong: the model predicts L(θ + s) − L(θ), not L(θ) − L(θ + s)."),
        (gs + sHs, "the factor ½ in front of sᵀHs is missing (Taylor: f'' t²/2)."),
        (gs + sHs / 4, "the curvature term has ¼ instead of ½: did you halve it twice?"),
        (sHs / 2, "you left out the gradient term: that is OBD's prediction, which assumes g = 0."),
        (gs, "you left out the curvature term: that is the linear model's prediction."),
        (n * truth, f"your answer is N = {n} times too large: the loss is the mean over examples, not the sum."),
        (loss1 - loss0, "that is the actual change of the loss, not the quadratic model's prediction of it."),
        (loss0 + truth, "that is the predicted loss L(θ) + ΔL; the exercise asks for the change ΔL alone."),
    ]
    for candidate, message in mistakes:
        if _close(value, candidate, rtol):
            return Feedback(False, message)
    return Feedback(False, f"{value:.6g} is not gᵀs + ½ sᵀHs. Check that g = obj.grad() and H (or obj.hvp) are "
                          "taken at the same θ as the step, and that s is the step itself, not θ ⊙ m.")


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

def _verdict(ok: bool, message: str, hint: str) -> bool:
    print(f"Correct! {message}" if ok else f"Not yet: {hint}")
    return ok


# ----------------------------------------------------------------------------- curvature (notebook 02)
def check_hutchinson_standard_error(answer, matrix: torch.Tensor, num_probes: int, rtol: float = 1e-3) -> bool:
    """Exercise: the standard error of Hutchinson's trace estimate with ``num_probes`` Rademacher probes.

    Expected: sqrt( 2 (||A||_F^2 - sum_i A_ii^2) / m ) (only the off-diagonal entries add variance).
    """
    if answer is None:
        return _verdict(False, "", "replace None by your formula (a number or a 0-d tensor).")
    A = matrix.detach().double()
    expected = float((2 * ((A**2).sum() - (A.diagonal() ** 2).sum()) / num_probes).sqrt())
    value = float(answer)
    ok = abs(value - expected) <= rtol * expected
    hint = ("for one probe, Var[z^T A z] = 2 sum_{i != j} A_ij^2 (z_i^2 = 1 removes the diagonal); "
            f"average over m probes divides the variance by m. Your value {value:.4g} is off by "
            f"a factor {value / expected:.3g}." if expected else "check your formula.")
    return _verdict(ok, f"standard error = {expected:.4g}.", hint)
