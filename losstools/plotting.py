"""Pure plotting functions: data in, matplotlib Figure out. Nothing here computes curvature."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, LogFormatter, LogLocator, NullLocator, SymmetricalLogLocator


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=float)


def projector_fonts(figure: Figure, size: float = 11) -> Figure:
    """Larger tick labels, axis labels and titles on every axes of ``figure`` (legible on a projector at the low
    resolution an explorer renders at); legends keep their own size. Returns the figure."""
    for ax in figure.axes:
        ax.tick_params(labelsize=size)
        ax.xaxis.label.set_size(size)
        ax.yaxis.label.set_size(size)
        ax.title.set_size(size + 1)
    return figure


def _symlog_ticks(vmax: float) -> list[float]:
    """Five colour-bar ticks for a symmetric log scale up to ``vmax``: ±10^p, ±10^(p-2) and 0 (no overlap)."""
    p = int(np.floor(np.log10(vmax)))
    return [-(10.0 ** p), -(10.0 ** (p - 2)), 0.0, 10.0 ** (p - 2), 10.0 ** p]


def _mark_blocks(ax, boundaries: Sequence[int], labels: Sequence[str] | None, size: int) -> None:
    """Lines between parameter tensors; with ``labels`` (one per block), the block names as tick labels."""
    for b in boundaries:
        ax.axhline(b - 0.5, color="k", lw=0.5, alpha=0.6)
        ax.axvline(b - 0.5, color="k", lw=0.5, alpha=0.6)
    if labels is not None:
        edges = [0, *boundaries, size]
        if len(labels) != len(edges) - 1:
            raise ValueError(f"{len(labels)} labels for {len(edges) - 1} blocks: give one label per parameter tensor")
        centres = [(lo + hi - 1) / 2 for lo, hi in zip(edges[:-1], edges[1:])]
        ax.set_xticks(centres, labels, rotation=90, fontsize=8)
        ax.set_yticks(centres, labels, fontsize=8)
        ax.tick_params(length=0)


def matrix_heatmap(matrix, title: str = "Hessian", boundaries: Sequence[int] = (), ax=None,
                   labels: Sequence[str] | None = None) -> Figure:
    """Heatmap of a (P, P) matrix on a symmetric log colour scale; lines at parameter-tensor ``boundaries``
    and, with ``labels`` (one name per tensor, e.g. ``"0.weight"``), the blocks named on both axes."""
    M = _numpy(matrix)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 4.8), layout="constrained")
    vmax = float(np.abs(M).max()) or 1.0
    image = ax.imshow(M, cmap="RdBu_r", norm=SymLogNorm(linthresh=vmax * 1e-3, vmin=-vmax, vmax=vmax),
                      interpolation="nearest")
    _mark_blocks(ax, boundaries, labels, len(M))
    ax.set_title(title)
    if labels is None:
        ax.set_xlabel("parameter index")
        ax.set_ylabel("parameter index")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, ticks=_symlog_ticks(vmax))
    return fig


def _symlog_axis(ax, values: np.ndarray, decades: int = 6) -> None:
    """A symmetric log y axis over the nonzero ``values`` spanning at most ``decades`` decades below the
    largest magnitude; the linear band around 0 gets the width of one decade, so tick labels never overlap."""
    big = float(np.abs(values).max()) or 1.0
    nonzero = np.abs(values[values != 0])
    linthresh = max(float(nonzero.min()) if len(nonzero) else big, big * 10.0 ** -decades)
    ax.set_yscale("symlog", linthresh=linthresh, linscale=1.0)
    ax.yaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=linthresh, subs=[1.0]))
    ax.yaxis.set_minor_locator(NullLocator())
    low, high = float(values.min()), float(values.max())
    if high - low > 0:  # every second decade labelled when the range is wide
        ticks = [t for t in ax.yaxis.get_major_locator().tick_values(low, high)]
        if len(ticks) > 8:
            ax.yaxis.set_major_locator(FixedLocator(ticks[::2]))
    ax.axhline(0, color="k", lw=0.5)


def eigenvalue_bars(eigenvalues, title: str = "Hessian eigenvalues", ax=None) -> Figure:
    """Sorted eigenvalues on a symmetric log scale (negative ones in red), largest first."""
    values = np.sort(_numpy(eigenvalues))[::-1]
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    index = np.arange(1, len(values) + 1)
    ax.scatter(index[values >= 0], values[values >= 0], s=5, color="C0", label="positive")
    ax.scatter(index[values < 0], values[values < 0], s=5, color="C3", label="negative")
    _symlog_axis(ax, values)
    ax.set_xlabel("rank")
    ax.set_ylabel("eigenvalue (symmetric log scale)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=9)
    return fig


def curvature_overview(matrix, eigenvalues, boundaries: Sequence[int] = (), name: str = "Hessian",
                       labels: Sequence[str] | None = None) -> Figure:
    """Side by side: the heatmap of ``matrix`` (blocks named by ``labels``) and its eigenvalue spectrum."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.1, 1]},
                                      layout="constrained")
    matrix_heatmap(matrix, name, boundaries, ax=left, labels=labels)
    eigenvalue_bars(eigenvalues, f"{name}: eigenvalues", ax=right)
    return fig


