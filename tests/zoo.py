"""A registry of models users write, with their loss and data, and float64 oracles that share no code
with losstools (plain autograd on the model's own parameters, on all the data at once).

Each case is ``Case(model, loss_fn, data, params)``; ``data`` is an (X, y) pair or a list of uneven
batches. The oracles differentiate ``loss_fn(model(X_all), y_all)`` twice with ``torch.autograd``
(reverse-over-reverse), so tied weights and reused modules are handled by PyTorch itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.utils.prune
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.utils.parametrizations import spectral_norm

from .conftest import tiny_classification, tiny_mlp, tiny_regression

DT = torch.float64


@dataclass
class Case:
    model: nn.Module
    loss_fn: Callable
    data: object
    params: object = None
    likelihood: bool = True  # the true Fisher is defined (CE / BCE-with-logits / MSE without weights)
    layers: bool = True  # K-FAC applies (selected parameters in Linear / Conv2d layers, each called once)
    tags: set = field(default_factory=set)
    independent: bool = True  # the model treats the examples of a batch independently (per-example gradients exist)
    paths: dict = field(default_factory=dict)  # the path the engine must choose, e.g. {"ggn.diagonal": "products"}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _split(X, y, sizes=(5, 2, 4)):
    """Uneven batches (a DataLoader with a ragged last batch behaves the same)."""
    out, start = [], 0
    for s in sizes:
        out.append((X[start : start + s], y[start : start + s]))
        start += s
    return out


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.block, self.out = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        return self.out(h + torch.nn.functional.gelu(self.block(h)))


class TiedEmbedding(nn.Module):
    """A token model whose output layer shares the embedding's weight (weight tying)."""

    def __init__(self, vocab=5, dim=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tokens):
        return self.head(torch.tanh(self.mix(self.emb(tokens).mean(1))))


class Registered(nn.Module):
    """One module registered under two names (a and b), called twice."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = self.a
        self.out = nn.Linear(3, 3)

    def forward(self, x):
        return self.out(self.b(torch.tanh(self.a(x))))


class Attention(nn.Module):
    def __init__(self, dim=4, heads=2, classes=3):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, classes)

    def forward(self, x):
        h, _ = self.mha(x, x, x, need_weights=False)
        return self.out(self.norm(x + h).mean(1))


class ConvAttention(nn.Module):
    """Patches of a Conv2d as tokens for multi-head attention (a vision-transformer stem)."""

    def __init__(self):
        super().__init__()
        self.patches, self.attention = nn.Conv2d(2, 4, 3, stride=2), Attention()

    def forward(self, x):
        return self.attention(self.patches(x).flatten(2).transpose(1, 2))


class SDPA(nn.Module):
    """Scaled-dot-product attention called directly (the fused CPU kernel has no second derivative)."""

    def __init__(self, dim=4, classes=3):
        super().__init__()
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, classes)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        return self.out(torch.nn.functional.scaled_dot_product_attention(q, k, v).mean(1))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.out = nn.LSTM(3, 4, batch_first=True), nn.Linear(4, 3)

    def forward(self, x):
        return self.out(self.lstm(x)[0][:, -1])


class Tempered(nn.Sequential):
    """A Sequential subclass with its own forward: a temperature and a skip connection around the chain."""

    def forward(self, x):
        return super().forward(x) / 2.0 + x


class MaskedLinear(nn.Linear):
    """A pruning researcher's masked Linear: the weight times a fixed 0/1 mask."""

    def __init__(self, m, n, generator):
        super().__init__(m, n)
        self.register_buffer("mask", (torch.rand(n, m, generator=generator) > 0.4).to(self.weight.dtype))

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight * self.mask, self.bias)


class TiedAutoencoder(nn.Module):
    """The decoder is the encoder's weight transposed, used outside the encoder's own call."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(3, 2)
        self.dec_bias = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return torch.nn.functional.linear(torch.tanh(self.enc(x)), self.enc.weight.t(), self.dec_bias)


class HeadBeforeEmbedding(nn.Module):
    """An output head tied to an embedding that is registered after it (the head owns the canonical name)."""

    def __init__(self, vocab=5, dim=3):
        super().__init__()
        self.head = nn.Linear(dim, vocab, bias=False)
        self.emb = nn.Embedding(vocab, dim)
        self.emb.weight = self.head.weight

    def forward(self, tokens):
        return self.head(torch.tanh(self.emb(tokens).mean(1)))


class SharedParameter(nn.Module):
    """Two Linear layers holding one Parameter."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


