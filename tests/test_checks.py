"""The classroom checks: right answers pass, "not yet" for None, and typical wrong answers are named."""
import math

import pytest
import torch
from torch import nn

from losstools import Objective, checks, ggn, hessian, hessian_diag

from .conftest import tiny_classification, tiny_mlp, tiny_regression


@pytest.fixture(scope="module")
def obj():
    return Objective(tiny_mlp((3, 4, 3)), nn.CrossEntropyLoss(), tiny_classification(n=12))


@pytest.fixture(scope="module")
def weights(obj):
    return Objective(obj.model, nn.CrossEntropyLoss(), tiny_classification(n=12), params="weights")


@pytest.fixture(scope="module")
def linear():
    net = nn.Linear(3, 2).double()
    return Objective(net, nn.MSELoss(), tiny_regression(n=12, d=3, k=2))


def says(feedback, status, *words):
    text = repr(feedback)
    assert feedback.status == status, text
    assert bool(feedback) == (status == "correct")
    for word in words:
        assert word.lower() in text.lower(), f"{word!r} not in {text!r}"


# ----------------------------------------------------------------------- Feedback
def test_feedback_repr_is_plain_text_and_backwards_compatible():
    assert repr(checks.Feedback(True, "fine")) == "Correct! fine"
    assert repr(checks.Feedback(False, "wrong")) == "Not yet: wrong"
    assert repr(checks.Feedback(False, "wrong", "look here")) == "Not yet: wrong\nHint: look here"
    assert checks.Feedback(False, "todo", answered=False).status == "not yet"
    assert not hasattr(checks.Feedback, "_repr_html_")  # nbval compares text/html: keep to text/plain


