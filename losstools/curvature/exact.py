"""Exact curvature of an :class:`~losstools.Objective`: dense Hessian, its diagonal and blocks, the GGN.

All matrices are of the **mean** loss (the Objective's convention), shape (P, P), on the device
and dtype of the model's parameters. Dense results pass the memory guard first.

For nets made of Linear layers and elementwise activations with a per-example loss (e.g. every
``models.mlp`` with cross-entropy or MSE), the Hessian, its diagonal and its blocks come from the exact
structured formulas of :mod:`.linear_chain` (curvature backpropagated per example, assembled with
large matrix products). Every other model uses the generic path below.

The generic path assembles the Hessian from batched Hessian-vector products (``vmap`` over
forward-over-reverse products on chunks of basis vectors). Column block j (the basis vectors of
parameter tensor j) differentiates only with respect to tensors j, j+1, ...: forward tangents start at
tensor j (the model gets its tensors as a dict, so earlier ones carry no tangent) and the backward pass
stops there; the remaining blocks follow from symmetry. Cost: P Hessian-vector products
at most (fewer when later tensors sit later in the network); memory: one chunk of tangents.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.func import functional_call, grad, jvp, vjp, vmap

from ..objective import Objective
from . import linear_chain as structured
from .memory import check_dense

_CHUNK_BYTES = 2**28  # working memory aimed at per chunk of tangents (256 MiB)


def _activation_elements(obj: Objective) -> int:
    """Elements of all intermediate outputs of one forward pass on the largest batch (for chunking)."""
    counts: list[int] = []
    hooks = [m.register_forward_hook(lambda m, i, o: counts.append(o.numel() if torch.is_tensor(o) else 0))
             for m in obj.model.modules()]
    try:
        X, _ = max(obj.batches(), key=lambda b: len(b[0]))
        with torch.no_grad():
            obj.outputs(obj.theta, X)
    finally:
        for h in hooks:
            h.remove()
    return max(1, sum(counts))


def auto_chunk(obj: Objective, chunk_size: int | None) -> int:
    """Number of tangent vectors per vmap call: about ``_CHUNK_BYTES`` of tangent activations."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return chunk_size
    per_tangent = 6 * _activation_elements(obj) * obj.theta.element_size() + 8 * obj.num_params
    return max(8, min(1024, _CHUNK_BYTES // per_tangent))


def _basis_chunks(size: int, chunk: int, like: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, E)`` with E of shape (k, size): rows start..start+k of the identity."""
    for start in range(0, size, chunk):
        k = min(chunk, size - start)
        E = torch.zeros(k, size, dtype=like.dtype, device=like.device)
        E[torch.arange(k), torch.arange(start, start + k)] = 1
        yield start, E


def _column_block_fn(obj: Objective, theta: torch.Tensor, j: int, last: int | None, X, y) -> Callable:
    """A function E (k, P_j) -> H[rows of tensors j..last, columns of E] as (k, rows) for one batch.

    The model gets its tensors as a dict (no concatenation into a flat vector): tensors before j then
    carry no tangent, so forward-mode skips their tangent arithmetic instead of multiplying zeros.
    """
    names, shapes = obj.names, obj.shapes
    params = [p.view(s) for p, s in zip(theta.split(obj.sizes), shapes)]
    stop = len(params) if last is None else last + 1

    def loss_of(w_j, later):
        tensors = {**obj._fixed, **dict(zip(names, params)), names[j]: w_j, **dict(zip(names[j + 1 : stop], later))}
        return obj.loss_fn(functional_call(obj.model, tensors, (X,)), y)

    def grad_rows(w_j):
        g_j, g_later = grad(loss_of, argnums=(0, 1))(w_j, tuple(params[j + 1 : stop]))
        return torch.cat([g_j.reshape(-1), *(g.reshape(-1) for g in g_later)])

    def column(e):
        return jvp(grad_rows, (params[j],), (e.view(shapes[j]),))[1]

    return vmap(column)


def _blocks(obj: Objective, theta, j: int, last: int | None, chunk: int, on_chunk: Callable) -> None:
    """Accumulate H[rows j..last, cols of tensor j] over batches, chunk by chunk; hand each to ``on_chunk``."""
    batches = list(obj.batches())
    for start, E in _basis_chunks(obj.sizes[j], chunk, theta):
        total = None
        for X, y in batches:
            part = _column_block_fn(obj, theta, j, last, X, y)(E) * (len(X) / obj.num_examples)
            total = part if total is None else total + part
        on_chunk(start, obj._check_finite(total, "Hessian"))


def hessian(obj: Objective, theta: torch.Tensor | None = None, chunk_size: int | None = None,
            max_bytes: int | None = None) -> torch.Tensor:
    """The exact dense Hessian of the mean loss, shape (P, P), symmetric.

    Built by the structured formulas for Linear/elementwise nets, else from batched Hessian-vector
    products (see module docstring); refused before allocating when P x P exceeds the memory budget
    (``max_bytes``, default :func:`memory_budget`). ``chunk_size``: examples per chunk on the structured
    path, tangent vectors per vmapped call on the generic one (default: about 256 MiB of work memory).

    >>> H = hessian(obj)            # doctest: +SKIP
    >>> torch.allclose(H, H.T)      # doctest: +SKIP
    True
    """
    check_dense(obj.num_params, obj.num_params, obj.dtype, "Hessian", max_bytes)
    t = obj._theta_or_default(theta)
    chain = structured.linear_chain(obj)
    if chain is not None:
        H = torch.empty(obj.num_params, obj.num_params, dtype=obj.dtype, device=obj.device)
        structured.dense_hessian(chain, t, H, chunk_size)
        return obj._check_finite(H, "Hessian")
    return _hessian_from_hvps(obj, t, chunk_size)


def _hessian_from_hvps(obj: Objective, t: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """The generic path of :func:`hessian`: column blocks of batched HVPs, the rest by symmetry."""
    P, chunk = obj.num_params, auto_chunk(obj, chunk_size)
    offsets = [0, *torch.tensor(obj.sizes).cumsum(0).tolist()]
    H = torch.empty(P, P, dtype=obj.dtype, device=obj.device)
    for j in range(len(obj.sizes)):
        c0 = offsets[j]

        def store(start, block, c0=c0):
            cols = slice(c0 + start, c0 + start + len(block))
            H[c0:, cols] = block.T
            H[cols, c0:] = block

        _blocks(obj, t, j, None, chunk, store)
    return H


def hessian_blocks(obj: Objective, theta: torch.Tensor | None = None, chunk_size: int | None = None,
                   max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """The diagonal blocks of the Hessian, one per parameter tensor: ``{name: (P_j, P_j)}``.

    Structured path: one matrix product per tensor; generic path: P_j Hessian-vector products
    restricted to tensor j (gradient and tangent in tensor j only).
    """
    t = obj._theta_or_default(theta)
    for name, size in zip(obj.names, obj.sizes):
        check_dense(size, size, obj.dtype, f"Hessian block of {name}", max_bytes)
    chain = structured.linear_chain(obj)
    if chain is not None:
        blocks = structured.diagonal_blocks(chain, t, chunk_size)
        return {name: obj._check_finite(blocks[name], "Hessian") for name in obj.names}
    chunk = auto_chunk(obj, chunk_size)
    out = {}
    for j, (name, size) in enumerate(zip(obj.names, obj.sizes)):
        block = torch.empty(size, size, dtype=obj.dtype, device=obj.device)

        def store(start, rows, block=block):
            block[start : start + len(rows)] = rows

        _blocks(obj, t, j, j, chunk, store)
        out[name] = block
    return out


def hessian_diag(obj: Objective, theta: torch.Tensor | None = None, chunk_size: int | None = None) -> torch.Tensor:
    """The exact diagonal of the Hessian, shape (P,); memory O(chunk x P_j), never a dense block.

    Structured path: about one backward pass of per-example curvature (cheap even for large layers);
    generic path: P Hessian-vector products restricted to one tensor each. For large generic nets use
    the estimators in :mod:`losstools.curvature` (``hutchinson_diag``) or the GGN diagonal instead.
    """
    t = obj._theta_or_default(theta)
    chain = structured.linear_chain(obj)
    if chain is not None:
        diag = torch.zeros(obj.num_params, dtype=obj.dtype, device=obj.device)
        structured.diagonal(chain, t, diag, chunk_size)
        return obj._check_finite(diag, "Hessian diagonal")
    chunk = auto_chunk(obj, chunk_size)
    parts = []
    for j, size in enumerate(obj.sizes):
        diag = torch.empty(size, dtype=obj.dtype, device=obj.device)

        def store(start, rows, diag=diag):
            k = len(rows)
            diag[start : start + k] = rows[torch.arange(k), torch.arange(start, start + k)]

        _blocks(obj, t, j, j, chunk, store)
        parts.append(diag)
    return torch.cat(parts)


# ----------------------------------------------------------------------- Gauss-Newton
def ggn_vector_product(obj: Objective, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> Callable:
    """A function v (P,) -> G_batch v, with G_batch = J^T H_out J on one batch (mean loss).

    J is the Jacobian of the outputs on ``X`` w.r.t. theta, H_out the Hessian of ``loss_fn`` w.r.t.
    the outputs (e.g. diag(p) - p p^T / B for mean cross-entropy, 2 I / (B K) for mean MSE).
    """
    out, pullback = vjp(lambda th: obj.outputs(th, X), theta)

    def loss_grad(o):
        return grad(lambda o2: obj.loss_fn(o2, y))(o)

    def product(v):
        Jv = jvp(lambda th: obj.outputs(th, X), (theta,), (v,))[1]
        HJv = jvp(loss_grad, (out,), (Jv,))[1]
        return pullback(HJv)[0]

    return product


def ggn(obj: Objective, theta: torch.Tensor | None = None, chunk_size: int | None = None,
        max_bytes: int | None = None) -> torch.Tensor:
    """The dense generalised Gauss-Newton matrix G = mean_n J_n^T H_out,n J_n, shape (P, P).

    For softmax cross-entropy it equals the true Fisher; for MSE, 2/K J^T J / N (``nn.MSELoss``
    averages over the K outputs too). Positive semi-definite whenever the loss is convex in the outputs.
    """
    check_dense(obj.num_params, obj.num_params, obj.dtype, "GGN", max_bytes)
    t = obj._theta_or_default(theta)
    P, chunk = obj.num_params, auto_chunk(obj, chunk_size)
    G = torch.zeros(P, P, dtype=obj.dtype, device=obj.device)
    for X, y in obj.batches():
        product = vmap(ggn_vector_product(obj, t, X, y))
        for start, E in _basis_chunks(P, chunk, t):
            G[:, start : start + len(E)] += product(E).T * (len(X) / obj.num_examples)
    return obj._check_finite(G, "GGN")


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
