"""Optional cross-checks against BackPACK and curvlinops (skipped when they are not installed)."""
import copy

import pytest
import torch
from torch import nn

import losstools as lt
from losstools import curvature as C

from . import zoo


@pytest.mark.parametrize("name", ["mlp-ce", "mlp-mse", "cnn-ce"])
def test_backpack_diagonals(name):
    backpack = pytest.importorskip("backpack", reason="BackPACK (backpack-for-pytorch) is not installed")
    from backpack.extensions import DiagGGNExact, DiagHessian, SumGradSquared

    model, loss_fn, (X, y) = zoo.triple(name)
    net, lossb = backpack.extend(copy.deepcopy(model)), backpack.extend(copy.deepcopy(loss_fn))
    with backpack.backpack(DiagGGNExact(), DiagHessian(), SumGradSquared()):
        lossb(net(X), y).backward()
    ggn, ef = C.diag_ggn(model, loss_fn, (X, y)), C.diag_fisher(model, loss_fn, (X, y))
    hessian_diag = C.Hessian(model, loss_fn, (X, y)).diagonal()
    obj = lt.Objective(model, loss_fn, (X, y))
    for (n, p), ours_h in zip(net.named_parameters(), obj.unflatten(hessian_diag).values()):
        torch.testing.assert_close(ggn[n], p.diag_ggn_exact)
        torch.testing.assert_close(ours_h, p.diag_h)
        # BackPACK squares the gradients of the mean loss, g_n / Z (Z = N, or N K for MSE's K outputs);
        # ours is (1/Z) sum_n g_n^2 with g_n the gradient of example n's term of the loss's sum
        torch.testing.assert_close(ef[n], p.sum_grad_squared * y.numel() if isinstance(loss_fn, nn.MSELoss)
                                   else p.sum_grad_squared * len(X))


@pytest.mark.parametrize("name", ["mlp-ce", "cnn-ce", "branch-ce"])
def test_curvlinops_operators_and_kfac(name):
    curvlinops = pytest.importorskip("curvlinops", reason="curvlinops-for-pytorch is not installed")
    model, loss_fn, data = zoo.triple(name)
    params = [p for p in model.parameters()]
    batches = [(data[0][:5], data[1][:5]), (data[0][5:], data[1][5:])]
    ours = {
        "GGN": (C.GGN, curvlinops.GGNLinearOperator, {}),
        "Hessian": (C.Hessian, curvlinops.HessianLinearOperator, {}),
        "EF": (C.EmpiricalFisher, curvlinops.EFLinearOperator, {}),
    }
    eye = torch.eye(sum(p.numel() for p in params), dtype=torch.float64)
    for key, (mine, theirs, kwargs) in ours.items():
        reference = theirs(model, loss_fn, params, batches, **kwargs) @ eye
        torch.testing.assert_close(mine(model, loss_fn, batches).to_dense(), reference, msg=key)
    K = curvlinops.KFACLinearOperator(model, loss_fn, params, batches, fisher_type="type-2",
                                      separate_weight_and_bias=False)
    torch.testing.assert_close(C.kfac(model, loss_fn, batches).to_dense(), K @ eye)
