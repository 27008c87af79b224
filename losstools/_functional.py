"""Calling a user's module as a pure function of its tensors, without ever touching the module.

``functional_call`` swaps tensors into a module's attributes for the duration of a call, and with
``tie_weights=True`` torch 2.13 leaves a module registered twice holding plain tensors afterwards. So
losstools calls a private structural copy (new module objects sharing the user's parameter tensors,
which are never written) and passes every alias of a tied tensor itself, once per attribute slot.
Attention runs with the math kernel of scaled-dot-product attention: the fused CPU kernels have
neither forward-mode nor second derivatives.
"""
from __future__ import annotations

import copy
from typing import Iterator

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

# modules whose output in training mode is random (Dropout) or depends on the whole batch (BatchNorm)
TRAIN_MODE_MODULES = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)

def structural_copy(model: nn.Module) -> nn.Module:
    """New module objects with the same parameters, buffers and other attributes (shared, not copied).

    Each module is copied shallowly with its own containers (parameters, buffers, submodules, hooks), so
    that swapping tensors in or registering hooks on the copy never reaches the user's modules; a module
    placed twice stays one module in the copy.
    """
    copies: dict[int, nn.Module] = {}

    def clone(module: nn.Module) -> nn.Module:
        if id(module) not in copies:
            c = copies[id(module)] = copy.copy(module)
            attributes = vars(c)  # written directly: Module.__setattr__ costs more than the copy itself
            for key, value in vars(module).items():
                if isinstance(value, (dict, set)):
                    attributes[key] = copy.copy(value)
            attributes["_modules"] = {name: None if m is None else clone(m) for name, m in module._modules.items()}
        return copies[id(module)]

    return clone(model)


def refuse_train_mode(model: nn.Module) -> None:
    """Refuse Dropout / BatchNorm in training mode: their outputs are random or depend on the batch."""
    culprits = [name or type(model).__name__ for name, m in model.named_modules()
                if m.training and isinstance(m, TRAIN_MODE_MODULES)]
    if culprits:
        raise ValueError(
            f"the model is in training mode and has Dropout/BatchNorm layers ({', '.join(culprits[:4])}"
            f"{', ...' if len(culprits) > 4 else ''}): its loss would be random or depend on the batch, not a "
            "function of the parameters. Call model.eval() first (losstools never changes your model)"
        )


def alias_slots(module: nn.Module) -> dict[str, list[str]]:
    """``{canonical name: [other names]}`` for tensors registered under several names.

    The canonical names are those of ``named_parameters()`` / ``named_buffers()``; an alias is listed
    only when it is another attribute slot (a module reused under two names shares its slots).
    """
    aliases: dict[str, list[str]] = {}
    for named in (module.named_parameters, module.named_buffers):
        first: dict[int, str] = {}
        slots: dict[int, set] = {}
        for name, t in named(remove_duplicate=False):
            owner, _, attr = name.rpartition(".")
            slot = (id(module.get_submodule(owner)), attr)
            if id(t) not in first:
                first[id(t)], slots[id(t)] = name, {slot}
            elif slot not in slots[id(t)]:
                slots[id(t)].add(slot)
                aliases.setdefault(first[id(t)], []).append(name)
    return aliases


def call(module: nn.Module, tensors: dict[str, torch.Tensor], aliases: dict[str, list[str]], *args) -> torch.Tensor:
    """``module(*args)`` with ``tensors`` (every canonical parameter and buffer name) and their aliases."""
    full = dict(tensors)
    for name, others in aliases.items():
        for other in others:
            full[other] = tensors[name]
    with sdpa_kernel(SDPBackend.MATH):
        return functional_call(module, full, args, tie_weights=False, strict=False)


def fork_rng(device: torch.device) -> Iterator:
    """``torch.random.fork_rng`` on the device's generators: probes leave the user's random state alone."""
    devices = [device] if torch.device(device).type == "cuda" else []
    return torch.random.fork_rng(devices=devices)
