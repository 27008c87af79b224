"""Argument checks with one standard, clear error each (what was wrong, what is allowed).

Every public function validates its options with these helpers *before* any side effect, so that a
wrong call fails at once, with nothing written, trained or changed.

>>> choice("qm", ("mp", "qm"), "criterion")
'qm'
>>> fraction(0.5, "sparsity")
0.5
"""
from __future__ import annotations

import math
import numbers
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterable, TypeVar

if TYPE_CHECKING:  # torch is imported only where a device is checked
    import torch

T = TypeVar("T")


def choice(value: T, options: Iterable[T], name: str) -> T:
    """``value`` if it is one of ``options``, else ``ValueError: unknown <name> <value>; choose one of ...``."""
    options = tuple(options)
    try:
        known = value in options
    except TypeError:  # unhashable / incomparable
        known = False
    if not known:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, options))}")
    return value


def finite(value, name: str, low: float | None = None, low_inclusive: bool = True) -> float:
    """``value`` as a finite float (optionally ``>= low``, or ``> low``); a clear error otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low:g}, got {value:g}")
    return value


def fraction(value, name: str, closed_low: bool = True) -> float:
    """``value`` as a float in [0, 1) (``closed_low=True``) or (0, 1); a clear error otherwise."""
    value = finite(value, name)
    if not ((0.0 <= value if closed_low else 0.0 < value) and value < 1.0):
        interval = "[0, 1)" if closed_low else "(0, 1)"
        raise ValueError(f"{name} must be a fraction in {interval}, got {value:g}")
    return value


def positive_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (integral floats like 3.0 are accepted; bools are not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or int(value) != value or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def int_list(values, name: str, minimum: int = 1) -> list[int]:
    """A non-empty list of integers ``>= minimum``."""
    values = list(values) if isinstance(values, Iterable) and not isinstance(values, str) else [values]
    if not values:
        raise ValueError(f"{name} must list at least one value")
    return [positive_int(v, name, minimum) for v in values]


def usable_device(value, name: str = "device") -> "torch.device":
    """``value`` as a ``torch.device`` on which this PyTorch can allocate a tensor, else a ValueError."""
    import torch

    try:
        device = torch.device(value)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError, TypeError) as err:  # AssertionError: "Torch not compiled with CUDA enabled"
        raise ValueError(f"{name} {value!r} cannot be used here ({err}); pass 'cpu', or e.g. 'cuda' on a machine "
                         "with a GPU and a PyTorch build for it (see docs/install.md)") from err
    return device



@contextmanager
def option_errors():
    """Mark a ValueError or TypeError raised inside as a bad option (``err.bad_option = True``, type and message
    unchanged), so that a command line can answer it as a usage error rather than a failure."""
    try:
        yield
    except (ValueError, TypeError) as err:
        err.bad_option = True
        raise
