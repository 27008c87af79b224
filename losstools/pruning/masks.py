"""Binary masks over Linear/Conv weights: selection by saliency, application, export to torch.nn.utils.prune.

A mask set is ``{parameter name: bool tensor shaped like the weight}``; True keeps the weight.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from .._validate import choice
from ..objective import layer_weight_names

Masks = dict[str, torch.Tensor]
SCOPES = ("global", "layer")
_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # the layers whose weight is prunable


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the prunable weights (Linear/Conv ``weight``); biases and norm layers are never pruned."""
    names = layer_weight_names(model)
    if not names:
        layers = sorted({type(m).__name__ for m in model.modules()} - {type(model).__name__}) or ["none"]
        raise ValueError(
            f"the model has no prunable layers: pruning acts on the weights of nn.Linear / nn.Conv1d/2d/3d "
            f"modules, and this {type(model).__name__} holds {', '.join(layers)}"
        )
    return names


def full_masks(model: nn.Module) -> Masks:
    """Masks that keep every prunable weight."""
    params = dict(model.named_parameters())
    return {n: torch.ones_like(params[n], dtype=torch.bool) for n in prunable_names(model)}


def count(masks: Masks) -> tuple[int, int]:
    """(number of pruned weights, number of prunable weights)."""
    total = sum(m.numel() for m in masks.values())
    return total - sum(int(m.sum()) for m in masks.values()), total


def sparsity(masks: Masks) -> float:
    """Fraction of prunable weights that are pruned."""
    pruned, total = count(masks)
    return pruned / total


def select(scores: dict[str, torch.Tensor], masks: Masks, fraction: float, scope: str = "global") -> Masks:
    """New masks pruning the round(``fraction`` N) lowest ``scores`` (already pruned weights stay pruned).

    ``scope="global"``: N counts all prunable weights and the ranking is across layers (the paper's
    choice); ``"layer"``: every tensor loses round(fraction N_l) of its own N_l weights.
    Ties are broken by position (stable sort).
    """
    choice(scope, SCOPES, "scope")
    names = list(masks)
    groups = [names] if scope == "global" else [[n] for n in names]
    out: Masks = {}
    for group in groups:
        alive = torch.cat([masks[n].reshape(-1) for n in group])
        score = torch.cat([scores[n].detach().reshape(-1) for n in group])
        k = max(int(round(fraction * alive.numel())), int((~alive).sum())) - int((~alive).sum())
        keep = alive.clone()
        if k > 0:  # remove the k lowest of the alive weights (sorting only those: most are pruned late in a run)
            positions = alive.nonzero().squeeze(1)
            keep[positions[torch.sort(score[positions], stable=True).indices[:k]]] = False
        for n, part in zip(group, keep.split([masks[n].numel() for n in group])):
            out[n] = part.view(masks[n].shape)
    return out


def apply_masks_(model: nn.Module, masks: Masks) -> nn.Module:
    """Zero the pruned weights of ``model`` **in place**; returns the model."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, m in masks.items():
            params[n].mul_(m.to(params[n].device, params[n].dtype))
    return model


def _module_of(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_name, _, attr = name.rpartition(".")
    return (model.get_submodule(module_name) if module_name else model), attr


def to_torch_prune(model: nn.Module, masks: Masks, inplace: bool = False) -> nn.Module:
    """``model`` (a copy unless ``inplace``) with every mask attached by ``torch.nn.utils.prune.custom_from_mask``.

    Each masked module then has ``weight_orig`` (a parameter) and ``weight_mask`` (a buffer), and
    ``weight = weight_orig * weight_mask`` is recomputed on every forward pass, so the pruned
    weights stay zero during training. Call :func:`make_permanent` before saving a plain state dict.
    """
    model = model if inplace else copy.deepcopy(model)
    for name, mask in masks.items():
        module, attr = _module_of(model, name)
        torch_prune.custom_from_mask(module, attr, mask.to(getattr(module, attr).device))
    return model


def _pruning_hooks(model: nn.Module):
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                yield module, hook._tensor_name


def copy_pruned(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works on a model with torch.nn.utils.prune masks after a forward pass.

    (There ``weight`` is a computed non-leaf tensor, which ``deepcopy`` refuses; the copy holds its detached
    value instead, which the next forward pass recomputes anyway. ``model`` itself is not changed.)
    """
    memo: dict = {}
    for module in model.modules():
        for value in vars(module).values():  # plain attributes only: parameters and buffers are leaves
            if torch.is_tensor(value) and value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


def shared_weights(model: nn.Module) -> dict[str, list[str]]:
    """The prunable weights that are one nn.Parameter under several names: ``{canonical name: [all its names]}``."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    layer_weights = {id(m.weight) for m in model.modules()
                     if isinstance(m, _LAYER_TYPES) and isinstance(getattr(m, "weight", None), nn.Parameter)}
    return {found[0]: found for key, found in names.items() if key in layer_weights and len(found) > 1}


def refuse_shared_weights(model: nn.Module) -> None:
    """A ValueError naming the tied weights: a mask prunes one layer's weight, and a shared one is every layer's."""
    shared = shared_weights(model)
    if shared:
        first, names = next(iter(shared.items()))
        module, _, attr = names[1].rpartition(".")
        more = f", and {len(shared) - 1} more shared weight(s)" if len(shared) > 1 else ""
        raise ValueError(
            f"the model shares one nn.Parameter between layers ({' = '.join(names)}{more}): pruning masks each "
            "layer's weight on its own, so a shared weight cannot be pruned per layer. Untie the weights first, "
            f"giving each layer its own copy, e.g. setattr(model.get_submodule({module!r}), {attr!r}, "
            f"nn.Parameter(model.get_parameter({first!r}).detach().clone())), or pass a model without tied weights")


def plain_copy(model: nn.Module) -> tuple[nn.Module, Masks]:
    """A copy of ``model`` without torch.nn.utils.prune re-parametrisations (``weight`` a plain parameter again,
    its masked entries zero), and the masks those re-parametrisations held over the prunable weights (True where
    kept; all True for a weight without one). ``model`` is not changed."""
    net = copy_pruned(model)
    held = {}
    names = {id(m): n for n, m in net.named_modules()}
    for module, attr in list(_pruning_hooks(net)):
        if attr == "weight" and isinstance(module, _LAYER_TYPES):
            prefix = names[id(module)]
            held[f"{prefix}.weight" if prefix else "weight"] = getattr(module, "weight_mask") != 0
        torch_prune.remove(module, attr)
    masks = full_masks(net)
    for name, mask in held.items():
        if name in masks:
            masks[name] = masks[name] & mask.to(masks[name].device)
    return net, masks


def make_permanent(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Remove torch.nn.utils.prune re-parametrisations (a copy unless ``inplace``): ``weight`` becomes a
    plain parameter again, with the pruned entries zero, so the state dict has the original keys."""
    model = model if inplace else copy_pruned(model)
    for module, name in list(_pruning_hooks(model)):
        torch_prune.remove(module, name)
    return model
