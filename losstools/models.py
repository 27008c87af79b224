"""Toy networks and a small seeded training loop with a progress bar."""
from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ._validate import choice, finite, positive_int
from .data import Dataset

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
}


INITS = ("default", "kaiming")


def _initialise(model: nn.Module, init: str) -> None:
    """``"kaiming"``: Kaiming-normal weights (fan-in, gain sqrt 2, std = sqrt(2 / fan_in)) and zero biases
    for every Linear/Conv layer, the paper's choice; ``"default"``: PyTorch's own initialisation."""
    if init == "kaiming":
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


def mlp(sizes: Sequence[int], activation: str = "tanh", seed: int | None = 0, bias: bool = True,
        init: str = "default") -> nn.Sequential:
    """A fully connected net ``sizes[0] -> … -> sizes[-1]`` with ``activation`` between layers.

    The last layer has no activation (it outputs logits or regression values). Weights are drawn from
    a generator seeded with ``seed``: PyTorch's default initialisation (``init="default"``) or
    Kaiming-normal weights with zero biases (``init="kaiming"``, the paper's protocol).

    >>> sum(p.numel() for p in mlp([64, 16, 10]).parameters())
    1210
    """
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list at least an input and an output width, all >= 1; got {list(sizes)}")
    choice(activation, ACTIVATIONS, "activation")
    choice(init, INITS, "init")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(int(a), int(b), bias=bias))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        net = nn.Sequential(*layers)
        _initialise(net, init)
        return net


def lenet5(num_classes: int = 10, activation: str = "relu", seed: int | None = 0, init: str = "kaiming",
           channels: int = 1) -> nn.Sequential:
    """A LeNet-5-like CNN for 28x28 images: input (N, ``channels``, 28, 28), output (N, ``num_classes``) logits.

    conv 5x5 (6, padding 2) - pool 2 - conv 5x5 (16) - pool 2 - 400-120-84-``num_classes``, ``activation``
    after every layer but the last, average pooling (as in LeNet-5); 61 706 parameters (61 470 prunable weights)
    for 1 channel and 10 classes. ``init`` as in :func:`mlp` (Kaiming-normal weights and zero biases by default).

    >>> lenet5()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    choice(activation, ACTIVATIONS, "activation")
    choice(init, INITS, "init")
    act = ACTIVATIONS[activation]
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2), act(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), act(), nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, num_classes),
        )
        _initialise(net, init)
        return net


OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def default_loss(data: Dataset | None) -> nn.Module:
    """Cross-entropy (mean) for classification data, MSE (mean) for regression data."""
    return nn.MSELoss() if data is not None and data.num_classes is None else nn.CrossEntropyLoss()


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of ``X`` whose arg-max output equals the label ``y``."""
    with torch.no_grad():
        return (model(X).argmax(-1) == y).double().mean().item()


