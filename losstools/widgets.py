"""ipywidgets explorers: controls wired to :mod:`losstools` computations and :mod:`losstools.plotting` figures.

Every explorer follows one pattern (:class:`Explorer`): everything expensive happens once when it is built;
an interaction recomputes only what the controls change and updates the artists of ONE figure in place
(no new figure, axes or layout pass), then renders it to PNG into an ``Output`` widget's state. Nothing
depends on a display or a front end: tests and nbval call ``update()`` directly, and ``readout.value`` holds
the numbers shown above the figure. ``last_seconds`` is the wall time of the last redraw (measured by
``benchmarks/taylor_explorer.py``; below 0.5 s on 2 CPU cores).

- :func:`taylor_explorer` (notebook 01): the loss along a direction versus the Taylor models;
- :func:`curvature_zoo_explorer` and :func:`cost_accuracy_explorer` (notebook 02): the curvature matrices
  during training, and the error of the stochastic estimators for a number of products;
- :func:`pruning_explorer` (notebook 03): each pruning step's actual and predicted loss change.
"""
from __future__ import annotations

import base64
import copy
import html
import io
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import ipywidgets as W
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from . import data, models, plotting, tables, taylor
from . import directions as dirs
from .curvature import CurvatureOperator, eigh, ggn, hessian
from .objective import Objective

WIDE = {"description_width": "initial"}          # descriptions are never cut off


class Explorer:
    """Controls, a readout line and a figure in an ``Output`` widget; subclasses implement ``draw()``.

    ``controls`` maps names to value widgets; any change calls :meth:`update`. ``draw()`` updates
    ``self.figure`` for the current control values and returns the readout text.
    """

    figure: Figure

    def __init__(self, controls: dict[str, W.ValueWidget], rows: list[list[str]], dpi: int = 72):
        self.controls, self.dpi = controls, dpi
        self.readout = W.HTML(layout=W.Layout(width="100%"))
        self.output = W.Output()
        self.widget = W.VBox([W.HBox([controls[name] for name in row]) for row in rows] + [self.readout, self.output])
        self.widget.add_class("losstools-explorer")     # how tests and styles find an explorer on the page
        plotting.projector_fonts(self.figure)
        self.last_seconds = float("nan")
        for control in controls.values():
            control.observe(self.update, names="value")

    def draw(self) -> str:
        raise NotImplementedError

    def update(self, change=None) -> Figure:
        """Redraw for the current control values: the figure, the Output's PNG and the readout."""
        start = time.perf_counter()
        text = self.draw()
        self._show()
        self.readout.value = "<br>".join(html.escape(line) for line in text.split("\n"))
        self.last_seconds = time.perf_counter() - start
        return self.figure

    @property
    def text(self) -> str:
        """The readout as plain text (one line per row shown)."""
        return html.unescape(self.readout.value.replace("<br>", "\n"))

    def _show(self) -> None:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=self.dpi)
        png = base64.b64encode(buffer.getvalue()).decode("ascii")
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": png, "text/plain": repr(self.figure)}},)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


DIRECTION_LABELS = {
    "negative gradient": "gradient",
    "random": "random",
    "random, filter-normalised": "random_filter",
    "top Hessian eigenvector": "top_eigenvector",
    "bottom Hessian eigenvector": "bottom_eigenvector",
    "magnitude pruning": "pruning",
}
CURVATURE_LABELS = {"Hessian": "hessian", "GGN": "ggn", "Hessian diagonal": "hessian_diag", "GGN diagonal": "ggn_diag"}


def toy_checkpoints(seed: int = 0, hidden: int = 16, early_epochs: int = 3, epochs: int = 150) -> dict[str, Objective]:
    """A 2-``hidden``-``hidden``-3 tanh MLP on the spirals data (float64), as Objectives of the training loss
    at two checkpoints: ``"early"`` (after ``early_epochs`` epochs: large gradient) and ``"converged"``.

    The default explorer's network, for tests and benchmarks; notebook 01 builds the same two checkpoints in view."""
    ds = data.spirals(seed=seed).to(dtype=torch.float64)
    net = models.mlp([ds.num_features, hidden, hidden, ds.num_classes], seed=seed).double()
    models.train(net, ds, epochs=early_epochs, lr=1e-2, seed=seed, progress=False)
    early = copy.deepcopy(net)
    models.train(net, ds, epochs=epochs - early_epochs, lr=1e-2, seed=seed + 1, progress=False)
    return {name: Objective(m, nn.CrossEntropyLoss(), ds.train) for name, m in (("early", early), ("converged", net))}


