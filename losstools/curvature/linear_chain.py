"""Exact Hessian of nets made of Linear layers and elementwise activations, by backpropagating curvature.

A model qualifies (:func:`linear_chain`) when it is an ``nn.Sequential`` of ``nn.Linear`` layers and
elementwise activations (after optional parameter-free input modules such as ``nn.Flatten``), its
inputs are (N, features) and the loss is a sum of per-example terms (cross-entropy, MSE, BCE, ...).
Per example, with z_l = W_l x_{l-1} + b_l, x_l = phi_l(z_l) and the mean loss L:

    delta_l = dL/dz_l,   D_l = diag(phi_l'(z_l)),   T_{m,l} = dz_m/dz_l = W_m D_{m-1} T_{m-1,l}  (T_{l,l} = I),
    M_l = d^2 L/dz_l^2 = D_l W_{l+1}^T M_{l+1} W_{l+1} D_l + diag(phi_l''(z_l) * (W_{l+1}^T delta_{l+1})).

With a 1 appended to x_{l-1} for the bias, the block of layers l <= m is, exactly,

    H[(l,b,a), (m,d,c)] = sum_n x_{l-1}[n,a] x_{m-1}[n,c] (M_m T_{m,l})[n,d,b]
                        + sum_n x_{l-1}[n,a] delta_m[n,d] (D_{m-1} T_{m-1,l})[n,c,b]   (l < m, c a weight input),

two matrix products over the examples (the second is diagonal in (b, c) when m = l + 1; blocks with
l = m use only pairs a <= c). The whole Hessian costs about N P^2 flops in large GEMMs, against about
12 N P^2 for P Hessian-vector products (about 12 N P flops each on an MLP). The diagonal
(:func:`diagonal`) never forms M_l: it splits it into a low-rank part through the C outputs and a
residual that stays diagonal for the last two layers, about 2 N (C + 2) P flops for up to two hidden
layers. phi', phi'' and the loss's Hessian in the outputs come from torch.func (forward-mode
derivatives), so any elementwise activation and separable loss is handled exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad, jvp, vmap

from .._progress import progress_bar
from .._structure import plain, stock_forward
from ..objective import Objective

ELEMENTWISE = (nn.Tanh, nn.ReLU, nn.Sigmoid, nn.GELU, nn.Softplus, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Identity,
               nn.Softsign, nn.Tanhshrink, nn.Mish, nn.CELU, nn.SELU)
_CHUNK_BYTES = 2**28  # per-example working memory aimed at per chunk of examples (256 MiB)
_HEAD_BYTES = 2**30  # at most this much for the loss's per-example Hessians in the outputs


@dataclass
class Part:
    """A selected parameter tensor of a layer: its offset in theta and its columns of the layer's input."""

    name: str
    offset: int
    cols: slice  # its columns of the layer's selected augmented input (weight: the inputs x; bias: a 1)
    bias: bool

    @property
    def width(self) -> int:
        return self.cols.stop - self.cols.start


@dataclass
class ChainLayer:
    """One Linear layer, the elementwise activations after it, and its selected parameter tensors."""

    weight: str  # names in the objective's params_dict
    bias: str | None
    activations: list[nn.Module]
    parts: list[Part]


@dataclass
class Chunk:
    """Per-example quantities of a chunk of examples (already weighted for the mean over all examples).

    xs[l] (n, I_l~): selected columns of layer l's augmented input; deltas[l] (n, O_l); M[l] (n, O_l, O_l);
    d1[l] (n, O_l) = phi_l'(z_l) for hidden layers; Ws[l] (O_l, I_l).
    """

    xs: list[torch.Tensor]
    deltas: list[torch.Tensor]
    M: list[torch.Tensor]
    d1: list[torch.Tensor]
    Ws: list[torch.Tensor]


