"""Directions d of shape (P,) along which a step theta0 + t d is taken (see :mod:`losstools.taylor`).

Every function returns a vector of the Objective's flat parameter space, on its device and dtype,
and takes the same ``normalize`` argument:

- ``"global"`` (default): unit Euclidean norm, ``||d|| = 1``, so the step size t is the length of the
  step in parameter space and directions of different kinds share one t axis;
- ``"layer"``: each parameter tensor's block of d is rescaled to the norm of the same tensor of theta
  (the layer normalisation of loss-landscape plots);
- ``"filter"``: each row (output unit / filter, dimension 0) of every tensor with two or more dimensions is
  rescaled to the norm of the same row of theta; 1-D tensors (biases) are treated as one block
  (filter normalisation of Li et al., 2018, "Visualizing the loss landscape of neural nets");
- ``None``: the raw vector, e.g. ``pruning(obj, 0.5, normalize=None)`` is exactly the pruning step,
  reached at t = 1. With the default unit norm the same step is reached at t = ``||theta * (1 - m)||``.

Blocks of d that are zero stay zero under layer and filter normalisation.

>>> d = gradient(obj)                       # doctest: +SKIP
>>> float(d.norm())                         # doctest: +SKIP
1.0
"""
from __future__ import annotations

from typing import Callable

import torch

from ._random import generator
from .curvature import eigh, ggn, hessian
from .objective import Objective, layer_weight_names

#: How a direction is normalised (see the module's docstring).
NORMALIZATIONS = ("global", "layer", "filter", None)
#: The kinds of direction :func:`make` builds.
KINDS = ("gradient", "random", "top_eigenvector", "bottom_eigenvector", "pruning", "user")


def normalize(obj: Objective, direction: torch.Tensor, how: str | None = "global",
              theta: torch.Tensor | None = None) -> torch.Tensor:
    """Rescale ``direction`` (P,) as described in the module docstring; returns a new (P,) tensor."""
    d = obj.check_vector(direction, "direction").clone()
    if not torch.isfinite(d).all():
        raise ValueError("the direction contains NaN or inf; pass a finite vector")
    if how not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {how!r}; choose one of {list(NORMALIZATIONS)}")
    if how is not None and not d.any():
        raise ValueError("the direction is zero: it cannot be normalised and a step along it changes nothing")
    if how == "global":
        return d / d.norm()
    if how is None:
        return d
    ref = obj.resolve_theta(theta)
    for d_part, ref_part, shape in zip(d.split(obj.sizes), ref.split(obj.sizes), obj.shapes):
        rows = 1 if how == "layer" or len(shape) < 2 else shape[0]
        d_rows, ref_rows = d_part.view(rows, -1), ref_part.view(rows, -1)
        norms = d_rows.norm(dim=1, keepdim=True)
        d_rows.mul_(torch.where(norms > 0, ref_rows.norm(dim=1, keepdim=True) / norms, 0.0))
    return d


def gradient(obj: Objective, theta: torch.Tensor | None = None, normalize: str | None = "global") -> torch.Tensor:
    """The negative gradient -g at theta (steepest descent), normalised; shape (P,)."""
    return _normalize(obj, -obj.grad(theta), normalize, theta)


def random(obj: Objective, seed: int | torch.Generator = 0, normalize: str | None = "global",
           theta: torch.Tensor | None = None) -> torch.Tensor:
    """A standard Gaussian direction drawn on the parameters' device from ``seed`` (or a Generator)."""
    d = torch.randn(obj.num_params, generator=generator(seed, obj.device), device=obj.device, dtype=obj.dtype)
    return _normalize(obj, d, normalize, theta)


