"""Every quantity of the curvature engine on every model of the zoo against plain-autograd float64 oracles.

A quantity is either right (float64 error < 1e-8 relative to its scale) or refused with an error that
names the cause; the user's model is never changed.
"""
import functools

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import eigsh

import losstools as lt
from losstools import curvature as C

from . import zoo

NAMES = list(zoo.cases())
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@functools.lru_cache(maxsize=None)
def oracle(name):
    return zoo.oracle(zoo.cases()[name])


def close(actual, expected, what=""):
    expected = expected.to(actual.device)
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=1e-8, atol=1e-10 * scale, msg=lambda m: f"{what}: {m}")


def objective(case, device="cpu", **kw):
    data = case.data
    if device != "cpu":
        case.model.to(device)
    return lt.Objective(case.model, case.loss_fn, data, case.params, **kw)


def probes(P, k=3):
    return torch.randn(P, k, dtype=torch.float64, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["auto", "forward where it is right"])
@pytest.mark.parametrize("name", NAMES)
def test_loss_gradient_and_hessian_vector_products(name, mode, device):
    case, o = zoo.cases()[name], oracle(name)
    obj = objective(case, device)
    if mode != "auto":
        if not obj.forward_mode_ok:
            pytest.skip("forward mode is not right for this model (see test_paths_are_chosen_per_model)")
        obj = objective(case, device, ad_mode="forward")
    assert obj.names == o["names"]
    close(obj.loss(), o["loss"], "loss")
    close(obj.grad(), o["grad"], "gradient")
    V = probes(obj.num_params).to(device)
    close(obj.hvp(V), o["hessian"] @ V, f"H V ({obj.ad_mode})")
    close(obj.hvp(V[:, 0]), o["hessian"] @ V[:, 0], f"H v ({obj.ad_mode})")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_hessian_operator_dense_diagonal_blocks(name, device):
    case, o = zoo.cases()[name], oracle(name)
    obj = objective(case, device)
    H = C.Hessian(obj)
    V = probes(obj.num_params).to(device)
    close(H @ V, o["hessian"] @ V, "Hessian @ V")
    close(H @ V[:, 1], o["hessian"] @ V[:, 1], "Hessian @ v")
    close(H.dense(), o["hessian"], "Hessian.dense")
    close(lt.hessian(obj), o["hessian"], "lt.hessian")
    close(lt.hessian_diag(obj), o["hessian"].diagonal(), "lt.hessian_diag")
    blocks = lt.hessian_blocks(obj)
    assert list(blocks) == obj.names
    for n, s in obj.slices().items():
        close(blocks[n], o["hessian"][s, s], f"block {n}")
    top = eigsh(H.to_scipy(), k=1, which="LA", tol=1e-12)[0][0]
    assert abs(top - torch.linalg.eigvalsh(o["hessian"])[-1].item()) < 1e-8 * max(1.0, abs(top))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_gauss_newton_fisher_and_empirical_fisher(name, device):
    case, o = zoo.cases()[name], oracle(name)
    obj = objective(case, device)
    G = C.GGN(obj)
    V = probes(obj.num_params).to(device)
    close(G @ V, o["ggn"] @ V, "GGN @ V")
    close(G @ V[:, 2], o["ggn"] @ V[:, 2], "GGN @ v")
    close(lt.ggn(obj), o["ggn"], "lt.ggn")
    close(G.diagonal(), o["ggn"].diagonal(), "GGN diagonal")
    if case.likelihood:
        F = C.Fisher(obj)
        close(F @ V, o["ggn"] @ V, "exact Fisher = GGN")
        close(obj.flatten(C.diag_ggn(case.model, case.loss_fn, case.data, params=case.params)),
              o["ggn"].diagonal(), "diag_ggn")
    if not case.independent:  # an example's own gradient is undefined when the batch couples the examples
        with pytest.raises(ValueError, match="depends on the other examples of its batch"):
            C.EmpiricalFisher(obj)
        return
    E = C.EmpiricalFisher(obj)
    close(E @ V, o["empirical"] @ V, "empirical Fisher @ V")
    close(E @ V[:, 0], o["empirical"] @ V[:, 0], "empirical Fisher @ v")
    close(E.diagonal(), o["empirical"].diagonal(), "empirical Fisher diagonal")
    close(obj.flatten(C.diag_fisher(case.model, case.loss_fn, case.data, params=case.params)).cpu(),
          o["empirical"].diagonal(), "diag_fisher")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_kfac_where_its_layers_are_or_a_clear_refusal(name, device):
    case = zoo.cases()[name]
    obj = objective(case, device)
    if not case.layers:
        with pytest.raises(C.UnsupportedLayerError, match="K-FAC"):
            C.KFAC(obj, progress=False)
        return
    K = C.KFAC(obj, progress=False).dense()
    assert torch.isfinite(K).all() and torch.allclose(K, K.T)
    assert torch.linalg.eigvalsh(K).min() >= -1e-10 * K.abs().max()


