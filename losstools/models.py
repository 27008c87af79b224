"""Toy networks and a small seeded training loop with a progress bar."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import Dataset

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
}


def mlp(sizes: Sequence[int], activation: str = "tanh", seed: int | None = 0, bias: bool = True) -> nn.Sequential:
    """A fully connected net ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between layers.

    The last layer has no activation (it outputs logits or regression values). Weights use
    PyTorch's default initialisation drawn from a generator seeded with ``seed``.

    >>> sum(p.numel() for p in mlp([64, 16, 10]).parameters())
    1210
    """
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list at least an input and an output width, all >= 1; got {list(sizes)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(int(a), int(b), bias=bias))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        return nn.Sequential(*layers)


def default_loss(data: Dataset | None) -> nn.Module:
    """Cross-entropy (mean) for classification data, MSE (mean) for regression data."""
    return nn.MSELoss() if data is not None and data.num_classes is None else nn.CrossEntropyLoss()


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of ``X`` whose arg-max output equals the label ``y``."""
    with torch.no_grad():
        return (model(X).argmax(-1) == y).double().mean().item()


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
) -> dict[str, list[float]]:
    """Train ``model`` **in place** on the training split; returns the loss history.

    ``data`` is a :class:`Dataset` (uses ``train``; also records the validation loss per epoch) or
    an ``(X, y)`` pair. Mini-batches of ``batch_size`` (all data when None) are shuffled with
    ``seed``. ``after_step(model)`` runs after every optimiser step (e.g. to re-apply a pruning
    mask). Returns ``{"train": [mean loss per epoch], "val": [...]}``.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    dataset = data if isinstance(data, Dataset) else None
    X, y = data.train if dataset else data
    loss_fn = loss_fn or default_loss(dataset)
    optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    if optimizer not in optimizers:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(optimizers)}")
    opt = optimizers[optimizer](model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    batch = len(X) if batch_size is None else min(batch_size, len(X))
    history: dict[str, list[float]] = {"train": [], "val": []}
    was_training = model.training
    model.train()
    bar = tqdm(range(epochs), desc="training", disable=not progress, leave=False)
    for _ in bar:
        order = torch.randperm(len(X), generator=generator).to(X.device)
        total = 0.0
        for start in range(0, len(X), batch):
            idx = order[start : start + batch]
            opt.zero_grad()
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            total += loss.item() * len(idx)
        history["train"].append(total / len(X))
        if dataset is not None:
            model.eval()
            with torch.no_grad():
                history["val"].append(loss_fn(model(dataset.val[0]), dataset.val[1]).item())
            model.train()
        bar.set_postfix(loss=f"{history['train'][-1]:.4f}")
    model.train(was_training)
    return history
