"""losstools.spectrum (notebook 05) against exact oracles: dense Hessians, plain GD loops, quadratic losses."""
import numpy as np
import pytest
import torch
from torch import nn

import losstools as lt
from losstools import checks, plotting, spectrum
from losstools.curvature import hutchpp_trace, lanczos, spectral_density

from .conftest import tiny_classification, tiny_mlp


def tiny_objective():
    X, y = tiny_classification(n=10, d=3, c=3)
    return lt.Objective(tiny_mlp((3, 4, 3), "tanh", seed=1), spectrum.half_squared_error,
                        spectrum.one_hot_data(X, y, 3))


def test_half_squared_error_and_one_hot():
    X, y = tiny_classification(n=5, c=3)
    _, T = spectrum.one_hot_data(X, y, 3)
    assert T.dtype == X.dtype and torch.equal(T.argmax(1), y) and torch.equal(T.sum(1), torch.ones(5, dtype=X.dtype))
    out = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(spectrum.half_squared_error(out, T), 0.5 * ((out - T) ** 2).sum() / 5)


def test_gradient_descent_matches_a_plain_loop_and_dense_eigenvalues():
    obj = tiny_objective()
    run = spectrum.gradient_descent(obj, lr=0.3, steps=7, every=3, lanczos_steps=obj.num_params, progress=False)
    theta = obj.theta.clone()
    for t in range(8):
        torch.testing.assert_close(torch.tensor(run.loss[t], dtype=torch.float64), obj.loss(theta), rtol=1e-12, atol=0)
        if t in (0, 3, 6, 7):
            top = torch.linalg.eigvalsh(lt.hessian(obj, theta))[-1]
            assert run.sharpness[list(run.tracked).index(t)] == pytest.approx(float(top), rel=1e-8)
        if t < 7:
            theta = theta - 0.3 * obj.grad(theta)
    torch.testing.assert_close(run.theta, theta, rtol=1e-12, atol=1e-14)
    assert list(run.tracked) == [0, 3, 6, 7] and run.edge == pytest.approx(2 / 0.3)
    assert obj.theta.equal(lt.Objective(obj.model, obj.loss_fn, (obj._data)).theta)  # the model is unchanged
    now = run.at(5)
    assert now["measured_at"] == 3 and now["eta_lambda"] == pytest.approx(0.3 * run.sharpness[1])
    assert run.at(99)["step"] == 7


def test_overshoot_is_exact_on_a_quadratic_loss():
    """Linear regression with half squared error: the loss is quadratic, so actual == quadratic model."""
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(20, 4, generator=g, dtype=torch.float64), torch.randn(20, 2, generator=g, dtype=torch.float64)
    obj = lt.Objective(nn.Linear(4, 2).double(), spectrum.half_squared_error, (X, Y))
    result = spectrum.overshoot(obj, np.linspace(0, 3, 13), lanczos_steps=obj.num_params)
    np.testing.assert_allclose(result.actual, result.quadratic, rtol=1e-9, atol=1e-12)
    assert result.sharpness == pytest.approx(float(torch.linalg.eigvalsh(lt.hessian(obj))[-1]), rel=1e-10)
    positive = result.lrs[result.actual > 1e-12]
    assert positive.min() > result.edge > result.lrs[result.lrs < positive.min()].max()


def test_negative_fraction_and_mass_on_a_known_spectrum():
    """Diagonal operator: every Rademacher probe puts weight 1/P on each eigenvalue, and P Lanczos steps are exact."""
    values = torch.tensor([-2.0, -0.5, -1e-6, 0.2, 0.3, 1.0, 4.0, 7.0], dtype=torch.float64)
    A = torch.diag(values)

    class Op:
        shape, dtype, device = A.shape, A.dtype, A.device

        def __matmul__(self, v):
            return A @ v

    sd = spectral_density(Op(), num_probes=3, num_steps=8, progress=False)
    assert spectrum.negative_fraction(sd) == pytest.approx(3 / 8, abs=1e-9)
    assert spectrum.negative_fraction(sd, below=1e-3) == pytest.approx(2 / 8, abs=1e-9)
    assert spectrum.negative_mass(sd) == pytest.approx(float(values[values < 0].abs().sum() / values.abs().sum()),
                                                       abs=1e-9)


