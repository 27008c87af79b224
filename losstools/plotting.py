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


class _ProfilePanel:
    """The loss along the direction with the models overlaid, drawn on ``ax``; :meth:`draw` can be called
    again with a new profile and updates the same artists (fast: no new axes, ticks or lines)."""

    def __init__(self, ax):
        self.ax = ax
        self.actual, = ax.plot([], [], color="k", lw=2, label="actual ΔL(t)")
        self.lines = {m: ax.plot([], [], color=c, ls=ls, lw=1.6, label=label)[0]
                      for m, (c, ls, label) in TAYLOR_STYLES.items()}
        self.marks: list = []
        ax.axhline(0, color="0.6", lw=0.5)
        ax.locator_params(nbins=6)  # few ticks: each one costs time when an explorer redraws
        ax.set_xlabel("step size t")
        ax.set_ylabel("ΔL = L(θ₀ + t d) − L(θ₀)")

    def draw(self, profile, models=None, title=None, marks=None) -> None:
        ax, shown = self.ax, profile.models if models is None else list(models)
        order = np.argsort(profile.steps, kind="stable")
        t, actual = profile.steps[order], profile.actual[order]
        self.actual.set_data(t, actual)
        for m, line in self.lines.items():
            line.set_visible(m in shown)
            if m in shown:
                line.set_data(t, profile.predicted[m][order])
        span = float(t[-1] - t[0]) or 1.0
        ax.set_xlim(t[0] - 0.05 * span, t[-1] + 0.05 * span)
        low, high = float(actual.min()), float(actual.max())
        pad = 0.15 * (high - low) or 1e-3 * max(abs(low), 1.0)
        ax.set_ylim(low - pad, high + pad)
        marks = list((marks or {}).items())
        while len(self.marks) < len(marks):
            i = len(self.marks)
            self.marks.append((ax.axvline(0, color="0.4", lw=1, ls=(0, (1, 2))),
                               ax.annotate("", (0, 0), xycoords=("data", "axes fraction"), xytext=(3, 4 + 11 * i),
                                           textcoords="offset points", fontsize=8, color="0.3")))
        for i, (line, text) in enumerate(self.marks):
            line.set_visible(i < len(marks))
            text.set_visible(i < len(marks))
            if i < len(marks):
                line.set_xdata([marks[i][1]] * 2)
                text.xy = (marks[i][1], 0)
                text.set_text(marks[i][0])
        ax.set_title(title or f"loss along the direction (C = {profile.curvature_name})")
        visible = [self.actual] + [self.lines[m] for m in TAYLOR_STYLES if m in shown]
        ax.legend(handles=visible, fontsize=7, loc="upper center")  # fixed place: "best" costs more than the plot


class _ErrorPanel:
    """|model − actual| against |t| on log-log axes with reference slopes, drawn on ``ax``; :meth:`draw`
    can be called again with a new profile and updates the same artists."""

    def __init__(self, ax, slopes: Sequence[int] = (2, 3)):
        self.ax, self.slopes = ax, list(slopes)
        self.lines = {m: ax.plot([], [], color=c, ls="-", marker=".", ms=3, lw=1.2, label=m)[0]
                      for m, (c, _, _) in TAYLOR_STYLES.items()}
        self.references = {k: ax.plot([], [], color="0.45", ls=dashes, lw=1, label=f"slope {k}")[0]
                           for k, dashes in zip(self.slopes, ["--", ":", "-.", (0, (5, 1, 1, 1))])}
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain labels: LogFormatterSciNotation's mathtext is slow to redraw
            axis.set_major_locator(LogLocator(numticks=6))
            axis.set_major_formatter(LogFormatter())
            axis.set_minor_locator(NullLocator())
        ax.set_xlabel("|t|")
        ax.set_ylabel("|model − actual|")

    def draw(self, profile, models=None, title=None) -> None:
        ax, shown = self.ax, profile.models if models is None else list(models)
        side = profile.steps > 0 if np.any(profile.steps > 0) else profile.steps < 0
        order = np.argsort(np.abs(profile.steps[side]))
        size = np.abs(profile.steps[side])[order]
        errors = {m: profile.abs_error[m][side][order] for m in shown}
        for m, line in self.lines.items():
            line.set_visible(m in shown)
            if m in shown:
                keep = errors[m] > 0
                line.set_data(size[keep], errors[m][keep])
        anchors = {2: "linear", 3: "quadratic"}
        for k, line in self.references.items():
            ref = anchors.get(k) if anchors.get(k) in profile.predicted else (shown[0] if shown else None)
            err = profile.abs_error[ref][side][order] if ref is not None else np.zeros(0)
            usable = np.flatnonzero(err > 0)
            line.set_visible(len(usable) > 0)
            if len(usable):
                i = usable[0]
                line.set_data(size, err[i] / 3 * (size / size[i]) ** k)
        positive = np.concatenate([e[e > 0] for e in errors.values()] + [np.zeros(0)])
        if len(size):
            ax.set_xlim(size[0] / 1.4, size[-1] * 1.4)
        if len(positive):  # the data, not the reference lines, set the range
            high = positive.max()
            ax.set_ylim(max(positive.min(), high * 1e-17) / 10, high * 10)
        ax.set_title(title or "error of each model")
        visible = [line for line in [*self.lines.values(), *self.references.values()] if line.get_visible()]
        ax.legend(handles=visible, fontsize=7, loc="lower right")


