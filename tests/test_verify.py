"""Verify, then trust: what the engine refuses, and the probes that check its paths (issue 18's categories that
are not a quantity of the zoo: hooks, torch's wrong rules, compiled models, outputs that are not one tensor)."""
import warnings

import pytest
import torch
from torch import nn

import losstools as lt
from losstools import _probe
from losstools import curvature as C

from . import zoo


def data(n=10, d=3, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def hessian_by_finite_differences(obj, eps=1e-6):
    """Central differences of the gradient: the truth where torch's double backward is wrong."""
    E = torch.eye(obj.num_params, dtype=torch.float64)
    return torch.stack([(obj.grad(obj.theta + eps * e) - obj.grad(obj.theta - eps * e)) / (2 * eps) for e in E])


def test_user_hooks_are_refused_and_never_run():
    model, calls = mlp(), []
    model[0].register_forward_hook(lambda m, args, out: calls.append(1))
    with pytest.raises(lt.curvature.HookError, match=r"forward hooks: 0 .*handle.remove\(\)"):
        lt.Objective(model, nn.CrossEntropyLoss(), data())
    scaled = mlp()
    scaled[2].register_forward_hook(lambda m, args, out: 2 * out)  # changes the output: part of the model
    with pytest.raises(lt.curvature.HookError, match="move it into a module's forward"):
        lt.hessian(lt.Objective(scaled, nn.CrossEntropyLoss(), data()))
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, args, out: calls.append(1))
    try:
        with pytest.raises(lt.curvature.HookError, match="global"):
            lt.Objective(mlp(), nn.CrossEntropyLoss(), data())
    finally:
        handle.remove()
    assert calls == []


@pytest.mark.parametrize("kind", ["parametrization", "old hook"])
def test_torchs_wrong_weight_norm_hessian_is_refused_not_returned(kind):
    model = mlp()
    if kind == "parametrization":
        model[0] = torch.nn.utils.parametrizations.weight_norm(model[0])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model[0] = torch.nn.utils.weight_norm(model[0])
    obj = lt.Objective(model, nn.CrossEntropyLoss(), data())
    truth = hessian_by_finite_differences(obj)
    X, y = data()
    autograd = torch.func.jacrev(torch.func.jacrev(lambda t: obj.batch_loss(t, X, y)))(obj.theta)  # double backward
    assert (autograd - truth).abs().max() > 0.05 * truth.abs().max()  # torch's own rule is wrong (the premise)
    for quantity in (lambda: obj.hvp(obj.theta), lambda: lt.hessian(obj), lambda: lt.hessian_diag(obj),
                     lambda: C.Hessian(obj) @ obj.theta):
        with pytest.raises(_probe.VerificationError, match="differs from finite differences of the gradient"):
            quantity()
    torch.testing.assert_close(obj.grad(), torch.func.grad(lambda t: obj.batch_loss(t, X, y))(obj.theta))


