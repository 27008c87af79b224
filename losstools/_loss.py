"""A loss function split into a sum over examples and the normaliser its ``"mean"`` divides by.

Every quantity in losstools is the loss ``loss_fn`` would give on all the data at once. For torch's
losses that is (sum of per-example terms) / (normaliser): the number of examples, of elements (MSE,
BCE, L1, ...), of non-ignored targets (``ignore_index``) or the sum of the targets' class weights
(``CrossEntropyLoss(weight=...)``). Batches of a DataLoader, or the shards of several processes, then
combine exactly: sum the numerators, sum the normalisers, divide once.

A plain callable ``loss_fn(outputs, targets)`` is taken to be the mean over the batch's examples (their number is
``len(targets)``, so the model may return a tuple or dict from which the callable picks what it compares).
A torch loss module whose averaging this module cannot confirm on the first batch is refused.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad, jacrev, vmap

from . import _autodiff
from ._functional import structural_copy

# losses whose "mean" averages over every element of the outputs (outputs and targets of one shape)
ELEMENTWISE = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.BCELoss, nn.BCEWithLogitsLoss,
               nn.SoftMarginLoss, nn.PoissonNLLLoss, nn.KLDivLoss)
CLASS_INDEX = (nn.CrossEntropyLoss, nn.NLLLoss)


class LossError(ValueError):
    """The loss cannot be used as given (reduction, target shape, unknown averaging)."""


def _shape(t: torch.Size) -> str:
    """A batch shape with its batch axis as N (the check sees the first batch's first examples only)."""
    return "(" + ", ".join(["N", *map(str, t[1:])]) + ("," if len(t) == 1 else "") + ")"


def _squared_error_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """sum (outputs - targets)^2 in plain ops: torch's fused ``mse_loss`` fails under forward-over-reverse
    differentiation in torch 2.13 ("ZeroTensors are immutable")."""
    return ((outputs - targets) ** 2).sum()


def _with_buffers_as(loss: nn.Module, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """A structural copy of ``loss`` whose buffers (class weights, pos_weight) are on ``device``, floating ones in
    ``dtype`` (``Module.to`` would convert shared parameters in place)."""
    moved = structural_copy(loss)
    for module in moved.modules():
        for key, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[key] = buffer.to(device=device, dtype=dtype if buffer.is_floating_point() else None)
    return moved


class LossTerms:
    """``loss_fn`` as ``sum(outputs, targets)`` and ``normaliser(outputs, targets)``.

    ``mean = sum / normaliser`` equals ``loss_fn(outputs, targets)``; the normaliser depends on the
    targets (and shapes) only, never on the parameters, so derivatives need only the sum.
    """

    def __init__(self, loss_fn: Callable):
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, e.g. nn.CrossEntropyLoss(); got {type(loss_fn).__name__}")
        self.loss_fn = loss_fn
        reduction = getattr(loss_fn, "reduction", None)
        self.is_module = isinstance(loss_fn, nn.Module) and reduction is not None
        allowed = ("mean", "batchmean") if isinstance(loss_fn, nn.KLDivLoss) else ("mean",)
        if self.is_module and reduction not in allowed:
            raise LossError(
                f"loss_fn has reduction={reduction!r}; losstools defines every quantity as the mean over the data, "
                f"so pass the loss with reduction={allowed[-1]!r} (e.g. nn.CrossEntropyLoss())"
            )
        if isinstance(loss_fn, nn.MSELoss):
            self._sum: Callable = _squared_error_sum
        elif self.is_module:
            self._sum = structural_copy(loss_fn)  # the user's loss keeps its reduction
            self._sum.reduction = "sum"
        else:
            self._sum = loss_fn
        self._by_dtype: dict[tuple, Callable] = {}
        self.name = type(loss_fn).__name__ if self.is_module else getattr(loss_fn, "__name__", "loss_fn")

    # ------------------------------------------------------------------ the two parts
    def sum(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The sum of the per-example terms, a 0-d tensor (differentiable in ``outputs``).

        A plain callable's mean times the number of examples, ``len(targets)`` (not ``len(outputs)``: the outputs
        may be a tuple or dict)."""
        if self.is_module:
            return self._summing(outputs.dtype, outputs.device)(outputs, targets)
        return self._sum(outputs, targets) * len(targets)

    def _summing(self, dtype: torch.dtype, device: torch.device) -> Callable:
        """The summing loss with its floating buffers (class weights, pos_weight) in ``dtype`` on ``device``."""
        if not isinstance(self._sum, nn.Module):
            return self._sum
        if (dtype, device) not in self._by_dtype:
            self._by_dtype[dtype, device] = _with_buffers_as(self._sum, dtype, device)
        return self._by_dtype[dtype, device]

    def normaliser(self, targets: torch.Tensor) -> float:
        """What ``loss_fn``'s mean divides by on a batch with these targets (a Python float)."""
        loss = self.loss_fn
        if isinstance(loss, CLASS_INDEX) and not targets.is_floating_point():
            keep = targets != loss.ignore_index
            if loss.weight is None:
                return float(keep.sum())
            w = loss.weight.to(device=targets.device, dtype=torch.float64)[torch.where(keep, targets, 0)]
            return float((w * keep).sum())
        if isinstance(loss, CLASS_INDEX):  # class probabilities: the mean is over examples (and positions)
            return targets.numel() / targets.shape[1 if targets.ndim > 1 else 0]
        if isinstance(loss, ELEMENTWISE) and not (isinstance(loss, nn.KLDivLoss) and loss.reduction == "batchmean"):
            return float(targets.numel())  # outputs have the targets' shape (see check)
        return float(len(targets))  # per example: batchmean, a callable, another module

    def mean(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``loss_fn(outputs, targets)`` (0 when every target of the batch is ignored)."""
        return self.sum(outputs, targets) / max(self.normaliser(targets), 1e-300)

    def per_example(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``(o_n, t_n) -> l_n``, the term of one example in :meth:`sum` (for ``vmap`` over examples)."""
        return lambda o, t: self.sum(o.unsqueeze(0), t.unsqueeze(0))

    # ------------------------------------------------------------------ curvature in the outputs
    likelihood = False  # the negative log-likelihood of a distribution over targets: the true Fisher exists
    structured = False  # twice differentiable per example: the structured Linear-chain formulas may be used
    linear_in_outputs = False  # zero Hessian in the outputs: its Gauss-Newton matrix is 0

    def output_hessian_product(self, out: torch.Tensor, y: torch.Tensor, U: torch.Tensor, mode: str) -> torch.Tensor:
        """H U for H the Hessian of the loss's sum in the outputs ``out``; U (k, *out.shape) -> the same shape."""
        flat = U.reshape(len(U), -1).T  # (outputs, k)
        return _autodiff.hvp(lambda o: self.sum(o.view_as(out), y), out.reshape(-1), flat, mode).T.reshape(U.shape)

    def output_hessian_sqrt(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """S (B, C, C) with S_n S_n^T the Hessian of example n's term in its flat outputs, from the eigendecomposition
        of that Hessian; refused if the loss is not convex in the outputs (negative eigenvalues)."""
        H = vmap(jacrev(jacrev(self.per_example())))(out, y).reshape(len(out), out[0].numel(), -1)
        values, vectors = torch.linalg.eigh((H + H.transpose(1, 2)) / 2)
        scale = values.abs().amax().clamp_min(torch.finfo(values.dtype).tiny)
        if (values < -1e-6 * scale).any():
            raise ValueError(f"{self.name} is not convex in the model's outputs (its Hessian there has negative "
                             "eigenvalues), so its Gauss-Newton matrix has no square root; use the GGN products "
                             "(GGN(obj) @ v, hutchinson_diag) or the Hessian instead")
        return vectors * values.clamp_min(0).sqrt().unsqueeze(1)

    def sampled_gradients(self, out: torch.Tensor, y: torch.Tensor, samples: int,
                          gen: torch.Generator) -> torch.Tensor:
        """d l_n(f, y~)/d f for ``samples`` labels y~ ~ p(y | f) per example, over sqrt(samples): (B, C, S), an
        unbiased V with E[V V^T] the output Hessian. Only likelihoods can sample."""
        raise ValueError(
            f"Monte-Carlo sampling needs a likelihood: nn.CrossEntropyLoss (on (N, C) logits, no label smoothing), "
            f"nn.BCEWithLogitsLoss or nn.MSELoss, without class weights, not this {self.name}; "
            "use the exact version (mc_samples=None)")

    def output_gradients(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """d l_n / d f_n with the data's labels, (B, C, 1) (the empirical Fisher's output vectors)."""
        return vmap(grad(self.per_example()))(out, y).reshape(len(out), -1, 1)

    def output_vectors(self, kind: str, out: torch.Tensor, y: torch.Tensor, samples: int = 1,
                       gen: torch.Generator | None = None) -> torch.Tensor:
        """V (B, C, K) with sum_k V V^T the exact output Hessian of l_n ("exact"), a sampled estimate of it
        ("mc", needs ``gen``) or the outer product of the data's output gradients ("empirical")."""
        if kind == "exact":
            return self.output_hessian_sqrt(out, y)
        if kind == "mc":
            return self.sampled_gradients(out, y, samples, gen)
        return self.output_gradients(out, y)

    # ------------------------------------------------------------------ validation
    def _check_class_targets(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Cross-entropy / NLL targets: integer class indices of shape (N, d1, ...) for outputs (N, C, d1, ...), or
        (cross-entropy only) floating class probabilities of the outputs' shape."""
        index_shape = outputs.shape[:1] + outputs.shape[2:]
        probabilities = isinstance(self.loss_fn, nn.CrossEntropyLoss)
        expected = (f"integer class indices of shape {_shape(index_shape)}" +
                    (f" or class probabilities of the outputs' shape {_shape(outputs.shape)}" if probabilities else ""))
        got = f"{self.name} got targets of shape {_shape(targets.shape)} and dtype {targets.dtype}"
        if targets.is_floating_point():
            if probabilities and targets.shape == outputs.shape:
                return
            if targets.shape == index_shape:
                why = " (floating targets are read as class probabilities, which need the outputs' shape)"
                raise LossError(f"{got} for outputs of shape {_shape(outputs.shape)}: class indices must be integers: "
                                f"pass y.long(){why if probabilities else ''}")
            raise LossError(f"{got} for outputs of shape {_shape(outputs.shape)}; it expects {expected}")
        if targets.shape == index_shape:
            return
        if targets.shape == index_shape + (1,):
            raise LossError(f"{self.name} got class-index targets of shape {_shape(targets.shape)}, one column: use "
                            f"y.view(-1) (or y.squeeze(-1)) to give them shape {_shape(index_shape)}, one index per "
                            "example")
        raise LossError(f"{got} for outputs of shape {_shape(outputs.shape)}; it expects {expected}")

    def check(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Refuse shapes that torch would broadcast silently, and averaging this module cannot confirm."""
        if isinstance(self.loss_fn, CLASS_INDEX) and torch.is_tensor(outputs) and outputs.ndim >= 2:
            self._check_class_targets(outputs, targets)
        if isinstance(self.loss_fn, ELEMENTWISE) and outputs.shape != targets.shape:
            raise LossError(
                f"{self.name} compares outputs and targets element by element, but the model's outputs have shape "
                f"{tuple(outputs.shape)} and the targets {tuple(targets.shape)}; torch would broadcast them to a "
                "wrong loss. Give targets the outputs' shape (e.g. y.view(-1, 1) or y.unsqueeze(1)), or make the "
                "model output that shape"
            )
        with torch.no_grad():
            expected = self.loss_fn(outputs, targets)
            if not torch.is_tensor(expected) or expected.ndim != 0:
                raise LossError(f"loss_fn must return a scalar (0-d tensor); it returned "
                                f"{getattr(expected, 'shape', type(expected).__name__)}")
            z = self.normaliser(targets)
            if z > 0 and torch.isfinite(expected):
                ours = self.sum(outputs, targets) / z
                if not torch.allclose(ours, expected.to(ours.dtype), rtol=1e-4, atol=1e-6):
                    raise LossError(
                        f"losstools cannot tell how {self.name} averages over examples (sum / normaliser = "
                        f"{ours.item():.6g}, the loss = {expected.item():.6g}); pass a plain function "
                        "loss_fn(outputs, targets) that returns the mean over the batch's examples"
                    )


# ----------------------------------------------------------------------- one object per loss
class _Unweighted:
    def _unweighted(self) -> bool:
        return getattr(self.loss_fn, "weight", None) is None and getattr(self.loss_fn, "pos_weight", None) is None


class CrossEntropyTerms(_Unweighted, LossTerms):
    """Cross-entropy: closed forms on (B, C) logits without label smoothing, with c_n example n's class weight (0 if
    ignored): output Hessian c_n (diag(p) - p p^T), its square root sqrt(c_n) (diag(sqrt p) - p sqrt(p)^T),
    categorical label samples, per-example gradients c_n (p - onehot)."""

    likelihood = structured = True

    def _closed(self, out: torch.Tensor) -> bool:
        return out.ndim == 2 and self.loss_fn.label_smoothing == 0

    def class_weights(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Example n's factor c_n in the loss's sum (B,)."""
        loss = self.loss_fn
        if y.is_floating_point():  # class probabilities q (B, C): the term is sum_c w_c q_c (-log p_c)
            w = torch.ones(y.shape[1], dtype=dtype, device=y.device) if loss.weight is None else \
                loss.weight.to(device=y.device, dtype=dtype)
            return y.to(dtype) @ w
        keep = (y != loss.ignore_index).to(dtype)
        if loss.weight is None:
            return keep
        return loss.weight.to(device=y.device, dtype=dtype)[torch.where(keep.bool(), y, 0)] * keep

    def output_hessian_product(self, out, y, U, mode):
        if not self._closed(out):
            return super().output_hessian_product(out, y, U, mode)
        p = torch.softmax(out, -1)
        return self.class_weights(y, out.dtype)[:, None] * p * (U - (U * p).sum(-1, keepdim=True))

    def output_hessian_sqrt(self, out, y):
        if not self._closed(out):
            return super().output_hessian_sqrt(out, y)
        p = torch.softmax(out, -1)
        q = p.sqrt()
        S = torch.diag_embed(q) - p.unsqueeze(2) * q.unsqueeze(1)
        return S * self.class_weights(y, out.dtype).sqrt()[:, None, None]

    def sampled_gradients(self, out, y, samples, gen):
        if not (self._closed(out) and self._unweighted()):
            return super().sampled_gradients(out, y, samples, gen)
        p = torch.softmax(out, -1)
        labels = torch.multinomial(p, samples, replacement=True, generator=gen)  # (B, S)
        g = p.unsqueeze(1) - F.one_hot(labels, out.shape[1]).to(p.dtype)  # (B, S, C)
        g = g * self.class_weights(y, p.dtype)[:, None, None]
        return g.transpose(1, 2) / samples**0.5

    def output_gradients(self, out, y):
        if not self._closed(out) or y.is_floating_point():
            return super().output_gradients(out, y)
        p = torch.softmax(out, -1)
        onehot = F.one_hot(torch.where(y == self.loss_fn.ignore_index, 0, y), out.shape[1]).to(p.dtype)
        return ((p - onehot) * self.class_weights(y, p.dtype)[:, None]).unsqueeze(2)


class BCEWithLogitsTerms(_Unweighted, LossTerms):
    """Binary cross-entropy on logits: Bernoulli label samples."""

    likelihood = structured = True

    def sampled_gradients(self, out, y, samples, gen):
        if not self._unweighted():
            return super().sampled_gradients(out, y, samples, gen)
        p = torch.sigmoid(out.reshape(len(out), -1))
        draws = (torch.rand((samples, *p.shape), generator=gen, device=p.device, dtype=p.dtype) < p).to(p.dtype)
        return (p.unsqueeze(0) - draws).permute(1, 2, 0) / samples**0.5


class MSETerms(LossTerms):
    """Squared error l_n = |f - y|^2: Gaussian label samples y~ ~ N(f, I/2), so that 2 (f - y~) has covariance 2 I."""

    likelihood = structured = True

    def sampled_gradients(self, out, y, samples, gen):
        flat = out.reshape(len(out), -1)
        noise = torch.randn((len(flat), samples, flat.shape[1]), generator=gen, device=flat.device, dtype=flat.dtype)
        return (2.0**0.5 * noise).transpose(1, 2) / samples**0.5


class BCETerms(LossTerms):
    structured = True


class NLLTerms(LossTerms):
    """NLL on log-probabilities: linear in the outputs."""

    linear_in_outputs = True


_TERMS: dict[type, type[LossTerms]] = {nn.CrossEntropyLoss: CrossEntropyTerms, nn.BCEWithLogitsLoss: BCEWithLogitsTerms,
                                       nn.MSELoss: MSETerms, nn.BCELoss: BCETerms, nn.NLLLoss: NLLTerms}


def loss_terms(loss_fn: Callable) -> LossTerms:
    """What losstools knows about ``loss_fn``: the object of its exact type (a subclass with its own ``forward`` is a
    loss of its own: the generic :class:`LossTerms`)."""
    return _TERMS.get(type(loss_fn), LossTerms)(loss_fn)
