"""Dense curvature, its diagonal and its diagonal blocks, column chunk by column chunk.

Two generic engines, both exact:

- :func:`from_products`: any operator ``op @ E`` on chunks E of basis vectors (P products in all).
- :func:`hessian_tensor_blocks`: the Hessian's column block of parameter tensor j by forward-over-reverse
  products that differentiate only tensors j, j+1, ... (the model gets its tensors as a dict, so earlier
  ones carry no tangent and the backward pass stops there); the rest follows from symmetry. Used only
  where forward mode is right for the model (``Objective.forward_mode_ok``).

Chunk sizes aim at about ``_CHUNK_BYTES`` of tangent activations and are the same on every rank.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.func import grad, jvp, vmap

from .._distributed import all_reduce_min
from .._validate import positive_int
from ..objective import Objective

_CHUNK_BYTES = 2**28  # working memory aimed at per chunk of tangents (256 MiB)


def _activation_elements(obj: Objective) -> int:
    """Elements of all intermediate outputs of one forward pass on the largest local batch."""
    counts: list[int] = []
    hooks = [m.register_forward_hook(lambda m, i, o: counts.append(o.numel() if torch.is_tensor(o) else 0))
             for m in obj.model.modules()]
    try:
        batches = list(obj.batches())
        if batches:
            X, _ = max(batches, key=lambda b: len(b[0]))
            with torch.no_grad():
                obj.outputs(obj.theta, X)
    finally:
        for h in hooks:
            h.remove()
    return max(1, sum(counts))


def auto_chunk(obj: Objective, chunk_size: int | None) -> int:
    """Tangent vectors per vmapped call: about ``_CHUNK_BYTES`` of activations; the minimum over ranks."""
    if chunk_size is not None:
        return positive_int(chunk_size, "chunk_size")
    per_tangent = 6 * _activation_elements(obj) * obj.theta.element_size() + 8 * obj.num_params
    return all_reduce_min(max(8, min(1024, _CHUNK_BYTES // per_tangent)), obj.device)


def basis_chunks(size: int, chunk: int, like: torch.Tensor, offset: int = 0, total: int | None = None
                 ) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, E)``: E (total, k) holds columns offset+start .. offset+start+k of the identity."""
    total = size if total is None else total
    for start in range(0, size, chunk):
        k = min(chunk, size - start)
        E = torch.zeros(total, k, dtype=like.dtype, device=like.device)
        E[torch.arange(offset + start, offset + start + k), torch.arange(k)] = 1
        yield start, E


# ----------------------------------------------------------------------- any operator
def from_products(op, part: str, chunk: int) -> torch.Tensor | dict[str, torch.Tensor]:
    """``part``: "dense" (P, P), "diagonal" (P,) or "blocks" ``{name: (P_j, P_j)}`` from ``op @ E``."""
    obj = op.objective
    P = obj.num_params
    if part == "dense":
        dense = torch.empty(P, P, dtype=obj.dtype, device=obj.device)
        for start, E in basis_chunks(P, chunk, obj.theta):
            dense[:, start : start + E.shape[1]] = op @ E
        return dense
    blocks = {}
    for name, cols in obj.slices().items():
        size = cols.stop - cols.start
        block = torch.empty(size, size, dtype=obj.dtype, device=obj.device) if part == "blocks" else \
            torch.empty(size, dtype=obj.dtype, device=obj.device)
        for start, E in basis_chunks(size, chunk, obj.theta, cols.start, P):
            rows = (op @ E)[cols]  # (P_j, k)
            if part == "blocks":
                block[:, start : start + E.shape[1]] = rows
            else:
                block[start : start + E.shape[1]] = rows[start : start + E.shape[1]].diagonal()
        blocks[name] = block
    return blocks if part == "blocks" else torch.cat(list(blocks.values()))


# ----------------------------------------------------------------------- the Hessian, tensor by tensor
def _column_block_fn(obj: Objective, theta: torch.Tensor, j: int, last: int | None, X, y) -> Callable:
    """E (k, P_j) -> H_sum[rows of tensors j..last, columns of E] as (k, rows), for one batch's loss sum."""
    names, shapes = obj.names, obj.shapes
    params = [p.view(s) for p, s in zip(theta.split(obj.sizes), shapes)]
    stop = len(params) if last is None else last + 1

    def loss_of(w_j, later):
        tensors = {**obj.fixed, **dict(zip(names, params)), names[j]: w_j, **dict(zip(names[j + 1 : stop], later))}
        return obj.loss_terms.sum(obj.call(tensors, X), y)

    def grad_rows(w_j):
        g_j, g_later = grad(loss_of, argnums=(0, 1))(w_j, tuple(params[j + 1 : stop]))
        return torch.cat([g_j.reshape(-1), *(g.reshape(-1) for g in g_later)])

    def column(e):
        return jvp(grad_rows, (params[j],), (e.view(shapes[j]),))[1]

    return vmap(column)


def _tensor_blocks(obj: Objective, theta, j: int, last: int | None, chunk: int, on_chunk: Callable) -> None:
    """H[rows j..last, columns of tensor j], chunk by chunk of columns, handed to ``on_chunk(start, (k, rows))``."""
    rows = sum(obj.sizes[j : len(obj.sizes) if last is None else last + 1])
    for start, E in basis_chunks(obj.sizes[j], chunk, theta):
        block = obj.data_mean(lambda X, y: _column_block_fn(obj, theta, j, last, X, y)(E.T), (E.shape[1], rows))
        on_chunk(start, obj.check_finite(block, "Hessian"))


def hessian_tensor_blocks(obj: Objective, theta: torch.Tensor, part: str, chunk: int):
    """``part`` of the Hessian ("dense", "diagonal" or "blocks") by forward-over-reverse tensor blocks."""
    offsets = [0, *torch.tensor(obj.sizes).cumsum(0).tolist()]
    if part == "dense":
        P = obj.num_params
        H = torch.empty(P, P, dtype=obj.dtype, device=obj.device)
        for j in range(len(obj.sizes)):
            c0 = offsets[j]

            def store(start, block, c0=c0):
                cols = slice(c0 + start, c0 + start + len(block))
                H[c0:, cols] = block.T
                H[cols, c0:] = block

            _tensor_blocks(obj, theta, j, None, chunk, store)
        return H
    out = {}
    for j, (name, size) in enumerate(zip(obj.names, obj.sizes)):
        shape = (size, size) if part == "blocks" else (size,)
        target = torch.empty(shape, dtype=obj.dtype, device=obj.device)

        def store(start, rows, target=target):
            k = len(rows)
            if part == "blocks":
                target[start : start + k] = rows
            else:
                target[start : start + k] = rows[torch.arange(k), torch.arange(start, start + k)]

        _tensor_blocks(obj, theta, j, j, chunk, store)
        out[name] = target
    return out if part == "blocks" else torch.cat(list(out.values()))
