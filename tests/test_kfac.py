"""K-FAC against the exact GGN where theory says it is exact, and its algebra (diagonal, solve)."""
import pytest
import torch
from torch import nn

import losstools as lt
from losstools import curvature as C

from . import zoo
from .conftest import tiny_classification, tiny_mlp, tiny_regression


def layer_block_mask(obj, layers):
    """True on the blocks that couple parameters of the same layer."""
    owner = torch.cat([torch.full((s,), next(i for i, l in enumerate(layers) if n.startswith(l + ".")))
                       for n, s in zip(obj.names, obj.sizes)])
    return owner[:, None] == owner[None, :]


@pytest.mark.parametrize("params", [None, ["0.weight"], ["0.bias"]])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_kfac_is_exact_for_one_linear_layer_and_one_example(loss, params):
    X, y = tiny_classification(n=1) if loss == "ce" else tiny_regression(n=1, k=3)
    model = nn.Sequential(nn.Linear(3, 3)).double()
    loss_fn = nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()
    K = C.kfac(model, loss_fn, (X, y), params=params)
    exact = lt.ggn(lt.Objective(model, loss_fn, (X, y), params=params))
    torch.testing.assert_close(K.to_dense(), exact, rtol=1e-10, atol=1e-14)


def test_kfac_blocks_are_exact_for_one_example_in_a_deep_mlp_and_zero_across_layers():
    X, y = tiny_classification(n=1)
    model = tiny_mlp((3, 5, 4, 3))
    obj = lt.Objective(model, nn.CrossEntropyLoss(), (X, y))
    dense = C.kfac(model, nn.CrossEntropyLoss(), (X, y)).to_dense()
    mask = layer_block_mask(obj, ["0", "2", "4"])
    torch.testing.assert_close(dense, lt.ggn(obj) * mask, rtol=1e-10, atol=1e-14)


def test_kfac_is_not_exact_with_many_examples():
    model, loss_fn, data = zoo.triple("mlp-ce")
    obj = lt.Objective(model, loss_fn, data)
    G = lt.ggn(obj) * layer_block_mask(obj, ["0", "2"])
    assert (C.kfac(model, loss_fn, data).to_dense() - G).abs().max() > 1e-3 * G.abs().max()


@pytest.mark.parametrize("name", ["mlp-ce", "cnn-ce", "seq-ce", "branch-ce"])
def test_factors_match_their_definition(name):
    """A = (1/(N T)) sum a a^T from the recorded inputs; G = (1/N) sum d d^T with d = J_z^T S."""
    model, loss_fn, data = zoo.triple(name)
    K = C.kfac(model, loss_fn, data)
    obj = lt.Objective(model, loss_fn, data)
    from losstools.curvature.layers import backpropagate, supported_layers

    layers = supported_layers(obj, "test")
    vectors = lambda o, t: obj.loss_terms.output_vectors("exact", o, t)  # noqa: E731
    (pairs,) = backpropagate(obj, layers, obj.theta, *data, vectors)
    by_column = list(backpropagate(obj, layers, obj.theta, *data, vectors, by_column=True))
    assert len(by_column) == pairs[0][1].shape[0]  # one pass per column, each the batched pass's slice
    for k, column in enumerate(by_column):
        for (a, d), (a_k, d_k) in zip(pairs, column):
            assert torch.equal(a, a_k) and torch.allclose(d[k : k + 1], d_k, rtol=1e-5, atol=1e-7)
    for layer, (a, d) in zip(layers, pairs):
        A, G = K.factors[layer.name]
        N, T = a.shape[0], a.shape[2]
        if layer.bias:
            a = torch.cat([a, torch.ones(N, 1, T, dtype=a.dtype)], 1)
        torch.testing.assert_close(A, torch.einsum("nit,njt->ij", a, a) / (N * T))
        torch.testing.assert_close(G, torch.einsum("kbot,kbpt->op", d, d) / N)
        assert torch.linalg.eigvalsh(G).min() > -1e-12 and torch.linalg.eigvalsh(A).min() > -1e-12


def test_diagonal_solve_and_selected_parameters():
    model, loss_fn, data = zoo.triple("cnn-ce")
    K = C.kfac(model, loss_fn, data)
    dense = K.to_dense()
    torch.testing.assert_close(K.diagonal(), dense.diagonal())
    v = torch.randn(K.num_params, 2, dtype=torch.float64)
    torch.testing.assert_close((dense + 0.1 * torch.eye(K.num_params, dtype=torch.float64)) @ K.solve(v, 0.1), v)
    weights_only = C.kfac(model, loss_fn, data, params="weights")  # no bias: A has no padding row
    for layer, (A, G) in weights_only.factors.items():
        A_full, G_full = K.factors[layer]
        I = A.shape[0]
        assert A_full.shape[0] == I + (layer != "2")  # the second conv has no bias
        torch.testing.assert_close(A, A_full[:I, :I])
        torch.testing.assert_close(G, G_full)
    assert weights_only.num_params == lt.Objective(model, loss_fn, data, params="weights").num_params


def test_monte_carlo_and_empirical_kfac():
    model, loss_fn, data = zoo.triple("mlp-ce")
    exact = C.kfac(model, loss_fn, data)
    runs = torch.stack([C.kfac(model, loss_fn, data, kind="mc", mc_samples=2, seed=s).factors["2"][1]
                        for s in range(200)])
    standard_error = runs.std(0) / len(runs) ** 0.5
    assert torch.all((runs.mean(0) - exact.factors["2"][1]).abs() <= 5 * standard_error + 1e-12)
    X, y = tiny_classification(n=1)
    one = nn.Sequential(nn.Linear(3, 3)).double()
    torch.testing.assert_close(C.kfac(one, loss_fn, (X, y), kind="empirical").to_dense(),
                               C.EmpiricalFisher(one, loss_fn, (X, y)).to_dense())
    with pytest.raises(ValueError, match="unknown K-FAC kind"):
        C.kfac(model, loss_fn, data, kind="true")
    with pytest.raises(ValueError, match="mc_samples must be an integer >= 1"):
        C.kfac(model, loss_fn, data, kind="mc", mc_samples=0)
