"""Per-layer curvature by hooks on ``nn.Linear`` and ``nn.Conv2d``, BackPACK-style, for any model.

One forward pass records each layer's input a and output z. For a batch of per-example output
vectors V (B, C, K) (the columns of a square root of the loss Hessian w.r.t. the outputs, sampled
gradients, or the data's own gradients), one batched backward pass gives d = J_z^T V: the K pulled-back
vectors at every layer output, shape (K, B, O, T) (T = 1 for a Linear on (B, I) inputs, the number
of output positions for a Conv2d or a Linear on sequences). A per-example weight gradient is
sum_t d_t a_t^T, so

- diagonal:  sum_{n,k} (sum_t d_nkt a_nt^T)^2; for T = 1 this is (sum_k d^2)^T (a^2): one matmul;
- K-FAC:     A = sum_{n,t} a a^T / T, G = sum_{n,k,t} d d^T (a padded with a 1 for the bias).

Only the layers owning selected parameters are hooked; a selected parameter anywhere else raises
:class:`UnsupportedLayerError` naming it, and so does a layer that is not stock (a subclass, hooks, parametrizations),
whose parameters are read anywhere but in its own call (weight sharing, tying), or that is called twice.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import _progress
from .._structure import plain
from ..objective import Objective

_CHUNK_ELEMENTS = 2**25  # per-example gradients materialised at once (T > 1 layers)
PASS_ELEMENTS = 2**25  # pulled-back vector entries (K x examples x layer outputs) per chunk of a per-layer pass


class UnsupportedLayerError(ValueError):
    """A selected parameter lives in a layer that the per-layer (hook-based) methods cannot handle."""


@dataclass
class Layer:
    """A supported module with the names (in theta) of its selected weight and bias, if any."""
    name: str
    module: nn.Module
    weight: str | None
    bias: str | None


def supported_layers(obj: Objective, what: str) -> list[Layer]:
    """The layers owning the selected parameters, in model order, if every one of them is a stock ``nn.Linear`` or
    ``nn.Conv2d`` (groups 1, zero padding; exact type, no hooks or parametrizations) whose selected parameters are
    read once, by the layer's own call, and the model treats examples independently; else
    :class:`UnsupportedLayerError` naming the first parameter that breaks a condition."""
    modules = dict(obj.model.named_modules())
    layers: dict[str, Layer] = {}
    for pname in obj.names:
        mname, _, attr = pname.rpartition(".")
        module = modules[mname]
        problem = None
        if type(module) not in RULES or attr not in ("weight", "bias"):
            problem = f"it belongs to {mname or 'the model'!r} ({type(module).__name__})"
        elif RULES[type(module)].problem(module):
            problem = f"{mname!r} is {RULES[type(module)].problem(module)}"
        elif not plain(module):
            problem = f"{mname!r} has hooks or parametrizations that change what it computes"
        elif not obj.output_is_tensor:
            problem = (f"the model returns a {obj.output_type}: wrap it so that it returns the one tensor the loss "
                       "compares with the targets")
        elif not obj.examples_independent:
            problem = "the model's output for one example depends on other examples of the batch"
        elif not obj.structure.uses.get(pname):
            problem = f"{mname!r} is not called in the forward pass; leave its parameters out with params=..."
        elif not obj.structure.consumed_once_by_owner(pname):
            problem = (f"it is not read exactly once, by {mname!r}'s own call (a tied or shared weight, or a weight "
                       "used in another module's forward)")
        if problem:
            raise UnsupportedLayerError(
                f"{what} works per layer on stock nn.Linear and nn.Conv2d layers (groups=1, zero padding) whose "
                f"parameters are read once, by their own call; the selected parameter {pname!r} is not supported: "
                f"{problem}. Select supported parameters with params=... (e.g. a list of names), or use the "
                "products (GGN(obj) @ v) and the matrix-free estimators (hutchinson_diag), which work for any model."
            )
        layer = layers.setdefault(mname, Layer(mname, module, None, None))
        setattr(layer, attr, pname)
    order = list(modules)
    return sorted(layers.values(), key=lambda layer: order.index(layer.name))


@contextmanager
def _recording(layers: list[Layer]) -> Iterator[tuple[dict, dict]]:
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def hook_for(name):  # each layer runs once per forward (supported_layers checked it)
        def hook(module, args, out):
            inputs[name], outputs[name] = args[0].detach(), out
        return hook

    handles = [layer.module.register_forward_hook(hook_for(layer.name)) for layer in layers]
    try:
        yield inputs, outputs
    finally:
        for handle in handles:
            handle.remove()


def examples_per_chunk(obj: Objective, layers: list[Layer]) -> int:
    """Examples per chunk of a per-layer pass: about ``PASS_ELEMENTS`` entries of pulled-back vectors (one
    column per model output, the most any kind uses per example) at the hooked layers' outputs, from the
    sizes the Objective recorded on its first evaluation (``obj.layer_output_sizes``)."""
    per_example = obj.output_size * sum(obj.layer_output_sizes.get(layer.name, 0) for layer in layers)
    return max(1, PASS_ELEMENTS // max(1, per_example))


def chunked_mean(obj: Objective, chunk_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple,
                 progress: bool, desc: str, examples: int) -> torch.Tensor:
    """``obj.data_mean`` of ``chunk_sum`` (a sum over a batch's loss terms) applied to at most ``examples``
    examples at a time (:func:`examples_per_chunk`): the same sum, with memory bounded by the chunk, and
    one tqdm bar counting examples (shown when the pass lasts over ``PROGRESS_DELAY`` s; ``progress=False``
    hides it).
    """
    step = int(examples)
    bar = tqdm(total=obj.num_examples, desc=desc, unit="ex", delay=_progress.PROGRESS_DELAY, leave=False,
               disable=not progress)

    def batch_sum(X, y):
        total = None
        for s in range(0, len(X), step):
            part = chunk_sum(X[s : s + step], y[s : s + step])
            total = part if total is None else total + part
            bar.update(len(X[s : s + step]))
        return total

    try:
        return obj.data_mean(batch_sum, shape, False, desc)
    finally:
        bar.close()


# ----------------------------------------------------------------------- forward / backward
class LinearRule:
    """``nn.Linear`` on (B, ..., I) inputs: the positions between batch and features are its T."""

    @staticmethod
    def problem(module: nn.Module) -> str | None:
        return None

    @staticmethod
    def inputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(B, I, T), positions last (a view where possible)."""
        return x.reshape(len(x), -1, x.shape[-1]).transpose(1, 2)

    @staticmethod
    def deltas(d: torch.Tensor) -> torch.Tensor:
        """Pulled-back vectors (K, B, ..., O) at the output as (K, B, O, T)."""
        return d.reshape(d.shape[0], d.shape[1], -1, d.shape[-1]).transpose(2, 3)


class Conv2dRule:
    """``nn.Conv2d`` (groups 1, zero padding): input patches, the output positions are its T."""

    @staticmethod
    def problem(module: nn.Module) -> str | None:
        if module.groups != 1 or module.padding_mode != "zeros":
            return f"a Conv2d with groups={module.groups}, padding_mode={module.padding_mode!r}"
        return None

    @staticmethod
    def inputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``F.unfold`` of the input, (B, Cin kh kw, T), as a strided view copied once (~8x faster on CPU)."""
        x = F.pad(x, module._reversed_padding_repeated_twice)
        (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
        B, Cin, H, W = x.shape
        Ho, Wo = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
        sb, sc, sy, sx = x.stride()
        view = x.as_strided((B, Cin, kh, kw, Ho, Wo), (sb, sc, sy * dh, sx * dw, sy * sh, sx * sw))
        return view.reshape(B, Cin * kh * kw, Ho * Wo)

    @staticmethod
    def deltas(d: torch.Tensor) -> torch.Tensor:
        return d.flatten(3)


# what a layer type knows: its inputs as (B, I, T) and pulled-back vectors as (K, B, O, T), from which the
# per-example gradients sum_t d a^T, the diagonal and the K-FAC factors follow for every type alike
RULES: dict[type, type] = {nn.Linear: LinearRule, nn.Conv2d: Conv2dRule}


def backpropagate(obj: Objective, layers: list[Layer], theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                  vectors: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  by_column: bool = False) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """For one batch: per layer, inputs a (B, I, T) and pulled-back vectors d (K, B, O, T), after one forward pass.

    ``vectors(out, y)`` gives V (B, C, K) from the detached outputs. Yields the list once, all K columns
    pulled back in one batched backward pass (``is_grads_batched``), or with ``by_column`` once per column
    (d of shape (1, B, O, T), K plain backward passes): for sums over columns, this skips vmap's fallbacks
    (e.g. ``avg_pool2d_backward`` has no batching rule) and the (K, B, O, T) copies, which makes the GGN
    diagonal of the benchmark LeNet about 1.5x faster; on Linear layers the batched pass is faster.
    """
    with _recording(layers) as (inputs, outputs):
        out = obj.outputs(theta.detach().requires_grad_(True), X)
    silent = [layer.name for layer in layers if layer.name not in outputs]
    if silent:
        raise UnsupportedLayerError(f"layer(s) {silent} hold selected parameters but are not called in the forward "
                                    "pass; leave their parameters out with params=...")
    V = vectors(out.detach(), y)
    grad_outputs = V.permute(2, 0, 1).reshape(V.shape[-1], *out.shape)
    targets = [outputs[layer.name] for layer in layers]
    acts = [RULES[type(layer.module)].inputs(layer.module, inputs[layer.name]) for layer in layers]
    groups = [column.unsqueeze(0) for column in grad_outputs] if by_column else [grad_outputs]
    for i, columns in enumerate(groups):
        retain = i < len(groups) - 1
        if len(columns) == 1:  # one column: a plain backward pass, no vmap
            deltas = [d if d is None else d.unsqueeze(0) for d in
                      torch.autograd.grad(out, targets, columns[0], allow_unused=True, retain_graph=retain)]
        else:
            deltas = torch.autograd.grad(out, targets, columns, is_grads_batched=True, allow_unused=True)
        deltas = [torch.zeros(len(columns), *z.shape, dtype=z.dtype, device=z.device) if d is None else d
                  for d, z in zip(deltas, targets)]  # a layer whose output does not reach the loss
        yield [(a, RULES[type(layer.module)].deltas(d)) for layer, a, d in zip(layers, acts, deltas)]


def _per_example_squares(d: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """sum_{k,b} (sum_t d[k,b,:,t] a[b,:,t]^T)^2, (O, I), for d (K, B, O, T) and a (B, I, T): one batched matmul
    for the per-example gradients (B, K O, I), squared in place (no second temporary)."""
    K, B, O, T = d.shape
    G = torch.bmm(d.permute(1, 0, 2, 3).reshape(B, K * O, T), a.transpose(1, 2))
    return G.mul_(G).view(B * K, O, -1).sum(0)


def squared_gradient_sums(layer: Layer, a: torch.Tensor, d: torch.Tensor) -> dict[str, torch.Tensor]:
    """sum_{n,k} (per-example gradient)^2 for the layer's selected weight / bias, shaped like them."""
    m, result = layer.module, {}
    if layer.weight is not None:
        if a.shape[2] == 1:  # one position: (sum_k d^2)^T a^2
            w = d[..., 0].pow(2).sum(0).T @ a[..., 0].pow(2)
        else:  # per-example gradients d_kb a_b^T (O, I), a chunk of examples at a time
            K, B, O, T = d.shape
            chunk = max(1, _CHUNK_ELEMENTS // (K * O * a.shape[1]))
            w = sum(_per_example_squares(d[:, s : s + chunk], a[s : s + chunk]) for s in range(0, B, chunk))
        result[layer.weight] = w.reshape(m.weight.shape)
    if layer.bias is not None:
        result[layer.bias] = d.sum(3).pow(2).sum((0, 1))
    return result


def _gram(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` (n, n) <- sum over the leading dimensions and the last one of x x^T for x (..., n, T): one matmul
    written in place (``out`` may be a strided view).

    The positions T are moved next to the leading dimensions (one copy of x), so no per-example (n, n)
    products are formed (they would cost B n^2 memory)."""
    n = x.shape[-2]
    flat = x.reshape(-1, n) if x.shape[-1] == 1 else x.movedim(-2, 0).reshape(n, -1).T
    return torch.mm(flat.T, flat, out=out)


def kfac_factor_sums(layer: Layer, a: torch.Tensor, d: torch.Tensor, A: torch.Tensor, G: torch.Tensor) -> None:
    """Batch sums of the K-FAC factors, written into A (I', I') and G (O, O) (views of one buffer, no copies):
    A = sum_{n,t} a a^T / T, G = sum_{n,k,t} d d^T.

    With a selected bias, a is padded with a 1 (A gains a row and column [sum a, N T] / T); with
    only the bias selected, A is (1, 1). The factors then cover the joint (weight, bias) block.
    """
    T = d.shape[3]
    count = float(len(a) * T)
    if layer.weight is None:
        A.fill_(count)
    else:
        I = a.shape[1]
        _gram(a, A[:I, :I])
        if layer.bias is not None:
            s = a.sum((0, 2))
            A[-1, :-1], A[:-1, -1], A[-1, -1] = s, s, count
    if T != 1:
        A.div_(T)
    _gram(d, G)
