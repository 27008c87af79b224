"""The central abstraction: a model's mean loss over data as a function of one flat vector theta."""
from __future__ import annotations

import copy
import math
import re
from contextlib import contextmanager
from functools import cached_property
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.func import grad_and_value
from torch.utils._pytree import tree_leaves

from . import _autodiff, _functional, _probe
from ._batches import Batch, check_data, raw_batches
from ._distributed import all_reduce_sum, distributed
from ._loss import loss_terms
from ._progress import progress_bar
from ._structure import Structure, refuse_user_hooks
from ._validate import choice

ParamFilter = Callable[[str, nn.Parameter], bool] | str | Sequence[str] | None

WEIGHTS = "weights"  # filter: weights of Linear / Conv layers only (the prunable ones)
_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layer_weight_names(model: nn.Module) -> list[str]:
    """Names of the ``weight`` parameters of every Linear / Conv layer in ``model``, in order (a weight computed by a
    parametrization or a pruning mask is no parameter: select its own parameters by name)."""
    parameters = dict(model.named_parameters())  # canonical names: a tied weight once, a parametrized one not at all
    names = [f"{name}.weight" if name else "weight" for name, m in model.named_modules() if isinstance(m, _LAYER_TYPES)]
    return [n for n in names if n in parameters]


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


def _same(a, b, rtol: float = 0.0) -> bool:
    """Whether two outputs (tensors or nested tuples/dicts of them) are equal, NaNs included (within ``rtol``)."""
    for x, y in zip(tree_leaves(a), tree_leaves(b)):
        if torch.is_tensor(x) and x.is_floating_point():
            if not torch.equal(x.isnan(), y.isnan()):
                return False
            x, y = x.nan_to_num(), y.nan_to_num()
            if not torch.allclose(x, y, rtol=rtol, atol=rtol * float(x.abs().max()) if x.numel() else 0.0):
                return False
        elif torch.is_tensor(x) and not torch.equal(x, y):
            return False
    return True


