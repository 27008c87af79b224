"""Taylor models of a step: how well do they predict the change of the loss along a direction?

For a point theta0, a direction d (P,) and step sizes t (T,), :func:`profile` compares the actual change
dL(t) = L(theta0 + t d) - L(theta0) (mean loss; many t at once with ``vmap``) with the models

=============  ==============================  ==========================================
model          predicted dL(t)                 assumption
=============  ==============================  ==========================================
``linear``     t g.d                           first order is enough
``quadratic``  t g.d + t^2/2 d.C.d             second order is enough
``diagonal``   t g.d + t^2/2 d.diag(C).d       ... and C is close to its diagonal
``obd``        t^2/2 d.C.d                     theta0 is a minimum (g = 0), LeCun et al. 1990
=============  ==============================  ==========================================

g is the gradient at theta0 and C the curvature, chosen with ``curvature=``: a name
(``"hessian"``, ``"ggn"`` matrix-free and exact; ``"hessian_diag"``, ``"ggn_diag"`` their exact diagonals,
so that e.g. ``obd`` with ``"ggn_diag"`` is the paper's OBD), a dense (P, P) tensor, a (P,) diagonal, or any
object that gives C v (``@``, ``.matvec`` or a callable) and optionally ``.diagonal()``: see :func:`as_curvature`.

For a smooth loss the error of an order-k model shrinks like ``|t|^(k+1)`` (:meth:`TaylorProfile.order`).

>>> from losstools import taylor                                     # doctest: +SKIP
>>> d = taylor.directions.gradient(obj)                             # doctest: +SKIP
>>> p = taylor.profile(obj, d, np.logspace(-3, 0, 40))              # doctest: +SKIP
>>> p.order("linear"), p.order("quadratic")                         # doctest: +SKIP
(2.0..., 3.0...)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import vmap

from . import directions  # noqa: F401  (re-exported: ``taylor.directions``)
from .curvature import GGN, CurvatureOperator, Diagonal, Hessian, Matrix, Products
from .objective import Objective

if TYPE_CHECKING:  # imported where it is used, in ``TaylorProfile.table``
    from . import tables

#: The Taylor models :func:`profile` compares with the actual loss.
MODELS = ("linear", "quadratic", "diagonal", "obd")
ORDER = {"linear": 1, "quadratic": 2, "diagonal": 2, "obd": 2}  # highest power of t in each model
#: The curvatures a model can use by name (or pass a matrix, a diagonal or an operator).
CURVATURES = ("hessian", "ggn", "hessian_diag", "ggn_diag")


def expansion_order(model: str) -> int:
    """The expansion order k of a model (1 for ``linear``, 2 for the others): its error is ``O(|t|^(k+1))``
    when the model is the full Taylor polynomial (``linear``, ``quadratic`` with the Hessian)."""
    return ORDER[_check_models(model)[0]]


# ----------------------------------------------------------------------- curvature
def as_curvature(obj: Objective, curvature, theta: torch.Tensor | None = None) -> CurvatureOperator:
    """``curvature`` as an operator of the engine at theta: a name in :data:`CURVATURES`, a (P, P) or (P,) tensor
    (:class:`~losstools.curvature.Matrix`, :class:`~losstools.curvature.Diagonal`), an operator (itself), or any
    object with ``matvec`` / ``@`` / ``__call__`` giving C v and optionally ``diagonal()``
    (:class:`~losstools.curvature.Products`)."""
    if isinstance(curvature, CurvatureOperator):
        return curvature
    t = obj.resolve_theta(theta)
    if isinstance(curvature, str):
        named = {
            "hessian": lambda: Hessian(obj, theta=t),
            "ggn": lambda: GGN(obj, theta=t),
            "hessian_diag": lambda: Diagonal(obj, Hessian(obj, theta=t).diagonal, "hessian_diag"),
            "ggn_diag": lambda: Diagonal(obj, GGN(obj, theta=t).diagonal, "ggn_diag"),
        }
        if curvature not in named:
            raise ValueError(f"unknown curvature {curvature!r}; choose one of {list(CURVATURES)}, a (P, P) matrix, "
                             "a (P,) diagonal or an object giving matrix-vector products")
        return named[curvature]()
    if torch.is_tensor(curvature):
        P = obj.num_params
        if curvature.shape == (P, P):
            return Matrix(obj, curvature)
        if curvature.shape == (P,):
            return Diagonal(obj, curvature)
        raise ValueError(f"a curvature tensor must have shape ({P}, {P}) or ({P},), got {tuple(curvature.shape)}")
    if hasattr(curvature, "matvec"):
        product = curvature.matvec
    elif hasattr(type(curvature), "__matmul__"):
        product = curvature.__matmul__
    elif callable(curvature):
        product = curvature
    else:
        raise TypeError(f"cannot use a {type(curvature).__name__} as curvature: pass a name in {list(CURVATURES)}, "
                        "a tensor, or an object with matvec / @ / __call__ giving C v")
    diagonal = getattr(curvature, "diagonal", None)
    return Products(obj, product, diagonal if callable(diagonal) else None,
                    getattr(curvature, "name", type(curvature).__name__))


# ----------------------------------------------------------------------- the loss along a line
def loss_along(obj: Objective, direction: torch.Tensor, steps, theta: torch.Tensor | None = None,
               chunk_size: int = 256) -> torch.Tensor:
    """L(theta + t_i d) for every step t_i, shape (T,): ``vmap`` over chunks of ``chunk_size`` steps, one data
    pass per chunk. Layers ``vmap`` cannot batch (nn.RNN / GRU / LSTM: no batching rule for their fused kernels)
    take a loop over the chunk's steps inside the same data pass instead."""
    t0 = obj.resolve_theta(theta)
    d = _check_direction(obj, direction)
    t = _check_steps(obj, steps)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    batched = vmap(obj.batch_sum, in_dims=(0, None, None))

    def looped(thetas, X, y):
        return torch.stack([obj.batch_sum(th, X, y) for th in thetas])

    use_vmap = _vmap_may_work(obj)

    def chunk_losses(ts):
        nonlocal use_vmap
        thetas = t0 + ts[:, None] * d
        if use_vmap:
            try:
                return obj.data_mean(lambda X, y: batched(thetas, X, y), (len(ts),))
            except RuntimeError as err:
                if not _is_batching_error(err):
                    raise
                use_vmap = False  # and for the remaining chunks
        return obj.data_mean(lambda X, y: looped(thetas, X, y), (len(ts),))

    with torch.no_grad():
        losses = torch.cat([chunk_losses(ts) for ts in t.split(chunk_size)])
    return obj.check_finite(losses, "loss along the direction")


