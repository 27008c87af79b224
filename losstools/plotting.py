"""Pure plotting functions: data in, matplotlib Figure out. Nothing here computes curvature."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, LogLocator, NullLocator


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


# ----------------------------------------------------------------------- Taylor models of a step (issue 4)
TAYLOR_STYLES = {  # model -> (colour, line style, legend label)
    "linear": ("C0", "--", "linear: t g·d"),
    "quadratic": ("C1", "--", "quadratic: t g·d + t²/2 d·C·d"),
    "diagonal": ("C2", ":", "diagonal: t g·d + t²/2 d·diag(C)·d"),
    "obd": ("C3", "-.", "OBD: t²/2 d·C·d"),
}


def taylor_profile(profile, models: Sequence[str] | None = None, ax=None, title: str | None = None,
                   marks: dict[str, float] | None = None) -> Figure:
    """The actual change of the loss along the direction (black) with each model's prediction overlaid.

    ``profile`` is a :class:`losstools.taylor.TaylorProfile`; ``models`` a subset of its models (default
    all); ``marks`` labelled vertical lines, e.g. ``{"full pruning step": 3.2}``. The y range follows the
    actual curve (models that leave it are clipped: that is where they fail).
    """
    own = ax is None
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 4))
    order = np.argsort(profile.steps, kind="stable")
    t, actual = profile.steps[order], profile.actual[order]
    ax.plot(t, actual, color="k", lw=2, label="actual ΔL(t)")
    for m in profile.models if models is None else models:
        colour, style, label = TAYLOR_STYLES[m]
        ax.plot(t, profile.predicted[m][order], color=colour, ls=style, lw=1.6, label=label)
    low, high = float(actual.min()), float(actual.max())
    pad = 0.15 * (high - low) or 1e-3 * max(abs(low), 1.0)
    ax.set_ylim(low - pad, high + pad)
    for i, (name, where) in enumerate((marks or {}).items()):
        ax.axvline(where, color="0.4", lw=1, ls=(0, (1, 2)))
        ax.annotate(name, (where, 1), xycoords=("data", "axes fraction"), xytext=(3, -12 - 11 * i),
                    textcoords="offset points", fontsize=8, color="0.3")
    ax.axhline(0, color="0.6", lw=0.5)
    ax.locator_params(nbins=6)  # few ticks: each one costs time when an explorer redraws
    ax.set_xlabel("step size t")
    ax.set_ylabel("ΔL = L(θ₀ + t d) − L(θ₀)")
    ax.set_title(title or f"loss along the direction (C = {profile.curvature_name})")
    ax.legend(fontsize=7, loc="upper center")  # a fixed place: loc="best" costs more than the whole plot
    if own:
        fig.tight_layout()
    return fig


def taylor_error(profile, models: Sequence[str] | None = None, ax=None, slopes: Sequence[int] = (2, 3),
                 title: str | None = None) -> Figure:
    """|predicted − actual| against |t| on log-log axes, with grey reference lines of the given ``slopes`` (in the legend).

    Uses the steps t > 0 (the |t| of t < 0 if there are none); zero errors are left out. A reference line of
    slope k is anchored at the smallest step of the model whose error should scale like |t|^k
    (``linear`` for 2, ``quadratic`` for 3), a factor 3 below it.
    """
    own = ax is None
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 4))
    side = profile.steps > 0 if np.any(profile.steps > 0) else profile.steps < 0
    order = np.argsort(np.abs(profile.steps[side]))
    size = np.abs(profile.steps[side])[order]
    shown = profile.models if models is None else list(models)
    for m in shown:
        colour, style, label = TAYLOR_STYLES[m]
        err = profile.abs_error[m][side][order]
        keep = err > 0
        ax.plot(size[keep], err[keep], color=colour, ls="-", marker=".", ms=3, lw=1.2, label=m)
    low, high = ax.dataLim.y0, ax.dataLim.y1
    anchors = {2: "linear", 3: "quadratic"}
    for k, dashes in zip(slopes, ["--", ":", "-.", (0, (5, 1, 1, 1))]):
        ref = anchors.get(k) if anchors.get(k) in profile.predicted else (shown[0] if shown else None)
        err = profile.abs_error[ref][side][order] if ref is not None else np.zeros(0)
        usable = np.flatnonzero(err > 0)
        if len(usable):
            i = usable[0]
            ax.plot(size, err[i] / 3 * (size / size[i]) ** k, color="0.45", ls=dashes, lw=1, label=f"slope {k}")
    if np.isfinite(low) and high > 0:
        ax.set_ylim(max(low, high * 1e-17) / 10, high * 10)   # the data, not the reference lines, set the range
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain labels: LogFormatterSciNotation's mathtext is slow to redraw
        axis.set_major_locator(LogLocator(numticks=6))
        axis.set_major_formatter(LogFormatter())
        axis.set_minor_locator(NullLocator())
    ax.set_xlabel("|t|")
    ax.set_ylabel("|model − actual|")
    ax.set_title(title or "error of each model")
    ax.legend(fontsize=7, loc="lower right")
    if own:
        fig.tight_layout()
    return fig


def taylor_overview(profile, models: Sequence[str] | None = None, marks: dict[str, float] | None = None,
                    title: str | None = None, fig: Figure | None = None) -> Figure:
    """Side by side: :func:`taylor_profile` and :func:`taylor_error`. Pass ``fig`` (e.g. a
    ``matplotlib.figure.Figure()`` not managed by pyplot) to draw into it; it is cleared first."""
    if fig is None:
        fig = plt.figure(figsize=(11, 4))
    fig.clear()
    left, right = fig.subplots(1, 2, gridspec_kw=dict(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.22))
    taylor_profile(profile, models, ax=left, title=title, marks=marks)
    taylor_error(profile, models, ax=right)
    return fig
