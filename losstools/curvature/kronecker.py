"""K-FAC: per layer, the GGN / Fisher block approximated by a Kronecker product G kron A.

For a Linear or Conv2d layer with per-example input a_n (patches a_nt for a Conv2d, t over the T
output positions; padded with a 1 when the bias is selected) and pulled-back output vectors d_nkt
(the K columns of V_n, see :mod:`.layers`), the block of (1/N) sum_n J_n^T V_n V_n^T J_n over the
flattened [weight | bias] (row-major, O x I') is approximated by

    G kron A,   A = (1/(N T)) sum_{n,t} a a^T  (I', I'),   G = (1/N) sum_{n,k,t} d d^T  (O, O)

(KFAC-expand, the convention of curvlinops). It is exact for one example through a single layer.
Blocks of different layers are zero.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from .._random import generator
from .._validate import choice, positive_int
from ..objective import Batch, ParamFilter
from .layers import backpropagate, chunked_mean, examples_per_chunk, kfac_factor_sums, supported_layers
from .operators import CurvatureOperator


class KFAC(CurvatureOperator):
    """Block-diagonal Kronecker-factored curvature; ``factors[layer name] = (A (I', I'), G (O, O))``.

    Build it as ``KFAC(obj)`` or ``KFAC(model, loss_fn, data, params=...)``. ``kind``: "exact" (GGN:
    V = output Hessian square root), "mc" (``mc_samples`` sampled labels, the classic K-FAC Fisher) or
    "empirical" (data labels). One pass over the data; products, ``diagonal()`` and ``solve(v, damping)``
    only touch the small factors. ``dense()`` and ``blocks()`` come from products.
    """

    name = "K-FAC"

    def __init__(self, objective, loss_fn=None, data=None, params=None, *, kind: str = "exact",
                 mc_samples: int = 1, seed: int | torch.Generator | None = 0, theta: torch.Tensor | None = None,
                 progress: bool = True):
        choice(kind, ("exact", "mc", "empirical"), "K-FAC kind")
        mc_samples = positive_int(mc_samples, "mc_samples")
        super().__init__(objective, loss_fn, data, params, theta=theta, progress=progress)
        obj = self.objective
        self.kind = kind
        self.layers = supported_layers(obj, "K-FAC")
        gen = generator(seed, self.device) if kind == "mc" else None
        sizes = [((layer.module.weight[0].numel() if layer.weight else 0) + (1 if layer.bias else 0),
                  layer.module.weight.shape[0]) for layer in self.layers]

        def vectors(out, t):
            return obj.loss_terms.output_vectors(kind, out, t, int(mc_samples), gen)

        total = sum(i * i + o * o for i, o in sizes)

        def split(flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
            """Views (A_l, G_l) of one flat buffer holding every layer's factors."""
            out, start = [], 0
            for i, o in sizes:
                out.append((flat[start : start + i * i].view(i, i),
                            flat[start + i * i : start + i * i + o * o].view(o, o)))
                start += i * i + o * o
            return out

        def batch_sum(X, y):
            (pairs,) = backpropagate(obj, self.layers, self.theta, X, y, vectors)  # all columns at once
            flat = torch.empty(total, dtype=obj.dtype, device=obj.device)
            for layer, (a, d), (A, G) in zip(self.layers, pairs, split(flat)):
                kfac_factor_sums(layer, a, d, A, G)
            return flat

        chunk = examples_per_chunk(obj, self.layers)
        flat = obj.check_finite(chunked_mean(obj, batch_sum, (total,), progress, "K-FAC factors", chunk),
                                 "K-FAC factors")
        # data_mean divides both sums by the loss's normaliser Z; A is a mean over the N examples, so it is rescaled
        # by ratio = N / Z (1 for unweighted cross-entropy)
        ratio = obj.num_examples / obj.normaliser
        self.factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for layer, (A, G) in zip(self.layers, split(flat)):
            self.factors[layer.name] = (A if ratio == 1 else A.div_(ratio), G)
        self._eigen: dict[str, tuple] = {}

    def _blocks(self, M: torch.Tensor):
        """Yield (layer, A, G, V (O, I', k)) with V the layer's [weight | bias] part of M (P, k)."""
        slices = self.objective.slices()
        for layer in self.layers:
            A, G = self.factors[layer.name]
            parts = []
            if layer.weight:
                parts.append(M[slices[layer.weight]].reshape(G.shape[0], -1, M.shape[1]))
            if layer.bias:
                parts.append(M[slices[layer.bias]].reshape(G.shape[0], 1, M.shape[1]))
            yield layer, A, G, torch.cat(parts, 1)

    def _scatter(self, layer, R: torch.Tensor, out: torch.Tensor) -> None:
        slices = self.objective.slices()
        if layer.weight:
            out[slices[layer.weight]] = R[:, : R.shape[1] - (1 if layer.bias else 0)].reshape(-1, R.shape[2])
        if layer.bias:
            out[slices[layer.bias]] = R[:, -1]

    def _matmat(self, M):
        out = torch.empty_like(M)
        for layer, A, G, V in self._blocks(M):
            self._scatter(layer, torch.einsum("po,oik,iq->pqk", G, V, A), out)
        return out

    def diagonal(self) -> torch.Tensor:
        """The exact diagonal of G kron A per layer, (P,): diag(G) diag(A)^T."""
        out = torch.empty(self.num_params, 1, dtype=self.dtype, device=self.device)
        for layer in self.layers:
            A, G = self.factors[layer.name]
            self._scatter(layer, torch.outer(G.diagonal(), A.diagonal()).unsqueeze(2), out)
        return out[:, 0]

    def solve(self, v: torch.Tensor, damping: float) -> torch.Tensor:
        """(K-FAC + damping I)^{-1} v for v (P,) or (P, k), exactly, from the factors' eigendecompositions."""
        if damping < 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        v = self.objective.check_vector(v, "v", allow_matrix=True)
        M = v if v.ndim == 2 else v.unsqueeze(1)
        out = torch.empty_like(M)
        for layer, A, G, V in self._blocks(M):
            if layer.name not in self._eigen:
                self._eigen[layer.name] = (*torch.linalg.eigh(A), *torch.linalg.eigh(G))
            ea, Qa, eg, Qg = self._eigen[layer.name]
            rotated = torch.einsum("op,oik,iq->pqk", Qg, V, Qa)
            denominator = (eg[:, None] * ea[None, :] + damping).unsqueeze(2)
            if (denominator <= 0).any():
                raise ZeroDivisionError(f"K-FAC block of {layer.name!r} is singular; pass damping > 0")
            self._scatter(layer, torch.einsum("po,oik,qi->pqk", Qg, rotated / denominator, Qa), out)
        return out if v.ndim == 2 else out[:, 0]


def kfac(model: nn.Module, loss_fn: Callable, data: Batch | Iterable[Batch], kind: str = "exact",
         mc_samples: int = 1, params: ParamFilter = None, seed: int | torch.Generator | None = 0,
         progress: bool = True) -> KFAC:
    """K-FAC of the mean loss over ``data``, one pass: ``KFAC(model, loss_fn, data, ...)`` (see the module docstring).

    >>> K = kfac(net, nn.CrossEntropyLoss(), loader)          # doctest: +SKIP
    >>> A, G = K.factors["0"]; step = K.solve(g, damping=1e-3)  # doctest: +SKIP
    """
    return KFAC(model, loss_fn, data, params, kind=kind, mc_samples=mc_samples, seed=seed, progress=progress)

