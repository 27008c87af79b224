"""Taylor plots, the explorer widget (headless: no display, no front end) and the notebook-01 check."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import losstools as lt  # noqa: E402
from losstools import checks, directions, plotting, taylor, widgets  # noqa: E402

from .conftest import tiny_classification, tiny_mlp  # noqa: E402


@pytest.fixture(scope="module")
def explorer():
    return widgets.taylor_explorer(widgets.toy_checkpoints(hidden=6, early_epochs=1, epochs=30))


def png(ex):
    (output,) = ex.output.outputs
    return output["data"]["image/png"]


def test_plots_show_every_model_and_the_reference_slopes():
    X, y = tiny_classification(n=20)
    obj = lt.Objective(tiny_mlp(), nn.CrossEntropyLoss(), (X, y))
    p = taylor.profile(obj, directions.gradient(obj), np.geomspace(1e-3, 1, 30))
    fig = plotting.taylor_profile(p, marks={"here": 0.5})
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels[:5] == ["actual ΔL(t)"] + [plotting.TAYLOR_STYLES[m][2] for m in taylor.MODELS]
    assert any(np.allclose(line.get_xdata(), 0.5) for line in fig.axes[0].lines)          # the mark
    np.testing.assert_array_equal(fig.axes[0].lines[1].get_ydata(), p.predicted["linear"])
    fig = plotting.taylor_error(p, ["linear", "quadratic"])
    visible = [line for line in fig.axes[0].lines if line.get_visible()]
    assert [line.get_label() for line in visible] == ["linear", "quadratic", "slope 2", "slope 3"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["linear", "quadratic", "slope 2", "slope 3"]
    ref2 = visible[2].get_ydata()
    assert np.log(ref2[-1] / ref2[0]) / np.log(1e3) == pytest.approx(2.0)
    assert len(plotting.taylor_overview(p).axes) == 2


def test_explorer_builds_and_updates_without_a_display(explorer):
    assert isinstance(explorer.controls["step_range"], widgets.W.FloatSlider)
    assert explorer.output in explorer.widget.children
    first_png, first_label = png(explorer), explorer.label.value
    first_y = explorer.figure.axes[0].lines[0].get_ydata().copy()
    assert first_label.startswith("t = 2.00: actual ΔL = ")
    assert explorer.orders.value.startswith("g·d = ") and "fitted orders of the error: linear 2." in explorer.orders.value
    explorer.controls["step_range"].value = 1.0                     # the observer redraws
    assert png(explorer) != first_png
    assert explorer.label.value.startswith("t = 1.00: actual ΔL = ") and explorer.label.value != first_label
    assert not np.array_equal(explorer.figure.axes[0].lines[0].get_ydata(), first_y)
    assert explorer.profile.steps.max() == 1.0
    assert explorer.last_seconds > 0


@pytest.mark.parametrize("name, value", [
    ("direction", "magnitude pruning"), ("direction", "bottom Hessian eigenvector"),
    ("curvature", "GGN diagonal"), ("state", "early"), ("models", ("linear", "obd")), ("sparsity", 0.8),
])
def test_every_control_redraws(explorer, name, value):
    if name == "sparsity":                       # only the pruning direction depends on it
        explorer.controls["direction"].value = "magnitude pruning"
    before = png(explorer), explorer.label.value
    explorer.controls[name].value = value
    assert (png(explorer), explorer.label.value) != before
    assert explorer.profile.models == list(explorer.controls["models"].value)


def test_explorer_uses_the_chosen_curvature_and_marks_the_pruning_step(explorer):
    c = explorer.controls
    c["models"].value, c["state"].value, c["step_range"].value = tuple(taylor.MODELS), "converged", 8.0
    c["direction"].value, c["sparsity"].value, c["curvature"].value = "magnitude pruning", 0.5, "GGN"
    obj = explorer._checkpoints["converged"].objective
    d = directions.pruning(obj, 0.5)
    assert explorer.profile.curvature == pytest.approx((d @ lt.ggn(obj) @ d).item(), rel=1e-10)
    full = directions.pruning(obj, 0.5, normalize=None).norm().item()
    assert any(np.allclose(line.get_xdata(), full) for line in explorer.figure.axes[0].lines if line.get_visible())
    c["direction"].value = "random"                                        # the mark goes away
    assert not any(np.allclose(line.get_xdata(), full) for line in explorer.figure.axes[0].lines if line.get_visible())
    hidden = {line.get_label() for line in explorer.figure.axes[0].lines if not line.get_visible()}
    c["models"].value = ("obd",)
    assert {line.get_label() for line in explorer.figure.axes[0].lines if not line.get_visible()} - hidden == \
        {plotting.TAYLOR_STYLES[m][2] for m in ("linear", "quadratic", "diagonal")}
    c["models"].value = ()
    assert explorer.label.value == "select at least one model"


def test_check_names_the_mistake():
    X, y = tiny_classification(n=20)
    obj = lt.Objective(tiny_mlp(), nn.CrossEntropyLoss(), (X, y))
    s = directions.pruning(obj, 0.5, normalize=None)
    g, H = obj.grad(), lt.hessian(obj)
    gs, sHs = (g @ s).item(), (s @ H @ s).item()
    cases = [
        (torch.tensor(gs + sHs / 2), True, "Correct!"),
        (gs - sHs / 2, False, "sign of the curvature term"),
        (-gs + sHs / 2, False, "sign of the gradient term"),
        (gs + sHs, False, "factor ½"),
        (sHs / 2, False, "OBD"),
        (gs, False, "linear model"),
        (obj.num_examples * (gs + sHs / 2), False, "mean over examples, not the sum"),
        ((obj.loss(obj.theta + s) - obj.loss()).item(), False, "actual change"),
        (..., False, "one finite number"),
        (1.2345, False, "is not gᵀs + ½ sᵀHs"),
    ]
    for answer, ok, phrase in cases:
        feedback = checks.check_quadratic_prediction(answer, obj, s)
        assert bool(feedback) is ok and phrase in repr(feedback)


def test_demo_taylor_writes_figures_and_fitted_orders(tmp_path):
    from types import SimpleNamespace

    from losstools.__main__ import demo_taylor

    X, y = tiny_classification(n=20)
    obj = lt.Objective(tiny_mlp(), nn.CrossEntropyLoss(), (X, y))
    logged = []
    demo_taylor(SimpleNamespace(seed=0), tmp_path, logged.append, {"objective": obj, "hessian": lt.hessian(obj)})
    for name in ("gradient", "random", "pruning", "error"):
        assert (tmp_path / f"taylor_{name}.png").stat().st_size > 1000
    text = (tmp_path / "taylor.txt").read_text()
    for name in ("gradient", "random", "pruning"):
        line = next(l for l in text.splitlines() if l.startswith(name))
        orders = dict(part.split() for part in line.split("orders: ")[1].split(", "))
        assert abs(float(orders["linear"]) - 2) < 0.1 and abs(float(orders["quadratic"]) - 3) < 0.1
    assert len(logged) == 4
