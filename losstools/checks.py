"""Self-checks for the classroom exercises in ``notebooks/``.

Every check recomputes the answer exactly and returns a :class:`Feedback`: true when the answer is right,
and shown (as the last expression of a cell, or printed) as a message that names the likely mistake (a
wrong sign, a missing factor 1/2, a sum instead of a mean, ...) without giving the answer away. Each
notebook's checks live in their own block below.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from .curvature import GGN, ggn, hessian, hessian_diag
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
    """The result of a check: ``bool(feedback)`` says whether the answer is right; its text explains.

    ``hint`` (optional) is shown on a second line. ``answered=False`` marks a part not attempted yet (the
    answer is still None): ``status`` is then ``"not yet"``, otherwise ``"correct"`` or ``"wrong"``.
    """

    def __init__(self, ok: bool, message: str, hint: str = "", answered: bool = True):
        self.ok, self.message, self.hint, self.answered = bool(ok), message, hint, answered

    def __bool__(self) -> bool:
        return self.ok

    @property
    def status(self) -> str:
        return "correct" if self.ok else "wrong" if self.answered else "not yet"

    def __repr__(self) -> str:
        text = ("Correct! " if self.ok else "Not yet: ") + self.message
        return text + (f"\nHint: {self.hint}" if self.hint else "")

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
                              "Replace it with your computation.")
    t = obj.resolve_theta(theta)
    s = obj.check_vector(step, "step")
    gs, sHs = float(obj.grad(t) @ s), float(s @ obj.hvp(s, t))
    loss0, loss1 = float(obj.loss(t)), float(obj.loss(t + s))
    truth = gs + sHs / 2
    if _close(value, truth, rtol):
        return Feedback(True, f"the quadratic model predicts ΔL = {value:.6g} "
                              f"(the actual change is {loss1 - loss0:.6g}).")
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


# ======================================================================= notebooks/exercises/ (classroom exercises)
# Tensor answers are compared with an exact reference; the usual mistakes are recognised (a known wrong
# formula, a sign, a factor of two, N times too large). A part not attempted yet (None) says "not yet".
class Mistake(NamedTuple):
    """A typical wrong answer and what to tell a student whose answer equals it."""

    value: torch.Tensor | float
    message: str
    hint: str = ""


def _describe(expected: torch.Tensor) -> str:
    return "number" if expected.ndim == 0 else f"tensor of shape {tuple(expected.shape)}"


def _not_yet(what: str, expected: torch.Tensor) -> Feedback:
    return Feedback(False, f"replace the None by your {what} (a {_describe(expected)}) and run the cell again.",
                    answered=False)


def _as_tensor(answer, expected: torch.Tensor, what: str) -> torch.Tensor | str:
    """``answer`` as a tensor like ``expected``, or a message saying why it cannot be one."""
    try:
        a = torch.as_tensor(answer.detach() if torch.is_tensor(answer) else answer)
    except (TypeError, ValueError, RuntimeError):
        return f"your {what} is a {type(answer).__name__}; expected a {_describe(expected)}."
    if a.is_complex() or a.dtype == torch.bool:
        return f"your {what} has dtype {a.dtype}; expected real numbers."
    a = a.to(device=expected.device, dtype=expected.dtype)
    if a.shape == expected.shape or (expected.ndim == 0 and a.numel() == 1):
        return a.reshape(expected.shape)
    have, want = tuple(a.shape), tuple(expected.shape)
    if a.numel() == expected.numel():
        return f"your {what} has shape {have}, expected {want}: the right number of entries; reshape it."
    if a.numel() == 1:
        return (f"your {what} is a single number, expected a tensor of shape {want}: did you sum, or take a dot "
                "product, where one entry per parameter should stay?")
    return f"your {what} has shape {have}, expected {want}."


def _tensors_close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    scale = max(b.norm().item(), a.norm().item(), torch.finfo(b.dtype).tiny)
    return (a - b).norm().item() <= rtol * scale


def _scale_message(a: torch.Tensor, expected: torch.Tensor, what: str, num_examples: int | None) -> str | None:
    """Say so when ``a`` is the reference times a constant (a sign, a factor of two, N)."""
    norm2 = (expected * expected).sum()
    if norm2 == 0:
        return None
    c = ((a * expected).sum() / norm2).item()
    if (a - c * expected).norm() > 1e-6 * a.norm():
        return None
    known = {-1.0: "has the opposite sign of the right one: a sign error.",
             2.0: "is twice the right one: a factor of two too large (a missing 1/2?).",
             0.5: "is half the right one: a factor of two too small (a 1/2 too many?).",
             -2.0: "is -2 times the right one: a sign error and a factor of two.",
             -0.5: "is -1/2 times the right one: a sign error and a factor of two."}
    if num_examples and num_examples > 2:
        n = num_examples
        known[float(n)] = (f"is N = {n} times the right one: a sum over the N examples instead of the mean "
                           "(losstools uses the mean loss).")
        known[1.0 / n] = f"is the right one divided by N = {n}: the mean is taken once too often."
    for factor, message in known.items():
        if abs(c - factor) <= 1e-4 * abs(factor):
            return f"your {what} {message}"
    if expected.ndim == 0:
        return f"your {what} is {c:.4g} times the right value."
    return f"your {what} is the right one times {c:.4g}: the direction is right, the scale is not."


def compare(what: str, answer, expected: torch.Tensor, *, reference: str, mistakes: tuple[Mistake, ...] = (),
            hint: str = "", num_examples: int | None = None, rtol: float = 1e-6) -> Feedback:
    """Compare ``answer`` (a student's ``what``) with ``expected`` (described as ``reference``).

    Order: no answer yet (None), type and shape, NaN/inf, correct (relative error <= ``rtol``), a known
    ``mistake``, a constant factor (sign, two, ``num_examples``), otherwise the relative error.
    """
    if answer is None:
        return _not_yet(what, expected)
    a = _as_tensor(answer, expected, what)
    if isinstance(a, str):
        return Feedback(False, a, hint)
    if not torch.isfinite(a).all():
        return Feedback(False, f"your {what} contains NaN or inf.", hint)
    if _tensors_close(a, expected, rtol):
        return Feedback(True, f"your {what} matches {reference} (relative error below {rtol:g}).")
    for m in mistakes:
        if _tensors_close(a, torch.as_tensor(m.value, dtype=expected.dtype, device=expected.device), rtol):
            return Feedback(False, m.message, m.hint or hint)
    scale = _scale_message(a, expected, what, num_examples)
    if scale:
        return Feedback(False, scale, hint)
    error = ((a - expected).norm() / expected.norm().clamp_min(torch.finfo(expected.dtype).tiny)).item()
    return Feedback(False, f"your {what} differs from {reference} by a relative error of {error:.2g}.", hint)


# ----------------------------------------------------------------------- exercise 1: Hessian-vector products
def check_hvp(Hv, obj: Objective, v: torch.Tensor) -> Feedback:
    """Check a Hessian-vector product ``Hv`` (P,) of the mean loss against ``hessian(obj) @ v``."""
    v = obj.check_vector(v, "v")
    expected = hessian(obj) @ v
    mistakes = (
        Mistake(obj.grad(), "your vector is the gradient g, not H v.",
                "differentiate the scalar g . v a second time (the first grad needs create_graph=True)."),
        Mistake(hessian_diag(obj) * v, "your vector is diag(H) * v: only the diagonal of the Hessian acts on v.",
                "differentiate the whole scalar g . v with respect to theta, not each g_i by theta_i."),
    )
    return compare("Hessian-vector product", Hv, expected, reference="hessian(obj) @ v", mistakes=mistakes,
                   num_examples=obj.num_examples,
                   hint="H v = d/dtheta (g(theta) . v): one grad with create_graph=True, then a grad of g @ v.")


def check_hessian(H, obj: Objective) -> Feedback:
    """Check a dense Hessian ``H`` (P, P) of the mean loss against :func:`losstools.hessian`."""
    mistakes = (Mistake(ggn(obj), "your matrix is the Gauss-Newton matrix (GGN), not the Hessian: it misses the "
                                  "second derivatives of the network itself."),)
    return compare("Hessian", H, hessian(obj), reference="losstools.hessian(obj)", mistakes=mistakes,
                   num_examples=obj.num_examples,
                   hint="column j of H is H e_j: stack your hvp of the P basis vectors (torch.eye(P)).")


# ----------------------------------------------------------------------- exercise 2: Hutchinson's trace estimator
def hutchinson_std(H: torch.Tensor) -> torch.Tensor:
    """Standard deviation of the one-probe Rademacher estimate z^T H z of tr(H), for symmetric H (P, P).

    Var = 2 sum_{i != j} H_ij^2 (the diagonal adds nothing because z_i^2 = 1).
    """
    return torch.sqrt(2 * ((H * H).sum() - (H.diagonal() ** 2).sum()))


def check_hutchinson_std(sigma, obj: Objective) -> Feedback:
    """Check the predicted standard deviation ``sigma`` of a one-probe Rademacher trace estimate."""
    H = hessian(obj)
    expected = hutchinson_std(H)
    mistakes = (
        Mistake(expected**2, "your number is the variance; the standard deviation is its square root."),
        Mistake(math.sqrt(2) * H.norm(), "your number is the standard deviation for Gaussian probes, sqrt(2) ||H||_F.",
                "with Rademacher probes z_i^2 = 1, so the diagonal of H adds nothing to the variance."),
        Mistake(expected / math.sqrt(2), "your number is sqrt(sum_{i != j} H_ij^2): a factor sqrt(2) is missing.",
                "each pair i != j appears twice in z^T H z (H_ij z_i z_j and H_ji z_j z_i)."),
    )
    return compare("standard deviation", sigma, expected, reference="sqrt(2 sum_{i != j} H_ij^2)", mistakes=mistakes,
                   hint="expand z^T H z = sum_i H_ii z_i^2 + sum_{i != j} H_ij z_i z_j and use E[z_i z_j z_k z_l].")


def _call(estimator: Callable, obj: Objective, num_probes: int, seed: int):
    generator = torch.Generator(device=obj.device).manual_seed(seed)
    return estimator(obj, num_probes, generator)


def check_hutchinson(estimator: Callable | None, obj: Objective, num_probes: int = 64, repeats: int = 8,
                     seed: int = 0) -> Feedback:
    """Check a trace estimator ``estimator(obj, num_probes, generator) -> float`` against ``tr(hessian(obj))``.

    It is called ``repeats`` times with ``num_probes`` probes (seeds ``seed``, ``seed + 1``, ...); the
    mean must lie within 5 standard errors of the exact trace (the standard error from the exact
    Gaussian-probe variance 2 ||H||_F^2, which bounds the Rademacher one), the spread must shrink
    like 1/sqrt(num_probes), and the same generator seed must give the same estimate.
    """
    if estimator is None:
        return Feedback(False, "replace the None by your estimator function and run the cell again.", answered=False)
    if not callable(estimator):
        return Feedback(False, f"pass the function itself (without calling it); got a {type(estimator).__name__}.")
    H = hessian(obj)
    trace = H.trace()
    try:
        raw = [_call(estimator, obj, num_probes, seed + k) for k in range(repeats)]
        again = _call(estimator, obj, num_probes, seed)
    except Exception as err:  # the student's code: report it, never crash the notebook
        return Feedback(False, f"calling estimator(obj, {num_probes}, generator) raised {type(err).__name__}: {err}")
    if any(r is None for r in raw):
        return Feedback(False, "your function returns None so far: compute the estimate and return it.",
                        answered=False)
    values = [_as_tensor(r, trace, "estimate") for r in raw + [again]]
    problem = next((v for v in values if isinstance(v, str)), None)
    if problem:
        return Feedback(False, problem)
    estimates, trace = torch.stack(values[:-1]), trace.item()
    if values[-1].item() != estimates[0].item():
        return Feedback(False, "the same generator seed gave two different estimates.",
                        "draw every probe from the generator you are given, e.g. torch.randint(0, 2, (P, m), "
                        "generator=generator), so that results are reproducible.")
    if torch.all(estimates == estimates[0]) and abs(estimates[0].item() - trace) <= 1e-9 * abs(trace):
        return Feedback(False, "your function returns the exact trace for every seed: the point is to estimate it "
                               "from random probes z^T H z, without forming H.")
    stderr = math.sqrt(2.0) * H.norm().item() / math.sqrt(repeats * num_probes)
    mean = estimates.mean().item()
    if abs(mean - trace) <= 5 * stderr:
        if repeats > 1 and estimates.std().item() > 3 * math.sqrt(2.0) * H.norm().item() / math.sqrt(num_probes):
            return Feedback(False, f"unbiased, but the estimates are as noisy as with far fewer than {num_probes} "
                                   "probes.", "average z^T H z over all num_probes probes.")
        return Feedback(True, f"over {repeats} runs of {num_probes} probes your mean estimate is within 5 standard "
                              f"errors of the exact trace {trace:.4f}.")
    ones = torch.ones(len(H), dtype=H.dtype, device=H.device)
    sum_all = (ones @ H @ ones).item()  # 1^T H 1: what probes with a non-zero mean pick up
    candidates = (
        (num_probes * trace, f"about {num_probes} times the exact trace: a sum over the probes instead of their mean."),
        (-trace, "about -1 times the exact trace: a sign error."),
        (2 * trace, "about twice the exact trace: a factor of two too large."),
        (0.5 * trace, "about half the exact trace: a factor of two too small."),
        (obj.num_examples * trace, "about N times the exact trace: a sum over the examples instead of the mean."),
        ((trace + sum_all) / 4, "what probes of 0s and 1s give (E[z z^T] = (I + 1 1^T) / 4): map them to -1 and +1."),
        (trace / 12 + sum_all / 4, "what probes uniform in [0, 1) give (torch.rand): they do not have E[z z^T] = I."),
    )
    tolerance = 5 * max(stderr, estimates.std().item() / math.sqrt(repeats) if repeats > 1 else 0.0)
    distance, message = min((abs(mean - value), message) for value, message in candidates)
    if distance <= tolerance:
        return Feedback(False, f"your estimates average {mean:.4g}, {message}")
    return Feedback(False, f"your estimates average {mean:.4g} but the exact trace is {trace:.4g} "
                           f"({abs(mean - trace) / stderr:.0f} standard errors away): the estimator is biased.",
                    "E[z^T H z] = tr(H) needs E[z z^T] = I: entries +-1 with equal probability (Rademacher) "
                    "or standard normal; 2 * torch.randint(0, 2, ...) - 1 gives +-1.")


# ----------------------------------------------------------------------- exercise 3: pruning saliencies
#: The criteria whose saliencies exercise 3 checks.
SALIENCY_CRITERIA = ("mp", "lm", "qm", "obd")


def expected_saliency(g: torch.Tensor, d: torch.Tensor, theta: torch.Tensor, lam: float = 0.0) -> torch.Tensor:
    """r_i = | -g_i theta_i + 1/2 d_i theta_i^2 | + 1/2 lam theta_i^2, all of shape (P,)."""
    return (-g * theta + 0.5 * d * theta**2).abs() + 0.5 * lam * theta**2


def check_saliencies(r, obj: Objective, criterion: str = "qm", lam: float = 0.0) -> Feedback:
    """Check per-weight saliencies ``r`` (P,) of a pruning criterion (MP, LM, QM or OBD) at ``obj.theta``.

    g is the mean gradient, d the diagonal of the GGN (the true Fisher for softmax cross-entropy);
    ``r`` may also be a dict ``{name: tensor}`` per parameter tensor.
    """
    if criterion not in SALIENCY_CRITERIA:
        raise ValueError(f"criterion must be one of {SALIENCY_CRITERIA}, got {criterion!r}")
    theta, zero = obj.theta, torch.zeros(obj.num_params, dtype=obj.dtype, device=obj.device)
    g = obj.grad() if criterion in ("lm", "qm") else zero
    d = {"mp": torch.ones_like(zero), "lm": zero}.get(criterion)
    d = GGN(obj).diagonal() if d is None else d
    expected = expected_saliency(g, d, theta, lam)
    penalty = 0.5 * lam * theta**2
    mistakes = [
        Mistake(expected_saliency(g, 2 * d, theta, lam), "the curvature term lacks its 1/2: use 1/2 d_i theta_i^2.",
                "the quadratic model is g.dtheta + 1/2 dtheta^T C dtheta."),
        Mistake(expected_saliency(g, d, theta, 2 * lam), "the penalty term lacks its 1/2: use 1/2 lambda theta_i^2."),
    ]
    if criterion in ("lm", "qm"):
        mistakes += [
            Mistake(expected_saliency(-g, d, theta, lam),
                    "the gradient term has the wrong sign: pruning moves theta_i by dtheta_i = -theta_i, so the "
                    "linear term is -g_i theta_i."),
            Mistake(-g * theta + 0.5 * d * theta**2 + penalty, "these are signed predicted loss changes; the saliency "
                                                               "takes their absolute value.",
                    "r_i = |-g_i theta_i + 1/2 d_i theta_i^2| + 1/2 lambda theta_i^2."),
        ]
    if criterion in ("qm", "obd"):
        h = hessian_diag(obj)
        mistakes += [Mistake(value, "you used the diagonal of the Hessian; these criteria use the diagonal of the GGN "
                                    "(the Fisher), d = losstools.ggn(obj).diagonal().")
                     for value in (expected_saliency(g, h, theta, lam), -g * theta + 0.5 * h * theta**2 + penalty)]
    if criterion == "obd":
        mistakes += [Mistake(expected_saliency(obj.grad(), d, theta, lam), "you kept the gradient term: OBD assumes a "
                                                                  "minimum, g = 0.")]
    if criterion == "mp":
        mistakes += [Mistake(theta.abs(), "|theta_i| ranks the weights the same way, but the formula gives "
                                          "1/2 (1 + lambda) theta_i^2.")]
    if lam > 0:
        mistakes += [Mistake(expected - penalty,
                             f"the penalty term 1/2 lambda theta_i^2 (lambda = {lam:g}) is missing.")]
    what = f"vector of {criterion.upper()} saliencies" + (f" (lambda = {lam:g})" if lam else "")
    if isinstance(r, dict):
        try:
            r = obj.flatten(r)
        except KeyError as err:
            return Feedback(False, f"your dict of saliencies misses parameter tensors: {err}")
    return compare(what, r, expected, reference=f"the {criterion.upper()} formula", mistakes=tuple(mistakes),
                   num_examples=obj.num_examples,
                   hint="r_i = |-g_i theta_i + 1/2 d_i theta_i^2| + 1/2 lambda theta_i^2; see the table above.")


# ----------------------------------------------------------------------- exercise 4: trust radius of the linear model
def linear_trust_radius(slope: float, curvature: float, tol: float) -> float:
    """Largest t > 0 with ``|L(t) - L(0) - t s| <= tol |L(t) - L(0)|`` when ``L(t) = L(0) + t s + 1/2 t^2 q`` exactly.

    ``slope`` s = g . d, ``curvature`` q = d^T H d > 0, 0 < tol < 1. The error ratio ``(t q / 2) / |s + t q / 2|``
    grows from 0, so the radius is where it reaches tol: ``t = 2 tol |s| / (q (1 + tol))`` along a descent
    direction (s < 0), 2 tol s / (q (1 - tol)) along an ascent direction.
    """
    if not 0 < tol < 1:
        raise ValueError(f"tol must be between 0 and 1, got {tol}")
    if curvature <= 0:
        raise ValueError(f"the curvature d^T H d must be > 0 for a finite radius, got {curvature}")
    return 2 * tol * abs(slope) / (curvature * (1 + tol if slope < 0 else 1 - tol))


def check_trust_radius(t, obj: Objective, direction: torch.Tensor, tol: float = 0.1) -> Feedback:
    """Check the trust radius ``t`` of the linear Taylor model along ``direction`` for a quadratic loss.

    The loss must be exactly quadratic in theta (a linear model with MSE); this is verified.
    """
    d = obj.check_vector(direction, "direction")
    s, q = (obj.grad() @ d).item(), (d @ obj.hvp(d)).item()
    base = obj.loss().item()
    for step in (0.5, 2.0):
        actual = obj.loss(obj.theta + step * d).item() - base
        if abs(actual - (step * s + 0.5 * step**2 * q)) > 1e-6 * max(abs(actual), 1e-12):
            raise ValueError("check_trust_radius needs a loss that is quadratic in theta (a linear model with MSE); "
                             "this Objective's loss is not")
    expected = torch.tensor(linear_trust_radius(s, q, tol), dtype=obj.dtype)
    mistakes = (
        Mistake(2 * tol * abs(s) / q, "you measured the error relative to the linear prediction |t g.d|; the "
                                      "tolerance is relative to the true change L(theta + t d) - L(theta).",
                "solve (t q / 2) = tol |s + t q / 2| for t > 0."),
        Mistake(linear_trust_radius(-s, q, tol), "the (1 + tol) and (1 - tol) are swapped: along a descent direction "
                                                 "the true change is smaller in size than the linear prediction."),
        Mistake(linear_trust_radius(s, q, tol) / 2,
                "a factor of two is missing: the quadratic term is 1/2 t^2 d^T H d."),
    )
    hint = "L(theta + t d) - L(theta) = t s + 1/2 t^2 q exactly, with s = g.d and q = d^T H d."
    result = compare("trust radius", t, expected, reference="the exact radius", mistakes=mistakes, rtol=1e-4,
                     hint=hint)
    if result.status == "wrong" and not isinstance(value := _as_tensor(t, expected, "trust radius"), str):
        error = abs(value.item() - expected.item()) / expected.item()
        if error < 0.02:
            return Feedback(False, f"close (relative error {error:.1g}), as from a grid search: the radius has a "
                                   "closed form, compute it exactly.", hint)
    return result


# ------------------------------------------------------------------------------ pruning (notebook 03)
def _not_a_number(answer, what: str) -> Feedback:
    """Feedback on an answer that is no number: not yet given (None), or not one finite number."""
    if answer is None:
        return Feedback(False, f"replace None by your {what} (a number or a 0-d tensor).", answered=False)
    return Feedback(False, f"your {what} should be one finite number (a float or a 0-d tensor), got {answer!r}.")


def check_qm_saliency(answer, theta: float, grad: float, diag: float, reg: float = 0.0) -> Feedback:
    """Check a hand-computed QM saliency ``r = |-g theta + 1/2 d theta^2| + 1/2 lambda theta^2`` of one weight."""
    value = _as_number(answer)
    if value is None:
        return _not_a_number(answer, "saliency")
    theta, grad, diag, reg = (float(v) for v in (theta, grad, diag, reg))
    inner, penalty = -grad * theta + 0.5 * diag * theta**2, 0.5 * reg * theta**2
    expected = abs(inner) + penalty
    if _close(value, expected, 1e-6):
        return Feedback(True, f"r = {expected:.6g}.")
    mistakes = [
        (abs(grad * theta + 0.5 * diag * theta**2) + penalty,
         "the step is dtheta = -theta, so the linear term is g * dtheta = -g * theta"),
        (inner + penalty, "take the absolute value of the predicted change before adding the penalty"),
        (abs(inner), "add the step-norm penalty 1/2 lambda theta^2"),
    ]
    hint = next((text for candidate, text in mistakes if _close(value, candidate, 1e-6)),
                "r = |-g theta + 1/2 d theta^2| + 1/2 lambda theta^2")
    return Feedback(False, f"{value:.6g} is not the QM saliency.", hint + ".")


# ----------------------------------------------------------------------------- curvature (notebook 02)
def check_hutchinson_standard_error(answer, matrix: torch.Tensor, num_probes: int, rtol: float = 1e-3) -> Feedback:
    """Exercise: the standard error of Hutchinson's trace estimate with ``num_probes`` Rademacher probes.

    Expected: sqrt( 2 (||A||_F^2 - sum_i A_ii^2) / m ) (only the off-diagonal entries add variance), i.e.
    :func:`hutchinson_std` of the symmetric ``matrix`` (P, P) divided by sqrt(m).
    """
    value = _as_number(answer)
    if value is None:
        return _not_a_number(answer, "formula")
    expected = hutchinson_std(matrix.detach().double()).item() / math.sqrt(num_probes)
    if _close(value, expected, rtol):
        return Feedback(True, f"standard error = {expected:.4g}.")
    if not expected:
        return Feedback(False, f"{value:.4g} is not the standard error: check your formula.")
    return Feedback(False, f"your value {value:.4g} is off by a factor {value / expected:.3g}.",
                    "for one probe, Var[z^T A z] = 2 sum_{i != j} A_ij^2 (z_i^2 = 1 removes the diagonal); "
                    "average over m probes divides the variance by m.")


# ----------------------------------------------------------------------------- the spectrum in training (notebook 05)
def check_largest_stable_lr(answer, obj: Objective, theta: torch.Tensor | None = None, rtol: float = 0.02) -> Feedback:
    """Exercise: the largest step size eta for which gradient descent on the local quadratic model of ``obj``
    at ``theta`` does not diverge: 2 / lambda_max (lambda_max recomputed here by 40 Lanczos steps)."""
    from .spectrum import sharpness

    value = _as_number(answer)
    if value is None:
        return _not_a_number(answer, "step size")
    lam = sharpness(obj, theta, steps=40)[0]
    expected = 2.0 / lam
    if _close(value, expected, rtol):
        return Feedback(True, f"η_max = 2/λ_max = {expected:.4f}: along the top eigenvector one step multiplies the "
                              f"distance to the minimum by 1 − ηλ_max, which stays in (−1, 1) exactly for η < 2/λ_max.")
    mistakes = [
        (1.0 / lam, "1/λ_max is the step that lands exactly on the minimum along the top eigenvector; larger steps "
                    "jump past it but still get closer as long as |1 − ηλ| < 1"),
        (lam / 2.0, "your value is λ_max/2: the step size is a length per unit of gradient, it shrinks as the "
                    "curvature grows"),
        (2.0 * lam, "your value grows with the curvature; the step size must shrink as the curvature grows"),
    ]
    hint = next((text for candidate, text in mistakes if _close(value, candidate, rtol)),
                "on q(x) = λ x²/2 gradient descent gives x ← (1 − ηλ) x; for which η is |1 − ηλ| < 1?")
    return Feedback(False, f"{value:.4g} is not the largest stable step size.", hint + ".")
