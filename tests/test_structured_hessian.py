"""The structured exact Hessian of Linear/elementwise nets against the generic HVP path and torch.func."""
import pytest
import torch
from torch import nn

import losstools as lt
from losstools.curvature import _columns
from losstools.curvature.linear_chain import linear_chain

from .conftest import tiny_classification, tiny_mlp, tiny_regression

TOL = dict(rtol=1e-10, atol=1e-12)


def oracle(obj):
    """torch.func.hessian of the user's loss on all the data at once, float64."""
    X, y = (torch.cat(parts) for parts in zip(*obj.batches()))
    return torch.func.hessian(lambda t: obj.loss_fn(obj.outputs(t, X), y))(obj.theta)


def check_all(obj, chunk_size=None):
    """hessian, hessian_diag and hessian_blocks of the structured path equal the oracle and the HVP path."""
    assert linear_chain(obj) is not None
    H = oracle(obj)
    got = lt.hessian(obj, chunk_size=chunk_size)
    torch.testing.assert_close(got, H, **TOL)
    torch.testing.assert_close(got, _columns.hessian_tensor_blocks(obj, obj.theta, "dense", 7), **TOL)
    torch.testing.assert_close(got, _columns.from_products(lt.curvature.Hessian(obj), "dense", 5), **TOL)
    assert torch.equal(got, got.T)
    torch.testing.assert_close(lt.hessian_diag(obj, chunk_size=chunk_size), H.diag(), **TOL)
    blocks = lt.hessian_blocks(obj, chunk_size=chunk_size)
    assert list(blocks) == obj.names
    for name, s in obj.slices().items():
        torch.testing.assert_close(blocks[name], H[s, s], **TOL)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "gelu", "softplus"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("bias", [True, False])
def test_mlps_match_oracle_and_generic_path(activation, loss, bias):
    sizes = (3, 5, 4, 4, 3)  # four Linear layers: adjacent and non-adjacent cross-layer residual terms
    X, y = tiny_classification(n=9, c=3) if loss == "ce" else tiny_regression(n=9, k=3)
    net = lt.models.mlp(list(sizes), activation=activation, seed=1, bias=bias).double()
    check_all(lt.Objective(net, nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss(), (X, y)))


@pytest.mark.parametrize("params", ["weights", ["4.bias", "0.weight", "2.weight"], r"^2\.", ["0.bias"]])
def test_parameter_filters_in_any_order(params):
    X, y = tiny_classification(n=8, c=3)
    check_all(lt.Objective(tiny_mlp((3, 5, 4, 3), "tanh"), nn.CrossEntropyLoss(), (X, y), params=params))


def test_uneven_batches_and_example_chunks():
    X, y = tiny_classification(n=11, c=3)
    batches = [(X[:4], y[:4]), (X[4:9], y[4:9]), (X[9:], y[9:])]
    obj = lt.Objective(tiny_mlp((3, 4, 4, 3), "tanh"), nn.CrossEntropyLoss(), batches)
    for chunk in (None, 1, 2):
        check_all(obj, chunk_size=chunk)
    whole = lt.Objective(obj.model, nn.CrossEntropyLoss(), (X, y))
    torch.testing.assert_close(lt.hessian(obj), lt.hessian(whole), **TOL)


def test_weighted_label_smoothed_cross_entropy_per_batch():
    """The normalisation by the batch's class weights depends on the targets only: still exact per batch."""
    X, y = tiny_classification(n=10, c=3)
    loss = nn.CrossEntropyLoss(weight=torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64), label_smoothing=0.1)
    obj = lt.Objective(tiny_mlp((3, 4, 3), "tanh"), loss, [(X[:6], y[:6]), (X[6:], y[6:])])
    check_all(obj, chunk_size=2)