def loss_history(history: dict[str, list[float]], ax=None, title: str = "Training") -> Figure:
    """Training and validation loss per epoch (log scale) and, from a classification history, the validation
    error in percent on its own axis (right). The epoch of the lowest validation loss is marked; where the
    validation loss rises after it while the training loss falls, the note under the plot says so."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    epochs = np.arange(1, len(history["train"]) + 1)
    lines = [ax.plot(epochs, history["train"], color="C0", label="training loss")[0]]
    val = history.get("val") or []
    if val:
        lines += ax.plot(np.arange(1, len(val) + 1), val, color="C1", label="validation loss")
    if history.get("val_error"):
        right = ax.twinx()
        errors = 100 * np.asarray(history["val_error"])
        lines += right.plot(np.arange(1, len(errors) + 1), errors, color="C2", ls=":", label="validation error")
        right.set_ylabel("validation error (%)")
        right.set_ylim(0, None)
    if val:
        best = int(np.argmin(val))
        ax.axvline(best + 1, color="0.5", lw=0.8, ls=":")
        rise = val[-1] / val[best] - 1
        note = f"Lowest validation loss at epoch {best + 1} (dotted line)."
        if best + 1 < len(val) and rise > 0.01:
            note = (note[:-1] + f"; after it the validation loss rises by {100 * rise:.0f}%\n"
                    "while the training loss falls: overfitting.")
        ax.text(0, -0.16, note, transform=ax.transAxes, fontsize=8.5, va="top")   # under the plot: never on a curve
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (mean over the split's examples)")
    ax.set_title(title)
    ax.legend(handles=lines, loc="upper right")
    return fig


# ----------------------------------------------------------------------- Taylor models of a step (issue 4)
TAYLOR_STYLES = {  # model -> (colour, line style, legend label)
    "linear": ("C0", "--", "linear: t g·d"),
    "quadratic": ("C1", "--", "quadratic: t g·d + t²/2 d·C·d"),
    "diagonal": ("C2", ":", "diagonal: t g·d + t²/2 d·diag(C)·d"),
    "obd": ("C3", "-.", "OBD: t²/2 d·C·d"),
}


class _ProfilePanel:
    """The loss along the direction with the models overlaid, drawn on ``ax``; ``draw()`` can be called
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
                               ax.annotate("", (0, 0), xycoords=("data", "axes fraction"), xytext=(-3, 4 + 12 * i),
                                           textcoords="offset points", fontsize=9, color="0.3", ha="right")))
        for i, (line, text) in enumerate(self.marks):
            line.set_visible(i < len(marks))
            text.set_visible(i < len(marks))
            if i < len(marks):
                line.set_xdata([marks[i][1]] * 2)
                text.xy = (marks[i][1], 0)
                text.set_text(marks[i][0])
        ax.set_title(title or f"loss along the direction (C = {profile.curvature_name})")
        visible = [self.actual] + [self.lines[m] for m in TAYLOR_STYLES if m in shown]
        ax.legend(handles=visible, fontsize=8.5, loc="upper center")  # fixed place: "best" costs more than the plot


