"""Algorithm 1 of the paper: iterative pruning without training in between."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from .._validate import choice, finite, positive_int
from ..data import Dataset
from ..objective import WEIGHTS, Batch, Objective
from .criteria import NEEDS_CURVATURE, NEEDS_GRAD, check_criterion, predicted_change, saliency
from .masks import SCOPES, Masks, apply_masks_, count, plain_copy, refuse_shared_weights, select
from .obs import obs_remove
from .schedules import schedule as make_schedule
from .statistics import check_curvature, curvature_diagonal, curvature_matrix, loss_and_gradient


@dataclass
class PruneResult:
    """What :func:`prune` returns.

    masks: ``{weight name: bool tensor}``, True = kept. model: the pruned copy (pruned weights are 0).
    history: one dict per step with ``step``, ``target`` (kappa_i), ``sparsity`` (reached), ``pruned``
    (removed in this step), ``loss_before`` / ``loss_after`` (mean loss on the step's sample) and
    ``predicted`` ({model: predicted change of that loss}; "lm", "qm", "obd", and "obs" for OBS) and
    ``grad_norm`` (norm of the weights' gradient at the start of the step; NaN when not computed).
    """

    masks: Masks
    model: nn.Module
    history: list[dict] = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        pruned, total = count(self.masks)
        return pruned / total


def _training_pair(data) -> Batch:
    """The training examples as one (X, y) pair: a Dataset's train split, an (X, y) pair, or the
    concatenated (X, y) batches of a DataLoader or any iterable (a one-shot generator is read once)."""
    if isinstance(data, Dataset):
        X, y = data.train
    elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        X, y = data
    elif isinstance(data, (dict, torch.Tensor, str)) or not isinstance(data, Iterable):
        raise TypeError(f"data must be a losstools Dataset, an (X, y) pair of tensors, or a DataLoader / iterable "
                        f"of (X, y) batches; got {type(data).__name__}")
    else:
        xs, ys = [], []
        for i, batch in enumerate(data):
            if isinstance(batch, dict):
                raise TypeError(f"batch {i} is a dict (keys {sorted(batch)}); pruning needs (X, y) batches: pass e.g. "
                                f"((b['x'], b['y']) for b in loader)")
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2
                    and all(isinstance(t, torch.Tensor) for t in batch)):
                raise TypeError(f"batch {i} is a {type(batch).__name__}, not an (X, y) pair of tensors")
            xs.append(batch[0])
            ys.append(batch[1])
        if not xs:
            raise ValueError("data yielded no batches (an exhausted generator?); pass the data again or a DataLoader")
        X, y = torch.cat(xs), torch.cat(ys)
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(f"data must hold at least one example with as many targets as inputs, "
                         f"got {len(X)} and {len(y)}")
    if not X.is_floating_point():
        raise TypeError(f"inputs X must be floating point (the model's parameters are), got {X.dtype}; "
                        f"convert them with X.float() (or X.double() for a float64 model)")
    if not torch.isfinite(X).all():
        raise ValueError("inputs X hold NaN or inf; remove or impute those examples before pruning")
    return X, y


def _loss(model: nn.Module, loss_fn: Callable, sample: Batch) -> float:
    with torch.no_grad():
        return float(loss_fn(model(sample[0]), sample[1]))


def _obs_step(net: nn.Module, loss_fn: Callable, sample: Batch, masks: Masks, target: float, scope: str,
              curvature: str, reg: float, signed: bool) -> tuple[Masks, torch.Tensor]:
    """One OBS step: remove weights (globally, or round(target N_l) per layer with ``scope="layer"``, the
    compensation then staying within the layer) and move the others; returns new masks and the curvature."""
    matrix = curvature_matrix(net, loss_fn, sample, curvature)
    obj = Objective(net, loss_fn, sample, WEIGHTS)
    theta = obj.theta
    alive = torch.cat([masks[n].reshape(-1) for n in obj.names])
    parts = torch.arange(len(obj.sizes), device=alive.device).repeat_interleave(
        torch.tensor(obj.sizes, device=alive.device))
    groups = [torch.ones_like(alive)] if scope == "global" else [parts == k for k in range(len(obj.sizes))]
    for group in groups:
        total = int(group.sum())
        remove = int(round(target * total)) - (total - int((alive & group).sum()))
        theta, kept = obs_remove(theta, alive & group, matrix, remove, reg, signed)
        alive = torch.where(group, kept, alive)
    new_masks = {n: part.view(masks[n].shape) for n, part in zip(obj.names, alive.split(obj.sizes))}
    with torch.no_grad():
        for n, value in obj.unflatten(theta).items():
            dict(net.named_parameters())[n].copy_(value)
    return new_masks, matrix


def prune(model: nn.Module, loss_fn: Callable, data: Dataset | Batch | Iterable[Batch], criterion: str = "qm",
          sparsity: float = 0.9, steps: int = 1, schedule: str = "exponential", reg: float = 0.0,
          samples: int = 1000, scope: str = "global", seed: int = 0, curvature: str = "ggn", mc_samples: int = 1,
          signed: bool = False, predict: bool = True, progress: bool = False) -> PruneResult:
    """Prune the Linear/Conv weights of a copy of ``model`` to ``sparsity`` in ``steps`` iterations (Algorithm 1).

    Every step draws a fresh sample of ``samples`` training examples (without replacement, from
    ``seed``), recomputes the gradient and the ``curvature`` diagonal at the current masked weights
    with the model in eval mode, ranks weights by the ``criterion``'s saliency (``"mp"``, ``"lm"``,
    ``"qm"``, ``"obd"``; ``"obs"`` for toy nets) with step-norm penalty ``reg`` (lambda), and removes
    the lowest so that round(kappa_i N) weights are pruned (``scope="global"``: N over all layers;
    ``"layer"``: round(kappa_i N_l) in every layer, for OBS too).
    There is no training between steps; pruned weights stay pruned. ``predict=True`` also computes
    the statistics the criterion itself does not need, so every step records the predicted change
    of all three loss models (LM, QM, OBD); with False only those the criterion's statistics allow.
    ``model`` is not changed. ``data`` is a :class:`Dataset` (its train split is used), an (X, y) pair,
    or a DataLoader / iterable of (X, y) batches (concatenated once).

    A model pruned before with ``torch.nn.utils.prune`` is pruned further: its masks are the starting masks
    (those weights stay pruned and count towards ``sparsity``), and ``result.model`` holds plain weights with
    the pruned entries zero (``to_torch_prune(result.model, result.masks)`` re-attaches masks). Weights shared
    between layers (one nn.Parameter) are refused: untie them first.

    >>> from losstools import data, models
    >>> ds = data.digits(); net = models.mlp([64, 16, 10]); _ = models.train(net, ds, 30, progress=False)
    >>> result = prune(net, nn.CrossEntropyLoss(), ds, "qm", sparsity=0.8, steps=4)
    >>> round(result.sparsity, 3), len(result.history)
    (0.8, 4)
    """
    name = check_criterion(criterion)
    check_curvature(curvature, dense=name == "obs")
    targets = make_schedule(sparsity, steps, schedule)
    reg = finite(reg, "the step-norm penalty reg (lambda)", low=0.0)
    samples = positive_int(samples, "samples (training examples per step)")
    mc_samples = positive_int(mc_samples, "mc_samples")
    seed = positive_int(seed, "seed", minimum=0)
    choice(scope, SCOPES, "scope")
    X, y = _training_pair(data)
    refuse_shared_weights(model)
    net, masks = plain_copy(model)  # torch.nn.utils.prune masks: made permanent in the copy, kept as masks
    net.eval()
    first = next(iter(net.parameters()))
    X = X.to(first.device, first.dtype if X.is_floating_point() else None)
    y = y.to(first.device, first.dtype if y.is_floating_point() else None)
    generator = torch.Generator().manual_seed(int(seed))
    params = dict(net.named_parameters())
    history: list[dict] = []
    for i, target in enumerate(tqdm(targets, desc=f"pruning ({name})", disable=not progress, leave=False)):
        rows = torch.randperm(len(X), generator=generator)[:samples].to(X.device)
        sample = (X[rows], y[rows])
        before = {n: params[n].detach().clone() for n in masks}
        if NEEDS_GRAD[name] or predict:
            loss_before, grad = loss_and_gradient(net, loss_fn, sample)
        else:
            loss_before, grad = _loss(net, loss_fn, sample), None
        need_diag = name != "obs" and (NEEDS_CURVATURE[name] or predict)
        diag = curvature_diagonal(net, loss_fn, sample, curvature, mc_samples, seed * 100003 + i) if need_diag else None
        pruned, total = count(masks)
        if name == "obs":
            new_masks, matrix = _obs_step(net, loss_fn, sample, masks, target, scope, curvature, reg, signed)
        else:
            scores = {n: saliency(name, params[n].detach(), None if grad is None else grad[n],
                                  None if diag is None else diag[n], reg, signed) for n in masks}
            new_masks = select(scores, masks, target, scope)
            apply_masks_(net, new_masks)
        delta = {n: params[n].detach() - before[n] for n in masks}
        predicted = predicted_change(delta, grad, diag)
        if name == "obs":
            flat = torch.cat([delta[n].reshape(-1) for n in masks])
            predicted["obs"] = float(0.5 * flat @ matrix @ flat)
        masks = new_masks
        history.append({
            "step": i + 1, "target": target, "sparsity": count(masks)[0] / total,
            "pruned": count(masks)[0] - pruned, "loss_before": loss_before,
            "loss_after": _loss(net, loss_fn, sample), "predicted": predicted,
            "grad_norm": math.nan if grad is None else math.sqrt(sum(float((v**2).sum()) for v in grad.values())),
        })
    return PruneResult(masks, net, history)
