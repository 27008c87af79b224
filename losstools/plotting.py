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


# ----------------------------------------------------------------------------- curvature zoo (notebook 02)
def matrix_grid(matrices: dict, boundaries: Sequence[int] = (), ncols: int | None = None) -> Figure:
    """Heatmaps of several (P, P) matrices side by side on ONE shared symmetric log colour scale."""
    names = list(matrices)
    ncols = ncols or len(names)
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.1 * nrows), squeeze=False)
    arrays = {n: _numpy(matrices[n]) for n in names}
    vmax = max(float(np.abs(M).max()) for M in arrays.values()) or 1.0
    norm = SymLogNorm(linthresh=vmax * 1e-3, vmin=-vmax, vmax=vmax)
    for ax, name in zip(axes.flat, names):
        image = ax.imshow(arrays[name], cmap="RdBu_r", norm=norm, interpolation="nearest")
        for b in boundaries:
            ax.axhline(b - 0.5, color="k", lw=0.4, alpha=0.5)
            ax.axvline(b - 0.5, color="k", lw=0.4, alpha=0.5)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02)
    return fig


def spectra(eigenvalues: dict, title: str = "eigenvalues, largest first", ax=None) -> Figure:
    """Sorted eigenvalues of several matrices on one symmetric log axis (one line per matrix)."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.6))
    smallest = np.inf
    for i, (name, values) in enumerate(eigenvalues.items()):
        v = np.sort(_numpy(values))[::-1]
        ax.plot(np.arange(1, len(v) + 1), v, marker="o", ms=2.5, lw=1, color=f"C{i}", label=name)
        if np.any(v != 0):
            smallest = min(smallest, np.abs(v[v != 0]).max() * 1e-5)
    ax.set_yscale("symlog", linthresh=smallest if np.isfinite(smallest) else 1e-6)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("rank")
    ax.set_ylabel("eigenvalue")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def cost_accuracy(curves: dict, budgets, highlight: int | None = None, ax=None) -> Figure:
    """Relative error against cost (products) on log-log axes, one line per estimator; a marker at ``highlight``."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.8))
    budgets = np.asarray(budgets)
    floor = 1e-6  # errors below are drawn at the floor (Lanczos reaches round-off in a few steps)
    for i, (name, errors) in enumerate(curves.items()):
        errors = np.maximum(np.asarray(errors, dtype=float), floor)
        ax.plot(budgets, errors, marker="o", ms=3, color=f"C{i}", label=name)
        if highlight is not None and highlight in budgets:
            ax.plot([highlight], [errors[list(budgets).index(highlight)]], "o", ms=9, mfc="none", color=f"C{i}")
    ref = np.asarray(curves[next(iter(curves))], dtype=float)[0] * (budgets / budgets[0]) ** -0.5
    ax.plot(budgets, ref, "k:", lw=1, label=r"$\propto 1/\sqrt{m}$")
    if highlight is not None:
        ax.axvline(highlight, color="0.6", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, None)
    ax.set_xlabel("products m (probes, samples or Lanczos steps)")
    ax.set_ylabel("relative error")
    ax.legend(fontsize=7, loc="lower left")
    return fig


def spectral_density(grid, values, markers=(), title: str = "spectral density (SLQ)", ax=None) -> Figure:
    """A spectral density on ``grid`` (log y axis), with vertical ``markers`` (e.g. top eigenvalues)."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.4))
    grid, values = np.asarray(grid), np.asarray(values)
    ax.semilogy(grid, np.maximum(values, 1e-8), color="C0")
    for m in markers:
        ax.axvline(float(m), color="C3", lw=0.8, alpha=0.7)
    ax.set_ylim(bottom=max(1e-6, values[values > 0].min() if np.any(values > 0) else 1e-6))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title(title)
    return fig