class _ErrorPanel:
    """``|model − actual|`` against ``|t|`` on log-log axes with reference slopes, drawn on ``ax``; ``draw()``
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
        ax.legend(handles=visible, fontsize=8.5, loc="lower right")


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


def taylor_profiles(profiles: dict, marks: dict[str, dict[str, float]] | None = None,
                    models: Sequence[str] | None = None) -> Figure:
    """:func:`taylor_profile` panels side by side, one per ``profiles[title]``; ``marks[title]`` their marks."""
    fig, axes = plt.subplots(1, len(profiles), figsize=(5.5 * len(profiles), 4.2), squeeze=False, layout="constrained")
    for ax, (title, profile) in zip(axes[0], profiles.items()):
        _ProfilePanel(ax).draw(profile, models, title, (marks or {}).get(title))
    return fig


def taylor_error(profile, models: Sequence[str] | None = None, ax=None, slopes: Sequence[int] = (2, 3),
                 title: str | None = None) -> Figure:
    """``|predicted − actual|`` against ``|t|`` on log-log axes, with grey reference lines of the given ``slopes``.

    Uses the steps t > 0 (the ``|t|`` of t < 0 if there are none); zero errors are left out. A reference line of
    slope k (in the legend) is anchored at the smallest step of the model whose error should scale like
    ``|t|^k`` (``linear`` for 2, ``quadratic`` for 3), a factor 3 below it.
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


class PredictedVsActual:
    """Left: the actual loss change of every pruning step and each loss model's prediction, against the step.
    Right: predicted against actual (on the dashed diagonal a model is perfect).

    ``draw(history, title)`` updates the same Figure in place (new data, same axes and artists), which keeps
    an explorer's redraw fast; without ``figure`` a Figure that pyplot does not manage is made.
    """

    MODELS = ("lm", "qm", "obd", "obs")

    def __init__(self, figure: Figure | None = None, figsize=(10, 3.9), dpi: int = 72):
        self.figure = Figure(figsize=figsize, dpi=dpi) if figure is None else figure
        self.left, self.right = self.figure.subplots(
            1, 2, gridspec_kw=dict(left=0.08, right=0.98, bottom=0.14, top=0.86, wspace=0.25))
        self.actual, = self.left.plot([], [], "k.-", lw=1.2, label="actual")
        self.lines = {m: self.left.plot([], [], ".-", lw=0.9, color=PRUNING_COLOURS[m], label=m.upper())[0]
                      for m in self.MODELS}
        self.points = {m: self.right.scatter([], [], s=14, color=PRUNING_COLOURS[m], label=m.upper())
                       for m in self.MODELS}
        self.diagonal, = self.right.plot([], [], "k--", lw=0.8, label="perfect model")
        self.left.axhline(0, color="k", lw=0.5)
        self.left.set_xlabel("pruning step")
        self.left.set_ylabel("ΔL of the step")
        self.right.set_xlabel("actual ΔL of the step")
        self.right.set_ylabel("predicted ΔL")
        for ax in (self.left, self.right):
            ax.grid(alpha=0.3)
            ax.locator_params(nbins=6)
        self.title = self.figure.suptitle("")

    def draw(self, history: Sequence[dict], title: str = "Loss models of each pruning step") -> Figure:
        actual = np.array([h["loss_after"] - h["loss_before"] for h in history])
        shown = [m for m in self.MODELS if m in history[0]["predicted"]]
        step = np.arange(1, len(history) + 1)
        self.actual.set_data(step, actual)
        values = [actual]
        for m in self.MODELS:
            visible = m in shown
            self.lines[m].set_visible(visible)
            self.points[m].set_visible(visible)
            if visible:
                predicted = np.array([h["predicted"][m] for h in history])
                values.append(predicted)
                self.lines[m].set_data(step, predicted)
                self.points[m].set_offsets(np.column_stack([actual, predicted]))
        both = np.concatenate(values)
        lo, hi = float(both.min()), float(both.max())
        pad = 0.08 * (hi - lo) or 1e-3
        self.diagonal.set_data([lo - pad, hi + pad], [lo - pad, hi + pad])
        self.left.set_xlim(0.5, len(history) + 0.5)
        self.left.set_ylim(lo - pad, hi + pad)
        self.right.set_xlim(float(actual.min()) - pad, float(actual.max()) + pad)
        self.right.set_ylim(lo - pad, hi + pad)
        self.left.legend(handles=[self.actual] + [self.lines[m] for m in shown], fontsize=9, loc="upper left")
        self.right.legend(handles=[self.points[m] for m in shown] + [self.diagonal], fontsize=9, loc="upper left")
        self.title.set_text(title)
        return self.figure


