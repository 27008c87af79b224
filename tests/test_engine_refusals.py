"""What the engine refuses, and that each refusal names the cause and the fix (regressions of issue 10)."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import losstools as lt
from losstools import curvature as C

from .conftest import tiny_classification, tiny_mlp, tiny_regression


def test_mse_refuses_shapes_torch_would_broadcast():
    X, y = tiny_regression(n=8, k=1)
    net = tiny_mlp((3, 4, 1))
    with pytest.raises(ValueError, match=r"outputs have shape \(8, 1\) and the targets \(8,\).*y.view\(-1, 1\)"):
        lt.Objective(net, nn.MSELoss(), (X, y[:, 0]))
    assert lt.Objective(net, nn.MSELoss(), (X, y)).num_examples == 8


@pytest.mark.parametrize("layer", [nn.Dropout(0.2), nn.BatchNorm1d(4)])
def test_train_mode_dropout_and_batchnorm_are_refused_with_the_fix(layer):
    X, y = tiny_classification(n=8)
    net = nn.Sequential(nn.Linear(3, 4), layer, nn.Tanh(), nn.Linear(4, 3)).double()
    with pytest.raises(ValueError, match=r"training mode.*\(1\).*Call model.eval\(\)"):
        lt.Objective(net, nn.CrossEntropyLoss(), (X, y))
    assert net.training  # refused without touching the model
    lt.Objective(net.eval(), nn.CrossEntropyLoss(), (X, y))


def test_any_other_random_output_is_refused():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) + torch.randn_like(x)

    X, y = tiny_classification(n=8)
    noisy = Noisy().double().eval()
    state = torch.random.get_rng_state()
    with pytest.raises(ValueError, match="different outputs for the same inputs.*model.eval"):
        lt.Objective(noisy, nn.CrossEntropyLoss(), (X, y))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_data_that_cannot_be_read_twice_or_is_not_pairs():
    X, y = tiny_classification(n=8)
    net = tiny_mlp()
    with pytest.raises(TypeError, match=r"one-shot iterator.*list\(\.\.\.\)"):
        lt.Objective(net, nn.CrossEntropyLoss(), ((X[i : i + 2], y[i : i + 2]) for i in range(0, 8, 2)))
    with pytest.raises(TypeError, match=r"batch 0 is a dict.*b\['x'\]"):
        lt.Objective(net, nn.CrossEntropyLoss(), [{"x": X, "y": y}])
    with pytest.raises(TypeError, match="wrap it in a DataLoader"):
        lt.Objective(net, nn.CrossEntropyLoss(), TensorDataset(X, y))
    with pytest.raises(TypeError, match=r"pass one split, e.g. ds.train"):
        lt.Objective(net, nn.CrossEntropyLoss(), lt.data.digits())
    loader = DataLoader(TensorDataset(X, y), batch_size=3)  # uneven batches are fine
    torch.testing.assert_close(lt.Objective(net, nn.CrossEntropyLoss(), loader).grad(),
                               lt.Objective(net, nn.CrossEntropyLoss(), (X, y)).grad())


def test_losses_whose_mean_cannot_be_split_are_refused():
    class Doubled(nn.Module):
        reduction = "mean"

        def forward(self, out, t):
            return 2 * nn.functional.mse_loss(out, t)

    X, y = tiny_regression(n=8, k=3)
    with pytest.raises(ValueError, match="cannot tell how Doubled averages.*plain function"):
        lt.Objective(tiny_mlp(), Doubled(), (X, y))
    with pytest.raises(ValueError, match="reduction='sum'.*reduction='mean'"):
        lt.Objective(tiny_mlp(), nn.MSELoss(reduction="sum"), (X, y))
    Xc, yc = tiny_classification(n=4)
    with pytest.raises(ValueError, match="normaliser is 0: every target is ignored"):
        lt.Objective(tiny_mlp(), nn.CrossEntropyLoss(ignore_index=-1), (Xc, torch.full_like(yc, -1))).loss()


def test_weighted_cross_entropy_over_a_loader_is_the_loss_on_all_the_data():
    X, y = tiny_classification(n=10)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([0.1, 5.0, 1.0], dtype=torch.float64))
    net = tiny_mlp()
    batches = [(X[:7], y[:7]), (X[7:], y[7:])]
    obj = lt.Objective(net, loss_fn, batches)
    with torch.no_grad():
        assert torch.allclose(obj.loss(), loss_fn(net(X), y), rtol=1e-12)
    size_weighted = sum(loss_fn(net(Xb), yb) * len(Xb) / 10 for Xb, yb in batches)
    assert not torch.allclose(obj.loss(), size_weighted.detach(), rtol=1e-3)  # what weighting by size gave


def test_the_ggn_square_root_of_a_non_convex_loss_is_refused_but_its_products_work():
    X, y = tiny_regression(n=6, k=3)
    obj = lt.Objective(tiny_mlp(), lambda out, t: -((out - t) ** 2).mean(), (X, y))
    G, ones = C.GGN(obj), torch.ones(obj.num_params, dtype=torch.float64)
    convex = C.GGN(lt.Objective(tiny_mlp(), lambda o, t: ((o - t) ** 2).mean(), (X, y)))
    torch.testing.assert_close(G @ ones, -(convex @ ones))
    with pytest.raises(ValueError, match="not convex in the model's outputs"):
        G.diagonal()


def test_operator_arguments():
    X, y = tiny_classification(n=6)
    obj = lt.Objective(tiny_mlp(), nn.CrossEntropyLoss(), (X, y))
    with pytest.raises(TypeError, match="either an Objective, or a model"):
        C.Hessian(obj, nn.CrossEntropyLoss(), (X, y))
    with pytest.raises(TypeError, match="a model needs loss_fn and data"):
        C.GGN(tiny_mlp())
    with pytest.raises(ValueError, match="mc_samples must be an integer >= 1"):
        C.Fisher(obj, mc_samples=0)
    with pytest.raises(ValueError, match="unknown K-FAC kind"):
        C.KFAC(obj, kind="diagonal")
    torch.testing.assert_close(C.Hessian(tiny_mlp(), nn.CrossEntropyLoss(), (X, y)).dense(), C.Hessian(obj).dense())
    assert C.Hessian is C.Hessian and C.KFAC is C.KFAC  # earlier names still work
