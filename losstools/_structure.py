"""What a fast path may assume about a model: checked on the model itself, never inferred from a type.

A fast path (the structured Linear-chain Hessian, per-layer hooks for diagonals and K-FAC) knows the
function a module computes only for a stock module: exactly ``nn.Linear`` (not a subclass with its own
``forward``), a container whose ``forward`` is the stock one, no hooks or parametrizations that change
what it computes, and each selected parameter consumed once, by its owning module's own call.
:class:`Structure` checks all of it. Usage is recorded once per Objective by one forward pass on a few
examples under a ``TorchFunctionMode``: every torch operation that reads a selected parameter is
attributed to the innermost module being called at that moment.

Hooks that users register (forward hooks, pre-hooks, global module hooks) are refused by
:func:`refuse_user_hooks`: losstools calls a model hundreds of times as a function of its parameters, and
a hook would run, and write into the user's objects, on every call. The hooks that torch itself installs
for ``weight_norm``, ``spectral_norm`` and ``torch.nn.utils.prune`` compute a parameter from others and
are kept: they are part of the function.
"""
from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from torch.nn.modules import module as module_globals
from torch.nn.utils import parametrize
from torch.nn.utils.prune import BasePruningMethod
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

_PURE_HOOKS = (BasePruningMethod, WeightNorm, SpectralNorm)
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks")


class HookError(ValueError):
    """The model has hooks of the user's that losstools would have to run on every evaluation."""


def _hooks(module: nn.Module) -> list:
    return [h for d in _HOOK_DICTS for h in getattr(module, d, {}).values()]


def _describe(hook) -> str:
    return getattr(hook, "__qualname__", type(hook).__name__)


def refuse_user_hooks(model: nn.Module) -> None:
    """Refuse forward hooks and pre-hooks of the user's (on any module or global); torch's own kept."""
    found = [f"{name or 'the model'} ({_describe(h)})" for name, m in model.named_modules() for h in _hooks(m)
             if not isinstance(h, _PURE_HOOKS)]
    found += [f"global ({_describe(h)})" for d in (module_globals._global_forward_hooks,
                                                   module_globals._global_forward_pre_hooks) for h in d.values()]
    if found:
        raise HookError(
            f"the model has forward hooks: {', '.join(found[:4])}{', ...' if len(found) > 4 else ''}. losstools "
            "evaluates the model hundreds of times as a function of its parameters; your hooks would run on every "
            "call and change your objects. If a hook is part of the model (it changes an output), move it into a "
            "module's forward; if it only records, remove it while losstools runs (handle.remove()) and register "
            "it again afterwards"
        )


def plain(module: nn.Module) -> bool:
    """No hooks and no parametrizations on ``module`` itself: it computes what its ``forward`` says."""
    return not _hooks(module) and not parametrize.is_parametrized(module)


def stock_forward(module: nn.Module, base: type[nn.Module]) -> bool:
    """``module`` is a ``base`` (or a subclass) whose ``forward`` is ``base.forward`` itself."""
    return isinstance(module, base) and type(module).forward is base.forward


class _Recorder(TorchFunctionMode):
    """Attribute every torch operation that reads one of ``tensors`` to the innermost module being called."""

    def __init__(self, tensors: dict[int, str]):
        super().__init__()
        self.tensors, self.stack = tensors, [None]
        self.uses: dict[str, list[int | None]] = defaultdict(list)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if any(torch.is_tensor(r) and r.is_floating_point() for r in tree_leaves(result)):
            for leaf in tree_leaves((args, kwargs)):
                name = self.tensors.get(id(leaf))
                if name is not None:
                    self.uses[name].append(self.stack[-1])
        return result


class Structure:
    """How the selected parameters of an Objective are used, from one recorded forward pass.

    ``uses[name]`` lists, for every operation reading parameter ``name``, the id of the innermost module
    being called (None: outside any module's call). ``owners[name]`` is the module whose attribute the
    canonical name points to.
    """

    def __init__(self, obj) -> None:
        model = obj.model
        self.modules = dict(model.named_modules())
        self.owners = {n: self.modules[n.rpartition(".")[0]] for n in obj.names}
        tensors = obj.params_dict(obj.resolve_theta(None))
        recorder = _Recorder({id(tensors[n]): n for n in obj.names})

        def push(module, args):
            recorder.stack.append(id(module))

        def pop(module, args, out):
            recorder.stack.pop()

        handles = []
        for m in model.modules():
            handles.append(m.register_forward_pre_hook(push, prepend=True))
            handles.append(m.register_forward_hook(pop, always_call=True))
        X = next(obj.batches())[0][:2]
        try:
            with torch.no_grad(), recorder:
                obj.call(tensors, X)
        finally:
            for h in handles:
                h.remove()
        self.uses = dict(recorder.uses)

    def consumed_once_by_owner(self, name: str) -> bool:
        """Parameter ``name`` is read by exactly one operation, inside its owning module's own call."""
        return self.uses.get(name, []) == [id(self.owners[name])]

    def unused(self, names: list[str]) -> list[str]:
        """The selected parameters that no operation reads (the loss does not depend on them)."""
        return [n for n in names if not self.uses.get(n)]
