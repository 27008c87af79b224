"""ipywidgets explorers: controls wired to :mod:`losstools.taylor` and :mod:`losstools.plotting`.

Everything expensive (training, dense Hessian and GGN, eigenvectors) happens once when an explorer is
built; an interaction only evaluates the loss along a line (vmapped) and redraws. Figures are plain
``matplotlib.figure.Figure`` objects (not managed by pyplot) rendered to PNG into an ``Output`` widget's
state, so nothing depends on a display or a front end: tests and nbval can call ``update()`` directly.
"""
from __future__ import annotations

import base64
import copy
import io
import time
from dataclasses import dataclass, field

import ipywidgets as W
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from . import data, models, plotting, taylor
from . import directions as dirs
from .curvature import eigh, ggn, hessian
from .objective import Objective

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
    at two checkpoints: ``"early"`` (after ``early_epochs`` epochs: large gradient) and ``"converged"``."""
    ds = data.spirals(seed=seed).to(dtype=torch.float64)
    net = models.mlp([ds.num_features, hidden, hidden, ds.num_classes], seed=seed).double()
    models.train(net, ds, epochs=early_epochs, lr=1e-2, seed=seed, progress=False)
    early = copy.deepcopy(net)
    models.train(net, ds, epochs=epochs - early_epochs, lr=1e-2, seed=seed + 1, progress=False)
    return {name: Objective(m, nn.CrossEntropyLoss(), ds.train) for name, m in (("early", early), ("converged", net))}


@dataclass
class _Checkpoint:
    """What is precomputed per checkpoint: curvatures (dense, as Curvature objects) and fixed directions."""

    objective: Objective
    curvatures: dict[str, taylor.Curvature] = field(default_factory=dict)
    directions: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def build(cls, obj: Objective, seed: int) -> "_Checkpoint":
        H, G = hessian(obj), ggn(obj)
        _, vectors = eigh(H)
        curvatures = {name: taylor.as_curvature(obj, M) for name, M in
                      [("hessian", H), ("ggn", G), ("hessian_diag", H.diagonal()), ("ggn_diag", G.diagonal())]}
        for name, c in curvatures.items():
            c.name = name
        found = {
            "gradient": dirs.gradient(obj),
            "random": dirs.random(obj, seed),
            "random_filter": dirs.normalize(obj, dirs.random(obj, seed, "filter")),
            "top_eigenvector": dirs.eigenvector(obj, "top", curvature=H),
            "bottom_eigenvector": dirs.eigenvector(obj, "bottom", curvature=H),
        }
        return cls(obj, curvatures, found)


class TaylorExplorer:
    """Loss along a direction versus the Taylor models, with controls; see :func:`taylor_explorer`.

    Attributes: ``widget`` (display it), ``update()`` (redraw now; returns the Figure), ``figure`` (the
    current Figure), ``profile`` (the current :class:`~losstools.taylor.TaylorProfile`), ``label`` (a Label:
    actual and predicted ΔL at t = step range), ``orders`` (a Label: g.d and the fitted orders), ``controls``
    (the widgets by name), ``last_seconds`` (wall time of the last redraw).
    """

    def __init__(self, checkpoints: dict[str, Objective], t_max: float = 2.0, sparsity: float = 0.5,
                 seed: int = 0, dpi: int = 72):
        if not checkpoints:
            raise ValueError("checkpoints is empty: pass {name: Objective}, e.g. toy_checkpoints()")
        self._checkpoints = {name: _Checkpoint.build(obj, seed) for name, obj in checkpoints.items()}
        self.dpi = dpi
        self.controls = {
            "step_range": W.FloatSlider(value=t_max, min=0.1, max=8.0, step=0.1, description="step range",
                                        readout_format=".2f", continuous_update=False),
            "sparsity": W.FloatSlider(value=sparsity, min=0.05, max=0.95, step=0.05, description="sparsity",
                                      readout_format=".2f", continuous_update=False),
            "direction": W.Dropdown(options=list(DIRECTION_LABELS), value="negative gradient", description="direction"),
            "curvature": W.Dropdown(options=list(CURVATURE_LABELS), value="Hessian", description="curvature C"),
            "state": W.ToggleButtons(options=list(checkpoints), value=list(checkpoints)[-1], description="network"),
            "models": W.SelectMultiple(options=list(taylor.MODELS), value=list(taylor.MODELS), rows=4,
                                       description="models"),
        }
        self.label, self.orders = W.Label(), W.Label()
        self.output = W.Output()
        c = self.controls
        self.widget = W.VBox([
            W.HBox([c["direction"], c["curvature"]]),
            W.HBox([c["step_range"], c["sparsity"]]),
            W.HBox([c["state"], c["models"]]),
            self.label, self.orders, self.output,
        ])
        for control in c.values():
            control.observe(self.update, names="value")
        self._overview = plotting.TaylorOverview(dpi=dpi)
        self.figure = self._overview.figure
        self.profile: taylor.TaylorProfile | None = None
        self.last_seconds = float("nan")
        self.update()

    def _direction(self, ck: _Checkpoint, kind: str) -> tuple[torch.Tensor, dict[str, float]]:
        if kind != "pruning":
            return ck.directions[kind], {}
        step = dirs.pruning(ck.objective, self.controls["sparsity"].value, normalize=None)
        length = float(step.norm())
        return step / length, {"full pruning step": length}

    def update(self, change=None) -> Figure:
        """Recompute the profile for the current controls, redraw, refresh the label and the Output."""
        start = time.perf_counter()
        c = self.controls
        if change is not None and change["owner"] is c["sparsity"] and c["direction"].value != "magnitude pruning":
            return self.figure                   # nothing shown depends on the sparsity
        ck = self._checkpoints[c["state"].value]
        chosen = list(c["models"].value)
        if not chosen:
            self.label.value = "select at least one model"
            return self.figure
        t_max = float(c["step_range"].value)
        d, marks = self._direction(ck, DIRECTION_LABELS[c["direction"].value])
        steps = np.concatenate([np.linspace(-t_max, t_max, 121), np.geomspace(t_max * 1e-4, t_max, 40)])
        self.profile = p = taylor.profile(ck.objective, d, steps, chosen,
                                          ck.curvatures[CURVATURE_LABELS[c["curvature"].value]])
        marks = {k: v for k, v in marks.items() if v <= t_max}
        title = f"{c['direction'].value}, {c['state'].value} network"
        self._overview.draw(p, chosen, marks, title)
        self._show()
        self.label.value, self.orders.value = self._summary(p, t_max)
        self.last_seconds = time.perf_counter() - start
        return self.figure

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

    def _show(self) -> None:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=self.dpi)
        png = base64.b64encode(buffer.getvalue()).decode("ascii")
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": png, "text/plain": repr(self.figure)}},)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def taylor_explorer(checkpoints: dict[str, Objective] | None = None, t_max: float = 2.0, sparsity: float = 0.5,
                    seed: int = 0) -> TaylorExplorer:
    """An explorer of the Taylor models of a step: the loss along a direction and the error of each model.

    Controls: the direction (negative gradient, random, filter-normalised random, top/bottom Hessian
    eigenvector, magnitude pruning at the ``sparsity`` slider's level), the step range [-t, t] (a
    FloatSlider), the models shown, the curvature C (exact Hessian, GGN or their diagonals) and the training
    state of the network. All directions have unit norm, so t is the length of the step; for pruning, a
    dotted line marks the full pruning step. ``checkpoints`` maps names to Objectives (default:
    :func:`toy_checkpoints`, an early and a converged tanh MLP on spirals); each needs dense curvature.

    >>> explorer = taylor_explorer()     # doctest: +SKIP
    >>> explorer                         # displays the controls and the figure
    >>> explorer.update()                # redraw now (also called by every control)
    """
    return TaylorExplorer(toy_checkpoints(seed) if checkpoints is None else checkpoints, t_max, sparsity, seed)
