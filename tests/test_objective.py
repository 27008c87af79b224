"""The Objective: flat view, reduction, non-mutation, and clear errors on bad input."""
import copy

import pytest
import torch
from torch import nn

import losstools as lt

from .conftest import tiny_classification, tiny_mlp


class TwoTower(nn.Module):
    """Not a Sequential: two branches summed, to show functional_call handles any module."""

    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Linear(3, 3), nn.Linear(3, 3)

    def forward(self, x):
        return self.left(torch.tanh(x)) + self.right(x) ** 2


def test_flat_view_round_trip_and_non_sequential_model():
    net = TwoTower().double()
    X, y = tiny_classification()
    obj = lt.Objective(net, nn.CrossEntropyLoss(), (X, y))
    assert obj.num_params == sum(p.numel() for p in net.parameters())
    parts = obj.unflatten(obj.theta)
    for name, p in net.named_parameters():
        assert torch.equal(parts[name], p.detach())
    assert torch.equal(obj.flatten(parts), obj.theta)
    torch.testing.assert_close(obj.loss(), nn.CrossEntropyLoss()(net(X), y))
    net.zero_grad()
    nn.CrossEntropyLoss()(net(X), y).backward()
    torch.testing.assert_close(obj.grad(), torch.cat([p.grad.reshape(-1) for p in net.parameters()]))


def test_user_model_is_never_changed():
    net = tiny_mlp()
    before = copy.deepcopy(net.state_dict())
    obj = lt.Objective(net, nn.CrossEntropyLoss(), tiny_classification())
    theta = obj.theta
    theta += 1.0  # a copy: changing it changes nothing
    obj.loss(theta), obj.grad(theta), lt.hessian(obj, theta), lt.ggn(obj, theta)
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name])
    assert all(p.grad is None for p in net.parameters())


def test_parameter_filters():
    net = tiny_mlp((3, 4, 3))
    data = tiny_classification()
    assert lt.Objective(net, nn.CrossEntropyLoss(), data, params="weights").names == ["0.weight", "2.weight"]
    assert lt.Objective(net, nn.CrossEntropyLoss(), data, params=r"bias$").names == ["0.bias", "2.bias"]
    assert lt.Objective(net, nn.CrossEntropyLoss(), data, params=["2.weight"]).num_params == 12
    with pytest.raises(ValueError, match=r"unknown parameter name\(s\) \['3.weight'\]"):
        lt.Objective(net, nn.CrossEntropyLoss(), data, params=["3.weight"])
    with pytest.raises(ValueError, match="matches no parameter"):
        lt.Objective(net, nn.CrossEntropyLoss(), data, params="conv")
    # the Hessian over a subset is the matching sub-block of the full Hessian
    full = lt.Objective(net, nn.CrossEntropyLoss(), data)
    sub = lt.Objective(net, nn.CrossEntropyLoss(), data, params="weights")
    idx = torch.cat([torch.arange(s.start, s.stop) for n, s in full.slices().items() if n.endswith("weight")])
    torch.testing.assert_close(lt.hessian(sub), lt.hessian(full)[idx][:, idx], rtol=1e-10, atol=1e-13)


def test_data_loader_weighting_equals_whole_data():
    X, y = tiny_classification(n=11)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=4)  # 4, 4, 3
    net = tiny_mlp()
    whole, batched = (lt.Objective(net, nn.CrossEntropyLoss(), d) for d in ((X, y), loader))
    assert batched.num_examples == 11
    torch.testing.assert_close(batched.loss(), whole.loss(), rtol=1e-13, atol=0)
    v = torch.randn(whole.num_params, dtype=torch.float64)
    torch.testing.assert_close(batched.hvp(v), whole.hvp(v), rtol=1e-11, atol=1e-14)


def test_bad_input_errors():
    net = tiny_mlp((3, 4, 3))
    X, y = tiny_classification()
    with pytest.raises(ValueError, match=r"cannot be evaluated on this data \(inputs \(12, 5\)"):
        lt.Objective(net, nn.CrossEntropyLoss(), (torch.randn(12, 5, dtype=torch.float64), y))
    with pytest.raises(ValueError, match="12 inputs but 5 targets"):
        lt.Objective(net, nn.CrossEntropyLoss(), (X, y[:5]))
    with pytest.raises(ValueError, match="data is empty"):
        lt.Objective(net, nn.CrossEntropyLoss(), (X[:0], y[:0]))
    with pytest.raises(ValueError, match="data is empty"):
        lt.Objective(net, nn.CrossEntropyLoss(), [])
    with pytest.raises(ValueError, match="reduction='sum'"):
        lt.Objective(net, nn.CrossEntropyLoss(reduction="sum"), (X, y))
    obj = lt.Objective(net, nn.CrossEntropyLoss(), (X, y))
    with pytest.raises(ValueError, match=r"v has shape \(5,\), expected \(31,\) or \(31, k\)"):
        obj.hvp(torch.ones(5))
    with pytest.raises(ValueError, match=r"theta has shape \(3,\)"):
        obj.loss(torch.ones(3))
    bad = obj.theta
    bad[0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite values .NaN or inf. in the loss"):
        obj.loss(bad)
    with pytest.raises(FloatingPointError, match="non-finite values .NaN or inf. in the Hessian"):
        lt.hessian(obj, bad)