@dataclass
class _Checkpoint:
    """What is precomputed per checkpoint: curvatures (dense, as Matrix / Diagonal operators) and fixed directions."""

    objective: Objective
    curvatures: dict[str, CurvatureOperator] = field(default_factory=dict)
    directions: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def build(cls, obj: Objective, seed: int) -> "_Checkpoint":
        H, G = hessian(obj), ggn(obj)
        _, vectors = eigh(H)
        curvatures = {name: taylor.as_curvature(obj, M) for name, M in
                      [("hessian", H), ("ggn", G), ("hessian_diag", H.diagonal()), ("ggn_diag", G.diagonal())]}
        for name, c in curvatures.items():
            c.name = name  # the profile's label
        found = {
            "gradient": dirs.gradient(obj),
            "random": dirs.random(obj, seed),
            "random_filter": dirs.normalize(obj, dirs.random(obj, seed, "filter")),
            "top_eigenvector": dirs.eigenvector(obj, "top", curvature=H),
            "bottom_eigenvector": dirs.eigenvector(obj, "bottom", curvature=H),
        }
        return cls(obj, curvatures, found)


class TaylorExplorer(Explorer):
    """Loss along a direction versus the Taylor models, with controls; see :func:`taylor_explorer`.

    Attributes besides :class:`Explorer`'s: ``profile`` (the current :class:`~losstools.taylor.TaylorProfile`).
    The readout's first line gives the actual and predicted ΔL at t = step range, the second g·d and the
    fitted orders of the errors. The sparsity slider is enabled only for the magnitude-pruning direction.
    """

    def __init__(self, checkpoints: dict[str, Objective], t_max: float = 2.0, sparsity: float = 0.5,
                 seed: int = 0, dpi: int = 72):
        if not checkpoints:
            raise ValueError("checkpoints is empty: pass {name: Objective}, e.g. {'early': obj1, 'converged': obj2}")
        self._checkpoints = {name: _Checkpoint.build(obj, seed) for name, obj in checkpoints.items()}
        controls = {
            "direction": W.Dropdown(options=list(DIRECTION_LABELS), value="negative gradient", description="direction",
                                    style=WIDE, layout=W.Layout(width="330px")),
            "curvature": W.Dropdown(options=list(CURVATURE_LABELS), value="Hessian", description="curvature C",
                                    style=WIDE, layout=W.Layout(width="260px")),
            "step_range": W.FloatSlider(value=t_max, min=0.1, max=8.0, step=0.1, description="step range",
                                        readout_format=".2f", continuous_update=False, style=WIDE),
            "sparsity": W.FloatSlider(value=sparsity, min=0.05, max=0.95, step=0.05, description="sparsity",
                                      readout_format=".2f", continuous_update=False, style=WIDE, disabled=True),
            "state": W.ToggleButtons(options=list(checkpoints), value=list(checkpoints)[-1], description="network",
                                     style=WIDE),
            "models": W.SelectMultiple(options=list(taylor.MODELS), value=list(taylor.MODELS), rows=4,
                                       description="models", style=WIDE),
        }
        self._overview = plotting.TaylorOverview(dpi=dpi)
        self.figure = self._overview.figure
        self.profile: taylor.TaylorProfile | None = None
        super().__init__(controls, [["direction", "curvature"], ["step_range", "sparsity"], ["state", "models"]], dpi)
        self.update()

    def _direction(self, ck: _Checkpoint, kind: str) -> tuple[torch.Tensor, dict[str, float]]:
        if kind != "pruning":
            return ck.directions[kind], {}
        step = dirs.pruning(ck.objective, self.controls["sparsity"].value, normalize=None)
        length = float(step.norm())
        return step / length, {"full pruning step": length}

    def update(self, change=None) -> Figure:
        c = self.controls
        c["sparsity"].disabled = c["direction"].value != "magnitude pruning"
        if change is not None and change["owner"] is c["sparsity"] and c["sparsity"].disabled:
            return self.figure                   # nothing shown depends on the sparsity
        return super().update(change)

    def draw(self) -> str:
        c = self.controls
        chosen = list(c["models"].value)
        if not chosen:
            return "select at least one model"
        ck = self._checkpoints[c["state"].value]
        t_max = float(c["step_range"].value)
        d, marks = self._direction(ck, DIRECTION_LABELS[c["direction"].value])
        steps = np.concatenate([np.linspace(-t_max, t_max, 121), np.geomspace(t_max * 1e-4, t_max, 40)])
        self.profile = p = taylor.profile(ck.objective, d, steps, chosen,
                                          ck.curvatures[CURVATURE_LABELS[c["curvature"].value]])
        marks = {k: v for k, v in marks.items() if v <= t_max}
        self._overview.draw(p, chosen, marks, f"{c['direction'].value}, {c['state'].value} network")
        return "\n".join(self._summary(p, t_max))

    @staticmethod
    def _summary(p: taylor.TaylorProfile, t_max: float) -> tuple[str, str]:
        at = int(np.argmax(p.steps == t_max))
        parts = [f"t = {t_max:.2f}: actual ΔL = {p.actual[at]:.4g}"]
        parts += [f"{m} {p.predicted[m][at]:.4g}" for m in p.models]
        orders = []
        for m in p.models:
            try:
                orders.append(f"{m} {p.order(m):.2f}")
            except ValueError:
                orders.append(f"{m} n/a")
        return ", ".join(parts), f"g·d = {p.slope:.3g}; fitted orders of the error: {', '.join(orders)}"


