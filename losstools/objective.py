"""The central abstraction: a model's mean loss over data as a function of one flat vector theta."""
from __future__ import annotations

import math
import re
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

Batch = tuple[torch.Tensor, torch.Tensor]
ParamFilter = Callable[[str, nn.Parameter], bool] | str | Sequence[str] | None

WEIGHTS = "weights"  # filter: weights of Linear / Conv layers only (the prunable ones)
_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layer_weight_names(model: nn.Module) -> list[str]:
    """Names of the ``weight`` parameters of every Linear / Conv layer in ``model``, in order."""
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules() if isinstance(m, _LAYER_TYPES)]


def select_parameters(model: nn.Module, params: ParamFilter = None) -> list[str]:
    """Resolve a parameter filter to a list of parameter names of ``model``.

    ``params`` is None (every parameter with ``requires_grad``), ``"weights"`` (Linear/Conv weights),
    a regular expression matched against the names, a list of exact names, or a callable
    ``(name, parameter) -> bool``. An empty selection or an unknown name raises ``ValueError``.
    """
    named = dict(model.named_parameters())
    if params is None:
        names = [n for n, p in named.items() if p.requires_grad]
    elif callable(params):
        names = [n for n, p in named.items() if params(n, p)]
    elif isinstance(params, str) and params == WEIGHTS:
        names = layer_weight_names(model)
    elif isinstance(params, str):
        names = [n for n in named if re.search(params, n)]
        if not names:
            raise ValueError(f"parameter filter {params!r} matches no parameter; the model has {list(named)}")
    else:
        names = list(params)
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(f"unknown parameter name(s) {unknown}; the model has {list(named)}")
    if not names:
        raise ValueError(f"the parameter filter {params!r} selects no parameter of the model; it has {list(named)}")
    return names


def _mean_squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean()


def _forward_ad_safe(loss_fn: Callable) -> Callable:
    """``nn.MSELoss`` as the same formula in plain ops: torch's fused ``mse_loss`` fails under
    forward-over-reverse differentiation ("ZeroTensors are immutable"), which every HVP here uses."""
    return _mean_squared_error if isinstance(loss_fn, nn.MSELoss) else loss_fn