def _check_training_data(model: nn.Module, X, y, dataset: Dataset | None) -> None:
    """Refuse data the loop cannot use, before the model is touched, with what to do instead."""
    if not (isinstance(X, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise TypeError(f"training data must be tensors (X, y) or a losstools Dataset, got "
                        f"({type(X).__name__}, {type(y).__name__}); for a DataLoader, concatenate its batches first")
    if len(X) == 0 or len(X) != len(y):
        raise ValueError(f"training data must hold at least one example with one target per input, got "
                         f"{len(X)} inputs and {len(y)} targets")
    first = next(model.parameters(), None)
    if first is None:
        raise ValueError("the model has no parameters to train")
    if not X.is_floating_point():
        raise TypeError(f"inputs X must be floating point like the model's parameters ({first.dtype}), got "
                        f"{X.dtype}; convert them with X.to({first.dtype})")
    if X.dtype != first.dtype:
        raise TypeError(f"inputs X are {X.dtype} but the model's parameters are {first.dtype}; cast one of them "
                        f"(e.g. dataset.to(dtype={first.dtype}) or model.to({X.dtype}))")
    splits = [("training", X, y)] + ([("validation", *dataset.val)] if dataset is not None else [])
    for split, inputs, targets in splits:
        for name, values in (("inputs X", inputs), ("targets y", targets)):
            if values.is_floating_point() and not torch.isfinite(values).all():
                rows = (~torch.isfinite(values.reshape(len(values), -1))).any(1).nonzero().squeeze(1)
                raise ValueError(f"the {split} {name} hold NaN or inf in {len(rows)} example(s) (rows "
                                 f"{rows[:5].tolist()}{', ...' if len(rows) > 5 else ''}); remove or impute them "
                                 "before training")
    if dataset is not None and dataset.num_classes is not None and y.dtype != torch.long:
        raise TypeError(f"class labels y must be torch.long for cross-entropy, got {y.dtype}; use y.long()")
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            model(X[:1])
            model.train(was)
    except RuntimeError as exc:
        raise ValueError(f"the model cannot take inputs of shape {tuple(X.shape[1:])} per example "
                         f"(X has shape {tuple(X.shape)}): {str(exc).splitlines()[0]}") from exc


def train(
    model: nn.Module,
    data: Dataset | tuple[torch.Tensor, torch.Tensor],
    epochs: int = 100,
    lr: float = 1e-2,
    batch_size: int | None = 128,
    loss_fn: nn.Module | None = None,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    after_step: Callable[[nn.Module], None] | None = None,
    momentum: float = 0.0,
    keep_best: bool = False,
) -> dict[str, list[float]]:
    """Train ``model`` **in place** on the training split; returns the loss history.

    ``data`` is a :class:`Dataset` (uses ``train``; also records the validation loss, and for
    classification the validation error, per epoch) or an ``(X, y)`` pair. Mini-batches of
    ``batch_size`` (all data when None) are shuffled with ``seed``. ``optimizer`` is ``"adam"`` or
    ``"sgd"`` (with ``momentum``; the paper: lr 0.01, momentum 0.9, weight_decay 5e-4, batch 100).
    ``after_step(model)`` runs after every optimiser step (e.g. to re-apply a pruning mask).
    ``keep_best=True`` (a classification Dataset only) restores at the end the weights of the epoch
    with the lowest validation error (the paper's best checkpoint; ties keep the earlier epoch).
    Returns ``{"train": [mean loss per epoch], "val": [...], "val_error": [...]}`` (val_error for
    classification Datasets).

    Data with NaN/inf, of the wrong dtype or shape, or empty is refused before the model changes;
    a loss that turns NaN/inf (divergence) stops training with ``FloatingPointError``, leaving the
    model at its weights of the last epoch that ended finite.
    """
    positive_int(epochs, "epochs", minimum=0)
    choice(optimizer, OPTIMIZERS, "optimizer")
    lr = finite(lr, "lr (learning rate)", low=0.0, low_inclusive=False)
    weight_decay = finite(weight_decay, "weight_decay", low=0.0)
    momentum = finite(momentum, "momentum", low=0.0)
    if optimizer == "adam" and momentum:
        raise ValueError("momentum applies to optimizer='sgd'; Adam has its own betas")
    if batch_size is not None:
        positive_int(batch_size, "batch_size")
    dataset = data if isinstance(data, Dataset) else None
    if not dataset and not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"data must be a losstools Dataset or an (X, y) pair of tensors, got {type(data).__name__}")
    X, y = data.train if dataset else data
    _check_training_data(model, X, y, dataset)
    classify = dataset is not None and dataset.num_classes is not None
    if keep_best and not classify:
        raise ValueError("keep_best needs a classification Dataset with a validation split (it keeps the epoch "
                         "with the lowest validation error)")
    loss_fn = loss_fn or default_loss(dataset)
    kwargs = {"momentum": momentum} if optimizer == "sgd" else {}
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr, weight_decay=weight_decay, **kwargs)
    generator = torch.Generator().manual_seed(seed)
    batch = len(X) if batch_size is None else min(batch_size, len(X))
    history: dict[str, list[float]] = {"train": [], "val": []}
    if classify:
        history["val_error"] = []
    best = (math.inf, None)
    good = copy.deepcopy(model.state_dict())
    was_training = model.training
    model.train()
    bar = tqdm(range(epochs), desc="training", disable=not progress, leave=False)
    for epoch in bar:
        order = torch.randperm(len(X), generator=generator).to(X.device)
        total = 0.0
        for start in range(0, len(X), batch):
            idx = order[start : start + batch]
            opt.zero_grad()
            loss = loss_fn(model(X[idx]), y[idx])
            if not torch.isfinite(loss):
                model.load_state_dict(good)
                model.train(was_training)
                raise FloatingPointError(
                    f"the training loss became {loss.item()} in epoch {epoch + 1} (diverged); the model was reset "
                    f"to its weights after epoch {epoch} ({'the initial weights' if epoch == 0 else 'finite'}). "
                    f"Lower the learning rate (lr={lr:g}) or check the loss and targets"
                )
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            total += loss.item() * len(idx)
        history["train"].append(total / len(X))
        if dataset is not None:
            model.eval()
            with torch.no_grad():
                out = model(dataset.val[0])
                history["val"].append(loss_fn(out, dataset.val[1]).item())
                if classify:
                    history["val_error"].append((out.argmax(-1) != dataset.val[1]).double().mean().item())
            model.train()
            if keep_best and history["val_error"][-1] < best[0]:
                best = (history["val_error"][-1], copy.deepcopy(model.state_dict()))
        good = copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{history['train'][-1]:.4f}")
    if keep_best and best[1] is not None:
        model.load_state_dict(best[1])
    model.train(was_training)
    return history
