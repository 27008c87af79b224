"""Diagonals of the Gauss-Newton matrix and of the Fisher, per parameter tensor, at dataset scale.

All are of the **mean** loss L = (1/N) sum_n l_n over the N examples of ``data``:

- exact GGN diagonal: diag( (1/N) sum_n J_n^T H_n J_n ), H_n the Hessian of l_n w.r.t. the outputs.
  For softmax cross-entropy this is the diagonal of the true Fisher (an exact sum over classes).
- Monte-Carlo GGN / Fisher: the same with H_n replaced by g g^T, g = d l_n(f, y~) / d f for labels
  y~ drawn from the model's predictive distribution (cross-entropy: categorical; BCE-with-logits:
  Bernoulli; MSE: Gaussian with the variance that makes it unbiased), averaged over ``mc_samples``.
- empirical Fisher: (1/N) sum_n (d l_n / d theta)^2 with the data's own labels.

Computed per example with ``torch.func`` (vmap over examples of vector-Jacobian products), so it
works for any model that ``functional_call`` can run; examples are processed in chunks.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.func import grad, jacrev, vjp, vmap

from ..objective import Batch, Objective, ParamFilter

_CHUNK_BYTES = 2**27


def _generator(seed: int | torch.Generator | None, device: torch.device) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator(device=device).manual_seed(0 if seed is None else int(seed))


def _output_hessian_sqrt(loss_fn: Callable, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """S_n with S_n S_n^T = Hessian of the per-example loss w.r.t. the outputs; shape (B, C, C)."""

    def per_example(o, t):
        return loss_fn(o.unsqueeze(0), t.unsqueeze(0))

    H = vmap(jacrev(jacrev(per_example)))(out, y).reshape(len(out), out[0].numel(), -1)
    values, vectors = torch.linalg.eigh((H + H.transpose(1, 2)) / 2)
    return vectors * values.clamp_min(0).sqrt().unsqueeze(1)


def _sampled_output_gradients(loss_fn, out: torch.Tensor, samples: int, gen: torch.Generator) -> torch.Tensor:
    """d l_n(f, y~)/d f for ``samples`` labels y~ ~ p(y | f) per example, scaled by 1/sqrt(samples): (B, C, S)."""
    flat = out.reshape(len(out), -1)
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        p = torch.softmax(flat, -1)
        labels = torch.multinomial(p, samples, replacement=True, generator=gen)  # (B, S)
        onehot = torch.nn.functional.one_hot(labels, flat.shape[1]).to(p.dtype)  # (B, S, C)
        g = p.unsqueeze(1) - onehot
    elif isinstance(loss_fn, nn.BCEWithLogitsLoss):
        p = torch.sigmoid(flat)
        draws = (torch.rand((samples, *p.shape), generator=gen, device=p.device, dtype=p.dtype) < p).to(p.dtype)
        g = (p.unsqueeze(0) - draws).transpose(0, 1) / flat.shape[1] ** 0.5  # (B, S, C); mean over C outputs
    elif isinstance(loss_fn, nn.MSELoss):
        K = flat.shape[1]
        noise = torch.randn((len(flat), samples, K), generator=gen, device=flat.device, dtype=flat.dtype)
        g = (2.0 / K) * (K / 2.0) ** 0.5 * noise  # (2/K)(f - y~), y~ ~ N(f, K/2 I)
    else:
        raise ValueError(
            f"Monte-Carlo sampling needs a likelihood: supported losses are nn.CrossEntropyLoss, "
            f"nn.BCEWithLogitsLoss and nn.MSELoss, not {type(loss_fn).__name__}; use mc_samples=None (exact)"
        )
    return g.transpose(1, 2) / samples**0.5


def _per_example_squares(obj: Objective, theta: torch.Tensor, X: torch.Tensor, vectors: Callable) -> torch.Tensor:
    """sum_n sum_k (J_n^T V_n[:, k])^2 over one batch, with V_n = vectors(out, rows) of shape (B, C, K)."""
    total = torch.zeros_like(theta)
    outputs_per_example = obj.outputs(theta, X[:1]).numel()
    chunk = max(1, _CHUNK_BYTES // (4 * outputs_per_example * theta.numel() * theta.element_size()))
    for start in range(0, len(X), chunk):
        rows = slice(start, start + chunk)
        Xc = X[rows]

        def single_output(th, x):
            return obj.outputs(th, x.unsqueeze(0)).reshape(-1)

        out = vmap(single_output, in_dims=(None, 0))(theta, Xc)  # (B, C)
        V = vectors(out, rows)  # (B, C, K)

        def pullback(x, v):
            _, back = vjp(lambda th: single_output(th, x), theta)
            return vmap(lambda col: back(col)[0], in_dims=1)(v)  # (K, P)

        total += vmap(pullback)(Xc, V).pow(2).sum((0, 1))
    return total


def _diagonal(obj: Objective, theta: torch.Tensor, batch_vectors: Callable) -> dict[str, torch.Tensor]:
    total = torch.zeros_like(theta)
    for X, y in obj.batches():
        total += _per_example_squares(obj, theta, X, lambda out, rows: batch_vectors(out, y[rows]))
    return obj.unflatten(obj._check_finite(total / obj.num_examples, "curvature diagonal"))


def diag_ggn(model: nn.Module, loss_fn: Callable, data: Batch | Iterable[Batch], mc_samples: int | None = None,
             params: ParamFilter = None, seed: int | torch.Generator | None = 0) -> dict[str, torch.Tensor]:
    """Diagonal of the GGN of the mean loss, ``{name: tensor shaped like the parameter}``.

    Exact when ``mc_samples`` is None (for softmax cross-entropy: the true Fisher diagonal);
    otherwise a Monte-Carlo estimate with ``mc_samples`` sampled labels per example, drawn from
    ``seed`` (an int or a ``torch.Generator`` on the parameters' device). Unbiased.
    ``params`` selects parameters as in :class:`~losstools.Objective`; the model is not changed.
    """
    obj = Objective(model, loss_fn, data, params)
    theta = obj.theta
    if mc_samples is None:
        return _diagonal(obj, theta, lambda out, y: _output_hessian_sqrt(obj.loss_fn, out, y))
    if int(mc_samples) < 1:
        raise ValueError(f"mc_samples must be a positive integer or None (exact), got {mc_samples}")
    gen = _generator(seed, obj.device)
    return _diagonal(obj, theta, lambda out, y: _sampled_output_gradients(loss_fn, out, int(mc_samples), gen))


def diag_fisher(model: nn.Module, loss_fn: Callable, data: Batch | Iterable[Batch], kind: str = "empirical",
                mc_samples: int = 1, params: ParamFilter = None,
                seed: int | torch.Generator | None = 0) -> dict[str, torch.Tensor]:
    """Diagonal of a Fisher matrix of the mean loss, ``{name: tensor shaped like the parameter}``.

    ``kind``: ``"empirical"`` (mean of squared per-example gradients with the data's labels),
    ``"true"`` (exact expectation over the model's predictive distribution; equals the exact GGN
    diagonal for cross-entropy) or ``"mc"`` (``mc_samples`` sampled labels per example).
    """
    if kind == "true":
        return diag_ggn(model, loss_fn, data, None, params, seed)
    if kind == "mc":
        return diag_ggn(model, loss_fn, data, mc_samples, params, seed)
    if kind != "empirical":
        raise ValueError(f"unknown Fisher kind {kind!r}; choose 'empirical', 'true' or 'mc'")
    obj = Objective(model, loss_fn, data, params)
    theta = obj.theta
    total = torch.zeros_like(theta)
    for X, y in obj.batches():
        per_example = vmap(grad(lambda th, x, t: obj.batch_loss(th, x.unsqueeze(0), t.unsqueeze(0))),
                           in_dims=(None, 0, 0))
        chunk = max(1, _CHUNK_BYTES // (4 * theta.numel() * theta.element_size()))
        for start in range(0, len(X), chunk):
            total += per_example(theta, X[start : start + chunk], y[start : start + chunk]).pow(2).sum(0)
    return obj.unflatten(obj._check_finite(total / obj.num_examples, "empirical Fisher diagonal"))
