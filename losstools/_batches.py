"""What counts as data: an ``(X, y)`` pair or a re-iterable of such batches, checked with clear errors.

A list of per-example ``(x, y)`` pairs whose targets are all 0-d (class indices, scalar regression targets) is
also accepted: it is collated into one batch ``(torch.stack(xs), torch.stack(ys))``, as ``default_collate`` would.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch

Batch = tuple[torch.Tensor, torch.Tensor]

_HOW = ("pass an (X, y) pair of tensors, a list of such pairs, or a DataLoader yielding (inputs, targets) batches")
_COLLATE = ("collate the examples into batches: torch.utils.data.default_collate(examples) gives one (X, y) batch, "
            "or use a DataLoader(dataset, batch_size=...)")


def _is_pair(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data)


def _is_example(item) -> bool:
    """One example ``(x, y)`` rather than a batch: a pair of tensors whose target is 0-d (it has no batch axis)."""
    return _is_pair(item) and item[1].ndim == 0


def _per_example_pairs(data) -> bool:
    """``data`` is a list (or tuple) of per-example ``(x, y)`` pairs, every target 0-d."""
    return isinstance(data, (list, tuple)) and len(data) > 0 and not _is_pair(data) and all(map(_is_example, data))


def _collated(examples) -> Batch:
    """The per-example pairs stacked into one ``(X, y)`` batch; a clear error when their shapes differ."""
    xs, ys = zip(*examples)
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise ValueError(f"data is a list of {len(xs)} per-example (x, y) pairs, but the inputs have different shapes "
                         f"{sorted(shapes)[:4]}, so they cannot be stacked into one batch; {_COLLATE} (padding "
                         "them to one shape first)")
    return torch.stack(xs), torch.stack(ys)


def check_data(data) -> None:
    """Refuse data that cannot be iterated over more than once or is not made of (X, y) batches."""
    if _is_pair(data):
        if data[1].ndim == 0:
            raise ValueError(f"data is one example (a 0-d target, inputs {tuple(data[0].shape)}), not a batch: pass "
                             "(X, y) with a batch axis, e.g. (x.unsqueeze(0), y.view(1)), or a list of such examples")
        return
    if _per_example_pairs(data):
        _collated(data)  # refuse inputs of different shapes now
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
    if y.ndim == 0:
        raise ValueError(f"batch {index} is a single example (its target is 0-d, its inputs {tuple(X.shape)}), not a "
                         f"batch with a leading batch axis: {_COLLATE}. A list whose every item is one (x, y) example "
                         "with a 0-d target is collated for you")
    if X.ndim == 0:
        raise ValueError(f"batch {index} has 0-d inputs, not a batch with a leading batch axis; {_HOW}")
    if len(X) != len(y):
        raise ValueError(f"batch {index} has {len(X)} inputs but {len(y)} targets")
    return X, y


def raw_batches(data) -> Iterator[Batch]:
    """Iterate over ``(X, y)`` batches as given (no device or dtype change)."""
    if _per_example_pairs(data):
        data = _collated(data)
    for index, batch in enumerate([data] if _is_pair(data) else data):
        yield unpack(batch, index)