class BatchCoupled(nn.Module):
    """Batch statistics in the forward (a functional batch_norm in training mode): examples are coupled."""

    def __init__(self):
        super().__init__()
        self.inp, self.out = nn.Linear(3, 4), nn.Linear(4, 3)

    def forward(self, x):
        h = self.inp(x)
        return self.out(torch.tanh(torch.nn.functional.batch_norm(h, None, None, training=True)))


def _conv():
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.Conv2d(3, 2, 2, dilation=2, padding=1), nn.MaxPool2d(2), nn.Dropout(0.3), nn.Flatten(),
                         nn.Linear(2, 3))


class TwoBranch(nn.Module):
    """Not a Sequential: a residual MLP with a nested module and an activation between branches."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 4)
        self.block = nn.ModuleDict({"fc": nn.Linear(4, 4)})
        self.head = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        return self.head(h + torch.sigmoid(self.block["fc"](h)))


def tiny_cnn():
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=1), nn.Tanh(),
                         nn.Conv2d(3, 2, 2, padding=0, dilation=2, bias=False), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 1 * 1, 3)).double()


class SequenceNet(nn.Module):
    """A Linear applied at every position of a (B, T, I) input: per-example gradients sum over T."""

    def __init__(self):
        super().__init__()
        self.proj, self.out = nn.Linear(3, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.proj(x)).mean(1))


def _pruned(model: nn.Module) -> nn.Module:
    """``torch.nn.utils.prune``'s mask on the first layer (a forward pre-hook computes weight = weight_orig * mask)."""
    torch.nn.utils.prune.random_unstructured(model[0], "weight", amount=0.4)
    return model