def eigenvector(obj: Objective, which: str = "top", index: int = 0, curvature: str | torch.Tensor = "hessian",
                theta: torch.Tensor | None = None, normalize: str | None = "global") -> torch.Tensor:
    """An eigenvector of the curvature: ``which="top"`` (largest eigenvalues) or ``"bottom"`` (smallest).

    ``index`` counts from that end (0 = the extreme one). ``curvature`` is ``"hessian"``, ``"ggn"`` (exact,
    dense: toy nets only) or a precomputed symmetric (P, P) tensor at theta. The sign is fixed so that
    g.d <= 0 (a step with t > 0 does not start uphill); if g.d = 0, the largest entry is positive.
    """
    if which not in ("top", "bottom"):
        raise ValueError(f"which must be 'top' or 'bottom', got {which!r}")
    if isinstance(curvature, str):
        builders = {"hessian": hessian, "ggn": ggn}
        if curvature not in builders:
            raise ValueError(f"unknown curvature {curvature!r} for eigenvectors; "
                             "use 'hessian', 'ggn' or a (P, P) tensor")
        curvature = builders[curvature](obj, theta)
    if curvature.shape != (obj.num_params, obj.num_params):
        raise ValueError(f"curvature has shape {tuple(curvature.shape)}, expected ({obj.num_params}, {obj.num_params})")
    if not 0 <= index < obj.num_params:
        raise ValueError(f"index must be in [0, {obj.num_params}), got {index}")
    _, vectors = eigh(curvature.to(device=obj.device, dtype=obj.dtype), descending=which == "top")
    v = vectors[:, index].clone()
    slope = obj.grad(theta) @ v
    if slope > 0 or (slope == 0 and v[v.abs().argmax()] < 0):
        v = -v
    return _normalize(obj, v, normalize, theta)


def magnitude_mask(obj: Objective, sparsity: float, theta: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean mask (P,), True = kept: removes the ``round(sparsity * n)`` weights of smallest ``|theta_i|``.

    Only entries of Linear/Conv weight tensors (n of them) can be removed, globally across layers;
    biases and other parameters are always kept.
    """
    if not 0.0 <= float(sparsity) <= 1.0:
        raise ValueError(f"sparsity must be a fraction in [0, 1], got {sparsity}")
    t = obj.resolve_theta(theta)
    weights = set(layer_weight_names(obj.model))
    prunable = torch.zeros(obj.num_params, dtype=torch.bool, device=obj.device)
    for name, where in obj.slices().items():
        prunable[where] = name in weights
    if not prunable.any():
        raise ValueError(f"this Objective's parameters {obj.names} hold no Linear/Conv weight to prune")
    candidates = prunable.nonzero().squeeze(1)
    removed = candidates[t[candidates].abs().argsort(stable=True)[: round(float(sparsity) * len(candidates))]]
    mask = torch.ones(obj.num_params, dtype=torch.bool, device=obj.device)
    mask[removed] = False
    return mask


def pruning(obj: Objective, sparsity: float | None = None, mask: torch.Tensor | None = None,
            theta: torch.Tensor | None = None, normalize: str | None = "global") -> torch.Tensor:
    """The pruning step -theta * (1 - m) for a mask m (P,), True/1 = kept; normalised (see module doc).

    Give either ``sparsity`` (magnitude pruning, :func:`magnitude_mask`) or your own ``mask``.
    """
    if (sparsity is None) == (mask is None):
        raise ValueError("give exactly one of sparsity (magnitude pruning) or mask (True/1 = kept)")
    t = obj.resolve_theta(theta)
    m = magnitude_mask(obj, sparsity, t) if mask is None else obj.check_vector(mask, "mask")
    if mask is not None and not torch.all((m == 0) | (m == 1)):
        raise ValueError("mask must hold only 0/1 (or False/True) entries, 1 = kept")
    return _normalize(obj, -t * (1 - m.to(t.dtype)), normalize, theta)


def user(obj: Objective, vector: torch.Tensor, normalize: str | None = "global") -> torch.Tensor:
    """Any vector of shape (P,) of your own, validated and normalised."""
    return _normalize(obj, vector, normalize, None)


def make(obj: Objective, kind: str, **kwargs) -> torch.Tensor:
    """Build a direction by name: one of :data:`KINDS` (``"top_eigenvector"`` is ``eigenvector(which="top")``)."""
    builders: dict[str, Callable[..., torch.Tensor]] = {
        "gradient": gradient, "random": random, "pruning": pruning, "user": user,
        "top_eigenvector": lambda o, **kw: eigenvector(o, "top", **kw),
        "bottom_eigenvector": lambda o, **kw: eigenvector(o, "bottom", **kw),
    }
    if kind not in builders:
        raise ValueError(f"unknown direction kind {kind!r}; choose one of {list(KINDS)}")
    return builders[kind](obj, **kwargs)


_normalize = normalize  # the functions above shadow the name with their argument
