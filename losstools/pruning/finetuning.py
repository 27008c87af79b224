"""Training with a pruning mask held fixed (fine-tuning), keeping the best epoch by validation error."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .. import models
from ..data import Dataset
from .masks import Masks, apply_masks_


def _check_masks(model: nn.Module, masks: Masks) -> None:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"mask for {name!r}, but the model has no such parameter; it has {list(params)}")
        if mask.shape != params[name].shape or mask.dtype != torch.bool:
            raise ValueError(f"mask for {name!r} must be a bool tensor of shape {tuple(params[name].shape)}, "
                             f"got {mask.dtype} {tuple(mask.shape)}")


def error(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Classification error (fraction of wrong arg-max predictions)."""
    return 1.0 - models.accuracy(model, X, y)


def finetune(model: nn.Module, masks: Masks | None, data: Dataset, epochs: int = 30, lr: float = 1e-3,
             batch_size: int = 100, loss_fn: Callable | None = None, optimizer: str = "adam",
             weight_decay: float = 0.0, seed: int = 0, keep_best: bool = True, progress: bool = True,
             momentum: float = 0.0) -> dict[str, list[float]]:
    """Train ``model`` **in place** (:func:`losstools.models.train`, a fresh optimiser) with ``masks`` re-applied
    after every step.

    Pruned weights are zeroed before training and after every optimiser step, so they stay exactly
    zero. With ``keep_best`` the weights of the epoch with the lowest validation error are restored
    at the end (the paper's best checkpoint; ties keep the earlier epoch). ``masks=None`` trains
    without pruning. The paper's recipe: ``optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4``.
    Returns ``{"train": [loss per epoch], "val": [...], "val_error": [...]}``.
    """
    masks = masks or {}
    _check_masks(model, masks)
    if not isinstance(data, Dataset):
        raise TypeError(f"finetune needs a losstools Dataset (it validates on data.val), got {type(data).__name__}")
    apply_masks_(model, masks)
    history = models.train(model, data, epochs=epochs, lr=lr, batch_size=batch_size, loss_fn=loss_fn,
                           optimizer=optimizer, weight_decay=weight_decay, momentum=momentum, seed=seed,
                           progress=progress, keep_best=keep_best,
                           after_step=(lambda net: apply_masks_(net, masks)) if masks else None)
    model.eval()
    return history