def taylor_explorer(checkpoints: dict[str, Objective] | None = None, t_max: float = 2.0, sparsity: float = 0.5,
                    seed: int = 0) -> TaylorExplorer:
    """An explorer of the Taylor models of a step: the loss along a direction and the error of each model.

    Controls: the direction (negative gradient, random, filter-normalised random, top/bottom Hessian
    eigenvector, magnitude pruning at the ``sparsity`` slider's level), the step range [-t, t] (a
    FloatSlider), the models shown, the curvature C (exact Hessian, GGN or their diagonals) and the training
    state of the network. All directions have unit norm, so t is the length of the step; for pruning, a
    dotted line marks the full pruning step. ``checkpoints`` maps names to Objectives (default:
    :func:`toy_checkpoints`, an early and a converged tanh MLP on spirals); each needs dense curvature
    (P up to a few thousand).

    In a notebook (not run by the doctests: it trains two toy nets and computes their dense curvature first):

    >>> explorer = taylor_explorer()     # doctest: +SKIP
    >>> explorer                         # doctest: +SKIP
    >>> explorer.update()                # doctest: +SKIP
    """
    return TaylorExplorer(toy_checkpoints(seed) if checkpoints is None else checkpoints, t_max, sparsity, seed)


# --------------------------------------------------------------------------------------- notebook 02
def relative_error(A: torch.Tensor, B: torch.Tensor) -> float:
    """||A - B||_F / ||B||_F."""
    return float((A - B).norm() / B.norm())


#: The (approximation, reference) pairs the curvature-zoo explorer compares.
ZOO_COMPARISONS = (("GGN", "Hessian"), ("empirical Fisher", "GGN"), ("K-FAC", "GGN"))


