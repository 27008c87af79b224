"""Self-checks for classroom exercises: compare an answer with an exact reference and say what is wrong.

Every ``check_*`` function returns a :class:`CheckResult` that prints as a few lines of plain text:
whether the answer is right and, if not, what is wrong with it (shape, sign, scale, a factor of two,
a sum instead of a mean) with a hint. An answer that is still ``None`` gives "not yet", never an
exception, so that a student's notebook runs to the end.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from .curvature import ggn, hessian, hessian_diag
from .objective import Objective

# ============================================================================ classroom exercises (issue 7)
# The result type, the shared comparison (answer -> tensor, reference, known mistakes, a sign, a
# factor of two, N times too large), then one section per exercise in notebooks/exercises/.
CORRECT, NOT_YET, WRONG = "correct", "not yet", "wrong"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a check: ``status`` is ``"correct"``, ``"not yet"`` (no answer) or ``"wrong"``.

    Prints as plain text (``repr``), so that it displays the same in JupyterLab, in a terminal and
    in nbval's comparisons; ``bool(result)`` is True when the answer is correct.
    """

    title: str
    status: str
    message: str
    hint: str = ""

    @property
    def passed(self) -> bool:
        return self.status == CORRECT

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        head = {CORRECT: "correct", NOT_YET: "not yet", WRONG: "not right yet"}[self.status]
        lines = [f"{self.title}: {head}", _wrap(self.message)]
        if self.hint:
            lines.append(_wrap("Hint: " + self.hint))
        return "\n".join(lines)


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="    ")


class Mistake(NamedTuple):
    """A typical wrong answer and what to tell a student whose answer equals it."""

    value: torch.Tensor | float
    message: str
    hint: str = ""


def _describe(expected: torch.Tensor) -> str:
    return "number" if expected.ndim == 0 else f"tensor of shape {tuple(expected.shape)}"


def _as_tensor(answer, expected: torch.Tensor) -> torch.Tensor | str:
    """``answer`` as a tensor like ``expected``, or a message saying why it cannot be one."""
    try:
        a = torch.as_tensor(answer.detach() if torch.is_tensor(answer) else answer)
    except (TypeError, ValueError, RuntimeError):
        return f"Your answer is a {type(answer).__name__}; expected a {_describe(expected)}."
    if a.is_complex() or a.dtype == torch.bool:
        return f"Your answer has dtype {a.dtype}; expected real numbers."
    a = a.to(device=expected.device, dtype=expected.dtype)
    if a.shape == expected.shape or (expected.ndim == 0 and a.numel() == 1):
        return a.reshape(expected.shape)
    have, want = tuple(a.shape), tuple(expected.shape)
    if a.numel() == expected.numel():
        return f"Your answer has shape {have}, expected {want}: the right number of entries; reshape it."
    if a.ndim == 0 or a.numel() == 1:
        return (f"Your answer is a single number, expected a tensor of shape {want}: did you sum, or take a dot "
                "product, where one entry per parameter should stay?")
    return f"Your answer has shape {have}, expected {want}."


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    scale = max(b.norm().item(), a.norm().item(), torch.finfo(b.dtype).tiny)
    return (a - b).norm().item() <= rtol * scale


def _scale_message(a: torch.Tensor, expected: torch.Tensor, num_examples: int | None) -> str | None:
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
            return "Your answer " + message
    if expected.ndim == 0:
        return f"Your answer is {c:.4g} times the right value."
    return f"Your answer is the right {_describe(expected)} times {c:.4g}: the direction is right, the scale is not."


def compare(title: str, answer, expected: torch.Tensor, *, reference: str,
            mistakes: tuple[Mistake, ...] = (), hint: str = "", num_examples: int | None = None,
            rtol: float = 1e-6) -> CheckResult:
    """Compare ``answer`` with ``expected`` (described as ``reference``); diagnose what is wrong.

    Order: missing answer, type and shape, NaN/inf, correct (relative error <= ``rtol``), a known
    ``mistake``, a constant factor (sign, two, ``num_examples``), otherwise the relative error.
    """
    if answer is None:
        return CheckResult(title, NOT_YET, f"Your answer is still None: replace the None by your answer (a "
                                           f"{_describe(expected)}) and run the cell again.")
    a = _as_tensor(answer, expected)
    if isinstance(a, str):
        return CheckResult(title, WRONG, a, hint)
    if not torch.isfinite(a).all():
        return CheckResult(title, WRONG, "Your answer contains NaN or inf.", hint)
    if _close(a, expected, rtol):
        return CheckResult(title, CORRECT, f"It matches {reference} (relative error below {rtol:g}).")
    for m in mistakes:
        if _close(a, torch.as_tensor(m.value, dtype=expected.dtype, device=expected.device), rtol):
            return CheckResult(title, WRONG, m.message, m.hint or hint)
    scale = _scale_message(a, expected, num_examples)
    if scale:
        return CheckResult(title, WRONG, scale, hint)
    error = ((a - expected).norm() / expected.norm().clamp_min(torch.finfo(expected.dtype).tiny)).item()
    return CheckResult(title, WRONG, f"Your answer differs from {reference} by a relative error of {error:.2g}.",
                       hint)


