"""Matrix-free estimators: unbiasedness with tolerances from the estimators' variances, Lanczos vs eigh."""
import pytest
import torch

import losstools as lt
from losstools import curvature as C

from . import zoo
from .matrices import Dense, random_spd


def test_hutchinson_diag_is_unbiased_with_its_theoretical_variance():
    A, _ = random_spd(P=30, decay=0.9, negative=5)
    probes, runs = 8, 300
    estimates = torch.stack([C.hutchinson_diag(Dense(A), probes, seed=s, progress=False) for s in range(runs)])
    variance = (A**2).sum(1) - A.diagonal() ** 2  # of z_i (A z)_i for one Rademacher probe
    standard_error = (variance / (probes * runs)).sqrt()
    assert torch.all((estimates.mean(0) - A.diagonal()).abs() <= 5 * standard_error)
    torch.testing.assert_close(estimates.var(0), variance / probes, rtol=0.3, atol=0)  # 300 runs: ~8% error


def test_hutchinson_trace_is_unbiased_and_hutchpp_beats_it():
    A, values = random_spd(P=60, decay=0.8)
    variance = 2 * ((A**2).sum() - (A.diagonal() ** 2).sum())
    runs = 300
    hutch = torch.stack([C.hutchinson_trace(Dense(A), 30, seed=s, progress=False) for s in range(runs)])
    assert abs(hutch.mean() - values.sum()) <= 5 * (variance / (30 * runs)).sqrt()
    pp = torch.stack([C.hutchpp_trace(Dense(A), 30, seed=s) for s in range(runs)])
    assert abs(pp.mean() - values.sum()) <= 5 * pp.std() / runs**0.5  # unbiased
    assert pp.var() < 0.1 * hutch.var()  # decaying spectrum: the sketch captures most of it
    torch.testing.assert_close(C.hutchpp_trace(Dense(A[:9, :9]), 30, seed=0), A[:9, :9].trace())  # Q spans all


def test_lanczos_top_eigenpairs_equal_dense_ones():
    model, loss_fn, data = zoo.triple("mlp-ce")
    op = C.Hessian(model, loss_fn, data)
    H = lt.hessian(lt.Objective(model, loss_fn, data))
    exact = torch.linalg.eigvalsh(H)
    values, vectors = C.lanczos(op, k=3, tol=1e-10)
    torch.testing.assert_close(values, exact.flip(0)[:3], rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(H @ vectors, vectors * values, rtol=1e-6, atol=1e-8)
    assert op.matvecs < op.num_params  # converged before exhausting the space
    magnitude, _ = C.lanczos(Dense(random_spd(P=50, negative=3, decay=0.9)[0]), k=2, which="magnitude", tol=1e-10)
    A, lam = random_spd(P=50, negative=3, decay=0.9)
    torch.testing.assert_close(magnitude, lam[lam.abs().argsort(descending=True)[:2]])


def test_spectral_density_quadrature_is_exact_with_a_full_krylov_space():
    A, values = random_spd(P=20, decay=0.8, negative=4)
    sd = C.spectral_density(Dense(A), num_probes=3, num_steps=20, seed=1, progress=False)
    torch.testing.assert_close(sd.weights.sum(1), torch.ones(3, dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    Z = C.estimators.rademacher((20, 3), g, torch.float64, "cpu")
    Z = Z / Z.norm(dim=0)
    for power in (1, 2, 3):  # Gauss quadrature with m = P nodes reproduces v^T A^p v
        moments = (sd.weights * sd.nodes**power).sum(1)
        torch.testing.assert_close(moments, (Z * (torch.linalg.matrix_power(A, power) @ Z)).sum(0))
    heavy = sd.weights > 1e-8
    assert torch.all((sd.nodes[heavy][:, None] - values[None]).abs().min(1).values < 1e-8)
    grid = torch.linspace(-2, 2, 4001).numpy()
    assert abs(sd.density(grid, 0.05).sum() * (grid[1] - grid[0]) - 1) < 1e-3


def test_spectral_density_trace_is_unbiased():
    A, values = random_spd(P=30, decay=0.9, negative=6)
    traces = torch.tensor([C.spectral_density(Dense(A), 4, 8, seed=s, progress=False).trace() for s in range(200)])
    assert abs(traces.mean() - values.sum()) <= 5 * traces.std() / 200**0.5


def test_probes_from_seed_or_generator_on_the_parameters_device():
    A, _ = random_spd(P=10)
    from_seed = C.hutchinson_diag(Dense(A), 5, seed=3, progress=False)
    from_generator = C.hutchinson_diag(Dense(A), 5, seed=torch.Generator().manual_seed(3), progress=False)
    torch.testing.assert_close(from_seed, from_generator)
    assert not torch.equal(from_seed, C.hutchinson_diag(Dense(A), 5, seed=4, progress=False))
    A32 = Dense(A.float())
    assert C.hutchinson_trace(A32, 4, progress=False).dtype == torch.float32
    assert C.lanczos(A32, 2)[0].dtype == torch.float32
    with pytest.raises(ValueError, match="num_probes must be a positive integer"):
        C.hutchinson_diag(Dense(A), 0)


def test_estimators_on_a_real_operator_agree_with_its_exact_diagonal():
    model, loss_fn, data = zoo.triple("cnn-ce")
    op = C.GGN(model, loss_fn, data)
    dense = op.to_dense()
    probes, before = 400, op.matvecs
    estimate = C.hutchinson_diag(op, probes, seed=0, block=100, progress=False)
    standard_error = (((dense**2).sum(1) - dense.diagonal() ** 2) / probes).sqrt()
    assert torch.all((estimate - op.diagonal()).abs() <= 5 * standard_error + 1e-12)
    assert op.matvecs - before == probes
