"""The curvature engine: every curvature matrix of the mean loss is a linear operator on an Objective.

Each operator is a symmetric (P, P) matrix over the Objective's flat parameters theta, of the **mean**
loss over all the data (all batches, all ranks of a ``torch.distributed`` group), on the parameters'
device and dtype:

- :class:`Hessian`: H = d^2 L / d theta^2 (indefinite in general);
- :class:`GGN`: G = (1/Z) sum_n J_n^T H_n J_n, H_n the Hessian of example n's loss term in the outputs;
- :class:`Fisher`: the true Fisher of the likelihood (exact: equals the GGN) or its Monte-Carlo estimate;
- :class:`EmpiricalFisher`: (1/Z) sum_n g_n g_n^T with the data's labels;
- :class:`~losstools.curvature.kronecker.KFAC` (kronecker.py): per layer G_l kron A_l.

Every operator offers ``op @ M`` for M of shape (P,) or (P, k), ``dense()`` (behind the memory guard),
``diagonal()``, ``blocks()`` (one (P_j, P_j) block per parameter tensor) and ``to_scipy()``. The generic
methods use products (P of them for ``dense``); cheaper exact paths override them: the structured
Linear-chain formulas for the Hessian, forward-over-reverse tensor blocks where forward mode is right,
per-layer hooks (Linear / Conv2d) for the GGN and Fisher diagonals, per-example gradients elsewhere.

Build an operator from an Objective, ``Hessian(obj)``, or, as a convenience, from
``(model, loss_fn, data, params=...)``: ``Hessian(net, nn.CrossEntropyLoss(), loader)``.
"""
from __future__ import annotations

from functools import cached_property
from typing import Callable

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn

from .. import _autodiff
from .._distributed import all_reduce_sum
from .._validate import positive_int
from ..objective import Objective
from . import _columns
from . import linear_chain as structured
from .layers import UnsupportedLayerError, class_weights, output_vectors, softmax_cross_entropy
from .memory import check_dense
from .passes import generator

LIKELIHOODS = (nn.CrossEntropyLoss, nn.BCEWithLogitsLoss, nn.MSELoss)


def as_objective(objective, loss_fn=None, data=None, params=None) -> Objective:
    """``objective`` itself, or ``Objective(model, loss_fn, data, params)`` for the convenience form."""
    if isinstance(objective, Objective):
        if loss_fn is not None or data is not None or params is not None:
            raise TypeError("pass either an Objective, or a model with loss_fn and data (and params), not both")
        return objective
    if isinstance(objective, nn.Module):
        if loss_fn is None or data is None:
            raise TypeError("a model needs loss_fn and data: Hessian(model, loss_fn, data) or Hessian(Objective(...))")
        return Objective(objective, loss_fn, data, params)
    raise TypeError(f"expected an Objective or an nn.Module, got {type(objective).__name__}")


class CurvatureOperator:
    """Base class: a symmetric (P, P) curvature matrix of the mean loss, used through products.

    Subclasses implement ``_matmat(M)`` for M of shape (P, k) (a mean over the data through
    ``Objective.data_mean``). ``objective`` holds the parametrisation; ``theta`` (P,) is where the
    matrix is evaluated (default: the model's parameters). ``matvecs`` counts products (columns).
    """

    name = "curvature matrix"

    def __init__(self, objective, loss_fn=None, data=None, params=None, *, theta: torch.Tensor | None = None,
                 progress: bool = False):
        self.objective = as_objective(objective, loss_fn, data, params)
        self.loss_fn = self.objective.loss_fn
        self.theta = self.objective._theta_or_default(theta).detach().clone()
        self.progress = bool(progress)
        self.num_examples = self.objective.num_examples  # over all ranks
        self.matvecs = 0

    @property
    def num_params(self) -> int:
        return self.objective.num_params

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_params, self.num_params)

    @property
    def dtype(self) -> torch.dtype:
        return self.objective.dtype

    @property
    def device(self) -> torch.device:
        return self.objective.device

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a (P,) vector into ``{parameter name: tensor}``."""
        return self.objective.unflatten(vector)

    def _matmat(self, M: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _mean(self, batch_sum: Callable, shape: tuple, what: str) -> torch.Tensor:
        return self.objective.data_mean(batch_sum, shape, self.progress, f"{self.name} {what}")

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        """The product with v of shape (P,) or (P, k); same shape out, on the parameters' device/dtype."""
        v = self.objective.check_vector(v, "v", allow_matrix=True)
        M = v if v.ndim == 2 else v.unsqueeze(1)
        self.matvecs += M.shape[1]
        out = self.objective._check_finite(self._matmat(M), f"{self.name} product")
        return out if v.ndim == 2 else out[:, 0]

    # ------------------------------------------------------------------ dense parts
    def dense(self, max_bytes: int | None = None, chunk_size: int | None = None) -> torch.Tensor:
        """The dense (P, P) matrix; refused before allocating over the memory budget (``max_bytes``)."""
        check_dense(self.num_params, self.num_params, self.dtype, self.name, max_bytes)
        return self.objective._check_finite(self._part("dense", chunk_size), self.name)

    to_dense = dense

    def diagonal(self, chunk_size: int | None = None) -> torch.Tensor:
        """The exact diagonal (P,). Generic method: P products (subclasses override it with cheaper ones)."""
        return self.objective._check_finite(self._part("diagonal", chunk_size), f"{self.name} diagonal")

    def blocks(self, max_bytes: int | None = None, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
        """The diagonal blocks, one per parameter tensor: ``{name: (P_j, P_j)}`` (each behind the memory guard)."""
        for name, size in zip(self.objective.names, self.objective.sizes):
            check_dense(size, size, self.dtype, f"{self.name} block of {name}", max_bytes)
        blocks = self._part("blocks", chunk_size)
        return {n: self.objective._check_finite(b, self.name) for n, b in blocks.items()}

    def _part(self, part: str, chunk_size: int | None):
        return _columns.from_products(self, part, _columns.auto_chunk(self.objective, chunk_size))

    def to_scipy(self) -> LinearOperator:
        """A ``scipy.sparse.linalg.LinearOperator`` (NumPy in and out, float32/float64 as the parameters)."""
        np_dtype = np.float64 if self.dtype == torch.float64 else np.float32

        def apply(x):
            x = torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)
            return (self @ x.reshape(self.num_params, -1)).cpu().numpy().astype(np_dtype).reshape(np.shape(x))

        return LinearOperator(self.shape, matvec=apply, rmatvec=apply, matmat=apply, dtype=np_dtype)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(P={self.num_params}, N={self.num_examples}, dtype={self.dtype}, "
                f"device={self.device})")