# ---------------------------------------------------------------------------- exercise: Hessian-vector products
def check_hvp(Hv, obj: Objective, v: torch.Tensor) -> CheckResult:
    """Check a Hessian-vector product ``Hv`` (P,) of the mean loss against ``hessian(obj) @ v``."""
    v = obj.check_vector(v, "v")
    expected = hessian(obj) @ v
    mistakes = (
        Mistake(obj.grad(), "Your vector is the gradient g, not H v.",
                "differentiate the scalar g . v a second time (the first grad needs create_graph=True)."),
        Mistake(hessian_diag(obj) * v, "Your vector is diag(H) * v: only the diagonal of the Hessian acts on v.",
                "differentiate the whole scalar g . v with respect to theta, not each g_i by theta_i."),
    )
    return compare("Hessian-vector product", Hv, expected, reference="hessian(obj) @ v",
                   mistakes=mistakes, num_examples=obj.num_examples,
                   hint="H v = d/dtheta (g(theta) . v): one grad with create_graph=True, then a grad of g @ v.")


def check_hessian(H, obj: Objective) -> CheckResult:
    """Check a dense Hessian ``H`` (P, P) of the mean loss against :func:`losstools.hessian`."""
    expected = hessian(obj)
    mistakes = (Mistake(ggn(obj), "Your matrix is the Gauss-Newton matrix (GGN), not the Hessian: it misses the "
                                  "second derivatives of the network itself."),)
    return compare("Hessian from Hessian-vector products", H, expected, reference="losstools.hessian(obj)",
                   mistakes=mistakes, num_examples=obj.num_examples,
                   hint="column j of H is H e_j: stack your hvp of the P basis vectors (torch.eye(P)).")


# ---------------------------------------------------------------------------- exercise: Hutchinson's trace estimator
def hutchinson_std(H: torch.Tensor) -> torch.Tensor:
    """Standard deviation of the one-probe Rademacher estimate z^T H z of tr(H), for symmetric H (P, P).

    Var = 2 sum_{i != j} H_ij^2 (the diagonal adds nothing because z_i^2 = 1).
    """
    return torch.sqrt(2 * ((H * H).sum() - (H.diagonal() ** 2).sum()))


def check_hutchinson_std(sigma, obj: Objective) -> CheckResult:
    """Check the predicted standard deviation ``sigma`` of a one-probe Rademacher trace estimate."""
    H = hessian(obj)
    expected = hutchinson_std(H)
    off = torch.sqrt((H * H).sum() - (H.diagonal() ** 2).sum())
    mistakes = (
        Mistake(expected**2, "Your number is the variance; the standard deviation is its square root."),
        Mistake(math.sqrt(2) * H.norm(), "Your number is the standard deviation for Gaussian probes, "
                                         "sqrt(2) ||H||_F.",
                "with Rademacher probes z_i^2 = 1, so the diagonal of H adds nothing to the variance."),
        Mistake(off, "Your number is sqrt(sum_{i != j} H_ij^2): a factor sqrt(2) is missing.",
                "each pair i != j appears twice in z^T H z (H_ij z_i z_j and H_ji z_j z_i)."),
    )
    return compare("Standard deviation of one probe", sigma, expected,
                   reference="sqrt(2 sum_{i != j} H_ij^2)", mistakes=mistakes,
                   hint="expand z^T H z = sum_i H_ii z_i^2 + sum_{i != j} H_ij z_i z_j and use E[z_i z_j z_k z_l].")


def _call(estimator: Callable, obj: Objective, num_probes: int, seed: int):
    generator = torch.Generator(device=obj.device).manual_seed(seed)
    return estimator(obj, num_probes, generator)