class CurvatureZooExplorer(Explorer):
    """Heatmaps of the curvature matrices at a chosen training epoch (a slider); the readout gives the
    relative Frobenius errors of :data:`ZOO_COMPARISONS`. ``zoos[epoch][name]`` are (P, P) tensors."""

    def __init__(self, zoos: dict[int, dict[str, torch.Tensor]], boundaries=(), value: int | None = None,
                 dpi: int = 72):
        if not zoos:
            raise ValueError("zoos is empty: pass {epoch: {name: (P, P) tensor}}")
        self.zoos = zoos
        first = next(iter(zoos.values()))
        self.grid = plotting.MatrixGrid(list(first), len(next(iter(first.values()))), boundaries, dpi=dpi)
        self.figure = self.grid.figure
        epochs = list(zoos)
        slider = W.SelectionSlider(options=epochs, value=epochs[-1] if value is None else value,
                                   description="training epoch", style=WIDE, layout=W.Layout(width="420px"))
        super().__init__({"epoch": slider}, [["epoch"]], dpi)
        self.update()

    def draw(self) -> str:
        epoch = self.controls["epoch"].value
        Z = self.zoos[epoch]
        self.grid.draw(Z)
        return f"epoch {epoch}: " + " | ".join(
            f"{a} vs {b} {relative_error(Z[a], Z[b]):.3f}" for a, b in ZOO_COMPARISONS if a in Z and b in Z)


def curvature_zoo_explorer(zoos: dict[int, dict[str, torch.Tensor]], boundaries=(),
                           value: int | None = None) -> CurvatureZooExplorer:
    """Explorer of the matrices ``zoos[epoch][name]`` with an epoch slider (see :class:`CurvatureZooExplorer`)."""
    return CurvatureZooExplorer(zoos, boundaries, value)


class CostAccuracyExplorer(Explorer):
    """The error-versus-cost curves of the stochastic estimators with a slider for the number of products m;
    the readout gives every estimator's error at m. ``study[name]`` holds one error per budget."""

    def __init__(self, study: dict[str, np.ndarray], budgets, value: int | None = None, dpi: int = 72):
        self.study, self.budgets = study, [int(b) for b in budgets]
        self.plot = plotting.CostAccuracy(study, self.budgets, dpi=dpi)
        self.figure = self.plot.figure
        slider = W.SelectionSlider(options=self.budgets, value=self.budgets[0] if value is None else value,
                                   description="products m", style=WIDE, layout=W.Layout(width="420px"))
        super().__init__({"m": slider}, [["m"]], dpi)
        self.update()

    def draw(self) -> str:
        m = self.controls["m"].value
        i = self.budgets.index(m)
        self.plot.draw(m)
        return f"m = {m}: " + ", ".join(f"{k} {tables.bounded(v[i], 1e-6, '.3f')}" for k, v in self.study.items())


def cost_accuracy_explorer(study: dict[str, np.ndarray], budgets, value: int | None = None) -> CostAccuracyExplorer:
    """Explorer of the estimators' error against the number of products (see :class:`CostAccuracyExplorer`)."""
    return CostAccuracyExplorer(study, budgets, value)


