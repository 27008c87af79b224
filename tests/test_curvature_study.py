"""The cost-versus-accuracy study, the zoo's plotting functions and the exercise check."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from losstools import curvature as C  # noqa: E402
from losstools import plotting  # noqa: E402
from losstools.checks import check_hutchinson_standard_error  # noqa: E402

from . import zoo  # noqa: E402


def test_cost_accuracy_errors_shrink_and_lanczos_becomes_exact():
    model, loss_fn, data = zoo.triple("mlp-ce")
    study = C.study.cost_accuracy(model, loss_fn, data, budgets=(1, 4, 31, 93), seeds=2)
    assert list(study["budgets"]) == [1, 4, 31, 93]
    assert study["Lanczos top eig(H)"][-1] < 1e-10  # a full Krylov space: exact
    assert study["Hutch++ tr(H)"][-1] < 1e-10  # 31 sketch columns span all P = 31 directions
    for name in ("Hutchinson diag(H)", "MC diag(GGN)"):
        assert study[name][-1] < study[name][0]


def test_zoo_plots_return_figures():
    A = torch.randn(6, 6, dtype=torch.float64)
    A = A + A.T
    assert isinstance(plotting.matrix_grid({"a": A, "b": -A}, boundaries=[3]), Figure)
    assert isinstance(plotting.spectra({"a": torch.linalg.eigvalsh(A)}), Figure)
    curves = {"x": np.array([1.0, 0.5, 0.25])}
    assert isinstance(plotting.cost_accuracy(curves, [1, 2, 4], highlight=2), Figure)
    grid = np.linspace(-1, 1, 50)
    assert isinstance(plotting.spectral_density(grid, np.exp(-grid**2), markers=[0.5]), Figure)


def test_hutchinson_standard_error_check():
    A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    feedback = check_hutchinson_standard_error(torch.tensor((2 * 2 / 10) ** 0.5), A, 10)  # off-diagonal: 1^2 + 1^2
    assert feedback and repr(feedback).startswith("Correct")
    feedback = check_hutchinson_standard_error(1.0, A, 10)
    assert not feedback and repr(feedback).startswith("Not yet") and "factor" in repr(feedback)
    feedback = check_hutchinson_standard_error(None, A, 10)
    assert not feedback and feedback.status == "not yet"
