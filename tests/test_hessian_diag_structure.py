"""The low-rank + residual Hessian diagonal of Linear chains (linear_chain.diagonal) against dense Hessians."""
import pytest
import torch
from torch import nn

import losstools as lt
from losstools.curvature import linear_chain as structured

from .conftest import tiny_classification, tiny_mlp, tiny_regression

TOL = dict(rtol=1e-10, atol=1e-12)


def oracle_diag(obj):
    def loss(t):
        return sum(obj.batch_loss(t, X, y) * (len(X) / obj.num_examples) for X, y in obj.batches())

    return torch.func.hessian(loss)(obj.theta).diag()


def structured_diag(obj, chunk_size=None):
    chain = structured.linear_chain(obj)
    assert chain is not None
    out = torch.zeros(obj.num_params, dtype=obj.dtype)
    structured.diagonal(chain, obj.theta, out, chunk_size, progress=False)
    return out


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("activation", ["tanh", "softplus", "relu"])
def test_any_depth_matches_the_dense_hessian(depth, activation):
    """depth Linear layers: 1-2 use only the low-rank part and a diagonal residual, 3 the one-GEMM residual,
    4 and 6 the dense residuals R_l carried over several layers."""
    sizes = [3] + [5, 4, 6, 4, 5][: depth - 1] + [3]
    X, y = tiny_classification(n=9, c=3)
    obj = lt.Objective(tiny_mlp(sizes, activation, seed=depth), nn.CrossEntropyLoss(), (X, y))
    torch.testing.assert_close(structured_diag(obj), oracle_diag(obj), **TOL)


@pytest.mark.parametrize("params", [["0.weight"], ["0.bias", "4.weight"], ["2.weight"], ["6.bias"], "weights"])
def test_parameter_subsets_and_chunks(params):
    """Only some layers selected (the lowest selected one decides how far curvature is carried), any chunking."""
    X, y = tiny_regression(n=7, k=3)
    net = tiny_mlp((3, 4, 5, 4, 3), "tanh", seed=3)
    obj = lt.Objective(net, nn.MSELoss(), [(X[:3], y[:3]), (X[3:], y[3:])], params=params)
    expected = oracle_diag(obj)
    for chunk in (None, 1, 2):
        torch.testing.assert_close(structured_diag(obj, chunk), expected, **TOL)


def test_indefinite_output_hessian_and_trailing_activation():
    """BCE after a sigmoid: the loss's Hessian in the last z is not positive semi-definite."""
    g = torch.Generator().manual_seed(4)
    X, y = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.rand(8, 2, generator=g, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(3, 6), nn.GELU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2), nn.Sigmoid()).double()
    obj = lt.Objective(net, nn.BCELoss(), (X, y))
    torch.testing.assert_close(structured_diag(obj), oracle_diag(obj), **TOL)
    torch.testing.assert_close(lt.hessian_diag(obj), oracle_diag(obj), **TOL)


def test_wide_layers_against_the_dense_structured_hessian():
    """Wider than the output (the regime the low-rank split is for): equals the dense structured Hessian's diagonal."""
    X, y = tiny_classification(n=20, d=6, c=4)
    obj = lt.Objective(tiny_mlp((6, 40, 30, 4), "tanh", seed=5), nn.CrossEntropyLoss(), (X, y))
    torch.testing.assert_close(structured_diag(obj), lt.hessian(obj).diag(), **TOL)


def test_float32_is_close_to_float64_and_progress_bar_can_be_hidden(capsys):
    X, y = tiny_classification(n=50, d=5, c=4)
    net = lt.models.mlp([5, 30, 30, 4], seed=2)
    d32 = lt.hessian_diag(lt.Objective(net, nn.CrossEntropyLoss(), (X.float(), y)))
    d64 = lt.hessian_diag(lt.Objective(net.double(), nn.CrossEntropyLoss(), (X, y)))
    assert d32.dtype == torch.float32
    torch.testing.assert_close(d32.double(), d64, rtol=1e-4, atol=1e-6)
    structured_diag(lt.Objective(net.double(), nn.CrossEntropyLoss(), (X, y)), chunk_size=1)
    assert capsys.readouterr().err == ""


def test_never_forms_the_per_example_output_curvature_of_wide_layers(monkeypatch):
    """On two hidden layers of 400 the diagonal neither builds the full per-example M_l (the dense path,
    2 x 400 x 400 doubles per example) nor splits the examples into chunks for it."""
    X, y = tiny_classification(n=300, d=8, c=3)
    obj = lt.Objective(tiny_mlp((8, 400, 400, 3), "tanh"), nn.CrossEntropyLoss(), (X, y))
    expected = structured_diag(obj)

    def refuse(*args, **kwargs):
        raise AssertionError("the dense per-example M_l was formed")

    monkeypatch.setattr(structured.LinearChain, "_backward", refuse)
    monkeypatch.setattr(structured, "_CHUNK_BYTES", 300 * 3 * 3 * 400 * 8)  # room for C x O per example only
    chain = structured.linear_chain(obj)
    seen = []
    original = chain.per_example

    def counting(*args):
        for item in original(*args):
            seen.append(len(item[3]))
            yield item

    chain.per_example = counting
    out = torch.zeros(obj.num_params, dtype=obj.dtype)
    structured.diagonal(chain, obj.theta, out, progress=False)
    assert seen == [300]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