def _elementwise_chain(modules: list[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    def apply(z):
        for m in modules:
            z = m(z.clone() if getattr(m, "inplace", False) else z)  # never mutate a transformed input
        return z

    return apply


class LinearChain:
    """The structure of a qualifying model (see module docstring); build with :func:`linear_chain`."""

    def __init__(self, obj: Objective, prefix: list[nn.Module], layers: list[ChainLayer]):
        self.obj, self.prefix, self.layers = obj, _elementwise_chain(prefix), layers

    def _forward(self, params: dict, X: torch.Tensor):
        xs, d1s, d2s = [], [], []
        x = self.prefix(X)
        for i, layer in enumerate(self.layers):
            xs.append(x)
            z = F.linear(x, params[layer.weight], params[layer.bias] if layer.bias else None)
            if i == len(self.layers) - 1:
                return xs, d1s, d2s, z
            act, ones = _elementwise_chain(layer.activations), torch.ones_like(z)
            (x, d1), (_, d2) = jvp(lambda u: jvp(act, (u,), (ones,)), (z,), (ones,))
            d1s.append(d1)
            d2s.append(d2)

    def _head(self, Z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dL/dZ (n, C) and the per-example Hessians d^2 L/dZ_n^2 (n, C, C) of the loss in the last z."""
        act = _elementwise_chain(self.layers[-1].activations)
        g = grad(lambda Z: self.obj.loss_terms.sum(act(Z), y) / self._normaliser)
        C = Z.shape[1]
        E = torch.eye(C, dtype=Z.dtype, device=Z.device).unsqueeze(1).expand(C, len(Z), C)
        # tangent c is one-hot in column c for every example; separability makes row n its own block
        M = vmap(lambda e: jvp(g, (Z,), (e,))[1], out_dims=2)(E)
        return g(Z), M

    def per_example(self, theta: torch.Tensor, chunk_size: int | None = None,
                    bytes_per_example: int | None = None) -> Iterator[tuple]:
        """Forward quantities chunk by chunk of examples, over all batches of the objective:
        (xs, d1s, d2s, delta (n, C), M (n, C, C), Ws), delta and M weighted for the mean over all examples.
        Chunks hold ``chunk_size`` examples (default: about ``_CHUNK_BYTES`` at ``bytes_per_example``)."""
        obj = self.obj
        params = obj.params_dict(theta)
        Ws = [params[layer.weight] for layer in self.layers]
        self._normaliser = obj.normaliser
        for X, y in obj.batches():
            xs, d1s, d2s, Z = self._forward(params, X)
            delta, M = self._head(Z, y)  # of the mean loss over all the data: weighted already
            step = chunk_size or self._auto_chunk(len(X), bytes_per_example)
            for s in range(0, len(X), step):
                rows = slice(s, s + step)
                yield [x[rows] for x in xs], [d[rows] for d in d1s], [d[rows] for d in d2s], delta[rows], M[rows], Ws

    def chunks(self, theta: torch.Tensor, chunk_size: int | None = None) -> Iterator[Chunk]:
        """Per-example quantities with the full per-example M_l, chunk by chunk of examples."""
        for xs, d1s, d2s, delta, M, Ws in self.per_example(theta, chunk_size):
            yield self._backward(xs, d1s, d2s, delta, M, Ws)

    def _auto_chunk(self, n: int, bytes_per_example: int | None = None) -> int:
        """Examples per chunk: about ``_CHUNK_BYTES`` of per-example matrices (default: M_l, T, products)."""
        if bytes_per_example is None:
            params = self.obj.params_dict(self.obj.theta)
            outs = [params[layer.weight].shape[0] for layer in self.layers]
            widths = [sum(p.width for p in layer.parts) for layer in self.layers]
            per_example = sum(o * o for o in outs) + 4 * max(outs) ** 2 + 2 * max(widths) ** 2
            bytes_per_example = per_example * self.obj.theta.element_size()
        return max(1, min(n, _CHUNK_BYTES // max(1, bytes_per_example)))

    def _backward(self, xs, d1s, d2s, delta, M, Ws) -> Chunk:
        L = len(self.layers)
        deltas, Ms = [None] * L, [None] * L
        deltas[-1], Ms[-1] = delta, M
        for l in range(L - 2, -1, -1):
            W = Ws[l + 1]
            g = deltas[l + 1] @ W  # dL/dx_l
            deltas[l] = g * d1s[l]
            A = W.T @ (Ms[l + 1] @ W)  # (n, O_l, O_l)
            Ms[l] = d1s[l].unsqueeze(2) * A * d1s[l].unsqueeze(1) + torch.diag_embed(d2s[l] * g)
        aug = [torch.cat([torch.ones_like(x[:, :1]) if p.bias else x for p in layer.parts], 1) if layer.parts
               else x[:, :0] for x, layer in zip(xs, self.layers)]
        return Chunk(aug, deltas, Ms, list(d1s), Ws)


def linear_chain(obj: Objective) -> LinearChain | None:
    """The structure of ``obj`` if the exact structured formulas apply to it, else None (use HVPs)."""
    model = obj.model
    if not stock_forward(model, nn.Sequential) or not obj.loss_terms.structured or not obj.examples_independent:
        return None
    if not all(plain(m) for m in model.modules()):
        return None
    if not all(obj.structure.consumed_once_by_owner(n) for n in obj.names):
        return None
    children = list(model._modules.items())  # a module placed twice appears twice (named_children dedups)
    linears = [m for _, m in children if isinstance(m, nn.Linear)]
    if len({id(m) for m in linears}) < len(linears):
        return None  # one Linear applied twice: shared weights, not a chain of distinct layers
    prefix: list[nn.Module] = []
    while children and not isinstance(children[0][1], nn.Linear):
        m = children.pop(0)[1]
        if any(True for _ in m.parameters()) or any(True for _ in m.buffers()):
            return None
        prefix.append(m)
    layers: list[ChainLayer] = []
    for name, m in children:
        if type(m) is nn.Linear:
            layers.append(ChainLayer(f"{name}.weight", f"{name}.bias" if m.bias is not None else None, [], []))
        elif type(m) in ELEMENTWISE and layers:
            layers[-1].activations.append(m)
        else:
            return None
    if not layers:
        return None
    X, _ = next(obj.batches())
    with torch.no_grad():
        if _elementwise_chain(prefix)(X[:1]).ndim != 2:
            return None
    slices = obj.slices()
    params = obj.params_dict(obj.theta)
    outputs = params[layers[-1].weight].shape[0]
    if obj.num_examples * outputs**2 * obj.theta.element_size() > _HEAD_BYTES:
        return None  # the loss's Hessian in the outputs, (N, C, C) per batch, would not fit
    for layer in layers:
        start = 0
        for name, width, bias in ((layer.weight, params[layer.weight].shape[1], False), (layer.bias, 1, True)):
            if name in slices:
                layer.parts.append(Part(name, slices[name].start, slice(start, start + width), bias))
                start += width
    if sum(len(layer.parts) for layer in layers) != len(obj.names):
        return None
    return LinearChain(obj, prefix, layers)


# ----------------------------------------------------------------------- assembly
def _view(H: torch.Tensor, p: Part, rows: int, q: Part, cols: int) -> torch.Tensor:
    """The block H[p, q] as a (O_p, width_p, O_q, width_q) view (weight entries are (out, in) row-major)."""
    block = H[p.offset : p.offset + rows * p.width, q.offset : q.offset + cols * q.width]
    return block.view(rows, p.width, cols, q.width)


def _store(view: torch.Tensor, value: torch.Tensor, first: bool) -> None:
    (view.copy_ if first else view.add_)(value)


def _cross(x_l: torch.Tensor, x_m: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """sum_n x_l[n,a] x_m[n,c] K[n,d,b] as (b, a, d, c) (a permuted view): one GEMM over the examples."""
    n, O_m, O_l = K.shape
    A = (x_l.unsqueeze(2) * x_m.unsqueeze(1)).reshape(n, -1)
    G = A.T @ K.transpose(1, 2).reshape(n, -1)
    return G.view(x_l.shape[1], x_m.shape[1], O_l, O_m).permute(2, 0, 3, 1)


def _symmetric(x: torch.Tensor, M: torch.Tensor, view: torch.Tensor, first: bool) -> None:
    """view (O, I, O, I) <- sum_n x[n,a] x[n,c] M[n,b,d] for a symmetric M: the GEMM runs over pairs
    a <= c only (half the work) and the result is exactly symmetric."""
    n, O, _ = M.shape
    ia, ic = torch.triu_indices(x.shape[1], x.shape[1], device=x.device)
    A = x.index_select(1, ia) * x.index_select(1, ic)  # (n, pairs)
    G = (A.T @ M.reshape(n, -1)).view(-1, O, O)  # (pair, b, d)
    if first:
        view[:, ia, :, ic] = G
    else:
        view[:, ia, :, ic] += G
    strict = ia < ic
    view[:, ic[strict], :, ia[strict]] = view[:, ia[strict], :, ic[strict]].transpose(1, 2)
    slabs = view.diagonal(dim1=1, dim2=3)  # (b, d, a): blocks with a == c, symmetric in (b, d)
    slabs.copy_((slabs + slabs.transpose(0, 1)) / 2)


def dense_hessian(chain: LinearChain, theta: torch.Tensor, out: torch.Tensor, chunk_size: int | None = None) -> None:
    """Write the exact Hessian (formulas of the module docstring) into ``out`` (P, P); ``chunk_size``
    examples at a time (default: about 256 MiB of per-example matrices). Exactly symmetric."""
    layers, L = chain.layers, len(chain.layers)
    for k, ch in enumerate(chain.chunks(theta, chunk_size)):
        n, first = len(ch.deltas[-1]), k == 0
        for l in range(L):
            if not layers[l].parts:
                continue
            x_l, O_l = ch.xs[l], ch.Ws[l].shape[0]
            for i, p in enumerate(layers[l].parts):  # the layer's own block: M_l, no residual
                _symmetric(x_l[:, p.cols], ch.M[l], _view(out, p, O_l, p, O_l), first)
                for q in layers[l].parts[i + 1 :]:
                    _store(_view(out, p, O_l, q, O_l), _cross(x_l[:, p.cols], x_l[:, q.cols], ch.M[l]), first)
            T = R = None  # dz_m/dz_l (n, O_m, O_l) and dx_{m-1}/dz_l (n, I_m, O_l) for m > l + 1
            for m in range(l + 1, L):
                if m == l + 1:
                    T = ch.Ws[m] * ch.d1[l].unsqueeze(1)
                else:
                    R = ch.d1[m - 1].unsqueeze(2) * T
                    T = ch.Ws[m] @ R
                if not layers[m].parts:
                    continue
                O_m = ch.Ws[m].shape[0]
                G = _cross(x_l, ch.xs[m], ch.M[m] @ T)
                if m == l + 1:  # residual, diagonal in (b, c): [a, d, b]
                    E = (ch.deltas[m].unsqueeze(2) * ch.d1[l].unsqueeze(1)).reshape(n, -1)
                    res = (x_l.T @ E).view(-1, O_m, O_l)
                else:  # residual [b, a, d, c]
                    B = (x_l.unsqueeze(2) * ch.deltas[m].unsqueeze(1)).reshape(n, -1)
                    res = (B.T @ R.reshape(n, -1)).view(x_l.shape[1], O_m, -1, O_l).permute(3, 0, 1, 2)
                for p in layers[l].parts:
                    for q in layers[m].parts:
                        view = _view(out, p, O_l, q, O_m)
                        _store(view, G[:, p.cols, :, q.cols], first)
                        if q.bias:
                            continue
                        if m == l + 1:
                            view.diagonal(dim1=0, dim2=3).add_(res[p.cols])
                        else:
                            view.add_(res[:, p.cols])
    _mirror(chain, theta, out)


def _mirror(chain: LinearChain, theta: torch.Tensor, out: torch.Tensor) -> None:
    """Fill the blocks H[q, p] from H[p, q] for every pair of parts p before q (in layer order)."""
    outs = [chain.obj.params_dict(theta)[layer.weight].shape[0] for layer in chain.layers]
    parts = [(p, o) for layer, o in zip(chain.layers, outs) for p in layer.parts]
    for i, (p, o_p) in enumerate(parts):
        for q, o_q in parts[i + 1 :]:
            rows = slice(p.offset, p.offset + o_p * p.width)
            cols = slice(q.offset, q.offset + o_q * q.width)
            out[cols, rows] = out[rows, cols].T


def diagonal(chain: LinearChain, theta: torch.Tensor, out: torch.Tensor, chunk_size: int | None = None,
             progress: bool = True) -> None:
    """Add the exact Hessian diagonal into ``out`` (P,): H[(b,a),(b,a)] = sum_n x_l[n,a]^2 diag(M_l)[n,b].

    diag(M_l) never forms the per-example (O_l, O_l) matrices M_l. Unrolling the recursion of the module
    docstring, M_l = J_l^T M_L J_l + R_l with J_l = dz_L/dz_l (n, C, O_l) and the residual
    R_l = D_l W_{l+1}^T R_{l+1} W_{l+1} D_l + diag(r_l), r_l = phi_l''(z_l) * (W_{l+1}^T delta_{l+1}), R_L = 0:

    - low-rank part: diag(J_l^T M_L J_l) = sum_c J_l * (M_L J_l), with J_l = (J_{l+1} W_{l+1}) D_l: C
      backpropagated vectors per example, 2 N C O_{l+1} O_l flops per layer;
    - residual: R_{L-1} = 0 and R_{L-2} = diag(r) are diagonal, so diag(R_{L-3}) = d^2 * (r @ W^2) + r costs
      one GEMM. Only below that (nets with more than two hidden layers) is R_l dense per example: it is
      formed, (n, O_l, O_l), at 4 N O_l^2 O_{l+1} flops per layer, like the full M_l of :func:`dense_hessian`.

    Total for up to two hidden layers: about 2 N (C + 2) P flops after the forward pass (a few backward
    passes per output class); memory O(chunk x C x max O_l) there, O(chunk x O_l^2) on deeper layers.
    ``progress`` shows a bar over chunks of examples on passes longer than a second.
    """
    layers, L = chain.layers, len(chain.layers)
    with_parts = [l for l, layer in enumerate(layers) if layer.parts]
    if not with_parts:
        return
    lowest = with_parts[0]
    params = chain.obj.params_dict(theta)
    outs = [params[layer.weight].shape[0] for layer in layers]
    dense = [outs[l] for l in range(lowest + 1, L - 2)]  # layers whose residual R_l must be formed
    per_example = 3 * outs[-1] * max(outs) + 3 * max(dense, default=0) ** 2
    passes = chain.per_example(theta, chunk_size, per_example * theta.element_size())
    for xs, d1s, d2s, delta, M, Ws in progress_bar(passes, progress, "Hessian diagonal"):
        J = g = rho = Q = None  # dz_L/dz_l, dL/dz_l, diagonal and dense parts of R_l (None: zero)
        for l in range(L - 1, lowest - 1, -1):
            if l == L - 1:
                diag_M, g = M.diagonal(dim1=1, dim2=2), delta
            else:
                W, d1 = Ws[l + 1], d1s[l]
                J = (W if J is None else J @ W) * d1.unsqueeze(1)  # (n, C, O_l)
                back = g @ W  # dL/dx_l
                residual = torch.zeros_like(back)
                if rho is not None:
                    residual = residual + rho @ W.square()
                if Q is not None:
                    residual = residual + ((Q @ W) * W).sum(1)
                r = d2s[l] * back
                diag_M = (J * torch.bmm(M, J)).sum(1) + d1.square() * residual + r
                if l - 1 >= lowest and (rho is not None or Q is not None):  # R_l for the layer below
                    R = torch.diag_embed(rho) if Q is None else Q + torch.diag_embed(rho)
                    Q = d1.unsqueeze(2) * (W.T @ R @ W) * d1.unsqueeze(1)
                else:
                    Q = None
                rho, g = r, back * d1
            if layers[l].parts:
                x = torch.cat([torch.ones_like(xs[l][:, :1]) if p.bias else xs[l] for p in layers[l].parts], 1)
                D = (x.square().T @ diag_M).T  # (O_l, I~)
                for p in layers[l].parts:
                    out[p.offset : p.offset + D.shape[0] * p.width].view(D.shape[0], p.width).add_(D[:, p.cols])


def diagonal_blocks(chain: LinearChain, theta: torch.Tensor, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
    """The exact diagonal blocks {name: (P_j, P_j)} (the formula with l = m and p = q)."""
    params = chain.obj.params_dict(theta)
    out = {p.name: torch.empty(params[p.name].numel(), params[p.name].numel(), dtype=theta.dtype, device=theta.device)
           for layer in chain.layers for p in layer.parts}
    for k, ch in enumerate(chain.chunks(theta, chunk_size)):
        for layer, x, M in zip(chain.layers, ch.xs, ch.M):
            for p in layer.parts:
                O = M.shape[1]
                _symmetric(x[:, p.cols], M, out[p.name].view(O, p.width, O, p.width), k == 0)
    return out


# ----------------------------------------------------------------------- Gauss-Newton products
def ggn_batch_sum(chain: LinearChain, theta: torch.Tensor, M: torch.Tensor,
                  output_hessian_product: Callable) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(X, y) -> sum_n J_n^T H_n J_n M`` (P, k) over a batch, for M (P, k): the GGN product through the chain by
    hand, without autograd. One forward pass carries the k tangents dz_l = x_{l-1} dW_l^T + db_l + dx_{l-1} W_l^T
    (dx_l = phi_l'(z_l) dz_l), ``output_hessian_product(obj, out, y, J M)`` applies H_n (the loss sum's Hessian in
    the outputs), and one backward pass gives the weight and bias parts: for the MLP of the benchmark about three
    GEMMs of the first layer's size against four for the double-backward products."""
    obj, layers = chain.obj, chain.layers
    params = obj.params_dict(theta)
    k = M.shape[1]

    def tangent_blocks(layer: ChainLayer) -> list[tuple[Part, torch.Tensor]]:
        O = params[layer.weight].shape[0]
        return [(p, M[p.offset : p.offset + O * p.width].view(O, p.width, k)) for p in layer.parts]

    blocks = [tangent_blocks(layer) for layer in layers]

    def batch_sum(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, dx, inputs, slopes = chain.prefix(X), None, [], []
        for layer, parts in zip(layers, blocks):
            W = params[layer.weight]
            z = F.linear(x, W, params[layer.bias] if layer.bias else None)
            dz = torch.zeros(k, *z.shape, dtype=z.dtype, device=z.device) if dx is None else dx @ W.T
            for p, T in parts:  # T (O, width, k)
                dz = dz + (T[:, 0, :].T.unsqueeze(1) if p.bias else torch.matmul(x, T.permute(2, 1, 0)))
            inputs.append(x)
            if layer.activations:
                x, slope = jvp(_elementwise_chain(layer.activations), (z,), (torch.ones_like(z),))
                dx = slope * dz
            else:
                x, slope, dx = z, None, dz
            slopes.append(slope)
        delta = output_hessian_product(obj, x, y, dx)  # (k, n, C)
        out = torch.zeros(obj.num_params, k, dtype=M.dtype, device=M.device)
        for l in range(len(layers) - 1, -1, -1):
            delta = delta if slopes[l] is None else delta * slopes[l]
            W = params[layers[l].weight]
            for p, _ in blocks[l]:
                rows = out[p.offset : p.offset + W.shape[0] * p.width].view(W.shape[0], p.width, k)
                if p.bias:
                    rows[:, 0, :] = delta.sum(1).T
                else:
                    rows.copy_((delta.transpose(1, 2) @ inputs[l]).permute(1, 2, 0))
            if l > 0:
                delta = delta @ W
        return out

    return batch_sum

