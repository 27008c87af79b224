"""Pure plotting functions: data in, matplotlib Figure out. Nothing here computes curvature."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=float)


def matrix_heatmap(matrix, title: str = "Hessian", boundaries: Sequence[int] = (), ax=None) -> Figure:
    """Heatmap of a (P, P) matrix on a symmetric log colour scale; lines at parameter-tensor ``boundaries``."""
    M = _numpy(matrix)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 4.4))
    vmax = float(np.abs(M).max()) or 1.0
    image = ax.imshow(M, cmap="RdBu_r", norm=SymLogNorm(linthresh=vmax * 1e-3, vmin=-vmax, vmax=vmax),
                      interpolation="nearest")
    for b in boundaries:
        ax.axhline(b - 0.5, color="k", lw=0.4, alpha=0.5)
        ax.axvline(b - 0.5, color="k", lw=0.4, alpha=0.5)
    ax.set_title(title)
    ax.set_xlabel("parameter index")
    ax.set_ylabel("parameter index")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def spectrum(eigenvalues, title: str = "Hessian eigenvalues", ax=None) -> Figure:
    """Sorted eigenvalues on a symmetric log scale (negative ones in red), largest first."""
    values = np.sort(_numpy(eigenvalues))[::-1]
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.5))
    index = np.arange(1, len(values) + 1)
    ax.scatter(index[values >= 0], values[values >= 0], s=4, color="C0", label="positive")
    ax.scatter(index[values < 0], values[values < 0], s=4, color="C3", label="negative")
    scale = np.abs(values[values != 0]).min() if np.any(values != 0) else 1.0
    ax.set_yscale("symlog", linthresh=max(scale, np.abs(values).max() * 1e-6))
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("rank")
    ax.set_ylabel("eigenvalue")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def curvature_overview(matrix, eigenvalues, boundaries: Sequence[int] = (), name: str = "Hessian") -> Figure:
    """Side by side: the heatmap of ``matrix`` and its eigenvalue spectrum."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1.1, 1]})
    matrix_heatmap(matrix, name, boundaries, ax=left)
    spectrum(eigenvalues, f"{name} eigenvalues", ax=right)
    fig.tight_layout()
    return fig


def loss_history(history: dict[str, list[float]], ax=None) -> Figure:
    """Training (and validation) loss per epoch on a log scale."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.5))
    for split, values in history.items():
        if values:
            ax.plot(np.arange(1, len(values) + 1), values, label=split)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss")
    ax.legend()
    return fig


# ------------------------------------------------------------------------------------------- pruning
PRUNING_COLOURS = {"mp": "0.45", "obd": "C2", "lm": "C0", "qm": "C3", "obs": "C4"}


def pruning_loss_vs_reg(records: Sequence[dict], key: str = "dL", ylabel: str = "ΔL (train loss after − before)",
                        title: str = "Loss change after pruning") -> Figure:
    """One panel per number of steps: ``key`` against lambda (symlog axis, 0 included), a line per criterion
    (mean over seeds, band of +- one std); MP, which depends on neither, is a dashed line in every panel."""
    steps = sorted({r["steps"] for r in records if r["criterion"] != "mp"}) or [1]
    fig, axes = plt.subplots(1, len(steps), figsize=(3.6 * len(steps) + 0.8, 3.4), sharey=True, squeeze=False)
    value = (lambda r: r[key]) if key in records[0] else (lambda r: r["finetuned"][key])
    regs = sorted({r["reg"] for r in records})
    positive = [r for r in regs if r > 0]
    for ax, n in zip(axes[0], steps):
        for criterion in sorted({r["criterion"] for r in records}, key=list(PRUNING_COLOURS).index):
            colour = PRUNING_COLOURS.get(criterion, "k")
            by_reg: dict[float, list[float]] = {}
            for r in records:
                if r["criterion"] == criterion and (criterion == "mp" or r["steps"] == n):
                    by_reg.setdefault(r["reg"], []).append(value(r))
            if criterion == "mp":
                ax.axhline(np.mean([v for vs in by_reg.values() for v in vs]), color=colour, ls="--", label="MP")
            elif by_reg:
                x = sorted(by_reg)
                mean = np.array([np.mean(by_reg[k]) for k in x])
                ax.plot(x, mean, "o-", color=colour, ms=3.5, label=criterion.upper())
                if max(len(v) for v in by_reg.values()) > 1:
                    std = np.array([np.std(by_reg[k]) for k in x])
                    ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.15, lw=0)
        linthresh = min(positive) if positive else 1e-5
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xlim(-0.3 * linthresh, 1.5 * max(regs) if max(regs) > 0 else linthresh)
        ax.set_xlabel("λ (step-norm penalty)")
        ax.set_title(f"{n} step{'s' if n > 1 else ''}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def predicted_vs_actual(history: Sequence[dict], title: str = "Loss models of each pruning step") -> Figure:
    """Left: the actual loss change of every step and each loss model's prediction, against the step.
    Right: predicted against actual (the diagonal is a perfect model)."""
    actual = np.array([h["loss_after"] - h["loss_before"] for h in history])
    models_ = [m for m in ("lm", "qm", "obd", "obs") if m in history[0]["predicted"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    step = np.arange(1, len(history) + 1)
    left.plot(step, actual, "k.-", lw=1.2, label="actual")
    for m in models_:
        predicted = np.array([h["predicted"][m] for h in history])
        left.plot(step, predicted, ".-", lw=0.9, color=PRUNING_COLOURS[m], label=m.upper())
        right.scatter(actual, predicted, s=12, color=PRUNING_COLOURS[m], label=m.upper())
    left.axhline(0, color="k", lw=0.5)
    left.set_xlabel("pruning step")
    left.set_ylabel("ΔL of the step")
    left.legend(fontsize=8)
    both = np.concatenate([actual] + [[h["predicted"][m] for h in history] for m in models_])
    lo, hi = float(both.min()), float(both.max())
    right.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    right.set_xlabel("actual ΔL")
    right.set_ylabel("predicted ΔL")
    right.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def pruning_outcomes(records: Sequence[dict], title: str = "Loss preserved vs. network after fine-tuning") -> Figure:
    """Every run: ΔL right after pruning (x) against the validation error after fine-tuning (y), by criterion."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for criterion in sorted({r["criterion"] for r in records}, key=list(PRUNING_COLOURS).index):
        rows = [r for r in records if r["criterion"] == criterion]
        ax.scatter([r["dL"] for r in rows], [100 * r["finetuned"]["val_error"] for r in rows], s=16,
                   color=PRUNING_COLOURS.get(criterion, "k"), label=criterion.upper())
    ax.set_xlabel("ΔL right after pruning")
    ax.set_ylabel("validation error after fine-tuning (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