def predicted_vs_actual(history: Sequence[dict], title: str = "Loss models of each pruning step") -> Figure:
    """Each pruning step's actual loss change and the models' predictions (see :class:`PredictedVsActual`)."""
    return PredictedVsActual(plt.figure(figsize=(10, 3.9))).draw(history, title)


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Axis labels, title, a legend and a light grid: the common end of the single-panel pruning plots."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)


def one_step_predictions(sparsities: Sequence[float], actual: Sequence[float], predicted: dict[str, Sequence[float]],
                         title: str = "One-step pruning: predicted vs. actual loss change") -> Figure:
    """The actual ΔL of pruning in one step to each sparsity (black) and each model's prediction of it."""
    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    ax.plot(sparsities, actual, "k.-", label="actual")
    for name, values in predicted.items():
        ax.plot(sparsities, values, ".-", color=PRUNING_COLOURS[name], label=name.upper())
    _finish(ax, "sparsity κ reached in one step", "ΔL", title)
    return fig


def loss_vs_reg_curves(regs: Sequence[float], curves: dict[int, dict[str, Sequence[float]]], baseline: float,
                       baseline_label: str = "MP", ylabel: str = "ΔL on the train split",
                       title: str = "Loss change after pruning versus λ") -> Figure:
    """One panel per number of steps (``curves[steps][criterion]``: a value per λ in ``regs``) on a symlog λ
    axis that includes 0, with a dashed horizontal ``baseline`` (e.g. magnitude pruning) in every panel."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves) + 0.6, 3.6), sharey=True, squeeze=False,
                             layout="constrained")
    positive = [r for r in regs if r > 0]
    linthresh = min(positive) if positive else 1e-3
    for ax, (steps, by_criterion) in zip(axes[0], curves.items()):
        for criterion, values in by_criterion.items():
            ax.plot(regs, values, "o-", ms=3.5, color=PRUNING_COLOURS[criterion], label=criterion.upper())
        ax.axhline(baseline, color=PRUNING_COLOURS["mp"], ls="--", label=baseline_label)
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xlim(-0.3 * linthresh, 1.5 * max(regs) if max(regs) > 0 else linthresh)
        ax.set_title(f"{steps} step{'s' if steps > 1 else ''}")
        ax.set_xlabel("λ (step-norm penalty)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=9)
    fig.suptitle(title)
    return fig


def finetuning_curves(curves: dict[str, Sequence[float]], title: str = "Fine-tuning after pruning") -> Figure:
    """Validation error (%) per fine-tuning epoch (epoch 0: right after pruning), one line per label."""
    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    for i, (label, errors) in enumerate(curves.items()):
        ax.plot(range(len(errors)), errors, "o-", ms=3, color=f"C{i + 1}", label=label)
    ax.set_ylim(bottom=0)
    _finish(ax, "fine-tuning epoch (0: right after pruning)", "validation error (%)", title)
    return fig


def pruning_outcomes(records: Sequence[dict], title: str = "Loss preserved vs. network after fine-tuning") -> Figure:
    """Every run: ΔL right after pruning (x) against the validation error after fine-tuning (y), by criterion.
    MP (one run per seed, no λ or π) is drawn as larger crosses on top, where the many Taylor runs cannot hide it."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8), layout="constrained")
    for criterion in sorted({r["criterion"] for r in records}, key=list(PRUNING_COLOURS).index):
        rows = [r for r in records if r["criterion"] == criterion]
        style = {"marker": "X", "s": 60, "zorder": 3, "edgecolors": "white"} if criterion == "mp" else {"s": 16}
        ax.scatter([r["dL"] for r in rows], [100 * r["finetuned"]["val_error"] for r in rows],
                   color=PRUNING_COLOURS.get(criterion, "k"), label=criterion.upper(), **style)
    _finish(ax, "ΔL right after pruning", "validation error after fine-tuning (%)", title)
    return fig