def taylor_profile(profile, models: Sequence[str] | None = None, ax=None, title: str | None = None,
                   marks: dict[str, float] | None = None) -> Figure:
    """The actual change of the loss along the direction (black) with each model's prediction overlaid.

    ``profile`` is a :class:`losstools.taylor.TaylorProfile`; ``models`` a subset of its models (default
    all); ``marks`` labelled vertical lines, e.g. ``{"full pruning step": 3.2}``. The y range follows the
    actual curve (models that leave it are clipped: that is where they fail).
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 4), layout="tight")
    _ProfilePanel(ax).draw(profile, models, title, marks)
    return fig


def taylor_error(profile, models: Sequence[str] | None = None, ax=None, slopes: Sequence[int] = (2, 3),
                 title: str | None = None) -> Figure:
    """|predicted − actual| against |t| on log-log axes, with grey reference lines of the given ``slopes``.

    Uses the steps t > 0 (the |t| of t < 0 if there are none); zero errors are left out. A reference line of
    slope k (in the legend) is anchored at the smallest step of the model whose error should scale like
    |t|^k (``linear`` for 2, ``quadratic`` for 3), a factor 3 below it.
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 4), layout="tight")
    _ErrorPanel(ax, slopes).draw(profile, models, title)
    return fig


class TaylorOverview:
    """Side by side: the loss along the direction with the models, and the log-log error plot.

    ``draw(profile, models, marks, title)`` updates the same Figure in place (new data, same axes and
    artists), which keeps an explorer's redraw fast. Without ``figure``, a ``matplotlib.figure.Figure``
    that pyplot does not manage is made (nothing is shown unless you display it).
    """

    def __init__(self, figure: Figure | None = None, figsize=(11, 4), dpi: int = 72):
        self.figure = Figure(figsize=figsize, dpi=dpi) if figure is None else figure
        left, right = self.figure.subplots(
            1, 2, gridspec_kw=dict(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.22))
        self.panels = _ProfilePanel(left), _ErrorPanel(right)

    def draw(self, profile, models: Sequence[str] | None = None, marks: dict[str, float] | None = None,
             title: str | None = None) -> Figure:
        self.panels[0].draw(profile, models, title, marks)
        self.panels[1].draw(profile, models)
        return self.figure


def taylor_overview(profile, models: Sequence[str] | None = None, marks: dict[str, float] | None = None,
                    title: str | None = None) -> Figure:
    """:func:`taylor_profile` and :func:`taylor_error` side by side in a new Figure (see :class:`TaylorOverview`)."""
    return TaylorOverview(plt.figure(figsize=(11, 4))).draw(profile, models, marks, title)

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


# ----------------------------------------------------------------------- notebook 05: the spectrum during training
def _run_color(i: int) -> str:
    return f"C{i % 10}"


