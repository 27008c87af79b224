"""A guard that refuses dense P x P matrices that would not fit, before anything is allocated."""
from __future__ import annotations

import torch

GiB = 2**30
_budget = {"bytes": 4 * GiB}


class DenseTooLargeError(MemoryError):
    """A dense curvature matrix was requested that would exceed the memory budget."""


def set_memory_budget(max_bytes: int) -> None:
    """Set the default budget (bytes) for dense matrices; the default is 4 GiB."""
    if max_bytes <= 0:
        raise ValueError(f"memory budget must be positive, got {max_bytes}")
    _budget["bytes"] = int(max_bytes)


def memory_budget() -> int:
    """The current default budget in bytes for dense matrices."""
    return _budget["bytes"]


def dense_bytes(rows: int, cols: int, dtype: torch.dtype) -> int:
    """Bytes needed by a dense ``rows x cols`` matrix of ``dtype``."""
    return rows * cols * torch.empty((), dtype=dtype).element_size()


def check_dense(rows: int, cols: int, dtype: torch.dtype, what: str, max_bytes: int | None = None) -> None:
    """Raise :class:`DenseTooLargeError` if a dense ``rows x cols`` ``what`` exceeds the budget.

    The message states the size needed and points to the matrix-free and per-layer methods.
    """
    budget = memory_budget() if max_bytes is None else max_bytes
    need = dense_bytes(rows, cols, dtype)
    if need > budget:
        raise DenseTooLargeError(
            f"a dense {what} of {rows:,} x {cols:,} {str(dtype).replace('torch.', '')} entries needs "
            f"{need / GiB:.2f} GiB, above the memory budget of {budget / GiB:.2f} GiB. Use a matrix-free or "
            "per-layer method instead (Objective.hvp, hessian_diag, hessian_blocks, or the approximations in "
            "losstools.curvature: diag_ggn, kfac, hutchinson_diag, lanczos), select fewer parameters with "
            "Objective(..., params=...), or raise the budget with max_bytes=... / set_memory_budget(...)."
        )