# ----------------------------------------------------------------------- exercise 1
def test_check_hvp(obj):
    v = torch.randn(obj.num_params, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    Hv = hessian(obj) @ v
    says(checks.check_hvp(Hv, obj, v), "correct")
    says(checks.check_hvp(Hv.tolist(), obj, v), "correct")  # a list of numbers is fine too
    says(checks.check_hvp(None, obj, v), "not yet", "replace the None")
    says(checks.check_hvp(-Hv, obj, v), "wrong", "sign")
    says(checks.check_hvp(2 * Hv, obj, v), "wrong", "twice", "1/2")
    says(checks.check_hvp(0.5 * Hv, obj, v), "wrong", "half")
    says(checks.check_hvp(obj.num_examples * Hv, obj, v), "wrong", "sum over the N examples instead of the mean")
    says(checks.check_hvp(obj.grad(), obj, v), "wrong", "gradient", "create_graph")
    says(checks.check_hvp(hessian_diag(obj) * v, obj, v), "wrong", "diag(H)")
    says(checks.check_hvp(Hv[:-1], obj, v), "wrong", "shape")
    says(checks.check_hvp(Hv.reshape(1, -1), obj, v), "wrong", "reshape")
    says(checks.check_hvp(Hv.sum(), obj, v), "wrong", "single number")
    says(checks.check_hvp(Hv * float("nan"), obj, v), "wrong", "NaN")
    says(checks.check_hvp("Hv", obj, v), "wrong", "str")
    says(checks.check_hvp(Hv + 0.3 * v, obj, v), "wrong", "relative error")


def test_check_hessian(obj):
    H = hessian(obj)
    says(checks.check_hessian(H, obj), "correct")
    says(checks.check_hessian(None, obj), "not yet")
    says(checks.check_hessian(ggn(obj), obj), "wrong", "Gauss-Newton")
    says(checks.check_hessian(H.diagonal(), obj), "wrong", "shape")


# ----------------------------------------------------------------------- exercise 2
def rademacher(obj, m, generator):
    Z = 2 * torch.randint(0, 2, (obj.num_params, m), generator=generator, dtype=obj.dtype) - 1
    return (Z * obj.hvp(Z)).sum(0).mean().item()


def test_hutchinson_std_is_the_exact_one_probe_spread(obj):
    """The closed form against the exact variance over all 2^P sign vectors of a small matrix."""
    H = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    H = H + H.T
    signs = torch.tensor([[1 - 2 * ((k >> i) & 1) for i in range(6)] for k in range(2**6)], dtype=torch.float64)
    values = ((signs @ H) * signs).sum(1)
    assert torch.allclose(values.mean(), H.trace())
    assert torch.allclose(values.var(unbiased=False).sqrt(), checks.hutchinson_std(H))


def test_check_hutchinson_std(obj):
    H = hessian(obj)
    sigma = checks.hutchinson_std(H).item()
    says(checks.check_hutchinson_std(sigma, obj), "correct")
    says(checks.check_hutchinson_std(None, obj), "not yet")
    says(checks.check_hutchinson_std(sigma**2, obj), "wrong", "variance")
    says(checks.check_hutchinson_std(sigma / math.sqrt(2), obj), "wrong", "sqrt(2)")
    says(checks.check_hutchinson_std(math.sqrt(2) * H.norm().item(), obj), "wrong", "Gaussian")
    says(checks.check_hutchinson_std(-sigma, obj), "wrong", "sign")


def test_check_hutchinson_accepts_rademacher_and_gaussian(obj):
    says(checks.check_hutchinson(rademacher, obj), "correct")

    def gaussian(obj, m, generator):
        Z = torch.randn(obj.num_params, m, generator=generator, dtype=obj.dtype)
        return torch.einsum("pm,pm->m", Z, obj.hvp(Z)).mean()  # a 0-d tensor is fine too

    says(checks.check_hutchinson(gaussian, obj), "correct")


def test_check_hutchinson_names_mistakes(obj):
    def probes(kind):
        def estimator(obj, m, generator):
            if kind == "01":
                Z = torch.randint(0, 2, (obj.num_params, m), generator=generator, dtype=obj.dtype)
            elif kind == "uniform":
                Z = torch.rand(obj.num_params, m, generator=generator, dtype=obj.dtype)
            else:
                Z = 2 * torch.randint(0, 2, (obj.num_params, m), generator=generator, dtype=obj.dtype) - 1
            values = (Z * obj.hvp(Z)).sum(0)
            return {"sum": values.sum(), "minus": -values.mean(), "half": 0.5 * values.mean(),
                    "one": values[0]}.get(kind, values.mean())
        return estimator

    says(checks.check_hutchinson(None, obj), "not yet")
    says(checks.check_hutchinson(lambda o, m, g: None, obj), "not yet", "returns None")
    says(checks.check_hutchinson(1.5, obj), "wrong", "function itself")
    says(checks.check_hutchinson(probes("sum"), obj), "wrong", "sum over the probes")
    says(checks.check_hutchinson(probes("minus"), obj), "wrong", "sign")
    says(checks.check_hutchinson(probes("half"), obj), "wrong", "half")
    says(checks.check_hutchinson(probes("01"), obj), "wrong", "0s and 1s")
    says(checks.check_hutchinson(probes("uniform"), obj), "wrong", "uniform")
    says(checks.check_hutchinson(probes("one"), obj), "wrong", "noisy")
    says(checks.check_hutchinson(lambda o, m, g: rademacher(o, m, None), obj), "wrong", "generator")
    says(checks.check_hutchinson(lambda o, m, g: hessian(o).trace(), obj), "wrong", "exact trace")
    says(checks.check_hutchinson(lambda o, m, g: 1 / 0, obj), "wrong", "ZeroDivisionError")
    says(checks.check_hutchinson(lambda o, m, g: [1.0, 2.0], obj), "wrong", "shape")


# ----------------------------------------------------------------------- exercise 3
def test_check_saliencies(weights):
    g, d, theta = weights.grad(), ggn(weights).diagonal(), weights.theta
    qm = (-g * theta + 0.5 * d * theta**2).abs()
    obd = 0.5 * d * theta**2
    says(checks.check_saliencies(qm, weights, "qm"), "correct")
    says(checks.check_saliencies(weights.unflatten(qm), weights, "qm"), "correct")  # per-tensor dict
    says(checks.check_saliencies(obd, weights, "obd"), "correct")
    says(checks.check_saliencies(0.5 * theta**2, weights, "mp"), "correct")
    says(checks.check_saliencies((g * theta).abs(), weights, "lm"), "correct")
    says(checks.check_saliencies(qm + 0.05 * theta**2, weights, "qm", lam=0.1), "correct")
    says(checks.check_saliencies(0.5 * (d + 0.1) * theta**2, weights, "obd", lam=0.1), "correct")

    says(checks.check_saliencies(None, weights, "qm"), "not yet")
    says(checks.check_saliencies(-g * theta + 0.5 * d * theta**2, weights, "qm"), "wrong", "absolute value")
    says(checks.check_saliencies((g * theta + 0.5 * d * theta**2).abs(), weights, "qm"), "wrong", "wrong sign")
    says(checks.check_saliencies((-g * theta + d * theta**2).abs(), weights, "qm"), "wrong", "lacks its 1/2")
    says(checks.check_saliencies(d * theta**2, weights, "obd"), "wrong", "lacks its 1/2")
    says(checks.check_saliencies(0.5 * hessian_diag(weights) * theta**2, weights, "obd"), "wrong", "Hessian")
    says(checks.check_saliencies(qm, weights, "obd"), "wrong", "OBD assumes a minimum")
    says(checks.check_saliencies(qm, weights, "qm", lam=0.1), "wrong", "penalty term", "missing")
    says(checks.check_saliencies(qm + 0.1 * theta**2, weights, "qm", lam=0.1), "wrong", "penalty term lacks")
    says(checks.check_saliencies(theta.abs(), weights, "mp"), "wrong", "ranks the weights the same way")
    says(checks.check_saliencies(weights.num_examples * qm, weights, "qm"), "wrong", "mean")
    says(checks.check_saliencies({"0.weight": qm[:12]}, weights, "qm"), "wrong", "misses")
    with pytest.raises(ValueError, match="criterion"):
        checks.check_saliencies(qm, weights, "snip")


# ----------------------------------------------------------------------- exercise 4
def test_linear_trust_radius_is_where_the_error_reaches_tol():
    s, q, tol = -0.7, 2.3, 0.1
    t = checks.linear_trust_radius(s, q, tol)
    error = lambda t: (0.5 * t * t * q) / abs(t * s + 0.5 * t * t * q)  # noqa: E731
    assert error(t) == pytest.approx(tol, rel=1e-12)
    assert error(0.999 * t) < tol < error(1.001 * t)
    t_up = checks.linear_trust_radius(-s, q, tol)  # ascent direction: 1 - tol
    assert (0.5 * t_up * q) / abs(-s + 0.5 * t_up * q) == pytest.approx(tol, rel=1e-12)
    with pytest.raises(ValueError, match="tol"):
        checks.linear_trust_radius(s, q, 1.5)
    with pytest.raises(ValueError, match="curvature"):
        checks.linear_trust_radius(s, 0.0, tol)


def test_check_trust_radius(linear, obj):
    g = linear.grad()
    d = -g / g.norm()
    s, q = (g @ d).item(), (d @ hessian(linear) @ d).item()
    t = 2 * 0.1 * abs(s) / (q * 1.1)
    # the measured error at t equals the tolerance (true loss, not the formula)
    change = (linear.loss(linear.theta + t * d) - linear.loss()).item()
    assert abs(change - t * s) / abs(change) == pytest.approx(0.1, rel=1e-8)
    says(checks.check_trust_radius(t, linear, d), "correct")
    says(checks.check_trust_radius(torch.tensor(t), linear, d), "correct")
    says(checks.check_trust_radius(None, linear, d), "not yet")
    says(checks.check_trust_radius(2 * 0.1 * abs(s) / q, linear, d), "wrong", "relative to the linear prediction")
    says(checks.check_trust_radius(2 * 0.1 * abs(s) / (q * 0.9), linear, d), "wrong", "swapped")
    says(checks.check_trust_radius(t / 2, linear, d), "wrong", "factor of two")
    says(checks.check_trust_radius(1.01 * t, linear, d), "wrong", "grid search")
    says(checks.check_trust_radius(3 * t, linear, d), "wrong", "3 times")
    with pytest.raises(ValueError, match="quadratic"):
        checks.check_trust_radius(t, obj, obj.grad())
