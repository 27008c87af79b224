"""Exact curvature of an :class:`~losstools.Objective` as dense tensors: thin wrappers over the operators.

All matrices are of the **mean** loss (the Objective's convention), shape (P, P), on the device and dtype
of the model's parameters; dense results pass the memory guard first. See :mod:`.operators` for how each
is computed (structured Linear-chain formulas, forward-over-reverse tensor blocks, or products).

Each function takes the same forms as the operator classes: an Objective, ``hessian(obj)``, or
``(model, loss_fn, data, params=...)``: ``hessian(net, nn.CrossEntropyLoss(), (X, y))``. The other arguments
(``theta``, ``chunk_size``, ``max_bytes``) are keywords; ``hessian(obj, theta)`` is also accepted.
"""
from __future__ import annotations

import torch

from ..objective import Objective
from .operators import GGN, Hessian, as_objective


def _objective_and_theta(objective, loss_fn, data, params, theta) -> tuple[Objective, torch.Tensor | None]:
    """The Objective of either form, and theta (also accepted positionally after an Objective: ``hessian(obj, t)``)."""
    if isinstance(objective, Objective) and torch.is_tensor(loss_fn) and data is None and params is None:
        if theta is not None:
            raise TypeError("theta given twice, positionally and as theta=...: pass it once")
        loss_fn, theta = None, loss_fn
    return as_objective(objective, loss_fn, data, params), theta


def hessian(objective, loss_fn=None, data=None, params=None, *, theta: torch.Tensor | None = None,
            chunk_size: int | None = None, max_bytes: int | None = None) -> torch.Tensor:
    """The exact dense Hessian of the mean loss, shape (P, P), symmetric: ``Hessian(obj).dense()``.

    Structured formulas for Linear/elementwise nets, else forward-over-reverse tensor blocks, else P
    reverse-over-reverse products; refused before allocating when P x P exceeds the memory budget
    (``max_bytes``, default :func:`~losstools.curvature.memory.memory_budget`). ``chunk_size``: examples per
    chunk on the structured path, tangent vectors per vmapped call on the others (default: about 256 MiB of work
    memory).

    >>> H = hessian(obj)            # doctest: +SKIP
    >>> torch.allclose(H, H.T)      # doctest: +SKIP
    True
    """
    obj, theta = _objective_and_theta(objective, loss_fn, data, params, theta)
    return Hessian(obj, theta=theta).dense(max_bytes, chunk_size)


def hessian_blocks(objective, loss_fn=None, data=None, params=None, *, theta: torch.Tensor | None = None,
                   chunk_size: int | None = None, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """The diagonal blocks of the Hessian, one per parameter tensor: ``{name: (P_j, P_j)}``
    (``Hessian(obj).blocks()``; structured path: one matrix product per tensor)."""
    obj, theta = _objective_and_theta(objective, loss_fn, data, params, theta)
    return Hessian(obj, theta=theta).blocks(max_bytes, chunk_size)


def hessian_diag(objective, loss_fn=None, data=None, params=None, *, theta: torch.Tensor | None = None,
                 chunk_size: int | None = None) -> torch.Tensor:
    """The exact diagonal of the Hessian, shape (P,) (``Hessian(obj).diagonal()``); never a dense matrix.

    Structured path: about 2 N (C + 2) P flops for up to two hidden layers (C outputs); generic path: P Hessian-vector
    products restricted to one tensor each. For large generic nets use ``hutchinson_diag`` or the GGN diagonal.
    """
    obj, theta = _objective_and_theta(objective, loss_fn, data, params, theta)
    return Hessian(obj, theta=theta).diagonal(chunk_size)


def ggn(objective, loss_fn=None, data=None, params=None, *, theta: torch.Tensor | None = None,
        chunk_size: int | None = None, max_bytes: int | None = None) -> torch.Tensor:
    """The dense generalised Gauss-Newton matrix (1/Z) sum_n J_n^T H_n J_n, shape (P, P): ``GGN(obj).dense()``.

    For softmax cross-entropy it equals the true Fisher; for MSE, 2 J^T J / (N K) (``nn.MSELoss``
    averages over the K outputs too). Positive semi-definite whenever the loss is convex in the outputs.
    """
    obj, theta = _objective_and_theta(objective, loss_fn, data, params, theta)
    return GGN(obj, theta=theta).dense(max_bytes, chunk_size)


# ----------------------------------------------------------------------- eigen-decomposition
def eigh(matrix: torch.Tensor, descending: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (K,) and eigenvectors (P, K) as columns of a symmetric matrix, largest first.

    The matrix is symmetrised ((M + M^T)/2) to remove round-off asymmetry; a clearly asymmetric
    matrix is refused.
    """
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"eigh needs a square matrix, got shape {tuple(matrix.shape)}")
    scale = matrix.abs().max().clamp_min(torch.finfo(matrix.dtype).tiny)
    if (matrix - matrix.T).abs().max() > 1e-3 * scale:
        raise ValueError("eigh needs a symmetric matrix; this one is not (max |M - M^T| is over 1e-3 of max |M|)")
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    if descending:
        values, vectors = values.flip(0), vectors.flip(1)
    return values, vectors


def eigvalsh(matrix: torch.Tensor, descending: bool = True) -> torch.Tensor:
    """Eigenvalues of a symmetric matrix, largest first, shape (P,)."""
    return eigh(matrix, descending)[0]