def check_hutchinson(estimator: Callable | None, obj: Objective, num_probes: int = 64, repeats: int = 8,
                     seed: int = 0) -> CheckResult:
    """Check a trace estimator ``estimator(obj, num_probes, generator) -> float`` against ``tr(hessian(obj))``.

    It is called ``repeats`` times with ``num_probes`` probes (seeds ``seed``, ``seed + 1``, ...); the
    mean must lie within 5 standard errors of the exact trace (the standard error from the exact
    Gaussian-probe variance 2 ||H||_F^2, which bounds the Rademacher one), the spread must shrink
    like 1/sqrt(num_probes), and the same generator seed must give the same estimate.
    """
    title = "Hutchinson trace estimator"
    if estimator is None:
        return CheckResult(title, NOT_YET, "Your estimator is still None: define the function and run again.")
    if not callable(estimator):
        return CheckResult(title, WRONG, f"Pass the function itself (without calling it); got a "
                                         f"{type(estimator).__name__}.")
    H = hessian(obj)
    trace = H.trace().item()
    try:
        raw = [_call(estimator, obj, num_probes, seed + k) for k in range(repeats)]
        again = _call(estimator, obj, num_probes, seed)
    except Exception as err:  # the student's code: report, never crash the notebook
        return CheckResult(title, WRONG, f"Calling estimator(obj, {num_probes}, generator) raised "
                                         f"{type(err).__name__}: {err}")
    if any(r is None for r in raw):
        return CheckResult(title, NOT_YET, "Your function returns None so far: compute the estimate and return it.")
    values = [_as_tensor(r, H.trace()) for r in raw]
    if isinstance(values[0], str):
        return CheckResult(title, WRONG, values[0].replace("Your answer", "What your function returns"))
    estimates = torch.stack(values)
    if _as_tensor(again, H.trace()).item() != estimates[0].item():
        return CheckResult(title, WRONG, "The same generator seed gave two different estimates.",
                           "draw every probe from the generator you are given, e.g. torch.randint(0, 2, (P, m), "
                           "generator=generator), so that results are reproducible.")
    if torch.all(estimates == estimates[0]) and abs(estimates[0].item() - trace) <= 1e-9 * abs(trace):
        return CheckResult(title, WRONG, "Your function returns the exact trace for every seed: the point is to "
                                         "estimate it from random probes z^T H z, without forming H.")
    total = repeats * num_probes
    stderr = math.sqrt(2.0) * H.norm().item() / math.sqrt(total)
    mean = estimates.mean().item()
    if abs(mean - trace) <= 5 * stderr:
        spread = estimates.std().item() if repeats > 1 else 0.0
        if spread > 3 * math.sqrt(2.0) * H.norm().item() / math.sqrt(num_probes):
            return CheckResult(title, WRONG, f"Unbiased, but the estimates are as noisy as with far fewer than "
                                             f"{num_probes} probes.", "average z^T H z over all num_probes probes.")
        return CheckResult(title, CORRECT, f"Over {repeats} runs of {num_probes} probes the mean estimate is within "
                                           f"5 standard errors of the exact trace {trace:.4f}.")
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
        return CheckResult(title, WRONG, f"Your estimates average {mean:.4g}, {message}")
    return CheckResult(title, WRONG, f"Your estimates average {mean:.4g} but the exact trace is {trace:.4g} "
                                     f"({abs(mean - trace) / stderr:.0f} standard errors away): the estimator is biased.",
                       "E[z^T H z] = tr(H) needs E[z z^T] = I: entries +-1 with equal probability (Rademacher) "
                       "or standard normal; 2 * torch.randint(0, 2, ...) - 1 gives +-1.")


# ---------------------------------------------------------------------------- exercise: pruning saliencies
CRITERIA = ("mp", "lm", "qm", "obd")


def saliency(g: torch.Tensor, d: torch.Tensor, theta: torch.Tensor, lam: float = 0.0) -> torch.Tensor:
    """r_i = | -g_i theta_i + 1/2 d_i theta_i^2 | + 1/2 lam theta_i^2, all of shape (P,)."""
    return (-g * theta + 0.5 * d * theta**2).abs() + 0.5 * lam * theta**2


