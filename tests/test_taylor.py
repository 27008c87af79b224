"""Taylor models of a step: exactness on linear / quadratic losses, fitted orders, OBD at a minimum,
the curvature interface, directions, and clear errors on bad input."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import losstools as lt
from losstools import directions, taylor

from .conftest import tiny_classification, tiny_mlp, tiny_regression


def linear_regression(n=30, d=4, k=2, seed=0):
    """A linear model with MSE: the loss is exactly quadratic in theta (W and b)."""
    X, y = tiny_regression(n=n, d=d, k=k, seed=seed)
    net = nn.Linear(d, k).double()
    with torch.no_grad():
        torch.nn.init.normal_(net.weight, generator=torch.Generator().manual_seed(seed))
    return lt.Objective(net, nn.MSELoss(), (X, y))


def least_squares_minimum(obj):
    """theta* of the linear regression objective, solved in closed form (lstsq on [X, 1])."""
    X, y = next(obj.batches())
    A = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)
    sol = torch.linalg.lstsq(A, y).solution           # (d+1, k): rows W^T then b
    return obj.flatten({"weight": sol[:-1].T, "bias": sol[-1]})


def tanh_classifier(seed):
    X, y = tiny_classification(n=20, seed=seed)
    return lt.Objective(tiny_mlp(seed=seed), nn.CrossEntropyLoss(), (X, y))


STEPS = np.linspace(-3.0, 3.0, 41)


# ----------------------------------------------------------------------- exactness
@pytest.mark.parametrize("curvature", ["hessian", "ggn", "dense"])
def test_quadratic_model_is_exact_on_a_quadratic_loss(curvature):
    obj = linear_regression()
    C = lt.hessian(obj) if curvature == "dense" else curvature
    p = taylor.profile(obj, directions.random(obj, seed=1), STEPS, curvature=C)
    assert np.abs(p.actual).max() > 0.1                      # the loss really changes along the line
    scale = np.abs(p.actual).max()
    assert p.abs_error["quadratic"].max() < 1e-13 * scale
    assert p.abs_error["linear"].max() > 1e-3 * scale        # ...and the linear model is not exact
    assert p.order("linear") == pytest.approx(2.0, abs=1e-6)  # its error is exactly c t^2


def test_linear_model_is_exact_on_a_linear_loss():
    X, _ = tiny_regression(n=15, d=3)
    net = nn.Linear(3, 2).double()
    obj = lt.Objective(net, lambda out, y: out.mean(), (X, torch.zeros(15, 2, dtype=X.dtype)))
    p = taylor.profile(obj, directions.random(obj, seed=2), STEPS)
    scale = np.abs(p.actual).max()
    assert scale > 0.1
    assert p.abs_error["linear"].max() < 1e-14 * scale
    assert p.curvature == 0.0 and np.all(p.predicted["obd"] == 0)
    with pytest.raises(ValueError, match="round-off"):    # nothing to fit: the model is exact
        p.order("linear")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["gradient", "random", "filter"])
def test_fitted_orders_on_smooth_tanh_nets(seed, kind):
    obj = tanh_classifier(seed)
    d = {"gradient": lambda: directions.gradient(obj),
         "random": lambda: directions.random(obj, seed),
         "filter": lambda: directions.random(obj, seed, normalize="filter")}[kind]()
    p = taylor.profile(obj, d, np.logspace(-3, -1, 20))
    assert p.order("linear") == pytest.approx(2.0, abs=0.05)
    assert p.order("quadratic") == pytest.approx(3.0, abs=0.05)
    assert p.order("obd") == pytest.approx(1.0, abs=0.05)  # g.d != 0 away from a minimum: OBD misses t g.d


def test_obd_equals_quadratic_at_a_least_squares_minimum():
    obj = linear_regression(seed=3)
    star = least_squares_minimum(obj)
    assert obj.grad(star).abs().max() < 1e-12
    d = directions.random(obj, seed=4)
    at_min = taylor.profile(obj, d, STEPS, theta=star)
    np.testing.assert_allclose(at_min.predicted["obd"], at_min.predicted["quadratic"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(at_min.predicted["obd"], at_min.actual, rtol=1e-9, atol=1e-13)
    away = taylor.profile(obj, d, STEPS)                     # at the initial weights g != 0: they differ
    assert np.abs(away.predicted["obd"] - away.predicted["quadratic"]).max() > 1e-2


def test_predictions_follow_the_formulas_with_exact_oracles():
    obj = tanh_classifier(0)
    H = torch.func.hessian(lambda th: obj.batch_loss(th, *next(obj.batches())))(obj.theta)
    g, d = obj.grad(), directions.random(obj, seed=5, normalize=None)
    t = np.array([-0.5, 0.25, 1.0])
    p = taylor.profile(obj, d, t)
    gd, dHd, dDd = (g @ d).item(), (d @ H @ d).item(), (H.diagonal() @ d**2).item()
    np.testing.assert_allclose(p.predicted["linear"], t * gd, rtol=1e-12)
    np.testing.assert_allclose(p.predicted["quadratic"], t * gd + t**2 / 2 * dHd, rtol=1e-10)
    np.testing.assert_allclose(p.predicted["diagonal"], t * gd + t**2 / 2 * dDd, rtol=1e-10)
    np.testing.assert_allclose(p.predicted["obd"], t**2 / 2 * dHd, rtol=1e-10)
    truth = [(obj.loss(obj.theta + s * d) - obj.loss()).item() for s in t]
    np.testing.assert_allclose(p.actual, truth, rtol=1e-12, atol=1e-15)


def test_loss_along_is_vmapped_over_chunks_and_batches():
    X, y = tiny_classification(n=20)
    net = tiny_mlp()
    whole = lt.Objective(net, nn.CrossEntropyLoss(), (X, y))
    batched = lt.Objective(net, nn.CrossEntropyLoss(), [(X[:7], y[:7]), (X[7:], y[7:])])
    d, t = directions.random(whole), np.linspace(-2, 2, 9)
    loop = torch.stack([whole.loss(whole.theta + s * d) for s in torch.as_tensor(t)])
    torch.testing.assert_close(taylor.loss_along(whole, d, t), loop, rtol=1e-13, atol=0)
    torch.testing.assert_close(taylor.loss_along(batched, d, t, chunk_size=2), loop, rtol=1e-13, atol=0)


# ----------------------------------------------------------------------- curvature interface
class Operator:
    """What the approximate-curvature work will hand in: ``@`` and ``diagonal()``."""

    def __init__(self, M):
        self.M = M

    def __matmul__(self, v):
        return self.M @ v

    def diagonal(self):
        return self.M.diagonal()


def test_every_curvature_form_gives_the_same_models():
    obj = tanh_classifier(1)
    H, G = lt.hessian(obj), lt.ggn(obj)
    d = directions.random(obj, seed=6)
    t = np.array([0.3, -0.7])
    ref = taylor.profile(obj, d, t, curvature=H)
    for form in ["hessian", Operator(H), lambda v: H @ v]:
        p = taylor.profile(obj, d, t, curvature=form)
        for m in taylor.MODELS:
            np.testing.assert_allclose(p.predicted[m], ref.predicted[m], rtol=1e-10)
    ggn_named = taylor.profile(obj, d, t, curvature="ggn")
    assert ggn_named.curvature == pytest.approx((d @ G @ d).item(), rel=1e-10)
    assert ggn_named.diagonal_curvature == pytest.approx((G.diagonal() @ d**2).item(), rel=1e-10)
    for name, diag in [("hessian_diag", H.diagonal()), ("ggn_diag", G.diagonal())]:
        for form in (name, diag):                            # a diagonal curvature: quadratic == diagonal
            p = taylor.profile(obj, d, t, curvature=form)
            assert p.curvature == pytest.approx((diag @ d**2).item(), rel=1e-10)
            np.testing.assert_allclose(p.predicted["quadratic"], p.predicted["diagonal"], rtol=1e-10)


def test_trust_radius_matches_the_closed_form_on_a_quadratic_loss():
    obj = linear_regression()
    d = directions.gradient(obj)
    t = np.linspace(0, 2, 2001)
    p = taylor.profile(obj, d, t)
    a, c = p.slope, p.curvature                  # dL = a t + c t^2 / 2 exactly; linear error = c t^2 / 2
    assert a < 0 < c
    tol = 0.2                                    # |c t^2/2| / |a t + c t^2/2| < tol  <=>  t < 2 tol |a| / (c (1 + tol))
    limit = 2 * tol * abs(a) / (c * (1 + tol))
    assert limit < 2
    radius = p.trust_radius("linear", tol)
    assert limit - 2e-3 <= radius <= limit
    assert p.trust_radius("quadratic", 1e-6) == 2.0          # exact model: the whole grid
    assert p.trust_radius("obd", 0.01) == 0.0                # OBD misses the gradient term from the start


def test_profile_does_not_change_the_model():
    net = tiny_mlp()
    before = copy.deepcopy(net.state_dict())
    X, y = tiny_classification()
    obj = lt.Objective(net, nn.CrossEntropyLoss(), (X, y))
    taylor.profile(obj, directions.pruning(obj, 0.5), STEPS)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


# ----------------------------------------------------------------------- directions
def test_normalisations():
    obj = tanh_classifier(0)
    theta = obj.theta
    assert directions.random(obj).norm().item() == pytest.approx(1.0, abs=1e-14)
    assert directions.gradient(obj).norm().item() == pytest.approx(1.0, abs=1e-14)
    layer, filt = directions.random(obj, 3, "layer"), directions.random(obj, 3, "filter")
    for d_part, t_part, f_part, shape in zip(layer.split(obj.sizes), theta.split(obj.sizes),
                                             filt.split(obj.sizes), obj.shapes):
        assert d_part.norm().item() == pytest.approx(t_part.norm().item(), rel=1e-12)
        rows = shape[0] if len(shape) > 1 else 1
        torch.testing.assert_close(f_part.view(rows, -1).norm(dim=1), t_part.view(rows, -1).norm(dim=1))
    raw = directions.random(obj, 3, None)
    torch.testing.assert_close(directions.random(obj, 3), raw / raw.norm())   # same seed, same draw
    torch.testing.assert_close(directions.gradient(obj, normalize=None), -obj.grad())
    torch.testing.assert_close(directions.user(obj, 2 * raw), raw / raw.norm())


def test_pruning_direction_reaches_the_pruned_network():
    obj = tanh_classifier(2)
    theta, weights = obj.theta, obj.slices()
    mask = directions.magnitude_mask(obj, 0.5)
    prunable = torch.cat([torch.full((s.stop - s.start,), n.endswith("weight")) for n, s in weights.items()])
    assert (~mask).sum().item() == round(0.5 * prunable.sum().item())
    assert mask[~prunable].all()                                           # biases are kept
    assert theta[~mask].abs().max() <= theta[mask & prunable].abs().min()  # smallest magnitudes go
    step = directions.pruning(obj, 0.5, normalize=None)
    torch.testing.assert_close(step, -theta * (~mask))
    pruned_loss = obj.loss(theta * mask)
    torch.testing.assert_close(taylor.loss_along(obj, step, [1.0])[0], pruned_loss)
    unit = directions.pruning(obj, 0.5)                                    # unit norm: full step at t = ||step||
    torch.testing.assert_close(taylor.loss_along(obj, unit, [step.norm().item()])[0], pruned_loss)
    torch.testing.assert_close(directions.pruning(obj, mask=mask, normalize=None), step)


def test_eigenvector_directions():
    obj = tanh_classifier(3)
    H = lt.hessian(obj)
    values = torch.linalg.eigvalsh(H)
    g = obj.grad()
    for which, value in [("top", values[-1]), ("bottom", values[0])]:
        v = directions.eigenvector(obj, which, curvature=H)
        torch.testing.assert_close(H @ v, value * v, atol=1e-10, rtol=0)
        assert g @ v <= 0                                                  # sign convention
        torch.testing.assert_close(directions.make(obj, f"{which}_eigenvector"), v, atol=1e-10, rtol=0)
    p = taylor.profile(obj, directions.eigenvector(obj, "top", curvature=H), [0.1], curvature=H)
    assert p.curvature == pytest.approx(values[-1].item(), rel=1e-10)


# ----------------------------------------------------------------------- bad input
def test_order_of_models():
    assert [taylor.expansion_order(m) for m in taylor.MODELS] == [1, 2, 2, 2]


@pytest.mark.parametrize("call, message", [
    (lambda o: taylor.profile(o, torch.ones(5, dtype=torch.float64), STEPS), r"direction has shape \(5,\)"),
    (lambda o: taylor.profile(o, torch.full((o.num_params,), math.nan), STEPS), "NaN or inf"),
    (lambda o: taylor.profile(o, directions.random(o), [0.1, math.inf]), r"finite; entries \[1\]"),
    (lambda o: taylor.profile(o, directions.random(o), []), "non-empty 1-D"),
    (lambda o: taylor.profile(o, directions.random(o), [["a"]]), "array of numbers"),
    (lambda o: taylor.profile(o, directions.random(o), STEPS, models=["cubic"]), "unknown model"),
    (lambda o: taylor.profile(o, directions.random(o), STEPS, curvature="fisher"), "unknown curvature 'fisher'"),
    (lambda o: taylor.profile(o, directions.random(o), STEPS, curvature=torch.eye(3)), r"shape \(\d+, \d+\) or"),
    (lambda o: taylor.profile(o, directions.random(o), STEPS, curvature=3.0), "cannot use a float"),
    (lambda o: taylor.profile(o, directions.random(o), STEPS).trust_radius("linear", -1), "positive finite"),
    (lambda o: taylor.profile(o, directions.random(o), STEPS, models="linear").order("obd"), "not in this profile"),
    (lambda o: directions.random(o, normalize="unit"), "unknown normalisation"),
    (lambda o: directions.user(o, torch.zeros(o.num_params)), "direction is zero"),
    (lambda o: directions.pruning(o, 1.5), r"sparsity must be a fraction in \[0, 1\]"),
    (lambda o: directions.pruning(o), "exactly one of"),
    (lambda o: directions.pruning(o, mask=torch.full((o.num_params,), 0.5)), "only 0/1"),
    (lambda o: directions.make(o, "sideways"), "unknown direction kind"),
    (lambda o: directions.eigenvector(o, "middle"), "'top' or 'bottom'"),
])
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(tanh_classifier(0))


def test_float32_round_off_is_reported_not_fitted():
    X, y = tiny_classification(n=20, dtype=torch.float32)
    obj = lt.Objective(tiny_mlp().float(), nn.CrossEntropyLoss(), (X, y))
    p = taylor.profile(obj, directions.gradient(obj), np.geomspace(1e-4, 1e-2, 20))
    with pytest.raises(ValueError, match="round-off.*float64"):
        p.order("quadratic")


def test_pruning_needs_weights_in_the_objective():
    X, y = tiny_classification()
    obj = lt.Objective(tiny_mlp(), nn.CrossEntropyLoss(), (X, y), params=r"bias")
    with pytest.raises(ValueError, match="no Linear/Conv weight"):
        directions.pruning(obj, 0.5)
