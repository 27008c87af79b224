"""Curvature matrices of the mean loss as linear operators: ``op @ v`` without ever forming them.

Every operator is a symmetric (P, P) matrix over the Objective's flat parameters theta (selected by
``params``), of the **mean** loss over all examples of ``data`` (any iterable of batches; summed
over the ranks of a ``torch.distributed`` group), on the parameters' device and dtype:

- :class:`HessianOperator`: H = (1/N) sum_n d^2 l_n / d theta^2 (indefinite in general);
- :class:`GGNOperator`: G = (1/N) sum_n J_n^T H_n J_n, H_n the Hessian of l_n w.r.t. the outputs;
- :class:`FisherOperator`: the true Fisher E_{y~p}[g g^T] (exact: equals G) or its Monte-Carlo version;
- :class:`EmpiricalFisherOperator`: (1/N) sum_n g_n g_n^T with the data's labels;
- ``KFACOperator`` (kfac.py): per layer G_l kron A_l, products through tiny matrices.

A product with the first four costs about 2-3 gradients (benchmarks/curvature.py) per column.

``op @ M`` takes (P,) or (P, k); ``to_dense()`` builds the matrix behind the memory guard,
``to_scipy()`` gives a ``scipy.sparse.linalg.LinearOperator`` (e.g. for ``eigsh``), ``diagonal()``
returns the exact diagonal where it is cheap (per-layer hooks; Hessian: P products).
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn
from torch.func import grad, jvp, vjp, vmap

from ..objective import Batch, Objective, ParamFilter
from .exact import _basis_chunks, auto_chunk, hessian_diag
from .layers import output_vectors
from .memory import check_dense
from .passes import all_reduce_sum, data_mean, distributed, generator, global_count

LIKELIHOODS = (nn.CrossEntropyLoss, nn.BCEWithLogitsLoss, nn.MSELoss)


def columns(fn: Callable, M: torch.Tensor, in_dim: int, out_dim: int) -> torch.Tensor:
    """``vmap(fn)`` over dimension ``in_dim`` of M, stacked at ``out_dim``; a plain call for one column."""
    if M.shape[in_dim] == 1:
        return fn(M.select(in_dim, 0)).unsqueeze(out_dim)
    return vmap(fn, in_dims=in_dim, out_dims=out_dim)(M)


class CurvatureOperator:
    """Base class: a symmetric (P, P) curvature matrix of the mean loss, used through products.

    Subclasses implement ``_matmat(M)`` for M of shape (P, k). ``objective`` holds the flat
    parametrisation (``unflatten``, ``names``, ``slices()``); ``theta`` (P,) is where it is evaluated.
    """

    name = "curvature matrix"

    def __init__(self, model: nn.Module, loss_fn: Callable, data: Batch | Iterable[Batch], params: ParamFilter = None,
                 theta: torch.Tensor | None = None, progress: bool = False):
        self.objective = Objective(model, loss_fn, data, params)
        self.loss_fn = loss_fn
        self.theta = self.objective._theta_or_default(theta).detach().clone()
        self.progress = progress
        self.num_examples = global_count(self.objective)  # over all ranks
        self.matvecs = 0  # products computed so far (a column of a matrix counts as one)

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

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        """The product with v of shape (P,) or (P, k); same shape out, on the parameters' device/dtype."""
        v = self.objective.check_vector(v, "v", allow_matrix=True)
        M = v if v.ndim == 2 else v.unsqueeze(1)
        self.matvecs += M.shape[1]
        out = self.objective._check_finite(self._matmat(M), f"{self.name} product")
        return out if v.ndim == 2 else out[:, 0]

    def diagonal(self) -> torch.Tensor:
        """The exact diagonal (P,), where a cheap method exists."""
        raise NotImplementedError(f"{type(self).__name__} has no cheap exact diagonal; estimate it with hutchinson_diag(op)")

    def to_dense(self, max_bytes: int | None = None, chunk_size: int | None = None) -> torch.Tensor:
        """The dense (P, P) matrix from P products (in chunks of columns); refused over the memory budget."""
        check_dense(self.num_params, self.num_params, self.dtype, self.name, max_bytes)
        P, chunk = self.num_params, auto_chunk(self.objective, chunk_size)
        dense = torch.empty(P, P, dtype=self.dtype, device=self.device)
        for start, E in _basis_chunks(P, chunk, dense):
            dense[:, start : start + len(E)] = self @ E.T
        return dense

    def to_scipy(self) -> LinearOperator:
        """A ``scipy.sparse.linalg.LinearOperator`` (NumPy in and out, float32/float64 as the parameters)."""
        np_dtype = np.float64 if self.dtype == torch.float64 else np.float32

        def apply(x):
            x = torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)
            return (self @ x.reshape(self.num_params, -1)).cpu().numpy().astype(np_dtype).reshape(np.shape(x))

        return LinearOperator(self.shape, matvec=apply, rmatvec=apply, matmat=apply, dtype=np_dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(P={self.num_params}, N={self.num_examples}, dtype={self.dtype}, device={self.device})"


class HessianOperator(CurvatureOperator):
    """The Hessian of the mean loss, by automatic differentiation.

    One vector: reverse-over-forward, grad_theta (d/dt l(theta + t v)); several columns: vmapped
    forward-over-reverse (``Objective.hvp``). Each was the faster one in its case, by 15-35 %, on an
    MLP and a LeNet (benchmarks/curvature.py).
    """

    name = "Hessian"

    def _matmat(self, M):
        obj, theta = self.objective, self.theta
        if M.shape[1] > 1:
            return all_reduce_sum(obj.hvp(M, theta) * obj.num_examples) / self.num_examples

        def batch_sum(X, y):
            def directional(th):  # d/dt l(th + t v) at t = 0
                return jvp(lambda t: obj.batch_loss(t, X, y), (th,), (M[:, 0],))[1]

            return grad(directional)(theta).unsqueeze(1) * len(X)

        return data_mean(obj, batch_sum, self.progress, "Hessian product")

    def diagonal(self) -> torch.Tensor:
        """The exact Hessian diagonal (P,): P restricted products (``exact.hessian_diag``); single process only."""
        if distributed():
            raise RuntimeError("HessianOperator.diagonal() is exact but not distributed; use hutchinson_diag(op)")
        return hessian_diag(self.objective, self.theta)


class _OuterProductOperator(CurvatureOperator):
    """(1/N) sum_n J_n^T V_n V_n^T J_n with output vectors V_n (C, K) of a ``kind`` (see layers.output_vectors).

    A product costs one Jacobian-vector and one vector-Jacobian product per column and batch.
    """

    kind = "exact"

    def __init__(self, model, loss_fn, data, params=None, theta=None, progress=False,
                 mc_samples: int = 1, seed: int | torch.Generator | None = 0):
        super().__init__(model, loss_fn, data, params, theta, progress)
        self.mc_samples = int(mc_samples)
        self._gen = generator(seed, self.device)
        self._state = self._gen.get_state()  # every product re-draws the same labels: a fixed matrix

    def _fresh_generator(self) -> torch.Generator:
        self._gen.set_state(self._state)
        return self._gen

    def _matmat(self, M):
        obj, theta, gen = self.objective, self.theta, self._fresh_generator()

        def batch_sum(X, y):
            def f(th):
                return obj.outputs(th, X)

            out, pullback = vjp(f, theta)
            V = output_vectors(self.kind, self.loss_fn, out.detach(), y, self.mc_samples, gen)  # (B, C, K)
            JM = columns(lambda m: jvp(f, (theta,), (m,))[1], M, 1, 0).reshape(M.shape[1], len(X), -1)
            W = torch.einsum("bcs,kbs->kbc", V, torch.einsum("kbc,bcs->kbs", JM, V))
            return columns(lambda w: pullback(w)[0], W.reshape(M.shape[1], *out.shape), 0, 1)

        return data_mean(obj, batch_sum, self.progress, f"{self.name} product")

    def diagonal(self) -> torch.Tensor:
        """The exact diagonal (P,) of this matrix by per-layer hooks (Linear / Conv2d parameters only)."""
        from .diagonal import layer_diagonal

        return layer_diagonal(self.objective, self.loss_fn, self.kind, self.theta, self.mc_samples,
                              self._fresh_generator(), self.progress)


class GGNOperator(_OuterProductOperator):
    """The generalised Gauss-Newton G = (1/N) sum_n J_n^T H_n J_n, H_n the loss Hessian w.r.t. the outputs.

    Positive semi-definite for losses convex in the outputs; equals the true Fisher for
    cross-entropy, BCE-with-logits and MSE. ``diagonal()`` is exact and costs about C gradients.
    """

    name = "GGN"

    def __init__(self, model, loss_fn, data, params=None, theta=None, progress=False):
        super().__init__(model, loss_fn, data, params, theta, progress)


class FisherOperator(_OuterProductOperator):
    """The true Fisher E_{y~p(y|f)}[g g^T] of the likelihood whose negative log is ``loss_fn``.

    ``mc_samples=None``: exact (the expectation in closed form; equals the GGN for these losses).
    ``mc_samples=S``: the Monte-Carlo Fisher with S labels per example sampled from ``seed``; the
    labels are fixed at construction, so the operator is one fixed PSD matrix (unbiased for the true one).
    """

    name = "Fisher"

    def __init__(self, model, loss_fn, data, params=None, theta=None, progress=False,
                 mc_samples: int | None = None, seed: int | torch.Generator | None = 0):
        if not isinstance(loss_fn, LIKELIHOODS):
            raise ValueError(f"the true Fisher needs a likelihood: nn.CrossEntropyLoss, nn.BCEWithLogitsLoss or "
                             f"nn.MSELoss, not {type(loss_fn).__name__}; use GGNOperator or EmpiricalFisherOperator")
        if mc_samples is not None and int(mc_samples) < 1:
            raise ValueError(f"mc_samples must be a positive integer or None (exact), got {mc_samples}")
        super().__init__(model, loss_fn, data, params, theta, progress, mc_samples or 1, seed)
        self.kind = "exact" if mc_samples is None else "mc"


class EmpiricalFisherOperator(_OuterProductOperator):
    """The empirical Fisher (1/N) sum_n g_n g_n^T, g_n the per-example gradient with the data's labels.

    Not the curvature of anything in general: it matches the Fisher only where the model fits the labels' noise.
    """

    name = "empirical Fisher"
    kind = "empirical"

    def __init__(self, model, loss_fn, data, params=None, theta=None, progress=False):
        super().__init__(model, loss_fn, data, params, theta, progress)