def test_quadratic_iterates_closed_form_and_the_hessian_operator_counts_products():
    np.testing.assert_allclose(spectrum.quadratic_iterates(0.5, 5.0, 3, start=2.0), 2.0 * (-1.5) ** np.arange(4))
    obj = tiny_objective()
    op, v = lt.curvature.Hessian(obj), torch.randn(obj.num_params, 2, dtype=torch.float64)
    torch.testing.assert_close(op @ v, lt.hessian(obj) @ v)
    assert op.matvecs == 2


def test_bad_arguments_are_refused_before_work():
    obj = tiny_objective()
    for kwargs in (dict(lr=0.0, steps=3), dict(lr=0.1, steps=0), dict(lr=0.1, steps=3, every=0)):
        with pytest.raises(ValueError, match="need lr > 0"):
            spectrum.gradient_descent(obj, progress=False, **kwargs)


def test_check_largest_stable_lr():
    X, y = tiny_classification(n=10, d=3, c=3)
    obj = lt.Objective(tiny_mlp((3, 4, 3), "tanh", seed=1), lambda out, t: 5 * spectrum.half_squared_error(out, t),
                       spectrum.one_hot_data(X, y, 3))
    lam = float(torch.linalg.eigvalsh(lt.hessian(obj))[-1])
    assert checks.check_largest_stable_lr(2 / lam, obj)
    assert checks.check_largest_stable_lr(None, obj).status == "not yet"
    wrong = checks.check_largest_stable_lr(1 / lam, obj)
    assert not wrong and "lands exactly on the minimum" in repr(wrong)
    assert "shrink" in repr(checks.check_largest_stable_lr(lam / 2, obj))
    assert "|1 − ηλ| < 1" in repr(checks.check_largest_stable_lr(0.123 / lam, obj))


def test_plots_of_notebook_05():
    import matplotlib.pyplot as plt

    obj = tiny_objective()
    runs = [spectrum.gradient_descent(obj, lr, 20, every=5, lanczos_steps=10, progress=False) for lr in (0.2, 1.0)]
    assert len(plotting.sharpness_runs(runs).axes) == 2
    fig = plotting.edge_of_stability_frame(runs, 1.0, 12)
    assert len(fig.axes) == 3 and "ηλ_max" in fig.axes[2].get_title()
    result = spectrum.overshoot(obj, np.linspace(0, 1, 5), lanczos_steps=10)
    assert plotting.overshoot(result).axes[0].get_lines()[0].get_ydata().tolist() == result.actual.tolist()
    assert len(plotting.spectral_densities(np.linspace(-1, 1, 5),
                                           {"a": np.ones(5), "b": np.ones(5)}).axes[0].lines) == 3
    plt.close("all")


def test_edge_of_stability_explorer_redraws_in_place_and_marks_the_start():
    from losstools import widgets

    obj = tiny_objective()
    runs = [spectrum.gradient_descent(obj, lr, 20, every=5, lanczos_steps=10, progress=False) for lr in (0.2, 1.0)]
    explorer = widgets.edge_of_stability_explorer(runs, lr=1.0, step=10)
    lines = [list(ax.get_lines()) for ax in explorer.figure.axes]
    start = explorer.plot.start
    assert list(start.get_xdata()) == [0.9] and start.get_label() == "start x₀"
    assert explorer.plot.iterates.get_xdata()[0] == 0.9                  # the iterates begin at the marked start
    before = explorer.text
    explorer.controls["step"].value = 20
    now = runs[1].at(20)
    assert explorer.text != before and explorer.text.startswith(f"step 20: loss {now['loss']:.4f}")
    assert [list(ax.get_lines()) for ax in explorer.figure.axes] == lines   # same artists, new data
    assert list(explorer.plot.loss_dot.get_xdata()) == [20]
    assert f"{now['eta_lambda']:.2f}" in explorer.figure.axes[2].get_title()
    explorer.controls["eta"].value = 0.2
    assert list(explorer.plot.loss_all.get_ydata()) == list(runs[0].loss)


def test_estimator_progress_bars(monkeypatch, capsys):
    from losstools import _progress

    obj = tiny_objective()
    op = lt.curvature.Hessian(obj)
    monkeypatch.setattr(_progress, "PROGRESS_DELAY", 0.0)
    lanczos(op, k=2, max_steps=10)
    hutchpp_trace(op, 9)
    spectral_density(op, 2, 5)
    err = capsys.readouterr().err
    assert "Lanczos (top 2)" in err and "Hutch++ trace" in err and "spectral density" in err
    lanczos(op, k=2, max_steps=10, progress=False)
    hutchpp_trace(op, 9, progress=False)
    spectral_density(op, 2, 5, progress=False)
    assert capsys.readouterr().err == ""
