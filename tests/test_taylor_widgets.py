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
    first_png, first_label = png(explorer), explorer.text.split("\n")[0]
    first_y = explorer.figure.axes[0].lines[0].get_ydata().copy()
    assert first_label.startswith("t = 2.00: actual ΔL = ")
    orders = explorer.text.split("\n")[1]
    assert orders.startswith("g·d = ") and "fitted orders of the error: linear 2." in orders
    explorer.controls["step_range"].value = 1.0                     # the observer redraws
    assert png(explorer) != first_png
    assert explorer.text.startswith("t = 1.00: actual ΔL = ") and explorer.text.split("\n")[0] != first_label
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
    before = png(explorer), explorer.text
    explorer.controls[name].value = value
    assert (png(explorer), explorer.text) != before
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
    assert explorer.text == "select at least one model"


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


def test_sparsity_slider_is_enabled_only_for_magnitude_pruning(explorer):
    c = explorer.controls
    c["models"].value = tuple(taylor.MODELS)
    c["direction"].value = "random"
    assert c["sparsity"].disabled
    before = png(explorer)
    c["sparsity"].value = 0.3                                   # does nothing, and redraws nothing
    assert png(explorer) == before
    c["direction"].value = "magnitude pruning"
    assert not c["sparsity"].disabled
    c["sparsity"].value = 0.6
    assert png(explorer) != before


def test_curvature_zoo_and_cost_explorers_redraw_with_the_right_numbers():
    A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    zoos = {e: {"Hessian": A, "GGN": A + e, "empirical Fisher": 2 * A, "K-FAC": A.diag().diag()} for e in (0, 5)}
    ex = widgets.curvature_zoo_explorer(zoos, boundaries=[1])
    assert ex.controls["epoch"].value == 5 and png(ex)
    expected = widgets.relative_error(A + 5, A)
    assert f"GGN vs Hessian {expected:.3f}" in ex.text
    first = png(ex)
    ex.controls["epoch"].value = 0
    assert png(ex) != first and "epoch 0: GGN vs Hessian 0.000" in ex.text
    assert np.array_equal(ex.grid.images["GGN"].get_array(), A.numpy())

    study = {"a": np.array([1.0, 0.5, 1e-17]), "b": np.array([0.8, 0.6, 0.4])}
    ex = widgets.cost_accuracy_explorer(study, [1, 2, 4], value=2)
    assert ex.text == "m = 2: a 0.500, b 0.600"
    ex.controls["m"].value = 4
    assert ex.text == "m = 4: a below 1e-06, b 0.400"                    # round-off printed as a bound
    assert list(ex.plot.marker.get_xdata()) == [4, 4]


def test_pruning_explorer_prunes_a_copy_and_shows_its_steps():
    from losstools import pruning

    ds = lt.data.moons(n=200, seed=0)
    net = lt.models.mlp([2, 8, 2], seed=0)
    before = [p.detach().clone() for p in net.parameters()]
    ex = widgets.pruning_explorer(net, nn.CrossEntropyLoss(), ds, samples=100, steps=3, sparsity=0.6)
    assert len(ex.result.history) == 3
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))          # the model is not changed
    actual = sum(h["loss_after"] - h["loss_before"] for h in ex.result.history)
    assert ex.text.startswith(f"actual ΔL {actual:.3f}, summed QM prediction ")
    np.testing.assert_allclose(ex.plot.actual.get_ydata(),
                               [h["loss_after"] - h["loss_before"] for h in ex.result.history])
    first = png(ex)
    ex.controls["criterion"].value = "obd"
    assert png(ex) != first and ex.figure is ex.plot.figure
    assert pruning.sparsity(ex.result.masks) == pytest.approx(0.6, abs=0.02)


def test_tables_render_as_markdown_and_bound_round_off():
    from losstools import tables

    t = tables.Table([["a|b", 1.23456, -0.00001]], ["name", "x", "y"], fmt=[None, ".2f", ".3f"])
    assert t._repr_markdown_() == "| name | x | y |\n|---|---|---|\n| a\\|b | 1.23 | 0.000 |"
    assert repr(t).splitlines()[1].split() == ["a|b", "1.23", "0.000"]
    assert tables.bounded(3e-17) == "below 1e-12" and tables.bounded(0.25, fmt=".2f") == "0.25"
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 columns"):
        tables.Table([[1]], ["a", "b"])


def test_heatmap_names_the_blocks_and_training_plot_comments_overfitting():
    M = np.diag(np.arange(1.0, 7.0))
    fig = plotting.matrix_heatmap(M, "H", boundaries=[2, 5], labels=["w", "b", "w2"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["w", "b", "w2"]
    with pytest.raises(ValueError, match="3 labels for 2 blocks"):
        plotting.matrix_heatmap(M, "H", boundaries=[2], labels=["w", "b", "w2"])
    fig = plotting.loss_history({"train": [1.0, 0.5, 0.2, 0.1], "val": [1.0, 0.6, 0.7, 0.9]})
    note = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "Lowest validation loss at epoch 2" in note and "overfitting" in note


def test_training_plot_draws_the_validation_error_on_its_own_axis_and_the_note_off_the_curves():
    history = {"train": [1.0, 0.5, 0.2, 0.1], "val": [1.0, 0.6, 0.7, 0.9], "val_error": [0.5, 0.2, 0.25, 0.3]}
    fig = plotting.loss_history(history)
    loss_ax, error_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines() if not line.get_label().startswith("_")] == [
        "training loss", "validation loss"]
    assert "val_error" not in " ".join(t.get_text() for t in loss_ax.get_legend().get_texts())
    assert error_ax.get_ylabel() == "validation error (%)"
    assert error_ax.get_lines()[0].get_ydata().tolist() == [50.0, 20.0, 25.0, 30.0]   # a fraction, drawn in percent
    assert "cross-entropy" not in loss_ax.get_ylabel()
    fig.canvas.draw()
    note = loss_ax.texts[0].get_window_extent()
    assert note.y1 < loss_ax.get_window_extent().y0, "the note must sit under the plot, off the curves"
