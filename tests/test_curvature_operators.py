"""Curvature operators: per-layer diagonals, Monte-Carlo Fisher, memory guard, refusals; the dense float64 oracles
are the zoo's (plain autograd, no losstools code)."""
import numpy as np
import pytest
import torch
from scipy.sparse.linalg import aslinearoperator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import losstools as lt
from losstools import curvature as C

from . import zoo

OPERATORS = [C.Hessian, C.GGN, C.Fisher, C.EmpiricalFisher]


def oracle(model, loss_fn, data) -> dict:
    """The zoo's float64 oracles (plain autograd, no losstools code): hessian, ggn, empirical."""
    return zoo.oracle(zoo.Case(model, loss_fn, data))


@pytest.mark.parametrize("name", ["mlp-ce", "mlp-mse", "cnn-ce", "seq-ce", "branch-ce"])
@pytest.mark.parametrize("name_diag", ["ggn", "ef"])
def test_layer_diagonals_match_dense(name, name_diag):
    model, loss_fn, data = zoo.triple(name)
    obj = lt.Objective(model, loss_fn, data)
    d = C.diag_ggn(model, loss_fn, data) if name_diag == "ggn" else C.diag_fisher(model, loss_fn, data)
    expected = oracle(model, loss_fn, data)["ggn" if name_diag == "ggn" else "empirical"]
    torch.testing.assert_close(obj.flatten(d), expected.diagonal(), rtol=1e-9, atol=1e-12)


def test_monte_carlo_fisher_operator_is_a_fixed_matrix_and_unbiased():
    model, loss_fn, data = zoo.triple("mlp-ce")
    exact = lt.ggn(lt.Objective(model, loss_fn, data))
    op = C.Fisher(model, loss_fn, data, mc_samples=3, seed=5)
    first = op.to_dense()
    torch.testing.assert_close(op.to_dense(), first, rtol=0, atol=0)  # the same labels in every product
    torch.testing.assert_close(op.diagonal(), first.diagonal())
    runs = torch.stack([C.Fisher(model, loss_fn, data, mc_samples=3, seed=s).to_dense() for s in range(150)])
    standard_error = runs.std(0) / len(runs) ** 0.5
    assert torch.all((runs.mean(0) - exact).abs() <= 5 * standard_error + 1e-12)
    assert not torch.allclose(first, exact, rtol=1e-2)


def test_batches_and_dataloaders_give_the_whole_dataset_mean():
    model, loss_fn, (X, y) = zoo.triple("cnn-ce")
    uneven = [(X[:5], y[:5]), (X[5:6], y[5:6]), (X[6:], y[6:])]
    loader = DataLoader(TensorDataset(X, y), batch_size=5)
    v = torch.randn(sum(p.numel() for p in model.parameters()), 2, dtype=torch.float64)
    for cls in OPERATORS:
        whole = cls(model, loss_fn, (X, y)) @ v
        for data in (uneven, loader):
            torch.testing.assert_close(cls(model, loss_fn, data) @ v, whole)
    obj = lt.Objective(model, loss_fn, (X, y))
    for fn in (lambda d: C.diag_ggn(model, loss_fn, d), lambda d: C.diag_fisher(model, loss_fn, d),
               lambda d: C.kfac(model, loss_fn, d).diagonal()):
        whole = fn((X, y))
        whole = whole if torch.is_tensor(whole) else obj.flatten(whole)
        for data in (uneven, loader):
            got = fn(data)
            torch.testing.assert_close(got if torch.is_tensor(got) else obj.flatten(got), whole)


def test_scipy_operator_and_eigsh():
    from scipy.sparse.linalg import eigsh

    model, loss_fn, data = zoo.triple("mlp-ce")
    op = C.Hessian(model, loss_fn, data)
    H = lt.hessian(lt.Objective(model, loss_fn, data)).numpy()
    A = op.to_scipy()
    x = np.random.default_rng(0).standard_normal((op.num_params, 2))
    np.testing.assert_allclose(A @ x, H @ x, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(A.matvec(x[:, 0]), H @ x[:, 0], rtol=1e-10, atol=1e-13)
    values = eigsh(A, k=3, which="LA", tol=1e-10)[0]
    np.testing.assert_allclose(np.sort(values), np.sort(np.linalg.eigvalsh(H))[-3:], rtol=1e-8)
    assert aslinearoperator(A).dtype == np.float64


def test_float32_follows_parameters():
    model, loss_fn, (X, y) = zoo.triple("cnn-ce")
    model32 = model.float()
    reference = C.GGN(model.double(), loss_fn, (X, y)).to_dense()
    op = C.GGN(model32.float(), loss_fn, (X.float(), y))
    dense = op.to_dense()
    assert dense.dtype == torch.float32 and op.to_scipy().dtype == np.float32
    torch.testing.assert_close(dense.double(), reference, rtol=1e-4, atol=1e-6)
    d = C.diag_ggn(model32.float(), loss_fn, (X.float(), y))
    assert all(t.dtype == torch.float32 for t in d.values())


def test_memory_guard_and_model_unchanged():
    model, loss_fn, data = zoo.triple("mlp-ce")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    op = C.GGN(model, loss_fn, data)
    with pytest.raises(C.DenseTooLargeError, match="GGN"):
        op.to_dense(max_bytes=100)
    C.diag_ggn(model, loss_fn, data)
    C.kfac(model, loss_fn, data)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match=r"expected \(31,\)"):
        op @ torch.zeros(5, dtype=torch.float64)


