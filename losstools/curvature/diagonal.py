"""Diagonals of the Gauss-Newton matrix and of the Fisher, per parameter tensor, at dataset scale.

All are of the **mean** loss L = (1/N) sum_n l_n over the N examples of ``data`` (a batch, a
DataLoader or any iterable of batches, over all ranks of a ``torch.distributed`` group):

- exact GGN diagonal: diag( (1/N) sum_n J_n^T H_n J_n ), H_n the Hessian of l_n w.r.t. the outputs.
  For softmax cross-entropy this is the diagonal of the true Fisher (an exact sum over classes).
- Monte-Carlo GGN / Fisher: the same with H_n replaced by g g^T, g = d l_n(f, y~) / d f for labels
  y~ drawn from the model's predictive distribution (cross-entropy: categorical; BCE-with-logits:
  Bernoulli; MSE: Gaussian with the variance that makes it unbiased), averaged over ``mc_samples``.
- empirical Fisher: (1/N) sum_n (d l_n / d theta)^2 with the data's own labels.

Computed per layer by hooks on nn.Linear / nn.Conv2d (see :mod:`.layers`): one forward and one
batched backward pass per batch, at the cost of about C + 1 gradients for C outputs (exact) or
``mc_samples`` + 1 (Monte-Carlo). Selected parameters in other layers raise ``UnsupportedLayerError``.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from ..objective import Batch, Objective, ParamFilter
from .layers import backpropagate, output_vectors, squared_gradient_sums, supported_layers
from .passes import data_mean, generator


def layer_diagonal(obj: Objective, loss_fn: Callable, kind: str, theta: torch.Tensor | None = None,
                   mc_samples: int = 1, seed: int | torch.Generator | None = 0, progress: bool = True) -> torch.Tensor:
    """The flat (P,) diagonal of (1/N) sum_n J_n^T V_n V_n^T J_n at ``theta`` (default: the model's).

    ``kind``: "exact" (GGN), "mc" (``mc_samples`` sampled labels) or "empirical" (the data's labels).
    ``loss_fn`` is the user's loss module (the Objective's may be a rewritten MSE).
    """
    what = {"exact": "GGN diagonal", "mc": "Monte-Carlo GGN diagonal", "empirical": "empirical Fisher diagonal"}[kind]
    layers = supported_layers(obj.model, obj.names, what)
    theta = obj._theta_or_default(theta)
    gen = generator(seed, obj.device) if kind == "mc" else None

    def vectors(out, y):
        return output_vectors(kind, loss_fn, out, y, mc_samples, gen)

    def batch_sum(X, y):
        sums: dict[str, torch.Tensor] = {}
        for layer, (a, d) in zip(layers, backpropagate(obj, layers, theta, X, y, vectors)):
            sums.update(squared_gradient_sums(layer, a, d))
        return obj.flatten(sums)

    return obj._check_finite(data_mean(obj, batch_sum, progress, what), what)


def diag_ggn(model: nn.Module, loss_fn: Callable, data: Batch | Iterable[Batch], mc_samples: int | None = None,
             params: ParamFilter = None, seed: int | torch.Generator | None = 0,
             progress: bool = True) -> dict[str, torch.Tensor]:
    """Diagonal of the GGN of the mean loss, ``{name: tensor shaped like the parameter}``.

    Exact when ``mc_samples`` is None (for softmax cross-entropy: the true Fisher diagonal);
    otherwise a Monte-Carlo estimate with ``mc_samples`` sampled labels per example, drawn from
    ``seed`` (an int or a ``torch.Generator`` on the parameters' device). Unbiased.
    ``params`` selects parameters as in :class:`~losstools.Objective` (all must sit in nn.Linear /
    nn.Conv2d layers); the model is not changed. ``progress`` shows a bar on passes over 2 s.

    >>> d = diag_ggn(net, nn.CrossEntropyLoss(), (X, y))     # doctest: +SKIP
    >>> d["0.weight"].shape == net[0].weight.shape           # doctest: +SKIP
    True
    """
    if mc_samples is not None and int(mc_samples) < 1:
        raise ValueError(f"mc_samples must be a positive integer or None (exact), got {mc_samples}")
    obj = Objective(model, loss_fn, data, params)
    kind = "exact" if mc_samples is None else "mc"
    return obj.unflatten(layer_diagonal(obj, loss_fn, kind, None, int(mc_samples or 1), seed, progress))


def diag_fisher(model: nn.Module, loss_fn: Callable, data: Batch | Iterable[Batch], kind: str = "empirical",
                mc_samples: int = 1, params: ParamFilter = None,
                seed: int | torch.Generator | None = 0, progress: bool = True) -> dict[str, torch.Tensor]:
    """Diagonal of a Fisher matrix of the mean loss, ``{name: tensor shaped like the parameter}``.

    ``kind``: ``"empirical"`` (mean of squared per-example gradients with the data's labels),
    ``"true"`` (exact expectation over the model's predictive distribution; equals the exact GGN
    diagonal for cross-entropy, BCE-with-logits and MSE) or ``"mc"`` (``mc_samples`` sampled labels
    per example, unbiased for the true one).
    """
    if kind == "true":
        return diag_ggn(model, loss_fn, data, None, params, seed, progress)
    if kind == "mc":
        return diag_ggn(model, loss_fn, data, mc_samples, params, seed, progress)
    if kind != "empirical":
        raise ValueError(f"unknown Fisher kind {kind!r}; choose 'empirical', 'true' or 'mc'")
    obj = Objective(model, loss_fn, data, params)
    return obj.unflatten(layer_diagonal(obj, loss_fn, "empirical", progress=progress))
