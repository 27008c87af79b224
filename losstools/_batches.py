"""What counts as data: an ``(X, y)`` pair or a re-iterable of such batches, checked with clear errors."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch

Batch = tuple[torch.Tensor, torch.Tensor]

_HOW = ("pass an (X, y) pair of tensors, a list of such pairs, or a DataLoader yielding (inputs, targets) batches")


def _is_pair(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data)


def check_data(data) -> None:
    """Refuse data that cannot be iterated over more than once or is not made of (X, y) batches."""
    if _is_pair(data):
        return
    if hasattr(data, "train") and _is_pair(getattr(data, "train")):
        raise TypeError(f"data is a {type(data).__name__} with splits; pass one split, e.g. ds.train or ds.val")
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        raise TypeError(f"data is a torch Dataset ({type(data).__name__}); wrap it in a DataLoader "
                        "(torch.utils.data.DataLoader(dataset, batch_size=...)) or pass its tensors as (X, y)")
    if not isinstance(data, Iterable):
        raise TypeError(f"data of type {type(data).__name__} is not data losstools can read: {_HOW}")
    if isinstance(data, Iterator):
        raise TypeError(
            f"data is a one-shot iterator ({type(data).__name__}): every quantity passes over the data several "
            f"times, and a second pass would see nothing. Pass list(...) of its batches or a DataLoader instead"
        )


def unpack(batch, index: int) -> Batch:
    """The ``(X, y)`` of a batch from a loader, with an error naming the batch when it is something else."""
    if isinstance(batch, Mapping):
        raise TypeError(f"batch {index} is a dict with keys {list(batch)}; losstools needs (inputs, targets) "
                        "batches: map them, e.g. [(b['x'], b['y']) for b in loader]")
    if not isinstance(batch, (tuple, list)) or len(batch) < 2 or not all(torch.is_tensor(t) for t in batch[:2]):
        raise TypeError(f"batch {index} is a {type(batch).__name__}, not an (inputs, targets) pair of tensors; {_HOW}")
    X, y = batch[0], batch[1]
    if len(X) != len(y):
        raise ValueError(f"batch {index} has {len(X)} inputs but {len(y)} targets")
    return X, y


def raw_batches(data) -> Iterator[Batch]:
    """Iterate over ``(X, y)`` batches as given (no device or dtype change)."""
    for index, batch in enumerate([data] if _is_pair(data) else data):
        yield unpack(batch, index)
