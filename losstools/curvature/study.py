"""Cost versus accuracy of the stochastic curvature estimators on a small net (for notebook 02).

Every estimator is run with a growing budget of products (Hutchinson / Hutch++ probes, Monte-Carlo
label samples, Lanczos steps) over several seeds, and compared with the exact quantity from the
dense matrices. Relative errors are ||estimate - exact|| / ||exact|| (absolute value for scalars).
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..objective import Batch
from .estimators import hutchinson_diag, hutchinson_trace, hutchpp_trace, lanczos
from .operators import GGN, Fisher, Hessian


def relative_error(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    """||estimate - exact|| / ||exact|| (vectors: Euclidean norm; scalars: absolute value)."""
    return float((estimate - exact).norm() / exact.norm().clamp_min(torch.finfo(exact.dtype).tiny))


def cost_accuracy(model: nn.Module, loss_fn: Callable, data: Batch | Iterable[Batch],
                  budgets: Sequence[int] = (1, 2, 4, 8, 16, 32, 64), seeds: int = 3) -> dict[str, np.ndarray]:
    """Mean relative error (over ``seeds``) of each estimator at each budget, ``{name: (len(budgets),)}``.

    Estimators: Hutchinson diagonal and trace of the Hessian, Hutch++ trace (budgets below 3 use 3
    products), the Monte-Carlo GGN diagonal with that many label samples per example, and the top
    Hessian eigenvalue after that many Lanczos steps. Exact references come from dense matrices,
    so keep the model tiny (P up to a few hundred); its parameters must sit in Linear / Conv2d
    layers (for the Monte-Carlo diagonal). ``"budgets"`` holds the budgets themselves.
    """
    H_op, G_op = Hessian(model, loss_fn, data), GGN(model, loss_fn, data)
    H = H_op.to_dense()
    diag_H, trace_H = H.diagonal(), H.trace()
    top = torch.linalg.eigvalsh(H)[-1]
    diag_G = G_op.diagonal()
    runs: dict[str, list[list[float]]] = {k: [] for k in
                                          ["Hutchinson diag(H)", "Hutchinson tr(H)", "Hutch++ tr(H)", "MC diag(GGN)",
                                           "Lanczos top eig(H)"]}
    for budget in budgets:
        row = {k: [] for k in runs}
        for seed in range(seeds):
            row["Hutchinson diag(H)"].append(relative_error(hutchinson_diag(H_op, budget, seed, progress=False),
                                                            diag_H))
            row["Hutchinson tr(H)"].append(relative_error(hutchinson_trace(H_op, budget, seed, progress=False),
                                                          trace_H))
            row["Hutch++ tr(H)"].append(relative_error(hutchpp_trace(H_op, max(3, budget), seed), trace_H))
            mc = Fisher(G_op.objective, mc_samples=budget, seed=seed).diagonal()
            row["MC diag(GGN)"].append(relative_error(mc, diag_G))
            value = lanczos(H_op, 1, tol=0.0, max_steps=budget, seed=seed)[0][0]
            row["Lanczos top eig(H)"].append(relative_error(value, top))
        for k in runs:
            runs[k].append(row[k])
    result = {k: np.array([np.mean(r) for r in v]) for k, v in runs.items()}
    result["budgets"] = np.asarray(budgets)
    return result
