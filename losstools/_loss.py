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
from torch import nn

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