@pytest.mark.parametrize("name", NAMES)
def test_the_users_model_is_never_changed(name):
    case = zoo.cases()[name]
    model = case.model

    def snapshot():
        return ([(n, id(p), type(p), p.requires_grad, p.detach().clone()) for n, p in
                 model.named_parameters(remove_duplicate=False)],
                [(n, b.clone()) for n, b in model.named_buffers(remove_duplicate=False)],
                [m.training for m in model.modules()])

    before, rng = snapshot(), torch.random.get_rng_state()
    obj = objective(case)
    obj.hvp(probes(obj.num_params)[:, 0])
    C.GGN(obj).diagonal()
    lt.hessian(obj)
    after = snapshot()
    assert torch.equal(torch.random.get_rng_state(), rng)  # the probes use forked random states
    assert [e[:4] for e in before[0]] == [e[:4] for e in after[0]]
    assert all(torch.equal(a[4], b[4]) for a, b in zip(before[0], after[0]))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(before[1], after[1])) and before[2] == after[2]
    again = objective(case)  # a second Objective sees the same parameters
    assert again.names == obj.names and torch.equal(again.theta, obj.theta)


def test_paths_are_chosen_per_model():
    cases = zoo.cases()
    assert objective(cases["mlp-tanh-ce"]).forward_mode_ok and objective(cases["lstm"]).forward_mode_ok
    assert not objective(cases["multihead-attention"]).forward_mode_ok  # no forward AD in attention kernels
    assert objective(cases["sdpa"]).forward_mode_ok  # the math kernel has forward mode
    assert objective(cases["layernorm"]).ad_mode == "reverse"  # products: reverse-over-reverse by default
    assert objective(cases["mlp-tanh-ce"]).ad_mode == "reverse"
    assert objective(cases["conv-bn-pool-dropout"]).ad_mode == "forward"  # convolutions: forward where it is right
    assert objective(cases["conv-layernorm"]).ad_mode == "forward"  # forward-over-reverse is right for LayerNorm
    assert objective(cases["conv-attention"]).ad_mode == "reverse"  # ... but not implemented for attention
    for name, by_hand in (("mlp-tanh-ce", True), ("frozen-parameters", True), ("conv-bn-pool-dropout", False)):
        G = C.GGN(objective(cases[name]))
        G @ probes(G.num_params)
        assert (G._chain is not None) == by_hand  # GGN products through Linear chains are taken by hand
    assert not objective(cases["layernorm"], ad_mode="reverse").forward_mode_ok
    with pytest.raises(ValueError, match="unknown ad_mode .backward.; choose one of"):
        objective(cases["layernorm"], ad_mode="backward")


@pytest.mark.parametrize("name", [n for n in NAMES if zoo.cases()[n].paths])
def test_the_engine_takes_the_path_that_applies(name):
    """A fast path is taken only where it proves that it applies (structure, then a float64 probe)."""
    case = zoo.cases()[name]
    obj = objective(case)
    H, G = C.Hessian(obj), C.GGN(obj)
    H.diagonal()
    G @ probes(obj.num_params)
    G.diagonal()
    taken = {f"hessian.{k}": v for k, v in H.paths.items()} | {f"ggn.{k}": v for k, v in G.paths.items()}
    assert {k: taken[k] for k in case.paths} == case.paths


def test_zoo_oracle_is_checked_against_finite_differences():
    """The oracles share no code with losstools; check one with central differences of the gradient."""
    for name in ("layernorm", "tied-embedding", "mlp-gelu-weighted-ce-loader"):
        case, o = zoo.cases()[name], oracle(name)
        obj = objective(case)
        eps, P = 1e-6, obj.num_params
        fd = torch.stack([(obj.grad(obj.theta + eps * e) - obj.grad(obj.theta - eps * e)) / (2 * eps)
                          for e in torch.eye(P, dtype=torch.float64)])
        np.testing.assert_allclose(fd.numpy(), o["hessian"].numpy(), rtol=1e-5, atol=1e-7)
