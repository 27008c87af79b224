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

import copy
import warnings
from functools import cached_property
from typing import Callable

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn

from .. import _autodiff, _probe
from .._random import generator
from .._validate import positive_int
from ..objective import Objective
from . import _columns
from . import linear_chain as structured
from .layers import UnsupportedLayerError, supported_layers
from .memory import check_dense


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
        self.theta = self.objective.resolve_theta(theta).detach().clone()
        self.progress = bool(progress)
        self.num_examples = self.objective.num_examples  # over all ranks
        self.matvecs = 0
        self.paths: dict[str, str] = {}  # the path each part took, e.g. {"diagonal": "per-layer hooks"}

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
        """The product with M (P, k): the per-matrix piece every operator supplies."""
        raise NotImplementedError

    def _product_matmat(self, M: torch.Tensor) -> torch.Tensor:
        """The generic product path (the reference the fast paths are verified against)."""
        return self._matmat(M)

    def _mean(self, batch_sum: Callable, shape: tuple, what: str) -> torch.Tensor:
        return self.objective.data_mean(batch_sum, shape, self.progress, f"{self.name} {what}")

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        """The product with v of shape (P,) or (P, k); same shape out, on the parameters' device/dtype."""
        v = self.objective.check_vector(v, "v", allow_matrix=True)
        M = v if v.ndim == 2 else v.unsqueeze(1)
        self.matvecs += M.shape[1]
        out = self.objective.check_finite(self._matmat(M), f"{self.name} product")
        return out if v.ndim == 2 else out[:, 0]

    # ------------------------------------------------------------------ dense parts
    def dense(self, max_bytes: int | None = None, chunk_size: int | None = None) -> torch.Tensor:
        """The dense (P, P) matrix; refused before allocating over the memory budget (``max_bytes``)."""
        check_dense(self.num_params, self.num_params, self.dtype, self.name, max_bytes)
        return self.objective.check_finite(self._part("dense", chunk_size), self.name)

    to_dense = dense

    def diagonal(self, chunk_size: int | None = None) -> torch.Tensor:
        """The exact diagonal (P,). Generic method: P products (subclasses override it with cheaper ones)."""
        return self.objective.check_finite(self._part("diagonal", chunk_size), f"{self.name} diagonal")

    def blocks(self, max_bytes: int | None = None, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
        """The diagonal blocks, one per parameter tensor: ``{name: (P_j, P_j)}`` (each behind the memory guard)."""
        for name, size in zip(self.objective.names, self.objective.sizes):
            check_dense(size, size, self.dtype, f"{self.name} block of {name}", max_bytes)
        blocks = self._part("blocks", chunk_size)
        return {n: self.objective.check_finite(b, self.name) for n, b in blocks.items()}

    def _part(self, part: str, chunk_size: int | None):
        return _columns.from_products(self, part, _columns.auto_chunk(self.objective, chunk_size))

    # ------------------------------------------------------------------ verify, then trust
    def _probe_copy(self) -> "CurvatureOperator":
        """This operator on :meth:`Objective.restricted`: float64, a few examples, never all-reduced."""
        probe = copy.copy(self)
        probe.objective = self.objective.restricted(self.theta)
        probe.theta, probe.progress, probe.paths = probe.objective.theta, False, {}
        probe.__dict__.pop("_chain", None)
        return probe

    def _verified(self, path: str, fast: Callable, reference: Callable) -> bool:
        """Whether ``fast(probe)`` matches ``reference(probe)`` on :meth:`_probe_copy` (checked once per model
        structure); on a mismatch, a warning that names the path (the caller then takes the product path)."""
        key = (type(self).__name__, getattr(self, "kind", None), path, self.objective.signature)

        def check():
            probe = self._probe_copy()
            err = _probe.relative_error(fast(probe), reference(probe))
            return None if err <= _probe.TOLERANCE else f"relative difference {err:.1e} in float64"

        problem = _probe.verdict(key, check)
        if problem:
            _probe.fall_back(path, problem, "the product path")
        return problem is None

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

    def _product_matmat(self, M):
        return self.objective.hvp(M, self.theta)

    def _part(self, part: str, chunk_size: int | None):
        obj = self.objective
        obj.verify_products("hessian")
        chain = structured.linear_chain(obj)
        if chain is not None and self._verified(f"structured Linear-chain Hessian ({part})",
                                                lambda op: _at_coordinates(op, part, op._chain_part(part, None)),
                                                lambda op: _at_coordinates(op, part, None)):
            self.paths[part] = "structured Linear chain"
            return self._chain_part(part, chunk_size, chain)
        if obj.forward_mode_ok:
            self.paths[part] = "forward-over-reverse tensor blocks"
            return _columns.hessian_tensor_blocks(obj, self.theta, part, _columns.auto_chunk(obj, chunk_size))
        self.paths[part] = "products"
        return super()._part(part, chunk_size)

    def _chain_part(self, part: str, chunk_size: int | None, chain: structured.LinearChain | None = None):
        obj = self.objective
        chain = chain or structured.linear_chain(obj)
        if part == "dense":
            out = torch.zeros(obj.num_params, obj.num_params, dtype=obj.dtype, device=obj.device)
            structured.dense_hessian(chain, self.theta, out, chunk_size)
            return obj.all_reduce(out)
        if part == "diagonal":
            out = torch.zeros(obj.num_params, dtype=obj.dtype, device=obj.device)
            structured.diagonal(chain, self.theta, out, chunk_size)
            return obj.all_reduce(out)
        blocks = structured.diagonal_blocks(chain, self.theta, chunk_size)
        return {n: obj.all_reduce(blocks[n]) for n in obj.names}


def _at_coordinates(op: CurvatureOperator, part: str, value) -> torch.Tensor:
    """The entries of ``part`` ("dense", "diagonal" or "blocks") that lie in a few random columns S of the matrix,
    flattened: from ``value`` (that part, computed by a fast path) or, if None, from the product path's op E_S."""
    obj = op.objective
    S = _probe.random_coordinates(obj.num_params)
    if value is None:
        E = torch.zeros(obj.num_params, len(S), dtype=obj.dtype, device=obj.device)
        E[S, torch.arange(len(S))] = 1
        columns = op._product_matmat(E)
        value = columns if part == "dense" else columns[S, torch.arange(len(S))] if part == "diagonal" else \
            {n: columns[s] for n, s in obj.slices().items()}
        if part != "blocks":
            return value.reshape(-1)
        return torch.cat([_block_column(obj, value, i, k) for k, i in enumerate(S.tolist())])
    if part == "dense":
        return value[:, S].reshape(-1)
    if part == "diagonal":
        return value[S]
    return torch.cat([_block_column(obj, value, i) for i in S.tolist()])


def _block_column(obj: Objective, blocks: dict, i: int, k: int | None = None) -> torch.Tensor:
    """Column i of the matrix restricted to its tensor's diagonal block: from the blocks (k None) or from
    ``{name: product columns}`` (column k)."""
    name, cols = next((n, s) for n, s in obj.slices().items() if s.start <= i < s.stop)
    return blocks[name][:, i - cols.start] if k is None else blocks[name][:, k]


class _GGNFamily(CurvatureOperator):
    """(1/Z) sum_n J_n^T L_n J_n: the Jacobians J_n of example n's outputs and an output matrix L_n of a ``kind``,
    given by output vectors V_n (C, K) with L_n = V_n V_n^T (:func:`~.layers.output_vectors`): "exact" (the loss's
    Hessian in the outputs: the GGN, and the true Fisher of a likelihood), "mc" (sampled label gradients: the
    Monte-Carlo Fisher) or "empirical" (the data's label gradients: the empirical Fisher).

    A product: one Jacobian-vector product (path: ``Objective.jvp_mode``), L_n (closed form for cross-entropy), one
    vector-Jacobian product; through stock chains of Linear layers and elementwise activations both by hand
    (``linear_chain.ggn_batch_sum``). ``diagonal()``: per-layer hooks (stock Linear / Conv2d; about C gradients for C
    outputs), else per-example gradients, else products. Each fast path is verified before it is taken.
    """

    kind = "exact"

    def __init__(self, objective, loss_fn=None, data=None, params=None, *, theta=None, progress=False,
                 mc_samples: int = 1, seed: int | torch.Generator | None = 0):
        super().__init__(objective, loss_fn, data, params, theta=theta, progress=progress)
        if not self.objective.output_is_tensor:
            raise ValueError(
                f"the model returns a {self.objective.output_type} and the {self.name} is a matrix in the model's "
                "outputs: wrap the model so that it returns the one tensor the loss compares with the targets, e.g. "
                "a module whose forward returns model(x)[0] (the Hessian needs no such wrapper)")
        if self.objective.loss_terms.linear_in_outputs and self.kind == "exact":
            warnings.warn("nn.NLLLoss is linear in the model's outputs (log-probabilities), so its Gauss-Newton matrix "
                          "in those outputs is zero, and so are QM's and OBD's curvature terms. End the model at the "
                          "logits and use nn.CrossEntropyLoss (the same loss) to get the softmax's curvature",
                          stacklevel=3)
        self.mc_samples = int(mc_samples)
        self._gen = generator(seed, self.device)
        self._state = self._gen.get_state()  # every product re-draws the same labels: one fixed matrix

    @cached_property
    def _chain(self) -> structured.LinearChain | None:
        """The model's stock Linear-chain structure, if it has one (products then go by hand)."""
        return structured.linear_chain(self.objective)

    def _vectors(self) -> Callable:
        """``(out, y) -> V (B, C, K)`` with V V^T this matrix's per-example output matrix (sampled labels re-drawn
        identically for every product)."""
        self._gen.set_state(self._state)
        terms, kind, samples, gen = self.objective.loss_terms, self.kind, self.mc_samples, self._gen
        return lambda out, y: terms.output_vectors(kind, out, y, samples, gen)

    def _output_product(self) -> Callable:
        """``(obj, out, y, JM (k, *out.shape)) -> L JM``, L the per-example output matrices."""
        if self.kind == "exact":
            terms = self.objective.loss_terms
            return lambda obj, out, y, JM: terms.output_hessian_product(out, y, JM, obj.ad_mode)
        vectors = self._vectors()

        def product(obj, out, y, JM):
            V = vectors(out, y)  # (B, C, K)
            flat = JM.reshape(len(JM), len(out), -1)
            return torch.einsum("bcs,kbs->kbc", V, torch.einsum("kbc,bcs->kbs", flat, V)).reshape(JM.shape)

        return product

    def _matmat(self, M):
        if self._chain is not None and self._verified(
                f"Linear-chain {self.name} product", lambda op: op._chain_matmat(_directions(op)),
                lambda op: op._product_matmat(_directions(op))):
            self.paths["product"] = "Linear chain by hand"
            return self._chain_matmat(M)
        self.paths["product"] = "Jacobian products"
        return self._product_matmat(M)

    def _chain_matmat(self, M):
        with torch.no_grad():
            batch_sum = structured.ggn_batch_sum(self._chain, self.theta, M, self._output_product())
            return self._mean(batch_sum, tuple(M.shape), "product")

    def _product_matmat(self, M):
        obj, mode, product = self.objective, self.objective.jvp_mode(M.shape[1]), self._output_product()
        obj.verify_products("jacobian")

        def batch_sum(X, y):
            out, JM, pullback = _autodiff.jacobian_products(lambda th: obj.outputs(th, X), self.theta, M, mode)
            return pullback(product(obj, out.detach(), y, JM)).T

        return self._mean(batch_sum, tuple(M.shape), "product")

    def _hooks_apply(self) -> bool:
        try:
            supported_layers(self.objective, self.name)
        except UnsupportedLayerError:
            return False
        return True

    def diagonal(self, chunk_size: int | None = None) -> torch.Tensor:
        """The exact diagonal (P,): per-layer hooks, else per-example gradients, else P products (each verified)."""
        from .diagonal import layer_diagonal, per_example_diagonal

        obj, what = self.objective, f"{self.name} diagonal"
        for path, method, applies in (("per-layer hooks", layer_diagonal, self._hooks_apply),
                                      ("per-example gradients", per_example_diagonal,
                                       lambda: obj.examples_independent)):
            if applies() and self._verified(
                    f"{path} {what}",
                    lambda op: _at_coordinates(op, "diagonal", method(op.objective, op._vectors(), op.theta, False)),
                    lambda op: _at_coordinates(op, "diagonal", None)):
                self.paths["diagonal"] = path
                return obj.check_finite(method(obj, self._vectors(), self.theta, self.progress, what), what)
        self.paths["diagonal"] = "products"
        return super().diagonal(chunk_size)


def _directions(op: CurvatureOperator) -> torch.Tensor:
    return _probe.random_directions(op.num_params, 2, op.theta)


class GGN(_GGNFamily):
    """The generalised Gauss-Newton G = (1/Z) sum_n J_n^T H_n J_n, H_n the Hessian of example n's loss term in the
    outputs: PSD for losses convex in the outputs; equals the true Fisher for cross-entropy, BCE-with-logits and
    MSE. Products, diagonal and paths: see :class:`_GGNFamily`."""

    name = "GGN"

    def __init__(self, objective, loss_fn=None, data=None, params=None, *, theta=None, progress=False):
        super().__init__(objective, loss_fn, data, params, theta=theta, progress=progress)


class Fisher(_GGNFamily):
    """The true Fisher E_{y~p(y|f)}[g g^T] of the likelihood whose negative log is ``loss_fn``.

    ``mc_samples=None``: exact (the expectation in closed form; equals the GGN for these losses).
    ``mc_samples=S``: the Monte-Carlo Fisher with S labels per example sampled from ``seed``; the labels
    are fixed at construction, so the operator is one fixed PSD matrix (unbiased for the true one).
    """

    name = "Fisher"

    def __init__(self, objective, loss_fn=None, data=None, params=None, *, theta=None, progress=False,
                 mc_samples: int | None = None, seed: int | torch.Generator | None = 0):
        obj = as_objective(objective, loss_fn, data, params)
        if not obj.loss_terms.likelihood:
            raise ValueError(f"the true Fisher needs a likelihood: nn.CrossEntropyLoss, nn.BCEWithLogitsLoss or "
                             f"nn.MSELoss, not {type(obj.loss_fn).__name__}; use GGN or EmpiricalFisher")
        if mc_samples is not None:
            mc_samples = positive_int(mc_samples, "mc_samples")
        super().__init__(obj, theta=theta, progress=progress, mc_samples=mc_samples or 1, seed=seed)
        self.kind = "exact" if mc_samples is None else "mc"


class EmpiricalFisher(_GGNFamily):
    """The empirical Fisher (1/Z) sum_n g_n g_n^T, g_n example n's gradient with the data's labels.

    Not the curvature of anything in general: it matches the Fisher only where the model fits the labels' noise.
    """

    name = "empirical Fisher"
    kind = "empirical"

    def __init__(self, objective, loss_fn=None, data=None, params=None, *, theta=None, progress=False):
        super().__init__(objective, loss_fn, data, params, theta=theta, progress=progress)
        if not self.objective.examples_independent:
            raise ValueError("the model's output for one example depends on the other examples of its batch (batch "
                             "statistics?), so an example's own gradient, and the empirical Fisher, are undefined; "
                             "use the GGN or the Fisher, whose products are defined for the batch as a whole")