class Objective:
    """``f(theta)``: the **mean** loss of ``model`` over ``data`` as a function of a flat vector.

    Parameters
    ----------
    model: any ``nn.Module`` that ``torch.func.functional_call`` can call (not only Sequential).
        It is never changed: parameters and buffers are read once and copied.
    loss_fn: ``loss_fn(outputs, targets) -> scalar``, the **mean** over the batch (e.g.
        ``nn.CrossEntropyLoss()``); modules with ``reduction="sum"`` are refused.
    data: an ``(X, y)`` pair of tensors, or any re-iterable of such batches (e.g. a DataLoader).
        The loss over batches is weighted by batch size, so it equals the loss over all examples.
        Inputs are moved to the parameters' device; floating inputs are cast to their dtype.
    params: which parameters form theta: see :func:`select_parameters`. The others stay fixed.

    theta has shape (P,), P = ``num_params``: the selected parameters flattened in model order.
    Everything (loss, gradients, curvature) lives on the device and dtype of the parameters.

    >>> from losstools import data, models
    >>> ds = data.digits(); net = models.mlp([64, 8, 10])
    >>> obj = Objective(net, nn.CrossEntropyLoss(), ds.train)
    >>> obj.num_params, obj.grad().shape
    (610, torch.Size([610]))
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, data: Batch | Iterable[Batch], params: ParamFilter = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        reduction = getattr(loss_fn, "reduction", "mean")
        if reduction != "mean":
            raise ValueError(
                f"loss_fn has reduction={reduction!r}; losstools defines every quantity as the mean over "
                "examples, so pass a loss with reduction='mean' (e.g. nn.CrossEntropyLoss())"
            )
        self.model, self.loss_fn = model, _forward_ad_safe(loss_fn)
        self.names = select_parameters(model, params)
        named = dict(model.named_parameters())
        first = named[self.names[0]]
        self.device, self.dtype = first.device, first.dtype
        self.shapes = [named[n].shape for n in self.names]
        self.sizes = [math.prod(s) for s in self.shapes]
        self._theta = torch.cat([named[n].detach().reshape(-1) for n in self.names]).clone()
        selected = set(self.names)
        self._fixed = {n: p.detach().clone() for n, p in named.items() if n not in selected}
        self._fixed.update({n: b.detach().clone() for n, b in model.named_buffers()})
        self._data = data
        self.num_examples = self._check_data()

    # ----------------------------------------------------------------- parameters
    @property
    def theta(self) -> torch.Tensor:
        """A detached copy of the current flat parameter vector, shape (P,)."""
        return self._theta.clone()

    @property
    def num_params(self) -> int:
        return int(self._theta.numel())

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat vector of shape (P,) into ``{name: tensor}`` shaped like the parameters (views)."""
        vector = self.check_vector(vector)
        return {n: v.view(s) for n, v, s in zip(self.names, vector.split(self.sizes), self.shapes)}

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`unflatten`: concatenate ``{name: tensor}`` in parameter order to shape (P,)."""
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise KeyError(f"missing tensors for parameters {missing}")
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def slices(self) -> dict[str, slice]:
        """Where each parameter tensor sits in theta: ``{name: slice}``."""
        ends = torch.tensor(self.sizes).cumsum(0).tolist()
        return {n: slice(e - s, e) for n, s, e in zip(self.names, self.sizes, ends)}

    def check_vector(self, v: torch.Tensor, name: str = "vector", allow_matrix: bool = False) -> torch.Tensor:
        """Validate ``v`` of shape (P,) (or (P, k) if ``allow_matrix``); move it to the device and dtype."""
        v = torch.as_tensor(v)
        ok = v.ndim == 1 or (allow_matrix and v.ndim == 2)
        if not ok or v.shape[0] != self.num_params:
            expected = f"({self.num_params},)" + (f" or ({self.num_params}, k)" if allow_matrix else "")
            raise ValueError(f"{name} has shape {tuple(v.shape)}, expected {expected} for this Objective")
        return v.to(device=self.device, dtype=self.dtype)

    def _theta_or_default(self, theta: torch.Tensor | None) -> torch.Tensor:
        return self._theta if theta is None else self.check_vector(theta, "theta")

    # ----------------------------------------------------------------- data
    def batches(self) -> Iterator[Batch]:
        """Iterate over the data as ``(X, y)`` batches on the parameters' device."""
        data = self._data
        if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
            data = [data]
        for batch in data:
            X, y = batch[0], batch[1]
            X = X.to(device=self.device, dtype=self.dtype if X.is_floating_point() else None)
            y = y.to(device=self.device, dtype=self.dtype if y.is_floating_point() else None)
            yield X, y

    def _check_data(self) -> int:
        count = 0
        for X, y in self.batches():
            if len(X) != len(y):
                raise ValueError(f"a batch has {len(X)} inputs but {len(y)} targets")
            count += len(X)
        if count == 0:
            raise ValueError("data is empty: pass an (X, y) pair with at least one example, or a non-empty loader")
        X, y = next(self.batches())
        try:
            with torch.no_grad():
                self.batch_loss(self._theta, X[:2], y[:2])
        except (RuntimeError, ValueError, IndexError) as err:
            raise ValueError(
                f"the model cannot be evaluated on this data (inputs {tuple(X.shape)}, targets {tuple(y.shape)}): {err}"
            ) from err
        return count

    # ----------------------------------------------------------------- the function
    def params_dict(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """All tensors ``functional_call`` needs: the selected ones from ``theta``, the rest fixed."""
        return {**self._fixed, **{n: v.view(s) for n, v, s in zip(self.names, theta.split(self.sizes), self.shapes)}}

    def outputs(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Model outputs on inputs ``X`` at parameters ``theta`` (a pure function, usable in torch.func)."""
        return functional_call(self.model, self.params_dict(theta), (X,))

    def batch_loss(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean loss on one batch at ``theta`` (a pure function, usable in torch.func)."""
        return self.loss_fn(self.outputs(theta, X), y)

    def _mean_over_batches(self, per_batch: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        total = None
        for X, y in self.batches():
            term = per_batch(X, y) * (len(X) / self.num_examples)
            total = term if total is None else total + term
        return total

    def _check_finite(self, value: torch.Tensor, what: str) -> torch.Tensor:
        if not torch.isfinite(value).all():
            raise FloatingPointError(
                f"the {what} is not finite (NaN or inf) at this theta; check the data for NaN/inf, "
                "the learning rate that produced these parameters, and that the loss gets valid targets"
            )
        return value

    def loss(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """The mean loss over all examples at ``theta`` (default: the model's parameters); a 0-d tensor."""
        t = self._theta_or_default(theta)
        with torch.no_grad():
            return self._check_finite(self._mean_over_batches(lambda X, y: self.batch_loss(t, X, y)), "loss")

    def grad(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """The gradient of the mean loss, shape (P,)."""
        t = self._theta_or_default(theta)
        g = self._mean_over_batches(lambda X, y: grad(self.batch_loss)(t, X, y))
        return self._check_finite(g, "gradient")

    def hvp(self, v: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """Hessian-vector product H v (forward-over-reverse); ``v`` of shape (P,) or (P, k) -> same shape.

        Costs about one forward and one backward pass per column of ``v`` (columns are batched with vmap).
        """
        t = self._theta_or_default(theta)
        v = self.check_vector(v, "v", allow_matrix=True)

        def batch_hvp(X, y):
            def single(u):
                return jvp(lambda th: grad(self.batch_loss)(th, X, y), (t,), (u,))[1]

            return single(v) if v.ndim == 1 else vmap(single, in_dims=1, out_dims=1)(v)

        return self._check_finite(self._mean_over_batches(batch_hvp), "Hessian-vector product")

    def __repr__(self) -> str:
        return (f"Objective({type(self.model).__name__}, P={self.num_params}, N={self.num_examples}, "
                f"params={self.names}, dtype={self.dtype}, device={self.device})")