def test_flatten_prefix_trailing_sigmoid_bce_and_inplace_relu():
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(7, 2, 3, generator=g, dtype=torch.float64), torch.rand(7, 1, generator=g, dtype=torch.float64)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.ReLU(inplace=True), nn.Tanh(), nn.Linear(4, 1), nn.Sigmoid())
    check_all(lt.Objective(net.double(), nn.BCELoss(), (X, y)))
    logits = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.1), nn.Linear(4, 1)).double()
    check_all(lt.Objective(logits, nn.BCEWithLogitsLoss(), (X[:, 0], (y > 0.5).double())))


def test_other_models_use_the_generic_path_and_stay_exact():
    X, y = tiny_classification(n=6, c=3)
    softmax = nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=1), nn.Linear(4, 3)).double()  # not elementwise
    custom_loss = lt.Objective(tiny_mlp(), lambda out, t: nn.functional.cross_entropy(out, t), (X, y))
    unsequenced = lt.Objective(nn.Linear(3, 3).double(), nn.CrossEntropyLoss(), (X, y))
    for obj in (lt.Objective(softmax, nn.CrossEntropyLoss(), (X, y)), custom_loss, unsequenced):
        assert linear_chain(obj) is None
        torch.testing.assert_close(lt.hessian(obj), oracle(obj), **TOL)
    X3 = X.view(6, 1, 3).expand(6, 2, 3)
    sequence = lt.Objective(tiny_mlp(), nn.MSELoss(), (X3, X3))
    assert linear_chain(sequence) is None  # Linear over a (N, T, features) input: not per-example rows


def test_layer_norm_net_matches_finite_differences():
    """Generic path on a LayerNorm net; torch.func.hessian is no oracle here: in torch 2.13 it returns
    a non-symmetric matrix for LayerNorm (its reverse-over-reverse batching), while HVPs agree with
    finite differences of the gradient."""
    X, y = tiny_classification(n=6, c=3)
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 3)).double()
    obj = lt.Objective(net, nn.CrossEntropyLoss(), (X, y))
    assert linear_chain(obj) is None
    theta, eps = obj.theta, 1e-6
    E = torch.eye(obj.num_params, dtype=theta.dtype)
    fd = torch.stack([(obj.grad(theta + eps * e) - obj.grad(theta - eps * e)) / (2 * eps) for e in E])
    torch.testing.assert_close(lt.hessian(obj), fd, rtol=1e-6, atol=1e-8)


def test_float32_structured_close_to_float64():
    X, y = tiny_classification(n=30, d=5, c=4)
    net = lt.models.mlp([5, 8, 8, 4], seed=2)
    H32 = lt.hessian(lt.Objective(net, nn.CrossEntropyLoss(), (X.float(), y)))
    H64 = lt.hessian(lt.Objective(net.double(), nn.CrossEntropyLoss(), (X, y)))
    assert H32.dtype == torch.float32
    torch.testing.assert_close(H32.double(), H64, rtol=1e-4, atol=1e-6)


def test_too_many_outputs_for_the_head_falls_back(monkeypatch):
    from losstools.curvature import linear_chain as module

    X, y = tiny_regression(n=5, k=3)
    obj = lt.Objective(tiny_mlp((3, 4, 3)), nn.MSELoss(), (X, y))
    monkeypatch.setattr(module, "_HEAD_BYTES", 5 * 3**2 * 8 - 1)  # one byte short of (N, C, C) float64
    assert linear_chain(obj) is None
    torch.testing.assert_close(lt.hessian(obj), oracle(obj), **TOL)


def test_explicit_theta_is_used():
    X, y = tiny_classification(n=8, c=3)
    obj = lt.Objective(tiny_mlp((3, 4, 3), "tanh"), nn.CrossEntropyLoss(), (X, y))
    theta = obj.theta + 0.3 * torch.randn(obj.num_params, dtype=torch.float64)
    expected = torch.func.hessian(lambda t: obj.batch_loss(t, X, y))(theta)
    torch.testing.assert_close(lt.hessian(obj, theta), expected, **TOL)
    torch.testing.assert_close(lt.hessian_diag(obj, theta), expected.diag(), **TOL)
