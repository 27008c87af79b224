"""Optimal Brain Surgeon (Hassibi & Stork 1993) for toy nets: exact inverse curvature, remaining weights re-adjusted.

Removing weight q from theta (at a minimum, g = 0) and re-adjusting the others optimally under the
quadratic model 1/2 dtheta^T H dtheta costs  s_q = theta_q^2 / (2 [H^-1]_qq)  with the step
dtheta = -theta_q / [H^-1]_qq  H^-1 e_q. Weights are removed one at a time (smallest s_q first), and
H^-1 is updated to the inverse over the remaining weights after each removal, so for a quadratic
loss the greedy sequence lands exactly on the constrained optimum of the chosen mask.
The step-norm penalty lambda enters as H + lambda I (the optimum of the penalised model).
"""
from __future__ import annotations

import torch


def obs_remove(theta: torch.Tensor, alive: torch.Tensor, curvature: torch.Tensor, count: int, reg: float = 0.0,
               signed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove ``count`` more weights by OBS; returns (new theta (P,), new alive mask (P,) bool).

    ``theta`` (P,) flat weights, ``alive`` (P,) bool (False entries are already pruned and stay zero),
    ``curvature`` (P, P) symmetric (GGN or Hessian of the mean loss). Only alive weights move.
    The inverse is a pseudo-inverse when H + lambda I is singular.
    """
    theta, alive = theta.clone(), alive.clone()
    if count <= 0:
        return theta, alive
    idx = alive.nonzero().squeeze(1)
    if count > len(idx):
        raise ValueError(f"cannot remove {count} weights: only {len(idx)} are left")
    H = curvature[idx][:, idx] + reg * torch.eye(len(idx), dtype=curvature.dtype, device=curvature.device)
    inverse = torch.linalg.pinv((H + H.T) / 2, hermitian=True)
    w = theta[idx]
    free = torch.ones(len(idx), dtype=torch.bool, device=theta.device)
    for _ in range(count):
        diag = inverse.diagonal()
        score = torch.where(diag.abs() > 0, w**2 / (2 * diag), torch.full_like(w, float("inf")))
        score = score if signed else score.abs()
        q = int(torch.where(free, score, torch.full_like(w, float("inf"))).argmin())
        if not free[q]:  # every remaining score is inf: fall back to the smallest magnitude
            q = int(torch.where(free, w.abs(), torch.full_like(w, float("inf"))).argmin())
        column = inverse[:, q].clone()
        if diag[q].abs() > 0:
            w = w - (w[q] / column[q]) * column
            inverse = inverse - torch.outer(column, column) / column[q]
        w[q] = 0.0
        free[q] = False
    theta[idx] = torch.where(free, w, torch.zeros_like(w))
    alive[idx] = free
    return theta, alive