def test_unsupported_layers_are_named():
    X, y = zoo.triple("mlp-ce")[2]
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 3)).double()
    with pytest.raises(C.UnsupportedLayerError, match=r"'1.weight'.*'1' \(LayerNorm\)"):
        C.kfac(model, nn.CrossEntropyLoss(), (X, y))
    d = C.diag_ggn(model, nn.CrossEntropyLoss(), (X, y), params="weights")  # LayerNorm frozen: fine
    assert set(d) == {"0.weight", "2.weight"}
    # the diagonals fall back to per-example gradients where the hooks cannot work: still exact
    obj = lt.Objective(model, nn.CrossEntropyLoss(), (X, y))
    torch.testing.assert_close(obj.flatten(C.diag_ggn(model, nn.CrossEntropyLoss(), (X, y))), lt.ggn(obj).diagonal())
    shared = nn.Linear(3, 3).double()
    tied = nn.Sequential(shared, nn.Tanh(), shared)
    with pytest.raises(C.UnsupportedLayerError, match="not read exactly once"):
        C.kfac(tied, nn.CrossEntropyLoss(), (X, y))
    obj = lt.Objective(tied, nn.CrossEntropyLoss(), (X, y))
    torch.testing.assert_close(obj.flatten(C.diag_fisher(tied, nn.CrossEntropyLoss(), (X, y))),
                               oracle(tied, nn.CrossEntropyLoss(), (X, y))["empirical"].diagonal())
    with pytest.raises(ValueError, match="true Fisher needs a likelihood"):
        C.Fisher(model, nn.L1Loss(), (X, torch.zeros(12, 3, dtype=torch.float64)))


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("padding", [0, 2, "same", (1, 0)])
@pytest.mark.parametrize("stride", [1, (2, 1)])
def test_conv_patches_equal_unfold(padding, stride):
    from losstools.curvature.layers import Conv2dRule

    dilation = 1 if padding == "same" and stride != 1 else 2
    if padding == "same":
        stride = 1
    conv = nn.Conv2d(2, 3, (3, 2), stride=stride, padding=padding, dilation=dilation)
    x = torch.randn(4, 2, 9, 8)
    out = conv(x)
    patches = Conv2dRule.inputs(conv, x)
    assert patches.shape[2] == out.shape[2] * out.shape[3]
    expected = ((conv.weight.reshape(3, -1) @ patches).reshape(out.shape[0], 3, *out.shape[2:])
                + conv.bias[:, None, None])
    torch.testing.assert_close(expected, out)


def test_layers_off_the_loss_path_and_layers_never_called():
    X, y = zoo.triple("mlp-ce")[2]

    class WithSpare(nn.Module):
        def __init__(self, call_spare):
            super().__init__()
            self.fc, self.spare, self.call_spare = nn.Linear(3, 3), nn.Linear(3, 2), call_spare

        def forward(self, x):
            if self.call_spare:
                self.spare(x)  # computed, then discarded: it does not reach the loss
            return self.fc(x)

    model = WithSpare(True).double()
    d = C.diag_ggn(model, nn.CrossEntropyLoss(), (X, y))
    assert torch.all(d["spare.weight"] == 0) and torch.all(d["spare.bias"] == 0)
    torch.testing.assert_close(lt.Objective(model, nn.CrossEntropyLoss(), (X, y)).flatten(d),
                               C.GGN(model, nn.CrossEntropyLoss(), (X, y)).to_dense().diagonal())
    with pytest.raises(C.UnsupportedLayerError, match=r"'spare.weight'.*not called"):
        C.kfac(WithSpare(False).double(), nn.CrossEntropyLoss(), (X, y))
    d = C.diag_fisher(WithSpare(False).double(), nn.CrossEntropyLoss(), (X, y))  # per-example fallback
    assert torch.all(d["spare.weight"] == 0) and torch.all(d["fc.weight"] > 0)


def test_progress_bar_on_long_passes_only(monkeypatch, capsys):
    from losstools import _progress

    model, loss_fn, (X, y) = zoo.triple("mlp-ce")
    batches = [(X[i : i + 3], y[i : i + 3]) for i in range(0, 12, 3)]
    C.diag_ggn(model, loss_fn, batches)  # far below the 2 s delay: silent
    assert "diagonal" not in capsys.readouterr().err
    monkeypatch.setattr(_progress, "PROGRESS_DELAY", 0.0)
    C.diag_ggn(model, loss_fn, batches)
    assert "GGN diagonal:" in capsys.readouterr().err  # the bar's label (no doubled article in messages)
    C.diag_ggn(model, loss_fn, batches, progress=False)
    assert capsys.readouterr().err == ""
