"""Diagonals of the Gauss-Newton matrix and of the Fisher, at dataset scale.

All are of the **mean** loss over all the data (batches and ranks, see ``Objective.data_mean``):

- exact GGN diagonal: diag((1/Z) sum_n J_n^T H_n J_n), H_n the Hessian of example n's loss term in the
  outputs. For softmax cross-entropy this is the diagonal of the true Fisher (an exact sum over classes).
- Monte-Carlo GGN / Fisher: the same with H_n replaced by g g^T, g = d l_n(f, y~) / d f for labels y~
  drawn from the model's predictive distribution, averaged over ``mc_samples``. Unbiased.
- empirical Fisher: (1/Z) sum_n (d l_n / d theta)^2 with the data's own labels.

:func:`layer_diagonal` works per layer by hooks on nn.Linear / nn.Conv2d (see :mod:`.layers`): one
forward and one batched backward pass per chunk of examples (memory bounded by the chunk), about C + 1
gradients for C outputs (exact) or ``mc_samples`` + 1 (Monte-Carlo). :func:`per_example_diagonal` handles any
other layer with per-example vector-Jacobian products (``vmap`` over examples), at about C gradients' flops but
more memory.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.func import vjp, vmap

from .._validate import choice
from ..objective import Batch, Objective, ParamFilter
from .layers import backpropagate, chunked_mean, examples_per_chunk, squared_gradient_sums, supported_layers

_CHUNK_BYTES = 2**28  # per-example gradients held at once in per_example_diagonal


def layer_diagonal(obj: Objective, vectors: Callable, theta: torch.Tensor, progress: bool = True,
                   what: str = "GGN diagonal") -> torch.Tensor:
    """The flat (P,) diagonal of (1/Z) sum_n J_n^T V_n V_n^T J_n, ``V = vectors(out, y)`` (B, C, K), by hooks."""
    layers = supported_layers(obj, what)
    by_column = any(isinstance(layer.module, nn.Conv2d) for layer in layers)  # see backpropagate

    def batch_sum(X, y):
        columns = list(backpropagate(obj, layers, theta, X, y, vectors, by_column))
        sums: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(layers):  # the columns' pulled-back vectors stacked: one batched product per layer
            a = columns[0][i][0]
            d = columns[0][i][1] if len(columns) == 1 else torch.cat([pairs[i][1] for pairs in columns])
            sums.update(squared_gradient_sums(layer, a, d))
        return obj.flatten(sums)

    return chunked_mean(obj, batch_sum, (obj.num_params,), progress, what, examples_per_chunk(obj, layers))


def per_example_diagonal(obj: Objective, vectors: Callable, theta: torch.Tensor, progress: bool = True,
                         what: str = "GGN diagonal") -> torch.Tensor:
    """The same diagonal for any model, from per-example products J_n^T V_n (``vmap`` over examples).

    Needs a model that treats examples independently (every model in eval mode without cross-example
    operations); chunks of examples keep about ``_CHUNK_BYTES`` of per-example gradients in memory.
    """

    def one_example(x, V):  # V (C, K): example n's output vectors
        out, pullback = vjp(lambda th: obj.outputs(th, x.unsqueeze(0))[0], theta)
        return vmap(lambda v: pullback(v.view_as(out))[0])(V.T).pow(2).sum(0)  # sum_k (J_n^T v_k)^2

    def batch_sum(X, y):
        with torch.no_grad():
            V = vectors(obj.outputs(theta, X), y)  # (B, C, K), drawn once per batch as the hooks do
        chunk = max(1, _CHUNK_BYTES // (4 * V.shape[-1] * obj.num_params * obj.theta.element_size()))
        try:
            return sum(vmap(one_example)(X[s : s + chunk], V[s : s + chunk]).sum(0) for s in range(0, len(X), chunk))
        except RuntimeError:  # a layer vmap cannot batch (e.g. nn.LSTM's in-place kernels): one example at a time
            return sum(one_example(x, v) for x, v in zip(X, V))

    return obj.data_mean(batch_sum, (obj.num_params,), progress, what)


def diag_ggn(model: nn.Module | Objective, loss_fn: Callable | None = None, data: Batch | Iterable[Batch] | None = None,
             mc_samples: int | None = None, params: ParamFilter = None, seed: int | torch.Generator | None = 0,
             progress: bool = True) -> dict[str, torch.Tensor]:
    """Diagonal of the GGN of the mean loss, ``{name: tensor shaped like the parameter}``.

    Exact when ``mc_samples`` is None (for softmax cross-entropy: the true Fisher diagonal); otherwise a
    Monte-Carlo estimate with ``mc_samples`` sampled labels per example, drawn from ``seed`` (an int or a
    ``torch.Generator`` on the parameters' device). Unbiased. The same as ``GGN(obj).diagonal()`` or
    ``Fisher(obj, mc_samples=...).diagonal()``; the model is not changed. ``progress``: a bar on passes over 2 s.
    The first argument is a model (with ``loss_fn`` and ``data``) or an Objective: ``diag_ggn(obj)``.

    >>> d = diag_ggn(net, nn.CrossEntropyLoss(), (X, y))     # doctest: +SKIP
    >>> d["0.weight"].shape == net[0].weight.shape           # doctest: +SKIP
    True
    """
    from .operators import GGN, Fisher, as_objective

    obj = as_objective(model, loss_fn, data, params)
    op = GGN(obj, progress=progress) if mc_samples is None else Fisher(obj, mc_samples=mc_samples, seed=seed,
                                                                      progress=progress)
    return obj.unflatten(op.diagonal())


def diag_fisher(model: nn.Module | Objective, loss_fn: Callable | None = None,
                data: Batch | Iterable[Batch] | None = None, kind: str = "empirical", mc_samples: int = 1,
                params: ParamFilter = None, seed: int | torch.Generator | None = 0,
                progress: bool = True) -> dict[str, torch.Tensor]:
    """Diagonal of a Fisher matrix of the mean loss, ``{name: tensor shaped like the parameter}``.

    ``kind``: ``"empirical"`` (mean of squared per-example gradients with the data's labels),
    ``"true"`` (exact expectation over the model's predictive distribution; equals the exact GGN
    diagonal for cross-entropy, BCE-with-logits and MSE) or ``"mc"`` (``mc_samples`` sampled labels
    per example, unbiased for the true one). The first argument is a model (with ``loss_fn`` and ``data``) or an
    Objective: ``diag_fisher(obj, kind="true")``.
    """
    from .operators import EmpiricalFisher, Fisher, as_objective

    choice(kind, ("empirical", "true", "mc"), "Fisher kind")
    obj = as_objective(model, loss_fn, data, params)
    if kind == "empirical":
        op = EmpiricalFisher(obj, progress=progress)
    else:
        op = Fisher(obj, mc_samples=None if kind == "true" else mc_samples, seed=seed, progress=progress)
    return obj.unflatten(op.diagonal())