def sharpness_runs(runs: Sequence, axes=None) -> Figure:
    """Gradient-descent runs (``spectrum.GDRun``): the loss (log scale) and lambda_max against the step, with the
    edge of stability 2/eta of each run dashed in its colour."""
    fig, axes = (axes[0].figure, axes) if axes is not None else plt.subplots(1, 2, figsize=(11, 3.8))
    for i, run in enumerate(runs):
        color = _run_color(i)
        axes[0].semilogy(np.arange(len(run.loss)), run.loss, color=color, lw=1, label=f"η = {run.lr:g}")
        axes[1].plot(run.tracked, run.sharpness, "o-", ms=2.5, color=color, label=f"η = {run.lr:g}")
        axes[1].axhline(run.edge, color=color, ls="--", lw=1)
    axes[0].set(xlabel="step", ylabel="training loss", title="loss under full-batch GD")
    axes[1].set(xlabel="step", ylabel="λ_max of the Hessian", title="sharpness; dashed: 2/η")
    top = max(max(float(np.max(r.sharpness)) for r in runs), min(r.edge for r in runs))
    axes[1].set_ylim(0, 1.15 * top)
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def overshoot(result, ax=None) -> Figure:
    """Loss change of a step of size eta along the top eigenvector (``spectrum.Overshoot``): actual and quadratic
    model, with the predicted threshold eta = 2 / lambda_max."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.6))
    ax.plot(result.lrs, result.actual, color="C0", lw=2, label="actual ΔL")
    ax.plot(result.lrs, result.quadratic, "--", color="C1", lw=1.5, label="quadratic model")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(result.edge, color="C3", lw=1, label=f"2/λ_max = {result.edge:.3f}")
    ax.set(xlabel="step size η", ylabel="L(θ − η g_u u) − L(θ)", title="a step along the top eigenvector u")
    ax.legend(fontsize=8)
    return fig


def edge_of_stability_frame(runs: Sequence, lr: float, step: int) -> Figure:
    """The explorer's figure: the run with step size ``lr`` up to ``step`` (loss; sharpness and 2/eta) and gradient
    descent on the one-dimensional quadratic lambda x^2 / 2 with that step's eta lambda_max."""
    index = min(range(len(runs)), key=lambda i: abs(runs[i].lr - lr))
    run, color = runs[index], _run_color(index)
    now = run.at(step)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].semilogy(run.loss, color="0.8", lw=1)
    axes[0].semilogy(run.loss[: now["step"] + 1], color=color, lw=1.2)
    axes[0].plot(now["step"], now["loss"], "o", color="k", ms=4)
    axes[0].set(xlabel="step", ylabel="training loss", title=f"η = {run.lr:g}: loss")
    shown = run.tracked <= now["step"]
    axes[1].plot(run.tracked, run.sharpness, color="0.8", lw=1)
    axes[1].plot(run.tracked[shown], run.sharpness[shown], "o-", ms=2.5, color=color)
    axes[1].axhline(run.edge, color=color, ls="--", lw=1, label="2/η")
    axes[1].plot(now["measured_at"], now["sharpness"], "o", color="k", ms=4)
    axes[1].set_ylim(0, 1.15 * max(float(np.max(run.sharpness)), run.edge))
    axes[1].set(xlabel="step", ylabel="λ_max", title="sharpness")
    axes[1].legend(fontsize=8)
    factor = 1.0 - now["eta_lambda"]
    xs = 0.9 * factor ** np.arange(8)
    span = max(1.0, float(np.abs(xs).max()) * 1.1)
    grid = np.linspace(-span, span, 200)
    axes[2].plot(grid, 0.5 * grid**2, color="0.6")
    axes[2].plot(xs, 0.5 * xs**2, "o-", color=color, ms=3, lw=0.8)
    verdict = "overshoots: |1 − ηλ| > 1" if abs(factor) > 1 else "converges: |1 − ηλ| < 1"
    axes[2].set(xlabel="x (along the top eigenvector)", ylabel="λ x² / 2",
                title=f"ηλ_max = {now['eta_lambda']:.2f}: {verdict}")
    fig.tight_layout()
    return fig


def spectral_densities(grid, curves: dict, title: str = "Hessian spectral density (SLQ)", ax=None) -> Figure:
    """Several spectral densities on one ``grid`` (log y axis): ``{label: values}``."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 3.6))
    grid = np.asarray(grid)
    for i, (label, values) in enumerate(curves.items()):
        ax.semilogy(grid, np.maximum(np.asarray(values), 1e-8), color=_run_color(i), label=label)
    ax.set_ylim(bottom=1e-5)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set(xlabel="eigenvalue", ylabel="density", title=title)
    ax.legend(fontsize=8)
    return fig