def check_saliencies(r, obj: Objective, criterion: str = "qm", lam: float = 0.0) -> CheckResult:
    """Check per-weight saliencies ``r`` (P,) of a pruning criterion (MP, LM, QM or OBD) at ``obj.theta``.

    g is the mean gradient, d the diagonal of the GGN (the true Fisher for softmax cross-entropy);
    ``r`` may also be a dict ``{name: tensor}`` per parameter tensor.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    theta, zero = obj.theta, torch.zeros(obj.num_params, dtype=obj.dtype, device=obj.device)
    g = obj.grad() if criterion in ("lm", "qm") else zero
    d = {"mp": torch.ones_like(zero), "lm": zero}.get(criterion)
    d = ggn(obj).diagonal() if d is None else d
    expected = saliency(g, d, theta, lam)
    penalty = 0.5 * lam * theta**2
    signed = -g * theta + 0.5 * d * theta**2 + penalty
    mistakes = [
        Mistake(saliency(g, 2 * d, theta, lam), "The curvature term lacks its 1/2: use 1/2 d_i theta_i^2.",
                "the quadratic model is g.dtheta + 1/2 dtheta^T C dtheta."),
        Mistake(saliency(g, d, theta, 2 * lam), "The penalty term lacks its 1/2: use 1/2 lambda theta_i^2."),
    ]
    if criterion in ("lm", "qm"):
        mistakes += [
            Mistake(saliency(-g, d, theta, lam), "The gradient term has the wrong sign: pruning moves theta_i by "
                                                 "dtheta_i = -theta_i, so the linear term is -g_i theta_i."),
            Mistake(signed, "These are signed predicted loss changes; the saliency takes their absolute value.",
                    "r_i = |-g_i theta_i + 1/2 d_i theta_i^2| + 1/2 lambda theta_i^2."),
        ]
    if criterion in ("qm", "obd"):
        mistakes += [Mistake(saliency(g, hessian_diag(obj), theta, lam),
                             "You used the diagonal of the Hessian; these criteria use the diagonal of the GGN "
                             "(the Fisher), d = losstools.ggn(obj).diagonal().")]
    if criterion == "obd":
        mistakes += [Mistake(saliency(obj.grad(), d, theta, lam),
                             "You kept the gradient term: OBD assumes a minimum, g = 0.")]
    if criterion == "mp":
        mistakes += [Mistake(theta.abs(), "|theta_i| ranks the weights the same way, but the formula gives "
                                          "1/2 (1 + lambda) theta_i^2.")]
    if lam > 0:
        mistakes += [Mistake(expected - penalty, f"The penalty term 1/2 lambda theta_i^2 (lambda = {lam:g}) is missing.")]
    if isinstance(r, dict):
        try:
            r = obj.flatten(r)
        except KeyError as err:
            return CheckResult(f"{criterion.upper()} saliencies", WRONG, f"Your dict misses parameter tensors: {err}")
    title = f"{criterion.upper()} saliencies" + (f" (lambda = {lam:g})" if lam else "")
    return compare(title, r, expected,
                   reference=f"the {criterion.upper()} formula", mistakes=tuple(mistakes),
                   hint="r_i = |-g_i theta_i + 1/2 d_i theta_i^2| + 1/2 lambda theta_i^2; see the table above.")


# ---------------------------------------------------------------------------- exercise: trust radius of the linear model
def linear_trust_radius(slope: float, curvature: float, tol: float) -> float:
    """Largest t > 0 with |L(t) - L(0) - t s| <= tol |L(t) - L(0)| when L(t) = L(0) + t s + 1/2 t^2 q exactly.

    ``slope`` s = g . d, ``curvature`` q = d^T H d > 0, 0 < tol < 1. The error ratio (t q / 2) / |s + t q / 2|
    grows from 0, so the radius is where it reaches tol: t = 2 tol |s| / (q (1 + tol)) along a descent
    direction (s < 0), 2 tol s / (q (1 - tol)) along an ascent direction.
    """
    if not 0 < tol < 1:
        raise ValueError(f"tol must be between 0 and 1, got {tol}")
    if curvature <= 0:
        raise ValueError(f"the curvature d^T H d must be > 0 for a finite radius, got {curvature}")
    return 2 * tol * abs(slope) / (curvature * (1 + tol if slope < 0 else 1 - tol))


def check_trust_radius(t, obj: Objective, direction: torch.Tensor, tol: float = 0.1) -> CheckResult:
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
    plain = 2 * tol * abs(s) / q
    mistakes = (
        Mistake(plain, "You measured the error relative to the linear prediction |t g.d|; the tolerance "
                                     "is relative to the true change L(theta + t d) - L(theta).",
                "solve (t q / 2) = tol |s + t q / 2| for t > 0."),
        Mistake(linear_trust_radius(-s, q, tol), "The (1 + tol) and (1 - tol) are swapped: along a "
                                                               "descent direction the true change is smaller in size than the linear prediction."),
        Mistake(linear_trust_radius(s, q, tol) / 2, "A factor of two is missing: the quadratic term is "
                                                                  "1/2 t^2 d^T H d."),
    )
    result = compare("Trust radius of the linear model", t, expected, reference="the exact radius",
                     mistakes=mistakes, rtol=1e-4,
                     hint="L(theta + t d) - L(theta) = t s + 1/2 t^2 q exactly, with s = g.d and q = d^T H d.")
    if result.status == WRONG and t is not None and not isinstance(_as_tensor(t, expected), str):
        error = abs(float(t) - expected.item()) / expected.item()
        if error < 0.02:
            return CheckResult(result.title, WRONG, f"Close (relative error {error:.1g}), as from a grid search: "
                                                    "the radius has a closed form, compute it exactly.", result.hint)
    return result