def cases() -> dict[str, Case]:
    """Fresh models and data (seeded) for every case; every model in eval mode, float64."""
    torch.manual_seed(0)
    g = _gen()
    X = torch.randn(11, 3, generator=g, dtype=DT)
    y = torch.randint(0, 3, (11,), generator=g)
    Y3 = torch.randn(11, 3, generator=g, dtype=DT)
    Yb = (torch.rand(11, 2, generator=g) > 0.5).to(DT)
    soft = torch.softmax(torch.randn(11, 3, generator=g, dtype=DT), 1)
    y_ign = y.clone()
    y_ign[[1, 4, 5]] = -1
    seq = torch.randn(11, 4, 4, generator=g, dtype=DT)
    seq3 = torch.randn(11, 4, 3, generator=g, dtype=DT)
    img = torch.randn(11, 2, 6, 6, generator=g, dtype=DT)
    tokens = torch.randint(0, 5, (11, 4), generator=g)
    weights = torch.tensor([0.2, 3.0, 1.0], dtype=DT)
    act = nn.Tanh()
    shared = nn.Linear(3, 3)
    g2 = torch.Generator().manual_seed(2)
    Xc = torch.randn(12, 2, 5, 5, dtype=DT, generator=g2)
    Xs = torch.randn(12, 4, 3, dtype=DT, generator=g2)

    def mlp(a=nn.Tanh, sizes=(3, 4, 3)):
        layers = []
        for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(m, n)] + ([a()] if i < len(sizes) - 2 else [])
        return nn.Sequential(*layers)

    frozen = mlp(nn.Sigmoid, (3, 4, 4, 3))
    frozen[2].weight.requires_grad_(False)
    conv = _conv()
    conv[1].running_mean.uniform_(-0.5, 0.5, generator=g)
    conv[1].running_var.uniform_(0.5, 1.5, generator=g)

    raw = {
        "mlp-tanh-ce": Case(mlp(), nn.CrossEntropyLoss(), (X, y)),
        "mlp-relu-mse-loader": Case(mlp(nn.ReLU), nn.MSELoss(), _split(X, Y3)),
        "mlp-sigmoid-bce": Case(mlp(nn.Sigmoid, (3, 4, 2)), nn.BCEWithLogitsLoss(), (X, Yb)),
        "mlp-gelu-weighted-ce-loader": Case(mlp(nn.GELU), nn.CrossEntropyLoss(weight=weights), _split(X, y),
                                            likelihood=False),
        "mlp-ignore-index-loader": Case(mlp(), nn.CrossEntropyLoss(ignore_index=-1), _split(X, y_ign)),
        "mlp-soft-labels": Case(mlp(), nn.CrossEntropyLoss(), (X, soft), likelihood=False),
        "reused-activation": Case(nn.Sequential(nn.Linear(3, 4), act, nn.Linear(4, 4), act, nn.Linear(4, 3)),
                                  nn.CrossEntropyLoss(), (X, y)),
        "reused-linear": Case(nn.Sequential(shared, nn.Tanh(), shared), nn.CrossEntropyLoss(), (X, y), layers=False),
        "registered-twice": Case(Registered(), nn.CrossEntropyLoss(), (X, y), layers=False),
        "tied-embedding": Case(TiedEmbedding(), nn.CrossEntropyLoss(),
                               (tokens, torch.randint(0, 5, (11,), generator=g)), layers=False),
        "residual": Case(Residual(), nn.CrossEntropyLoss(), _split(X, y)),
        "conv-bn-pool-dropout": Case(conv, nn.CrossEntropyLoss(), (img, y), params="weights"),
        "layernorm": Case(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 3)),
                          nn.CrossEntropyLoss(), (X, y), layers=False),
        "conv-layernorm": Case(nn.Sequential(nn.Conv2d(2, 2, 3, stride=2), nn.Flatten(), nn.LayerNorm(8), nn.Tanh(),
                                             nn.Linear(8, 3)), nn.CrossEntropyLoss(), _split(img, y), layers=False),
        "conv-attention": Case(ConvAttention(), nn.CrossEntropyLoss(), (img, y), layers=False),
        "lstm": Case(Recurrent(), nn.CrossEntropyLoss(), (seq3, y), layers=False),
        "multihead-attention": Case(Attention(), nn.CrossEntropyLoss(), (seq, y), layers=False),
        "sdpa": Case(SDPA(), nn.MSELoss(), (seq, Y3), tags={"sequence"}),
        "frozen-parameters": Case(frozen, nn.CrossEntropyLoss(), (X, y)),
        "callable-loss": Case(mlp(), lambda out, t: ((out - t) ** 2).sum(1).mean(), (X, Y3), likelihood=False),
        # what a fast path must not assume from a type (issue 18): each is right by the generic path
        "sequential-subclass-forward": Case(Tempered(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)),
                                            nn.CrossEntropyLoss(), (X, y),
                                            paths={"hessian.diagonal": "forward-over-reverse tensor blocks",
                                                   "ggn.product": "Jacobian products"}),
        "masked-linear": Case(nn.Sequential(MaskedLinear(3, 4, g), nn.Tanh(), nn.Linear(4, 3)), nn.CrossEntropyLoss(),
                              _split(X, y), layers=False,
                              paths={"ggn.diagonal": "per-example gradients",
                                     "hessian.diagonal": "forward-over-reverse tensor blocks"}),
        "masked-linear-weights": Case(nn.Sequential(MaskedLinear(3, 4, g), nn.Tanh(), nn.Linear(4, 3)),
                                      nn.CrossEntropyLoss(), (X, y), params="weights", layers=False,
                                      paths={"ggn.diagonal": "per-example gradients"}),
        "tied-autoencoder": Case(TiedAutoencoder(), nn.MSELoss(), (X, Y3), layers=False,
                                 paths={"ggn.diagonal": "per-example gradients"}),
        "head-tied-to-later-embedding": Case(HeadBeforeEmbedding(), nn.CrossEntropyLoss(),
                                             (tokens, torch.randint(0, 5, (11,), generator=g)), layers=False,
                                             paths={"ggn.diagonal": "per-example gradients"}),
        "shared-parameter": Case(SharedParameter(), nn.CrossEntropyLoss(), _split(X, y), layers=False,
                                 paths={"ggn.diagonal": "per-example gradients"}),
        "batch-coupled": Case(BatchCoupled(), nn.CrossEntropyLoss(), (X, y), layers=False, independent=False,
                              paths={"ggn.diagonal": "products"}),
        "batch-coupled-subset": Case(BatchCoupled(), nn.CrossEntropyLoss(), (X, y), params=r"^out\.", layers=False,
                                     independent=False, paths={"ggn.diagonal": "products"}),
        "torch-prune-mask": Case(_pruned(mlp()), nn.CrossEntropyLoss(), (X, y), layers=False,
                                 paths={"ggn.diagonal": "per-example gradients"}),
        "spectral-norm-eval": Case(nn.Sequential(spectral_norm(nn.Linear(3, 4)), nn.Tanh(), nn.Linear(4, 3)),
                                   nn.CrossEntropyLoss(), (X, y), layers=False,
                                   paths={"ggn.diagonal": "per-example gradients"}),
        "mlp-huber": Case(mlp(), nn.HuberLoss(delta=0.5), (X, Y3), likelihood=False),
        "mlp-l1": Case(mlp(), nn.L1Loss(), (X, Y3), likelihood=False),
        # the small models of the approximate-curvature tests (K-FAC, estimators, anchors)
        "mlp-ce": Case(tiny_mlp(), nn.CrossEntropyLoss(), tiny_classification()),
        "mlp-mse": Case(tiny_mlp(), nn.MSELoss(), tiny_regression(k=3)),
        "branch-ce": Case(TwoBranch(), nn.CrossEntropyLoss(), tiny_classification()),
        "cnn-ce": Case(tiny_cnn(), nn.CrossEntropyLoss(), (Xc, tiny_classification()[1])),
        "seq-ce": Case(SequenceNet(), nn.CrossEntropyLoss(), (Xs, tiny_classification()[1])),
        "chain-stock": Case(mlp(), nn.CrossEntropyLoss(), (X, y),
                            paths={"hessian.diagonal": "structured Linear chain", "ggn.product": "Linear chain by hand",
                                   "ggn.diagonal": "per-layer hooks"}),
    }
    for case in raw.values():
        case.model = case.model.to(DT).eval()
    return raw