class Hessian(CurvatureOperator):
    """The Hessian of the mean loss. Products: ``Objective.hvp`` (reverse-over-reverse by default).
    ``dense``/``diagonal``/``blocks``: the exact structured formulas for Linear/elementwise chains (about
    N P^2 flops for the dense matrix, far below P products), else forward-over-reverse tensor blocks where
    forward mode is right for the model (half the work, by symmetry), else P products."""

    name = "Hessian"

    def _matmat(self, M):
        return self.objective.hvp(M, self.theta)

    def _part(self, part: str, chunk_size: int | None):
        obj = self.objective
        chain = structured.linear_chain(obj)
        if chain is not None:
            if part == "dense":
                out = torch.zeros(obj.num_params, obj.num_params, dtype=obj.dtype, device=obj.device)
                structured.dense_hessian(chain, self.theta, out, chunk_size)
                return all_reduce_sum(out)
            if part == "diagonal":
                out = torch.zeros(obj.num_params, dtype=obj.dtype, device=obj.device)
                structured.diagonal(chain, self.theta, out, chunk_size)
                return all_reduce_sum(out)
            blocks = structured.diagonal_blocks(chain, self.theta, chunk_size)
            return {n: all_reduce_sum(blocks[n]) for n in obj.names}
        if obj.forward_mode_ok:
            return _columns.hessian_tensor_blocks(obj, self.theta, part, _columns.auto_chunk(obj, chunk_size))
        return super()._part(part, chunk_size)


def _output_hessian_product(obj: Objective, out: torch.Tensor, y: torch.Tensor, JM: torch.Tensor) -> torch.Tensor:
    """H_out (J M) for the loss sum's Hessian in the outputs; JM (k, *out.shape) -> same shape."""
    loss = obj.loss_terms.loss_fn
    # closed form, as in output_hessian_sqrt: c_n (diag(p) - p p^T) u, c_n the example's class weight
    if softmax_cross_entropy(loss, out):
        p = torch.softmax(out, -1)
        return class_weights(loss, y, out.dtype)[:, None] * p * (JM - (JM * p).sum(-1, keepdim=True))
    flat = JM.reshape(len(JM), -1).T  # (outputs, k)

    def loss_of(o):
        return obj.loss_terms.sum(o.view_as(out), y)

    return _autodiff.hvp(loss_of, out.reshape(-1), flat, obj.ad_mode).T.reshape(JM.shape)


