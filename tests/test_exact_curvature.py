"""Exact curvature against float64 oracles: torch.func.hessian, finite differences, closed forms."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import losstools as lt
from losstools.curvature import DenseTooLargeError

from .conftest import tiny_classification, tiny_mlp, tiny_regression

CASES = [
    ("tanh", nn.CrossEntropyLoss(), tiny_classification),
    ("relu", nn.CrossEntropyLoss(), tiny_classification),
    ("tanh", nn.MSELoss(), tiny_regression),
    ("relu", nn.MSELoss(), tiny_regression),
]
IDS = [f"{a}-{type(l).__name__}" for a, l, _ in CASES]


def objective(activation, loss_fn, make_data, sizes=(3, 4, 3), seed=0):
    X, y = make_data(c=sizes[-1]) if make_data is tiny_classification else make_data(k=sizes[-1])
    return lt.Objective(tiny_mlp(sizes, activation, seed), loss_fn, (X, y))


def oracle_hessian(obj):
    X, y = next(obj.batches())
    return torch.func.hessian(lambda t: obj.batch_loss(t, X, y))(obj.theta)


@pytest.mark.parametrize("activation,loss_fn,make_data", CASES, ids=IDS)
def test_hessian_matches_torch_func_and_is_symmetric(activation, loss_fn, make_data):
    obj = objective(activation, loss_fn, make_data)
    H = lt.hessian(obj)
    torch.testing.assert_close(H, oracle_hessian(obj), rtol=1e-10, atol=1e-12)
    assert torch.equal(H, H.T) or (H - H.T).abs().max() < 1e-14


@pytest.mark.parametrize("activation,loss_fn,make_data", CASES, ids=IDS)
def test_hessian_matches_finite_differences_of_grad(activation, loss_fn, make_data):
    obj = objective(activation, loss_fn, make_data)
    H, theta, eps = lt.hessian(obj), obj.theta, 1e-6
    columns = []
    for i in range(obj.num_params):
        e = torch.zeros_like(theta)
        e[i] = eps
        columns.append((obj.grad(theta + e) - obj.grad(theta - e)) / (2 * eps))
    torch.testing.assert_close(H, torch.stack(columns, 1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("activation,loss_fn,make_data", CASES, ids=IDS)
def test_hvp_diag_and_blocks_match_dense(activation, loss_fn, make_data):
    obj = objective(activation, loss_fn, make_data)
    H = oracle_hessian(obj)
    V = torch.randn(obj.num_params, 4, dtype=torch.float64)
    torch.testing.assert_close(obj.hvp(V), H @ V, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(obj.hvp(V[:, 0]), H @ V[:, 0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lt.hessian_diag(obj), H.diag(), rtol=1e-10, atol=1e-12)
    blocks = lt.hessian_blocks(obj)
    for name, s in obj.slices().items():
        torch.testing.assert_close(blocks[name], H[s, s], rtol=1e-10, atol=1e-12)


def test_chunk_size_does_not_change_the_hessian():
    obj = objective("tanh", nn.CrossEntropyLoss(), tiny_classification, sizes=(3, 5, 4, 3))
    reference = lt.hessian(obj, chunk_size=1000)
    for chunk in (1, 3, 7):
        torch.testing.assert_close(lt.hessian(obj, chunk_size=chunk), reference, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ closed forms
def test_linear_regression_hessian_equals_ggn_equals_xtx():
    X, y = tiny_regression(n=20, d=4, k=1)
    model = nn.Linear(4, 1, bias=False).double()
    obj = lt.Objective(model, nn.MSELoss(), (X, y))
    expected = 2 * X.T @ X / len(X)  # MSE mean: L = |Xw - y|^2 / N, so H = 2 X^T X / N
    torch.testing.assert_close(lt.hessian(obj), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lt.ggn(obj), expected, rtol=1e-12, atol=1e-14)


def test_logistic_regression_closed_form():
    X, _ = tiny_regression(n=30, d=3, k=1)
    y = (X[:, 0] + 0.3 * torch.randn(30, dtype=torch.float64) > 0).double().unsqueeze(1)
    model = nn.Linear(3, 1, bias=False).double()
    obj = lt.Objective(model, nn.BCEWithLogitsLoss(), (X, y))
    p = torch.sigmoid(X @ obj.theta)
    expected = X.T @ torch.diag(p * (1 - p)) @ X / len(X)
    torch.testing.assert_close(lt.hessian(obj), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lt.ggn(obj), expected, rtol=1e-12, atol=1e-14)


def test_ggn_matches_jacobian_formula_for_cross_entropy():
    obj = objective("tanh", nn.CrossEntropyLoss(), tiny_classification)
    X, _ = next(obj.batches())
    J = torch.func.jacrev(lambda t: obj.outputs(t, X))(obj.theta)  # (N, C, P)
    p = torch.softmax(obj.outputs(obj.theta, X), -1)
    H_out = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)  # (N, C, C)
    expected = torch.einsum("ncp,ncd,ndq->pq", J, H_out, J) / len(X)
    torch.testing.assert_close(lt.ggn(obj), expected, rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------ teaching invariants
def test_relu_layer_blocks_of_hessian_equal_ggn_but_not_for_tanh():
    """ReLU is piecewise linear: within one layer, the residual term vanishes, so block H = block GGN."""
    for activation, equal in (("relu", True), ("tanh", False)):
        obj = objective(activation, nn.CrossEntropyLoss(), tiny_classification, sizes=(3, 5, 4, 3))
        H, G = lt.hessian(obj), lt.ggn(obj)
        for name, s in obj.slices().items():
            same = torch.allclose(H[s, s], G[s, s], rtol=1e-9, atol=1e-12)
            if equal:
                assert same, name
            elif name.startswith("0."):  # first layer of a tanh net: tanh'' != 0 enters its block
                assert not same, name


def test_eigh_sorts_descending_and_reconstructs():
    obj = objective("tanh", nn.CrossEntropyLoss(), tiny_classification)
    H = lt.hessian(obj)
    values, vectors = lt.eigh(H)
    assert torch.all(values[:-1] >= values[1:])
    torch.testing.assert_close(vectors @ torch.diag(values) @ vectors.T, H, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="symmetric"):
        lt.eigh(H + torch.triu(torch.ones_like(H)))


# ------------------------------------------------------------------ properties
@settings(max_examples=15, deadline=None)
@given(widths=st.lists(st.integers(1, 4), min_size=1, max_size=3), n=st.integers(1, 9),
       batch=st.integers(1, 9), activation=st.sampled_from(["tanh", "relu", "sigmoid"]))
def test_property_hessian_and_batching(widths, n, batch, activation):
    sizes = [2, *widths, 3]
    X, y = tiny_classification(n=n, d=2, c=3)
    net = tiny_mlp(sizes, activation)
    whole = lt.Objective(net, nn.CrossEntropyLoss(), (X, y))
    batches = [(X[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]
    split = lt.Objective(net, nn.CrossEntropyLoss(), batches)
    H = lt.hessian(whole)
    torch.testing.assert_close(H, oracle_hessian(whole), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(split.loss(), whole.loss(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(split.grad(), whole.grad(), rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(lt.hessian(split), H, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(lt.ggn(split), lt.ggn(whole), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ guard and dtype
def test_memory_guard_fails_fast_without_allocating():
    net = nn.Sequential(nn.Linear(2000, 2000), nn.Tanh(), nn.Linear(2000, 10))  # ~4 million params
    obj = lt.Objective(net, nn.CrossEntropyLoss(), (torch.randn(2, 2000), torch.tensor([0, 1])))
    with pytest.raises(DenseTooLargeError, match=r"needs \d+\.\d+ GiB.*hutchinson_diag") as info:
        lt.hessian(obj)
    assert "4,022,010 x 4,022,010" in str(info.value)
    with pytest.raises(DenseTooLargeError):
        lt.ggn(obj)
    small = objective("tanh", nn.CrossEntropyLoss(), tiny_classification)
    with pytest.raises(DenseTooLargeError, match="budget of"):
        lt.hessian(small, max_bytes=100)


def test_float32_follows_model_dtype():
    X, y = tiny_classification(dtype=torch.float32)
    obj = lt.Objective(tiny_mlp().float(), nn.CrossEntropyLoss(), (X, y))
    H = lt.hessian(obj)
    assert H.dtype == torch.float32 and lt.ggn(obj).dtype == torch.float32
    obj64 = lt.Objective(tiny_mlp(), nn.CrossEntropyLoss(), (X.double(), y))
    torch.testing.assert_close(H.double(), lt.hessian(obj64), rtol=1e-4, atol=1e-6)