def triple(name: str) -> tuple:
    """``(model, loss_fn, data)`` of a fresh case."""
    case = cases()[name]
    return case.model, case.loss_fn, case.data


# ----------------------------------------------------------------------- oracles
def _all_data(data):
    if isinstance(data, tuple):
        return data
    return tuple(torch.cat(parts) for parts in zip(*data))


def _leaves(model: nn.Module, params) -> tuple[nn.Module, list[str], list[torch.Tensor]]:
    """A copy of the model and its selected parameters (deduplicated, model order) as autograd leaves."""
    import losstools as lt

    model = getattr(model, "_orig_mod", model)  # a compiled model computes its module's function
    names = lt.select_parameters(model, params)
    named = dict(model.named_parameters())
    return model, names, [named[n] for n in names]


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def oracle(case: Case) -> dict[str, torch.Tensor]:
    """loss, grad (P,), Hessian (P, P), GGN (P, P) and empirical Fisher (P, P) by plain autograd."""
    model, names, leaves = _leaves(case.model, case.params)
    X, y = _all_data(case.data)
    with sdpa_kernel(SDPBackend.MATH):
        out = model(X)
        loss = case.loss_fn(out, y)
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        g = _flat(grads)
        P = g.numel()
        H = torch.stack([_flat(torch.autograd.grad(g[i], leaves, retain_graph=True, allow_unused=True,
                                                   materialize_grads=True)) for i in range(P)])
        # GGN = J^T (d^2 L / d out^2) J with J the Jacobian of all outputs
        flat_out = out.reshape(-1)
        J = torch.stack([_flat(torch.autograd.grad(flat_out[i], leaves, retain_graph=True, allow_unused=True,
                                                   materialize_grads=True)) for i in range(flat_out.numel())])
        o = out.detach().requires_grad_(True)
        go = torch.autograd.grad(case.loss_fn(o, y), o, create_graph=True)[0].reshape(-1)
        H_out = torch.stack([torch.autograd.grad(go[i], o, retain_graph=True)[0].reshape(-1)
                             for i in range(go.numel())])
        G = J.T @ H_out @ J
        # empirical Fisher: example n's term of the loss's sum, l_n = Z * L restricted to example n ... with
        # Z the loss's normaliser; for a per-example mean loss, l_n = loss on example n alone
        per = []
        for n in range(len(X) if case.independent else 0):  # no example's own gradient when the batch couples them
            ln = case.loss_fn(model(X[n : n + 1]), y[n : n + 1]) * _normaliser(case.loss_fn, y[n : n + 1])
            per.append(_flat(torch.autograd.grad(ln, leaves, allow_unused=True, materialize_grads=True)))
        per = torch.stack(per) if per else torch.full((0, P), torch.nan, dtype=DT)
        E = per.T @ per / _normaliser(case.loss_fn, y)
    return {"loss": loss.detach(), "grad": g.detach(), "hessian": H.detach(), "ggn": G.detach(),
            "empirical": E.detach(), "names": names}


def _normaliser(loss_fn, y) -> float:
    """What the loss's mean divides by, written out for the losses of the zoo."""
    if isinstance(loss_fn, nn.CrossEntropyLoss) and not y.is_floating_point():
        keep = y != loss_fn.ignore_index
        w = torch.ones(3, dtype=DT) if loss_fn.weight is None else loss_fn.weight
        return float((w[torch.where(keep, y, 0)] * keep).sum()) if loss_fn.weight is not None else float(keep.sum())
    if isinstance(loss_fn, (nn.MSELoss, nn.BCEWithLogitsLoss, nn.L1Loss, nn.HuberLoss)):
        return float(y.numel())
    return float(len(y))