class GGN(CurvatureOperator):
    """The generalised Gauss-Newton G = (1/Z) sum_n J_n^T H_n J_n, H_n the Hessian of example n's loss
    term in the outputs: PSD for losses convex in the outputs; equals the true Fisher for cross-entropy,
    BCE-with-logits and MSE. A product: one Jacobian-vector product (path: ``Objective.jvp_mode``), the loss's
    Hessian in the outputs (closed form for cross-entropy), one vector-Jacobian product; through chains of
    Linear layers and elementwise activations both by hand (``linear_chain.ggn_batch_sum``). ``diagonal()``:
    per-layer hooks (Linear / Conv2d; about C gradients for C outputs), per-example gradients for any other layer."""

    name = "GGN"
    kind = "exact"

    @cached_property
    def _chain(self) -> structured.LinearChain | None:
        """The model's Linear-chain structure, if it has one (products then go by hand)."""
        return structured.linear_chain(self.objective)

    def _matmat(self, M):
        obj, mode = self.objective, self.objective.jvp_mode(M.shape[1])
        if self._chain is not None:  # Linear layers and elementwise activations: forward and backward by hand
            with torch.no_grad():
                batch_sum = structured.ggn_batch_sum(self._chain, self.theta, M, _output_hessian_product)
                return self._mean(batch_sum, tuple(M.shape), "product")

        def batch_sum(X, y):
            out, JM, pullback = _autodiff.jacobian_products(lambda th: obj.outputs(th, X), self.theta, M, mode)
            HJM = _output_hessian_product(obj, out.detach(), y, JM)
            return pullback(HJM).T

        return self._mean(batch_sum, tuple(M.shape), "product")

    def _vectors(self) -> Callable:
        """``(out, y) -> V (B, C, K)`` with sum_k V V^T this matrix's per-example output matrix."""
        return lambda out, y: output_vectors(self.kind, self.objective.loss_terms, out, y)

    def diagonal(self, chunk_size: int | None = None) -> torch.Tensor:
        """The exact diagonal (P,): per-layer hooks, or per-example gradients for other layers."""
        from .diagonal import layer_diagonal, per_example_diagonal

        obj = self.objective
        try:
            diag = layer_diagonal(obj, self._vectors(), self.theta, self.progress, f"{self.name} diagonal")
        except UnsupportedLayerError:
            diag = per_example_diagonal(obj, self._vectors(), self.theta, self.progress, f"{self.name} diagonal")
        return obj._check_finite(diag, f"{self.name} diagonal")


class _OuterProduct(GGN):
    """(1/Z) sum_n J_n^T V_n V_n^T J_n for output vectors V_n (C, K) of a ``kind`` (see layers.output_vectors)."""

    def __init__(self, objective, loss_fn=None, data=None, params=None, *, theta=None, progress=False,
                 mc_samples: int = 1, seed: int | torch.Generator | None = 0):
        super().__init__(objective, loss_fn, data, params, theta=theta, progress=progress)
        self.mc_samples = int(mc_samples)
        self._gen = generator(seed, self.device)
        self._state = self._gen.get_state()  # every product re-draws the same labels: one fixed matrix

    def _vectors(self) -> Callable:
        self._gen.set_state(self._state)
        terms, kind, samples, gen = self.objective.loss_terms, self.kind, self.mc_samples, self._gen
        return lambda out, y: output_vectors(kind, terms, out, y, samples, gen)

    def _matmat(self, M):
        obj, vectors = self.objective, self._vectors()

        def batch_sum(X, y):
            mode = obj.jvp_mode(M.shape[1])
            out, JM, pullback = _autodiff.jacobian_products(lambda th: obj.outputs(th, X), self.theta, M, mode)
            V = vectors(out.detach(), y)  # (B, C, K)
            JM = JM.reshape(M.shape[1], len(X), -1)
            W = torch.einsum("bcs,kbs->kbc", V, torch.einsum("kbc,bcs->kbs", JM, V))
            return pullback(W.reshape(M.shape[1], *out.shape)).T

        return self._mean(batch_sum, tuple(M.shape), "product")


class Fisher(_OuterProduct):
    """The true Fisher E_{y~p(y|f)}[g g^T] of the likelihood whose negative log is ``loss_fn``.

    ``mc_samples=None``: exact (the expectation in closed form; equals the GGN for these losses).
    ``mc_samples=S``: the Monte-Carlo Fisher with S labels per example sampled from ``seed``; the labels
    are fixed at construction, so the operator is one fixed PSD matrix (unbiased for the true one).
    """

    name = "Fisher"

    def __init__(self, objective, loss_fn=None, data=None, params=None, *, theta=None, progress=False,
                 mc_samples: int | None = None, seed: int | torch.Generator | None = 0):
        obj = as_objective(objective, loss_fn, data, params)
        if not isinstance(obj.loss_fn, LIKELIHOODS):
            raise ValueError(f"the true Fisher needs a likelihood: nn.CrossEntropyLoss, nn.BCEWithLogitsLoss or "
                             f"nn.MSELoss, not {type(obj.loss_fn).__name__}; use GGN or EmpiricalFisher")
        if mc_samples is not None:
            mc_samples = positive_int(mc_samples, "mc_samples")
        super().__init__(obj, theta=theta, progress=progress, mc_samples=mc_samples or 1, seed=seed)
        self.kind = "exact" if mc_samples is None else "mc"


class EmpiricalFisher(_OuterProduct):
    """The empirical Fisher (1/Z) sum_n g_n g_n^T, g_n example n's gradient with the data's labels.

    Not the curvature of anything in general: it matches the Fisher only where the model fits the labels' noise.
    """

    name = "empirical Fisher"
    kind = "empirical"


# the names of earlier releases, kept so that code written for them runs unchanged
HessianOperator, GGNOperator, FisherOperator, EmpiricalFisherOperator = Hessian, GGN, Fisher, EmpiricalFisher