_BATCHING_ERRORS = ("batching rule not implemented", "vmap", "batched tensor", "batchedtensor")


def _vmap_may_work(obj: Objective) -> bool:
    """False for models with layers ``vmap`` is known not to batch over parameters (torch's recurrent layers)."""
    return not any(isinstance(m, nn.RNNBase) for m in obj.model.modules())


def _is_batching_error(err: RuntimeError) -> bool:
    """Whether ``err`` is ``vmap`` failing to batch an operation (rather than an error of the model itself)."""
    message = str(err).lower()
    return any(marker in message for marker in _BATCHING_ERRORS)


# ----------------------------------------------------------------------- profile
@dataclass
class TaylorProfile:
    """The actual change of the loss along ``theta0 + t d`` and each model's prediction, as NumPy arrays.

    ``steps`` (T,), ``actual`` (T,), ``predicted[model]`` (T,); ``slope`` = g.d, ``curvature`` = d.C.d,
    ``diagonal_curvature`` = d.diag(C).d (NaN when not needed); ``loss0`` = L(theta0).
    """

    steps: np.ndarray
    actual: np.ndarray
    predicted: dict[str, np.ndarray]
    loss0: float
    slope: float
    curvature: float
    diagonal_curvature: float
    curvature_name: str
    eps: float  # machine epsilon of the Objective's dtype: sets the round-off level of actual
    direction: torch.Tensor = field(repr=False)
    theta0: torch.Tensor = field(repr=False)

    @property
    def models(self) -> list[str]:
        return list(self.predicted)

    @property
    def abs_error(self) -> dict[str, np.ndarray]:
        """``|predicted - actual|`` per model, shape (T,)."""
        return {m: np.abs(p - self.actual) for m, p in self.predicted.items()}

    @property
    def rel_error(self) -> dict[str, np.ndarray]:
        """``|predicted - actual| / |actual|`` per model, (T,); 0 where both are 0, inf where only actual is."""
        out = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            for m, err in self.abs_error.items():
                out[m] = np.where(err == 0, 0.0, err / np.abs(self.actual))
        return out

    def _model(self, model: str) -> str:
        if model not in self.predicted:
            raise ValueError(f"model {model!r} is not in this profile; it holds {self.models}")
        return model

    def _round_off(self) -> float:
        return 1e3 * self.eps * max(abs(self.loss0), np.finfo(float).tiny)

    def order(self, model: str, t_max: float | None = None) -> float:
        """The least-squares slope of ``log |error|`` against ``log |t|`` for small steps.

        Uses the steps with ``0 < |t| <= t_max`` (default: the geometric middle of the smallest and largest
        ``|t|``, i.e. the lower half of a log-spaced grid) whose error is above round-off (``1000 eps |L(theta0)|``,
        eps of the Objective's dtype: in float32 only large steps qualify, use float64 for small ones).
        About k + 1 for a full order-k Taylor model on a smooth loss: 2 for ``linear``, 3 for ``quadratic``.
        """
        err, size = self.abs_error[self._model(model)], np.abs(self.steps)
        nonzero = size > 0
        if not nonzero.any():
            raise ValueError("the profile has no non-zero step; use e.g. np.logspace(-3, 0, 30) as steps")
        if t_max is None:
            t_max = math.sqrt(size[nonzero].min() * size[nonzero].max())
        floor = self._round_off()
        use = nonzero & (size <= t_max) & (err > floor)
        if use.sum() < 3:
            raise ValueError(
                f"only {int(use.sum())} steps with 0 < |t| <= {t_max:.3g} have an error of model {model!r} above "
                f"round-off ({floor:.2g}); the model may be exact along this direction, or use more (log-spaced) "
                "steps, larger steps, or float64 (model.double(), data.to(dtype=torch.float64))"
            )
        return float(np.polyfit(np.log(size[use]), np.log(err[use]), 1)[0])

    def trust_radius(self, model: str, tol: float = 0.1) -> float:
        """The largest ``|t|`` on the grid such that every step with ``0 < |s| <= |t|`` has relative error < ``tol``.

        0.0 if already the smallest step fails; the largest ``|t|`` of the grid if none fails (a lower bound).
        """
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be a positive finite number (a relative error, e.g. 0.1), got {tol!r}")
        rel, size = self.rel_error[self._model(model)], np.abs(self.steps)
        order_ = np.argsort(size, kind="stable")
        order_ = order_[size[order_] > 0]
        fails = ~(rel[order_] < tol)
        if not fails.any():
            return float(size[order_[-1]]) if len(order_) else 0.0
        first = int(np.argmax(fails))
        return float(size[order_[first - 1]]) if first > 0 else 0.0

    def table(self, tol: float = 0.1) -> "tables.Table":
        """One row per model: fitted order (or why none) and trust radius at ``tol``; a
        :class:`~losstools.tables.Table` (a Markdown table in a notebook, aligned text with ``print``)."""
        from .tables import Table

        rows = []
        for m in self.models:
            try:
                fitted = f"{self.order(m):.2f}"
            except ValueError:
                fitted = "exact" if self.abs_error[m].max() <= self._round_off() else "n/a"
            rows.append([m, fitted, f"{self.trust_radius(m, tol):.4g}"])
        return Table(rows, ["model", "order", f"trust radius (rel. error < {tol:g})"])


