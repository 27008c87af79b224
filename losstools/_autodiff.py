"""Second-order products by two differentiation paths, and the choice between them.

``"forward"``: forward-over-reverse (``jvp`` of ``grad``), the fastest path where torch supports it.
``"reverse"``: reverse-over-reverse (``vjp`` of ``grad``; a Jacobian-vector product as the ``vjp`` of a
``vjp``), the path torch supports for every twice-differentiable op. In torch 2.13 forward mode is
missing for the fused attention kernels and some other ops; reverse-over-forward is wrong for
LayerNorm, so it is never used. :func:`paths_agree` checks a model once (``Objective.forward_mode_ok``).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.autograd import forward_ad
from torch.func import grad, jvp, vjp, vmap

MODES = ("forward", "reverse")


def columns(fn: Callable, M: torch.Tensor, in_dim: int = 1, out_dim: int = 1) -> torch.Tensor:
    """``vmap(fn)`` over dimension ``in_dim`` of M, stacked at ``out_dim``; a plain call for one column."""
    if M.shape[in_dim] == 1:
        return fn(M.select(in_dim, 0)).unsqueeze(out_dim)
    # stacked first, then moved: vmap cannot place an output that does not depend on M at out_dims > 0
    return vmap(fn, in_dims=in_dim)(M).movedim(0, out_dim)


def _batched_grad(output: torch.Tensor, inputs: torch.Tensor, M: torch.Tensor, in_dim: int) -> torch.Tensor:
    """Plain autograd's ``grad(output, inputs, m)`` for every slice m of M along ``in_dim``, stacked first;
    zeros where ``output`` does not depend on ``inputs``. One backward pass per slice: measured faster than
    ``is_grads_batched`` on a LeNet (0.72x) and within 7 % of it on an MLP, and free of batching-rule gaps."""
    if not output.requires_grad:
        return torch.zeros(M.shape[in_dim], *inputs.shape, dtype=inputs.dtype, device=inputs.device)
    kw = dict(retain_graph=True, allow_unused=True, materialize_grads=True)
    return torch.stack([torch.autograd.grad(output, inputs, m, **kw)[0] for m in M.unbind(in_dim)])


def hvp(f: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, M: torch.Tensor, mode: str) -> torch.Tensor:
    """H M for the Hessian H of the scalar ``f`` at ``theta`` (P,), M of shape (P, k) -> (P, k).

    ``"reverse"`` uses plain autograd's double backward (no functorch wrappers: measured fastest)."""
    if mode == "forward":
        return columns(lambda m: jvp(grad(f), (theta,), (m,))[1], M)
    with torch.enable_grad():
        t = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(t), t, create_graph=True, allow_unused=True, materialize_grads=True)
        return _batched_grad(g, t, M, 1).T


def tensor_hvp(f: Callable[..., torch.Tensor], tensors: tuple[torch.Tensor, ...], M: torch.Tensor) -> torch.Tensor:
    """H M (P, k) for the scalar ``f(*tensors)`` and M (P, k) over the tensors flattened in order: forward-over-reverse
    on the tensors themselves, vmapped over columns (on the benchmark LeNet 10 % faster than through one flat vector,
    whose split and concatenation every column pays)."""
    sizes, shapes = [t.numel() for t in tensors], [t.shape for t in tensors]
    g = grad(f, argnums=tuple(range(len(tensors))))

    def column(m):
        tangents = tuple(v.view(s) for v, s in zip(m.split(sizes), shapes))
        return torch.cat([h.reshape(-1) for h in jvp(g, tensors, tangents)[1]])

    return columns(column, M)


def jacobian_products(g: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, M: torch.Tensor,
                      mode: str) -> tuple[torch.Tensor, torch.Tensor, Callable]:
    """``(out, J M, pullback)`` for ``out = g(theta)``: J M of shape (k, *out.shape) and u -> J^T u
    (several u at once: a stack (k, *out.shape) -> (k, P))."""
    if mode == "forward" and M.shape[1] == 1:  # one forward pass with dual numbers (measured fastest)
        with torch.enable_grad(), forward_ad.dual_level():
            t = theta.detach().requires_grad_(True)
            out, tangent = forward_ad.unpack_dual(g(forward_ad.make_dual(t, M[:, 0])))
        JM = (torch.zeros_like(out) if tangent is None else tangent).unsqueeze(0)
        return out.detach(), JM, lambda U: _batched_grad(out, t, U, 0)
    if mode == "forward":  # columns batched with vmap (on a LeNet 3x faster than one pass per column)
        out, pullback = vjp(g, theta)
        JM = columns(lambda m: jvp(g, (theta,), (m,))[1], M, 1, 0)
        return out, JM, lambda U: columns(lambda u: pullback(u)[0], U, 0, 0)
    with torch.enable_grad():
        t = theta.detach().requires_grad_(True)
        out = g(t)
        u = torch.zeros_like(out, requires_grad=True)  # J m = d/du <J^T u, m>: the vjp of the (linear) vjp
        (dual,) = torch.autograd.grad(out, t, u, create_graph=True, allow_unused=True, materialize_grads=True)
        JM = _batched_grad(dual, u, M, 1)
    return out.detach(), JM, lambda U: _batched_grad(out, t, U, 0)


def paths_agree(f: Callable[[torch.Tensor], torch.Tensor], g: Callable[[torch.Tensor], torch.Tensor] | None,
                theta: torch.Tensor, gen: torch.Generator, rtol: float = 1e-6) -> bool:
    """Whether the forward paths give the reverse path's H M and J M (``g`` None: H M only) on two random columns
    and on one.

    Call it in float64 on a few examples: round-off then stays far below ``rtol``, while the known
    wrong rules are off by percents. An op without forward mode counts as disagreement.
    """
    M = torch.randn(theta.numel(), 2, generator=gen, dtype=theta.dtype, device=theta.device)
    reference = (hvp(f, theta, M, "reverse"), hvp(f, theta, M[:, :1], "reverse"))
    if g is not None:
        J = jacobian_products(g, theta, M, "reverse")[1]
        reference += (J, J[:1])
    try:  # several columns (vmapped) and a single one (no vmap; dual numbers for J m) take different forward paths
        candidate = (hvp(f, theta, M, "forward"), hvp(f, theta, M[:, :1], "forward"))
        if g is not None:
            candidate += (jacobian_products(g, theta, M, "forward")[1],
                          jacobian_products(g, theta, M[:, :1], "forward")[1])
    except (NotImplementedError, RuntimeError):
        return False
    return all(torch.allclose(c, r, rtol=rtol, atol=rtol * r.abs().max().item()) for c, r in zip(candidate, reference))
