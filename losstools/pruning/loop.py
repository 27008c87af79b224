"""Algorithm 1 of the paper: iterative pruning without training in between."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import Dataset
from ..objective import WEIGHTS, Batch, Objective
from .masks import Masks, apply_masks_, count, full_masks, select
from .obs import obs_remove
from .saliency import NEEDS_CURVATURE, NEEDS_GRAD, check_criterion, predicted_change, saliency
from .schedules import schedule as make_schedule
from .statistics import check_curvature, curvature_diagonal, curvature_matrix, gradient


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


def _training_pair(data: Dataset | Batch) -> Batch:
    X, y = data.train if isinstance(data, Dataset) else data
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(f"data must hold at least one example with as many targets as inputs, got {len(X)} and {len(y)}")
    return X, y


def _loss(model: nn.Module, loss_fn: Callable, sample: Batch) -> float:
    with torch.no_grad():
        return float(loss_fn(model(sample[0]), sample[1]))


def prune(model: nn.Module, loss_fn: Callable, data: Dataset | Batch, criterion: str = "qm", sparsity: float = 0.9,
          steps: int = 1, schedule: str = "exponential", reg: float = 0.0, samples: int = 1000,
          scope: str = "global", seed: int = 0, curvature: str = "ggn", mc_samples: int = 1,
          signed: bool = False, predict: bool = True, progress: bool = False) -> PruneResult:
    """Prune the Linear/Conv weights of a copy of ``model`` to ``sparsity`` in ``steps`` iterations (Algorithm 1).

    Every step draws a fresh sample of ``samples`` training examples (without replacement, from
    ``seed``), recomputes the gradient and the ``curvature`` diagonal at the current masked weights
    with the model in eval mode, ranks weights by the ``criterion``'s saliency (``"mp"``, ``"lm"``,
    ``"qm"``, ``"obd"``; ``"obs"`` for toy nets) with step-norm penalty ``reg`` (lambda), and removes
    the lowest so that round(kappa_i N) weights are pruned (``scope="global"``: N over all layers).
    There is no training between steps; pruned weights stay pruned. ``predict=True`` also computes
    the statistics the criterion itself does not need, so every step records the predicted change
    of all three loss models (LM, QM, OBD); with False only those the criterion's statistics allow.
    ``model`` is not changed. ``data`` is a :class:`Dataset` (its train split is used) or an (X, y) pair.

    >>> from losstools import data, models
    >>> ds = data.digits(); net = models.mlp([64, 16, 10]); _ = models.train(net, ds, 30, progress=False)
    >>> result = prune(net, nn.CrossEntropyLoss(), ds, "qm", sparsity=0.8, steps=4)
    >>> round(result.sparsity, 3), len(result.history)
    (0.8, 4)
    """
    name = check_criterion(criterion)
    check_curvature(curvature, dense=name == "obs")
    targets = make_schedule(sparsity, steps, schedule)
    if reg < 0:
        raise ValueError(f"the step-norm penalty reg (lambda) must be >= 0, got {reg}")
    if int(samples) < 1:
        raise ValueError(f"samples must be a positive number of training examples per step, got {samples}")
    net = copy.deepcopy(model).eval()
    masks = full_masks(net)
    X, y = _training_pair(data)
    first = next(iter(net.parameters()))
    X = X.to(first.device, first.dtype if X.is_floating_point() else None)
    y = y.to(first.device, first.dtype if y.is_floating_point() else None)
    generator = torch.Generator().manual_seed(int(seed))
    params = dict(net.named_parameters())
    history: list[dict] = []
    for i, target in enumerate(tqdm(targets, desc=f"pruning ({name})", disable=not progress, leave=False)):
        rows = torch.randperm(len(X), generator=generator)[: int(samples)].to(X.device)
        sample = (X[rows], y[rows])
        before = {n: params[n].detach().clone() for n in masks}
        loss_before = _loss(net, loss_fn, sample)
        grad = gradient(net, loss_fn, sample) if (NEEDS_GRAD[name] or predict) else None
        need_diag = name != "obs" and (NEEDS_CURVATURE[name] or predict)
        diag = curvature_diagonal(net, loss_fn, sample, curvature, mc_samples, seed * 100003 + i) if need_diag else None
        pruned, total = count(masks)
        if name == "obs":
            matrix = curvature_matrix(net, loss_fn, sample, curvature)
            obj = Objective(net, loss_fn, sample, WEIGHTS)
            alive = torch.cat([masks[n].reshape(-1) for n in obj.names])
            theta, alive = obs_remove(obj.theta, alive, matrix, int(round(target * total)) - pruned, reg, signed)
            new_masks = {n: part.view(masks[n].shape) for n, part in zip(obj.names, alive.split(obj.sizes))}
            with torch.no_grad():
                for n, value in obj.unflatten(theta).items():
                    params[n].copy_(value)
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