def predictions(steps: np.ndarray, slope: float, curvature: float, diagonal_curvature: float,
                models: Sequence[str] = MODELS) -> dict[str, np.ndarray]:
    """Each model's predicted change at ``steps`` from the three scalars g.d, d.C.d and d.diag(C).d."""
    formulas = {
        "linear": lambda t: slope * t,
        "quadratic": lambda t: slope * t + 0.5 * curvature * t**2,
        "diagonal": lambda t: slope * t + 0.5 * diagonal_curvature * t**2,
        "obd": lambda t: 0.5 * curvature * t**2,
    }
    return {m: formulas[m](steps) for m in _check_models(models)}


def profile(obj: Objective, direction: torch.Tensor, steps, models: Sequence[str] | str = MODELS,
            curvature="hessian", theta: torch.Tensor | None = None, chunk_size: int = 256) -> TaylorProfile:
    """Actual change of the mean loss along ``theta0 + t d`` versus the Taylor models, for every t.

    ``direction`` (P,) is used as given (build one with :mod:`losstools.directions`); ``steps`` a 1-D array
    of T finite step sizes; ``models`` a subset of :data:`MODELS`; ``curvature`` see the module docstring;
    ``theta`` the expansion point (default: the Objective's parameters). Costs one gradient, one C v
    (quadratic, obd), diag(C) (diagonal; kept by a :class:`~losstools.curvature.Diagonal` you pass in) and T loss
    evaluations.
    Small steps need float64: in float32 the round-off of the loss (``~1e-7 |L|``) hides errors below it.
    """
    chosen = _check_models(models)
    t0 = obj.resolve_theta(theta)
    d = _check_direction(obj, direction)
    t = _check_steps(obj, steps)
    needs_c = {"quadratic", "obd", "diagonal"} & set(chosen)
    C = as_curvature(obj, curvature, t0) if needs_c else None
    slope = float(obj.grad(t0) @ d)
    curv = float(d @ (C @ d)) if {"quadratic", "obd"} & set(chosen) else math.nan
    diag_curv = float(C.diagonal() @ d**2) if "diagonal" in chosen else math.nan
    losses = loss_along(obj, d, torch.cat([t.new_zeros(1), t]), t0, chunk_size).cpu().double().numpy()
    steps_np = t.cpu().double().numpy()
    return TaylorProfile(
        steps=steps_np, actual=losses[1:] - losses[0],
        predicted=predictions(steps_np, slope, curv, diag_curv, chosen), loss0=float(losses[0]),
        slope=slope, curvature=curv, diagonal_curvature=diag_curv,
        curvature_name=C.name if C is not None else "none", eps=float(torch.finfo(obj.dtype).eps),
        direction=d, theta0=t0,
    )


# ----------------------------------------------------------------------- input checks
def _check_models(models: Sequence[str] | str) -> list[str]:
    chosen = [models] if isinstance(models, str) else list(models)
    unknown = [m for m in chosen if m not in MODELS]
    if unknown or not chosen:
        raise ValueError(f"unknown model(s) {unknown or chosen}; choose from {list(MODELS)}")
    return chosen


def _check_direction(obj: Objective, direction: torch.Tensor) -> torch.Tensor:
    d = obj.check_vector(direction, "direction")
    if not torch.isfinite(d).all():
        raise ValueError("the direction contains NaN or inf; pass a finite vector of shape (P,)")
    return d


def _check_steps(obj: Objective, steps) -> torch.Tensor:
    try:
        t = steps if torch.is_tensor(steps) else torch.as_tensor(np.asarray(steps, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise ValueError(f"steps must be a 1-D array of numbers: {err}") from err
    if t.ndim != 1 or len(t) == 0:
        raise ValueError(f"steps must be a non-empty 1-D array of step sizes, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        bad = (~torch.isfinite(t)).nonzero().squeeze(1).tolist()[:5]
        raise ValueError(f"steps must be finite; entries {bad} are NaN or inf")
    return t.to(device=obj.device, dtype=obj.dtype)