# ----------------------------------------------------------------------------- curvature zoo (notebook 02)
class MatrixGrid:
    """Heatmaps of several (P, P) matrices side by side on ONE shared symmetric log colour scale, with thin
    lines at the parameter-tensor ``boundaries``.

    ``draw(matrices)`` (same names, same shapes) updates the images and the shared scale in place, which keeps
    an explorer's redraw fast; without ``figure`` a Figure that pyplot does not manage is made.
    """

    def __init__(self, names: Sequence[str], size: int, boundaries: Sequence[int] = (), ncols: int | None = None,
                 figure: Figure | None = None, dpi: int = 72):
        self.names = list(names)
        ncols = ncols or len(self.names)
        nrows = -(-len(self.names) // ncols)
        figsize = (3.0 * ncols + 0.8, 3.2 * nrows)
        self.figure = Figure(figsize=figsize, dpi=dpi) if figure is None else figure
        fixed = dict(left=0.02, right=0.9, bottom=0.03, top=0.9, wspace=0.08, hspace=0.15)   # no layout pass per redraw
        axes = self.figure.subplots(nrows, ncols, squeeze=False,
                                    gridspec_kw=None if self.figure.get_layout_engine() else fixed)
        self.norm = SymLogNorm(linthresh=1e-3, vmin=-1.0, vmax=1.0)
        self.images = {}
        for ax, name in zip(axes.flat, self.names):
            self.images[name] = ax.imshow(np.zeros((size, size)), cmap="RdBu_r", norm=self.norm,
                                          interpolation="nearest")
            for b in boundaries:
                ax.axhline(b - 0.5, color="k", lw=0.5, alpha=0.6)
                ax.axvline(b - 0.5, color="k", lw=0.5, alpha=0.6)
            ax.set_title(name, fontsize=11)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in list(axes.flat)[len(self.names):]:
            ax.axis("off")
        self.colorbar = self.figure.colorbar(self.images[self.names[0]], ax=axes.ravel().tolist(), fraction=0.02,
                                             pad=0.02)

    def draw(self, matrices: dict) -> Figure:
        arrays = {n: _numpy(matrices[n]) for n in self.names}
        vmax = max(float(np.abs(M).max()) for M in arrays.values()) or 1.0
        self.norm = SymLogNorm(linthresh=vmax * 1e-3, vmin=-vmax, vmax=vmax)   # one shared scale (and colour bar)
        for name, image in self.images.items():
            image.set_data(arrays[name])
            image.set_norm(self.norm)
        self.colorbar.set_ticks(_symlog_ticks(vmax), labels=[f"{t:.0e}" if t else "0" for t in _symlog_ticks(vmax)])
        return self.figure


def matrix_grid(matrices: dict, boundaries: Sequence[int] = (), ncols: int | None = None) -> Figure:
    """Heatmaps of several (P, P) matrices side by side on one shared colour scale (see :class:`MatrixGrid`)."""
    size = len(_numpy(next(iter(matrices.values()))))
    names = list(matrices)
    ncols = ncols or len(names)
    figure = plt.figure(figsize=(3.0 * ncols + 0.8, 3.2 * -(-len(names) // ncols)), layout="constrained")
    return MatrixGrid(names, size, boundaries, ncols, figure).draw(matrices)


def spectra(eigenvalues: dict, title: str = "eigenvalues, largest first", ax=None) -> Figure:
    """Sorted eigenvalues of several matrices on one symmetric log axis (one line per matrix)."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 4), layout="constrained")
    everything = []
    for i, (name, values) in enumerate(eigenvalues.items()):
        v = np.sort(_numpy(values))[::-1]
        everything.append(v)
        ax.plot(np.arange(1, len(v) + 1), v, marker="o", ms=2.5, lw=1, color=f"C{i}", label=name)
    _symlog_axis(ax, np.concatenate(everything), decades=5)
    ax.set_xlabel("rank")
    ax.set_ylabel("eigenvalue (symmetric log scale)")
    ax.set_title(title)
    ax.legend(fontsize=9)
    return fig


class CostAccuracy:
    """Relative error against cost (products) on log-log axes, one line per estimator, with a ``1/sqrt(m)``
    guide; ``draw(highlight)`` moves the circles and the vertical line marking one budget, in place."""

    FLOOR = 1e-6  # errors below are drawn at the floor (Lanczos reaches round-off in a few steps)

    def __init__(self, curves: dict, budgets, ax=None, figure: Figure | None = None, dpi: int = 72):
        if ax is None:
            figure = Figure(figsize=(9, 4), dpi=dpi) if figure is None else figure
            ax = figure.subplots(gridspec_kw=dict(left=0.1, right=0.7, bottom=0.14, top=0.95))
        self.ax, self.figure = ax, ax.figure
        self.budgets = [int(b) for b in budgets]
        self.errors = {name: np.maximum(np.asarray(e, dtype=float), self.FLOOR) for name, e in curves.items()}
        self.circles = {}
        for i, (name, errors) in enumerate(self.errors.items()):
            ax.plot(self.budgets, errors, marker="o", ms=3, color=f"C{i}", label=name)
            self.circles[name], = ax.plot([], [], "o", ms=10, mfc="none", color=f"C{i}")
        first = next(iter(self.errors.values()))
        ax.plot(self.budgets, first[0] * (np.asarray(self.budgets) / self.budgets[0]) ** -0.5, "k:", lw=1,
                label="∝ 1/√m")
        self.marker = ax.axvline(self.budgets[0], color="0.6", lw=0.8, visible=False)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        # plain tick labels: mathtext (2^k, 10^k) costs a third of a redraw
        ax.xaxis.set_major_locator(FixedLocator(self.budgets))
        ax.xaxis.set_major_formatter(FixedFormatter([str(b) for b in self.budgets]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(LogFormatter())
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_ylim(self.FLOOR / 2, None)
        ax.set_xlabel("products m (probes, samples or Lanczos steps)")
        ax.set_ylabel("relative error")
        ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.02, 0.5))   # beside the axes: no line hidden

    def draw(self, highlight: int | None = None) -> Figure:
        shown = highlight is not None and highlight in self.budgets
        for name, circle in self.circles.items():
            circle.set_visible(shown)
            if shown:
                circle.set_data([highlight], [self.errors[name][self.budgets.index(highlight)]])
        self.marker.set_visible(shown)
        if shown:
            self.marker.set_xdata([highlight, highlight])
        return self.figure


def cost_accuracy(curves: dict, budgets, highlight: int | None = None, ax=None) -> Figure:
    """Relative error against cost on log-log axes, a marker at ``highlight`` (see :class:`CostAccuracy`)."""
    if ax is None:
        ax = plt.subplots(figsize=(9, 4), layout="constrained")[1]
    return CostAccuracy(curves, budgets, ax=ax).draw(highlight)


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


class EdgeOfStability:
    """The edge-of-stability explorer's figure for gradient-descent runs (``spectrum.GDRun``) at several step sizes.

    ``draw(lr, step)`` shows the run with step size ``lr`` up to ``step`` (its loss; its sharpness lambda_max and
    2/eta) and gradient descent on the one-dimensional quadratic lambda x^2 / 2 with that step's eta lambda_max,
    starting at x0 = 0.9 (marked). It updates the same artists of one Figure (no new axes or lines), which keeps
    an explorer's redraw fast. Without ``figure``, a Figure that pyplot does not manage is made.
    """

    def __init__(self, runs: Sequence, figure: Figure | None = None, figsize=(13, 3.6), dpi: int = 72):
        if not runs:
            raise ValueError("runs is empty: pass the spectrum.GDRun objects of spectrum.gradient_descent")
        self.runs = list(runs)
        self.figure = Figure(figsize=figsize, dpi=dpi) if figure is None else figure
        self.axes = loss, sharp, quad = self.figure.subplots(
            1, 3, gridspec_kw=dict(left=0.075, right=0.99, bottom=0.16, top=0.9, wspace=0.33))
        self.loss_all, = loss.semilogy([], [], color="0.8", lw=1)
        self.loss_now, = loss.semilogy([], [], lw=1.2)
        self.loss_dot, = loss.plot([], [], "o", color="k", ms=4)
        loss.set(xlabel="step", ylabel="training loss")
        self.sharp_all, = sharp.plot([], [], color="0.8", lw=1)
        self.sharp_now, = sharp.plot([], [], "o-", ms=2.5)
        self.edge = sharp.axhline(0, color="k", ls="--", lw=1, label="2/η")
        self.sharp_dot, = sharp.plot([], [], "o", color="k", ms=4, label="λ_max at this step")
        sharp.set(xlabel="step", ylabel="λ_max", title="sharpness")
        sharp.legend(fontsize=8, loc="lower right")
        self.parabola, = quad.plot([], [], color="0.6")
        self.iterates, = quad.plot([], [], "o-", color="C3", ms=3, lw=0.8, label="iterates x₁, x₂, …")
        self.start, = quad.plot([], [], "s", color="k", mfc="none", ms=8, mew=1.5, label="start x₀")
        quad.set(xlabel="x (along the top eigenvector)", ylabel="λ x² / 2")
        quad.legend(fontsize=8, loc="upper center")

    def draw(self, lr: float, step: int) -> Figure:
        index = min(range(len(self.runs)), key=lambda i: abs(self.runs[i].lr - lr))
        run, color = self.runs[index], _run_color(index)
        now = run.at(step)
        loss, sharp, quad = self.axes
        steps = np.arange(len(run.loss))
        self.loss_all.set_data(steps, run.loss)
        self.loss_now.set_data(steps[: now["step"] + 1], run.loss[: now["step"] + 1])
        self.loss_now.set_color(color)
        self.loss_dot.set_data([now["step"]], [now["loss"]])
        loss.set_xlim(0, steps[-1])
        loss.set_ylim(0.8 * float(np.min(run.loss)), 1.25 * float(np.max(run.loss)))
        loss.set_title(f"η = {run.lr:g}: loss")
        shown = run.tracked <= now["step"]
        self.sharp_all.set_data(run.tracked, run.sharpness)
        self.sharp_now.set_data(run.tracked[shown], run.sharpness[shown])
        self.sharp_now.set_color(color)
        self.edge.set_ydata([run.edge, run.edge])
        self.sharp_dot.set_data([now["measured_at"]], [now["sharpness"]])
        sharp.set_xlim(0, steps[-1])
        sharp.set_ylim(0, 1.15 * max(float(np.max(run.sharpness)), run.edge))
        factor = 1.0 - now["eta_lambda"]
        xs = 0.9 * factor ** np.arange(8)
        span = max(1.0, float(np.abs(xs).max()) * 1.1)
        grid = np.linspace(-span, span, 200)
        self.parabola.set_data(grid, 0.5 * grid**2)
        self.iterates.set_data(xs, 0.5 * xs**2)
        self.start.set_data([xs[0]], [0.5 * xs[0] ** 2])
        quad.set_xlim(-span, span)
        quad.set_ylim(-0.05 * span**2, 0.7 * span**2)
        verdict = "overshoots: |1 − ηλ| > 1" if abs(factor) > 1 else "converges: |1 − ηλ| < 1"
        quad.set_title(f"ηλ_max = {now['eta_lambda']:.2f}: {verdict}")
        return self.figure


def edge_of_stability_frame(runs: Sequence, lr: float, step: int) -> Figure:
    """The explorer's figure (:class:`EdgeOfStability`) for step size ``lr`` at ``step``, in a new pyplot Figure."""
    return EdgeOfStability(runs, plt.figure(figsize=(13, 3.6))).draw(lr, step)


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