# --------------------------------------------------------------------------------------- notebook 03
class PruningExplorer(Explorer):
    """Prunes a copy of ``model`` (Algorithm 1, :func:`losstools.pruning.prune`) for the chosen criterion,
    number of steps, λ and sparsity, and shows each step's actual and predicted loss change; the readout
    gives the summed actual change, the summed QM prediction and the validation error of the pruned net."""

    def __init__(self, model: nn.Module, loss_fn: Callable, dataset: data.Dataset, samples: int = 300,
                 criterion: str = "qm", steps: int = 10, reg: float = 0.0, sparsity: float = 0.8, dpi: int = 72):
        from .pruning import CRITERIA, PAPER_REGS

        self.model, self.loss_fn, self.dataset, self.samples = model, loss_fn, dataset, samples
        self.plot = plotting.PredictedVsActual(dpi=dpi)
        self.figure = self.plot.figure
        self.result = None
        self._runs: dict[tuple, object] = {}     # the last 64 pruning runs, by (criterion, sparsity, steps, λ)
        controls = {
            "criterion": W.Dropdown(options=[c for c in ("mp", "lm", "qm", "obd") if c in CRITERIA], value=criterion,
                                    description="criterion", style=WIDE, layout=W.Layout(width="200px")),
            "steps": W.IntSlider(value=steps, min=1, max=20, description="steps", continuous_update=False, style=WIDE),
            "reg": W.SelectionSlider(options=list(PAPER_REGS), value=reg, description="λ", continuous_update=False,
                                     style=WIDE),
            "sparsity": W.FloatSlider(value=sparsity, min=0.5, max=0.98, step=0.02, description="sparsity κ",
                                      readout_format=".2f", continuous_update=False, style=WIDE),
        }
        super().__init__(controls, [["criterion", "steps"], ["reg", "sparsity"]], dpi)
        self.update()

    def draw(self) -> str:
        from .pruning import prune

        v = {name: control.value for name, control in self.controls.items()}
        key = (v["criterion"], v["sparsity"], v["steps"], v["reg"])
        if key not in self._runs:                # a setting seen before redraws without pruning again
            if len(self._runs) >= 64:
                self._runs.pop(next(iter(self._runs)))
            self._runs[key] = prune(self.model, self.loss_fn, self.dataset, v["criterion"], v["sparsity"], v["steps"],
                                    reg=v["reg"], samples=self.samples)
        self.result = self._runs[key]
        history = self.result.history
        self.plot.draw(history, f"{v['criterion'].upper()}, κ = {v['sparsity']:.2f}, {v['steps']} steps, "
                                f"λ = {v['reg']:g}")
        actual = sum(h["loss_after"] - h["loss_before"] for h in history)
        qm = sum(h["predicted"]["qm"] for h in history)
        error = 100 * (1 - models.accuracy(self.result.model, *self.dataset.val))
        return f"actual ΔL {actual:.3f}, summed QM prediction {qm:.3f}, val error {error:.1f}%"


def pruning_explorer(model: nn.Module, loss_fn: Callable, dataset: data.Dataset, samples: int = 300,
                     **values) -> PruningExplorer:
    """Explorer of one pruning run: criterion, steps, λ, sparsity (see :class:`PruningExplorer`); ``model``
    is never changed (each run prunes a copy). ``values`` set the controls' start values."""
    return PruningExplorer(model, loss_fn, dataset, samples, **values)


# --------------------------------------------------------------------------------------- notebook 05
class EdgeOfStabilityExplorer(Explorer):
    """Gradient-descent runs at several step sizes (``spectrum.GDRun``): a step-size dropdown and a step slider.

    The figure is :class:`~losstools.plotting.EdgeOfStability`; the readout gives the loss, lambda_max (and the
    step it was measured at) and eta lambda_max at the chosen step. Only drawing happens: the runs are computed."""

    def __init__(self, runs: Sequence, lr: float | None = None, step: int = 200, step_size: int = 10, dpi: int = 72):
        self.runs = list(runs)
        self.plot = plotting.EdgeOfStability(self.runs, dpi=dpi)
        self.figure = self.plot.figure
        lrs = [run.lr for run in self.runs]
        controls = {
            "eta": W.Dropdown(options=lrs, value=lrs[-1] if lr is None else lr, description="η", style=WIDE),
            "step": W.IntSlider(value=step, min=0, max=len(self.runs[0].loss) - 1, step=step_size, description="step",
                                continuous_update=False, style=WIDE, layout=W.Layout(width="420px")),
        }
        super().__init__(controls, [["eta", "step"]], dpi)
        self.update()

    def draw(self) -> str:
        eta, step = self.controls["eta"].value, self.controls["step"].value
        self.plot.draw(eta, step)
        now = self.plot.runs[[run.lr for run in self.plot.runs].index(eta)].at(step)
        return (f"step {now['step']}: loss {now['loss']:.4f}, lambda_max {now['sharpness']:.2f} "
                f"(measured at step {now['measured_at']}), eta*lambda_max = {now['eta_lambda']:.2f}")


def edge_of_stability_explorer(runs: Sequence, lr: float | None = None, step: int = 200) -> EdgeOfStabilityExplorer:
    """Explorer of gradient-descent runs at several step sizes (see :class:`EdgeOfStabilityExplorer`)."""
    return EdgeOfStabilityExplorer(runs, lr, step)
