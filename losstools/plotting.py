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
