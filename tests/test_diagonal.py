"""GGN and Fisher diagonals against the dense GGN and per-example gradients (float64)."""
import pytest
import torch
from torch import nn

import losstools as lt
from losstools.curvature import diag_fisher, diag_ggn

from .conftest import tiny_classification, tiny_mlp, tiny_regression


def cases():
    X, y = tiny_classification()
    Xr, yr = tiny_regression(k=3)
    yb = (torch.rand(12, 3, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()
    Xc = torch.randn(12, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return {
        "mlp-ce": (tiny_mlp(), nn.CrossEntropyLoss(), (X, y)),
        "mlp-mse": (tiny_mlp(), nn.MSELoss(), (Xr, yr)),
        "mlp-bce": (tiny_mlp(), nn.BCEWithLogitsLoss(), (X, yb)),
        "cnn-ce": (cnn, nn.CrossEntropyLoss(), (Xc, y)),
    }


@pytest.mark.parametrize("name", list(cases()))
def test_exact_diag_ggn_equals_dense_ggn_diagonal(name):
    model, loss_fn, data = cases()[name]
    obj = lt.Objective(model, loss_fn, data)
    d = diag_ggn(model, loss_fn, data)
    assert list(d) == obj.names and all(d[n].shape == s for n, s in zip(obj.names, obj.shapes))
    torch.testing.assert_close(obj.flatten(d), lt.ggn(obj).diag(), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(obj.flatten(diag_fisher(model, loss_fn, data, kind="true")), obj.flatten(d))


@pytest.mark.parametrize("name", ["mlp-ce", "mlp-mse", "mlp-bce"])
def test_monte_carlo_diag_ggn_is_unbiased(name):
    """Mean of R independent estimates -> exact; tolerance: 5 standard errors of that mean."""
    model, loss_fn, data = cases()[name]
    exact = lt.Objective(model, loss_fn, data).flatten(diag_ggn(model, loss_fn, data))
    obj = lt.Objective(model, loss_fn, data)
    runs = torch.stack([obj.flatten(diag_ggn(model, loss_fn, data, mc_samples=4, seed=s)) for s in range(200)])
    standard_error = runs.std(0) / len(runs) ** 0.5
    assert torch.all((runs.mean(0) - exact).abs() <= 5 * standard_error + 1e-12)
    assert not torch.allclose(runs[0], exact, rtol=1e-3)  # a single estimate really is noisy


def test_empirical_fisher_is_mean_of_squared_per_example_gradients():
    model, loss_fn, (X, y) = cases()["mlp-ce"]
    obj = lt.Objective(model, loss_fn, (X, y))
    per_example = torch.stack([lt.Objective(model, loss_fn, (X[i : i + 1], y[i : i + 1])).grad()
                               for i in range(len(X))])
    torch.testing.assert_close(obj.flatten(diag_fisher(model, loss_fn, (X, y))), per_example.pow(2).mean(0))
    batches = [(X[:5], y[:5]), (X[5:], y[5:])]
    torch.testing.assert_close(obj.flatten(diag_fisher(model, loss_fn, batches)), per_example.pow(2).mean(0))
    torch.testing.assert_close(obj.flatten(diag_ggn(model, loss_fn, batches)),
                               obj.flatten(diag_ggn(model, loss_fn, (X, y))))


def test_bad_arguments():
    model, loss_fn, data = cases()["mlp-ce"]
    with pytest.raises(ValueError, match="unknown Fisher kind 'exact'"):
        diag_fisher(model, loss_fn, data, kind="exact")
    with pytest.raises(ValueError, match="mc_samples must be an integer >= 1"):
        diag_ggn(model, loss_fn, data, mc_samples=0)
    with pytest.raises(ValueError, match="needs a likelihood"):
        diag_ggn(model, nn.L1Loss(), (data[0], torch.randn(12, 3, dtype=torch.float64)), mc_samples=2)