class Objective:
    """``f(theta)``: the **mean** loss of ``model`` over ``data`` as a function of a flat vector.

    Parameters
    ----------
    model : nn.Module
        Any module that can be called with its parameters swapped for other tensors (not only Sequential; shared
        modules and tied weights included). It is never changed, not even transiently: losstools calls a
        private structural copy that shares the (never written) parameter tensors. Dropout / BatchNorm
        in training mode are refused (call ``model.eval()``), and so is any other random output.
    loss_fn : callable
        A torch loss with ``reduction="mean"`` (class weights, ``ignore_index``, soft labels, ...) or a
        callable ``loss_fn(outputs, targets)`` returning the mean over the batch's examples.
    data : tuple or iterable
        An ``(X, y)`` pair of tensors, or a re-iterable of such batches (a list, a DataLoader).
        Every quantity is the one of the loss on all the data at once: batches combine through the
        loss's own normaliser (examples, elements, non-ignored targets or the sum of class weights), and
        over all ranks of a ``torch.distributed`` process group when one is initialised.
        Inputs are moved to the parameters' device; floating inputs are cast to their dtype.
    params : optional
        Which parameters form theta: see :func:`select_parameters`. The others stay fixed.
    ad_mode : str
        How second derivatives are taken: ``"auto"`` (forward-over-reverse where a float64 check on a few
        examples shows that torch gets it right for this model, for the dense Hessian's generic path and for
        products on convolutional nets; reverse-over-reverse otherwise), ``"forward"`` or ``"reverse"``
        (everywhere).

    Notes
    -----
    theta has shape (P,), P = ``num_params``: the selected parameters flattened in model order; ``fixed`` holds
    copies of the other parameters and the buffers, ``{name: tensor}``.
    Everything (loss, gradients, curvature) lives on the device and dtype of the parameters.

    Examples
    --------
    >>> from losstools import data, models
    >>> ds = data.digits(); net = models.mlp([64, 8, 10])
    >>> obj = Objective(net, nn.CrossEntropyLoss(), ds.train)
    >>> obj.num_params, obj.grad().shape
    (610, torch.Size([610]))
    """

    local_only = False  # a probe's restriction to a few local examples (:meth:`restricted`): never all-reduced

    def __init__(self, model: nn.Module, loss_fn: Callable, data: Batch | Iterable[Batch], params: ParamFilter = None,
                 ad_mode: str = "auto"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        choice(ad_mode, ("auto", *_autodiff.MODES), "ad_mode")
        self.loss_terms = loss_terms(loss_fn)
        self.loss_fn = loss_fn
        model = _functional.uncompiled(model)
        _functional.refuse_train_mode(model)
        refuse_user_hooks(model)
        check_data(data)
        self.names = select_parameters(model, params)
        self.model = _functional.structural_copy(model)
        self._pure = _functional.PureCall(self.model)
        self._convolutional = any(isinstance(m, nn.modules.conv._ConvNd) for m in self.model.modules())
        named = dict(model.named_parameters())
        first = named[self.names[0]]
        self.device, self.dtype = first.device, first.dtype
        self.shapes = [named[n].shape for n in self.names]
        self.sizes = [math.prod(s) for s in self.shapes]
        self._theta = torch.cat([named[n].detach().reshape(-1) for n in self.names])  # a new tensor
        selected = set(self.names)
        self.fixed = {n: p.detach().clone() for n, p in named.items() if n not in selected}
        self.fixed.update({n: b.detach().clone() for n, b in model.named_buffers()})
        self._data = data
        self._ad_mode, self._forward_ok = ad_mode, None
        self.local_examples = self._check_data()
        local = [float(self.local_examples), sum(self.loss_terms.normaliser(y) for _, y in self.batches())]
        totals = all_reduce_sum(torch.tensor(local, dtype=torch.float64, device=self.device)).tolist()
        self.num_examples, self.normaliser = int(totals[0]), totals[1]  # over all ranks
        if self.num_examples == 0:
            raise ValueError("data is empty on every rank: pass data with at least one example")

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

    def resolve_theta(self, theta: torch.Tensor | None) -> torch.Tensor:
        """``theta`` checked and on the parameters' device and dtype (P,), or the model's parameters if None."""
        return self._theta if theta is None else self.check_vector(theta, "theta")

    # ----------------------------------------------------------------- data
    def batches(self) -> Iterator[Batch]:
        """Iterate over this rank's data as ``(X, y)`` batches on the parameters' device."""
        for X, y in raw_batches(self._data):
            X = X.to(device=self.device, dtype=self.dtype if X.is_floating_point() else None)
            y = y.to(device=self.device, dtype=self.dtype if y.is_floating_point() else None)
            yield X, y

    def _check_data(self) -> int:
        """Count this rank's examples; evaluate the first batch once to turn failures into clear errors, and refuse
        a forward pass that is not a function of the parameters (random, writing into its tensors)."""
        count, first, batches = 0, None, 0
        for X, y in self.batches():
            count, batches = count + len(X), batches + 1
            first = first or (X, y)
        self.layer_output_sizes, self.output_size, self.examples_independent = {}, 0, True
        self.output_is_tensor, self.output_type = True, "Tensor"
        if first is None:
            if distributed():
                return 0
            raise ValueError("data is empty: pass an (X, y) pair with at least one example, or a non-empty loader")
        X, y = first
        before = {"theta": self._theta.clone(), **{n: t.clone() for n, t in self.fixed.items()}}
        try:
            with torch.no_grad(), _functional.fork_rng(self.device):
                with self._recording_layer_sizes():
                    out = self.outputs(self._theta, X[:8])
                halves = [self.outputs(self._theta, part) for part in X[:8].tensor_split(2)] if len(X) > 1 else []
                # the same outputs by halves prove both determinism and independence; else tell which one failed
                same = bool(halves) and torch.is_tensor(out) and _same(out, torch.cat(halves), rtol=1e-4)
                again = out if same else self.outputs(self._theta, X[:8])
        except (RuntimeError, ValueError, IndexError, TypeError) as err:
            raise ValueError(
                f"the model cannot be evaluated on this data (inputs {tuple(X.shape)} {X.dtype}, targets "
                f"{tuple(y.shape)} {y.dtype}): {err}"
            ) from err
        self._refuse_writes(before)
        if not _same(out, again):
            raise ValueError("the model gives different outputs for the same inputs and parameters (random layers such "
                             "as dropout?): the loss is not a function of the parameters. Call model.eval() first")
        self.loss_terms.check(out, y[:8])
        self.output_is_tensor, self.output_type = torch.is_tensor(out), type(out).__name__
        if self.output_is_tensor:
            self.output_size = out.numel() // max(1, len(out))  # entries per example
            self.examples_independent = same or not halves  # `same` compared the halves already
        if not self.examples_independent and batches > 1:
            raise ValueError("the model's output for one example depends on the other examples of its batch (batch "
                             "statistics?), so its loss over several batches is not its loss on all the data: pass the "
                             "data as one (X, y) batch, or use layers that treat examples independently")
        return count

    def _refuse_writes(self, before: dict[str, torch.Tensor]) -> None:
        """Refuse a forward pass that wrote into the parameters or buffers it was given."""
        now = {"theta": self._theta, **self.fixed}
        changed = [n for n, t in before.items() if not torch.equal(t.nan_to_num(), now[n].nan_to_num())]
        self._theta = before["theta"]
        if changed:
            names = [n for n in changed if n != "theta"] or self.names
            raise ValueError(
                f"evaluating the model changes its tensors in place ({', '.join(names[:4])}): a forward pass that "
                "updates a buffer (a counter, running statistics) or renormalises a weight "
                "(nn.Embedding(max_norm=...)) "
                "makes the loss change from one evaluation to the next, so it is not a function of the parameters. "
                "Keep state out of forward (or call model.eval() if it updates only in training), or renormalise "
                "the weights once yourself and drop max_norm"
            )

    @contextmanager
    def _recording_layer_sizes(self) -> Iterator[None]:
        """Record ``layer_output_sizes``: ``{module name: output entries per example}`` of every Linear / Conv layer
        of the model (summed over the calls of a reused layer), for sizing chunks of per-layer passes."""
        sizes: dict[str, int] = {}

        def hook_for(name):
            def hook(module, args, out):
                sizes[name] = sizes.get(name, 0) + out.numel() // max(1, len(out))
            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in self.model.named_modules()
                   if isinstance(m, _LAYER_TYPES)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self.layer_output_sizes = sizes

    # ----------------------------------------------------------------- the function
    def params_dict(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """All tensors a call of the model needs: the selected ones from ``theta``, the rest fixed."""
        return {**self.fixed, **{n: v.view(s) for n, v, s in zip(self.names, theta.split(self.sizes), self.shapes)}}

    def call(self, tensors: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
        """The model on inputs ``X`` with the given parameter and buffer tensors (see ``params_dict``)."""
        return self._pure(tensors, X)

    def outputs(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Model outputs on inputs ``X`` at parameters ``theta`` (a pure function, usable in torch.func)."""
        return self.call(self.params_dict(theta), X)

    def batch_loss(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean loss on one batch at ``theta`` (a pure function, usable in torch.func)."""
        return self.loss_terms.mean(self.outputs(theta, X), y)

    def batch_sum(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss's sum of per-example terms on one batch; the mean over the data is the sum of these
        over all batches divided by the sum of ``loss_terms.normaliser(y)``."""
        return self.loss_terms.sum(self.outputs(theta, X), y)

    def data_mean(self, batch_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple | None = None,
                  progress: bool = False, desc: str = "data pass") -> torch.Tensor:
        """(sum over all batches and ranks of ``batch_sum(X, y)``) / (sum of the loss's normalisers).

        ``batch_sum`` returns a quantity summed over the batch's per-example loss terms (e.g. the gradient
        of :meth:`batch_sum`); ``shape`` is its shape, needed only by a rank that holds no examples.
        """
        total, norm = None, 0.0
        for X, y in progress_bar(self.batches(), progress, desc):
            part = batch_sum(X, y)
            total = part if total is None else total + part
            norm += self.loss_terms.normaliser(y)
        if total is None:
            if shape is None:
                raise ValueError("this rank holds no examples; pass data to every rank")
            total = torch.zeros(shape, dtype=self.dtype, device=self.device)
        if distributed() and not self.local_only:  # one collective for the sum and the normaliser
            packed = all_reduce_sum(torch.cat([total.reshape(-1), total.new_tensor([norm])]))
            total, norm = packed[:-1].view_as(total), float(packed[-1])
        if norm <= 0:
            raise ValueError("the loss's normaliser is 0: every target is ignored (ignore_index) or has class weight 0")
        return total / norm

    def check_finite(self, value: torch.Tensor, what: str) -> torch.Tensor:
        """``value``, or a FloatingPointError naming ``what`` if it holds NaN or inf."""
        # a finite sum proves every entry finite (NaN and inf propagate); only a non-finite sum needs the full check
        if not torch.isfinite(value.sum()) and not torch.isfinite(value).all():
            raise FloatingPointError(
                f"non-finite values (NaN or inf) in the {what} at this theta; check the data for NaN/inf, "
                "the learning rate that produced these parameters, and that the loss gets valid targets"
            )
        return value

    # ----------------------------------------------------------------- verify, then trust
    @cached_property
    def structure(self) -> Structure:
        """How the selected parameters are used by the forward pass (recorded once on two examples)."""
        return Structure(self)

    def restricted(self, theta: torch.Tensor | None = None, examples: int = _probe.PROBE_EXAMPLES,
                   dtype: torch.dtype = torch.float64) -> "Objective":
        """This Objective on the first ``examples`` examples of this rank, in ``dtype``, at ``theta``, never
        all-reduced, differentiating reverse-over-reverse: where the probes compare paths."""
        probe = copy.copy(self)
        X, y = next(self.batches())

        def cast(t):
            return t.to(dtype) if t.is_floating_point() else t

        probe._data, probe.dtype = (cast(X[:examples]), cast(y[:examples])), dtype
        probe._theta = self.resolve_theta(theta).to(dtype)
        probe.fixed = {n: cast(t) for n, t in self.fixed.items()}
        probe.local_examples = probe.num_examples = len(probe._data[0])
        probe.normaliser = self.loss_terms.normaliser(probe._data[1])
        # reverse-over-reverse only: finite differences check it, and it checks forward mode (``forward_mode_ok``)
        probe.local_only, probe._ad_mode, probe._forward_ok = True, "reverse", False
        return probe

    def verify_products(self, kind: str = "hessian") -> None:
        """Check once (per model structure) in float64 on a few examples that the product path is right: H v
        against finite differences of the gradient (``kind="hessian"``), or J v against finite differences of the
        outputs (``"jacobian"``, the GGN family's products). Refuses with the cause otherwise."""
        problem = _probe.verdict((kind, self.signature, self.ad_mode), lambda: self._product_problem(kind))
        if problem:
            raise _probe.VerificationError(
                f"{problem}: torch's derivative rules are wrong for this model (torch 2.13's double backward "
                "of weight_norm is one known case), so losstools refuses rather than return wrong curvature. "
                "Remove the culprit (e.g. torch.nn.utils.parametrize.remove_parametrizations) or use first-order "
                "quantities only"
            )

    def _product_problem(self, kind: str) -> str | None:
        if self.local_examples == 0:
            return None
        probe = self.restricted()
        theta = probe._theta
        if kind == "hessian":
            v = _probe.random_directions(probe.num_params, 1, theta)[:, 0]
            err = _probe.matches_differences(probe._hvp(v.unsqueeze(1), theta)[:, 0], probe.grad, theta, v)
            return f"the Hessian-vector product differs from finite differences of the gradient by {err:.1%}" \
                if err > _probe.TOLERANCE else None
        X, v = probe._data[0], _probe.random_directions(probe.num_params, 1, theta, seed=1)
        JV = _autodiff.jacobian_products(lambda th: probe.outputs(th, X), theta, v, probe.jvp_mode(1))[1][0]
        err = _probe.matches_differences(JV, lambda th: probe.outputs(th, X), theta, v[:, 0])
        if err > _probe.TOLERANCE:
            return f"the Jacobian-vector product differs from finite differences of the outputs by {err:.1%}"
        return None

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the ranks (in place), unless this is a probe's local restriction."""
        return tensor if self.local_only else all_reduce_sum(tensor)

    @cached_property
    def signature(self) -> tuple:
        """What the probes' verdicts depend on (module types and names, selected parameters, loss, dtype, device)."""
        return (tuple((n, type(m)) for n, m in self.model.named_modules()), tuple(self.names), tuple(self.shapes),
                type(self.loss_fn), self.dtype, self.device.type, self.examples_independent)

    @property
    def ad_mode(self) -> str:
        """``"forward"`` or ``"reverse"``: the path of second-order products (``hvp``, GGN and Fisher products).

        ``ad_mode="auto"`` picks forward-over-reverse for models with convolutions where :attr:`forward_mode_ok`
        (measured on the benchmark LeNet: 1.2x faster for one column, 1.7x for ten; 3x for ten Jacobian-vector
        products), else reverse-over-reverse: correct for every twice-differentiable model, and faster on MLPs
        (2x for one column; benchmarks/curvature.py).
        """
        if self._ad_mode != "auto":
            return self._ad_mode
        return "forward" if self._convolutional and self.forward_mode_ok else "reverse"

    def jvp_mode(self, columns: int = 1) -> str:
        """``"forward"`` or ``"reverse"``: how ``columns`` Jacobian-vector products J M are taken (GGN and Fisher
        products).

        ``ad_mode="auto"``: as :attr:`ad_mode` (forward mode, vmapped over columns, on convolutional nets where
        :attr:`forward_mode_ok`: on the benchmark LeNet 3x faster for ten columns), and forward mode for a single
        column wherever :attr:`forward_mode_ok` (one forward pass with dual numbers: MLP 1.1x, LeNet 2.7x faster
        than the vjp of a vjp, which stays the path for several columns elsewhere: MLP 1.3x faster).
        """
        if self._ad_mode != "auto" or self.ad_mode == "forward":
            return self.ad_mode
        return "forward" if columns == 1 and self.forward_mode_ok else "reverse"

    @property
    def forward_mode_ok(self) -> bool:
        """Whether forward-over-reverse is right for this model (checked once per model structure in float64 on a few
        examples, with ``ad_mode="auto"``): the dense Hessian's generic path then differentiates tensor by tensor."""
        if self._forward_ok is None and self._ad_mode != "auto":
            self._forward_ok = self._ad_mode == "forward"
        elif self._forward_ok is None:
            problem = _probe.verdict(("forward mode", self.signature),
                                     lambda: None if self._probe_forward_mode() else "forward mode disagrees")
            self._forward_ok = problem is None
        return self._forward_ok

    def _probe_forward_mode(self) -> bool:
        """Whether forward-over-reverse matches reverse-over-reverse in float64 on a few examples."""
        batch = next(self.batches(), None)
        if batch is None:
            return False
        X, y = (t[:4].double() if t.is_floating_point() else t[:4] for t in batch)
        fixed = {n: t.double() if t.is_floating_point() else t for n, t in self.fixed.items()}

        def outputs(th):
            unflat = {n: v.view(s) for n, v, s in zip(self.names, th.split(self.sizes), self.shapes)}
            return self.call({**fixed, **unflat}, X)

        def loss(th):
            return self.loss_terms.sum(outputs(th), y)

        gen = torch.Generator(device=self.device).manual_seed(0)
        try:
            agree = _autodiff.paths_agree(loss, outputs if self.output_is_tensor else None, self._theta.double(), gen)
        except (RuntimeError, NotImplementedError) as err:
            raise ValueError(f"the loss cannot be differentiated twice with respect to the parameters: {err}") from err
        return agree

    def loss(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """The mean loss over all examples at ``theta`` (default: the model's parameters); a 0-d tensor."""
        t = self.resolve_theta(theta)
        with torch.no_grad():
            return self.check_finite(self.data_mean(lambda X, y: self.batch_sum(t, X, y), ()), "loss")

    def grad(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """The gradient of the mean loss, shape (P,)."""
        return self.loss_and_grad(theta)[1]

    def loss_and_grad(self, theta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean loss (0-d) and its gradient (P,) from the same forward passes (one forward and backward per
        batch)."""
        t = self.resolve_theta(theta)

        def batch(X, y):
            g, value = grad_and_value(self.batch_sum)(t, X, y)
            return torch.cat([value.reshape(1), g])

        both = self.data_mean(batch, (1 + self.num_params,))
        return self.check_finite(both[0], "loss"), self.check_finite(both[1:], "gradient")

    def hvp(self, v: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """Hessian-vector product H v; ``v`` of shape (P,) or (P, k) -> same shape (path: :attr:`ad_mode`).

        Costs about one forward and two backward passes per column of ``v`` (columns are batched with vmap).
        """
        t = self.resolve_theta(theta)
        v = self.check_vector(v, "v", allow_matrix=True)
        self.verify_products()
        out = self._hvp(v if v.ndim == 2 else v.unsqueeze(1), t)
        return out if v.ndim == 2 else out[:, 0]

    def _hvp(self, M: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mode, tensors = self.ad_mode, tuple(v.view(s) for v, s in zip(t.split(self.sizes), self.shapes))

        def batch_hvp(X, y):
            if mode == "forward":  # per tensor (no flat vector to split and concatenate under vmap)
                return _autodiff.tensor_hvp(lambda *ps: self.loss_terms.sum(
                    self.call({**self.fixed, **dict(zip(self.names, ps))}, X), y), tensors, M)
            return _autodiff.hvp(lambda th: self.batch_sum(th, X, y), t, M, mode)

        return self.check_finite(self.data_mean(batch_hvp, tuple(M.shape)), "Hessian-vector product")

    def __repr__(self) -> str:
        return (f"Objective({type(self.model).__name__}, P={self.num_params}, N={self.num_examples}, "
                f"params={self.names}, dtype={self.dtype}, device={self.device})")