def test_a_compiled_model_is_differentiated_through_the_module_it_wraps():
    model = mlp()
    compiled = torch.compile(model)
    obj = lt.Objective(compiled, nn.CrossEntropyLoss(), data())
    plain = lt.Objective(model, nn.CrossEntropyLoss(), data())
    assert obj.grad().abs().max() > 0
    torch.testing.assert_close(obj.grad(), plain.grad(), rtol=0, atol=0)
    torch.testing.assert_close(lt.hessian(obj), hessian_by_finite_differences(plain), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(C.GGN(obj).diagonal(), lt.ggn(plain).diagonal(), rtol=1e-10, atol=1e-12)


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(3, 4), nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(self.body(x))
        return self.head(h), h


def test_the_gauss_newton_family_needs_one_output_tensor_and_says_how():
    obj = lt.Objective(TupleOut().double(), lambda out, y: nn.functional.cross_entropy(out[0], y), data())
    for op in (C.GGN, C.EmpiricalFisher):
        with pytest.raises(ValueError, match="returns a tuple .* wrap the model"):
            op(obj)


def test_nll_after_log_softmax_warns_that_its_gauss_newton_matrix_is_zero():
    model = nn.Sequential(nn.Linear(3, 3), nn.LogSoftmax(-1)).double()
    with pytest.warns(UserWarning, match="NLLLoss is linear in the model's outputs"):
        G = C.GGN(model, nn.NLLLoss(), data())
    assert torch.count_nonzero(G.dense()) == 0  # the warning's claim


def test_forward_passes_that_write_into_their_tensors_are_refused():
    emb = nn.Sequential(nn.Embedding(5, 3, max_norm=0.5), nn.Flatten(), nn.Linear(6, 3)).double()
    before = emb[0].weight.detach().clone()
    tokens = torch.randint(0, 5, (10, 2), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"changes its tensors in place .*max_norm"):
        lt.Objective(emb, nn.CrossEntropyLoss(), (tokens, data()[1]))
    assert torch.equal(emb[0].weight, before)

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls += 1
            return self.fc(x)

    model = Counting().double()
    with pytest.raises(ValueError, match=r"changes its tensors in place \(calls\).*buffer"):
        lt.Objective(model, nn.CrossEntropyLoss(), data())
    assert model.calls.item() == 0


def test_batch_coupled_models_are_refused_on_several_batches():
    X, y = data()
    model = zoo.BatchCoupled().double()
    with pytest.raises(ValueError, match="depends on the other examples of its batch"):
        lt.Objective(model, nn.CrossEntropyLoss(), [(X[:5], y[:5]), (X[5:], y[5:])])


def test_probes_run_once_per_model_structure(monkeypatch):
    """The Objectives a pruning loop builds on one model share the verdicts (the probes' cost is paid once)."""
    monkeypatch.setattr(_probe, "_verdicts", {})
    model, calls = mlp(), []
    original = lt.Objective._product_problem
    monkeypatch.setattr(lt.Objective, "_product_problem", lambda self, kind: calls.append(kind) or original(self, kind))
    for step in range(3):
        with torch.no_grad():
            model[0].weight.mul_(0.9)
        obj = lt.Objective(model, nn.CrossEntropyLoss(), data())
        obj.hvp(obj.theta)
        C.GGN(obj, theta=obj.theta) @ obj.theta
    assert sorted(calls) == ["hessian", "jacobian"]


def test_a_fast_path_that_disagrees_falls_back_with_a_warning(monkeypatch):
    """Break the Linear-chain diagonal on purpose: the probe must catch it and the product path must answer."""
    monkeypatch.setattr(_probe, "_verdicts", {})
    from losstools.curvature import linear_chain

    right = lt.hessian_diag(lt.Objective(mlp(), nn.CrossEntropyLoss(), data()))
    monkeypatch.setattr(_probe, "_verdicts", {})
    original = linear_chain.diagonal
    monkeypatch.setattr(linear_chain, "diagonal", lambda chain, theta, out, chunk: original(chain, theta, out, chunk)
                        or out.mul_(1.01))
    H = C.Hessian(lt.Objective(mlp(), nn.CrossEntropyLoss(), data()))
    with pytest.warns(_probe.PathFallbackWarning, match="structured Linear-chain Hessian .diagonal. disagreed"):
        diag = H.diagonal()
    assert H.paths["diagonal"] != "structured Linear chain"
    torch.testing.assert_close(diag, right, rtol=1e-12, atol=1e-14)



def test_a_zero_hessian_product_is_not_mistaken_for_a_wrong_rule():
    """A dead ReLU unit makes H v exactly 0 along the probe's direction; finite differences then give round-off, not 0
    (hypothesis found this: widths [1, 1], one example, ReLU)."""
    from .conftest import tiny_classification, tiny_mlp

    X, y = tiny_classification(n=1, d=2, c=3)
    obj = lt.Objective(tiny_mlp([2, 1, 1, 3], "relu"), nn.CrossEntropyLoss(), (X, y))
    H = lt.hessian(obj)
    torch.testing.assert_close(H, hessian_by_finite_differences(obj), rtol=1e-6, atol=1e-8)
