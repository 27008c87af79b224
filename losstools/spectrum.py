"""The Hessian spectrum during training: full-batch gradient descent with the sharpness tracked.

Progressive sharpening and the edge of stability (Cohen et al., 2021): under full-batch gradient
descent with step size eta, the top Hessian eigenvalue lambda_max ("sharpness") first grows, then
stops at about 2/eta and hovers there while the loss keeps falling, non-monotonically. The quadratic
model explains the threshold: along the top eigenvector u, one step multiplies the displacement by
(1 - eta lambda), so the step overshoots (the loss along u rises) exactly when eta lambda > 2.

- :func:`gradient_descent`: a run, with lambda_max by Lanczos every ``every`` steps (:class:`GDRun`);
- :func:`overshoot`: the quadratic model's change of the loss for a step of size eta along u,
  g_u^2 eta (eta lambda / 2 - 1), against the actual change L(theta - eta g_u u) - L(theta);
- :func:`negative_fraction`: the share of the spectrum below zero, from a stochastic Lanczos quadrature;
- :func:`one_hot_data`, :func:`half_squared_error`: the regression set-up of Cohen et al.

Pure computations on an :class:`~losstools.Objective`: the model passed in is never changed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import _progress
from .curvature.estimators import SpectralDensity, lanczos
from .curvature.operators import Hessian
from .objective import Objective


def half_squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(1/N) sum_n 1/2 ||f_n - y_n||^2: the mean over examples of half the squared error summed over outputs."""
    return 0.5 * (outputs - targets).square().sum(1).mean()


def one_hot_data(X: torch.Tensor, y: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, one-hot float targets (N, classes)) for regressing on class labels."""
    return X, F.one_hot(y, classes).to(X.dtype)


def sharpness(obj: Objective, theta: torch.Tensor | None = None, steps: int = 20,
              seed: int = 0) -> tuple[float, torch.Tensor]:
    """lambda_max of the Hessian at ``theta`` and its unit eigenvector (P,), by ``steps`` Lanczos steps."""
    op = Hessian(obj, theta=theta)
    values, vectors = lanczos(op, k=1, tol=0.0, max_steps=min(steps, obj.num_params), seed=seed, progress=False)
    return float(values[0]), vectors[:, 0]


@dataclass
class GDRun:
    """A full-batch gradient-descent run: ``loss[t]`` before step t (t = 0..steps), ``sharpness[i]`` at
    step ``tracked[i]``; ``lr`` the step size eta (2/eta is the edge of stability)."""

    lr: float
    loss: np.ndarray
    tracked: np.ndarray
    sharpness: np.ndarray
    theta: torch.Tensor = field(repr=False)  # parameters after the last step

    @property
    def edge(self) -> float:
        return 2.0 / self.lr

    def at(self, step: int) -> dict:
        """Loss, the last measured sharpness at or before ``step`` and eta * lambda_max, as floats."""
        step = int(np.clip(step, 0, len(self.loss) - 1))
        i = max(0, int(np.searchsorted(self.tracked, step, side="right")) - 1)
        lam = float(self.sharpness[i])
        return {"step": step, "loss": float(self.loss[step]), "sharpness": lam, "eta_lambda": self.lr * lam,
                "measured_at": int(self.tracked[i])}


def gradient_descent(obj: Objective, lr: float, steps: int, every: int = 10, lanczos_steps: int = 20,
                     seed: int = 0, progress: bool = True) -> GDRun:
    """``steps`` full-batch steps theta <- theta - lr grad L(theta) from the objective's parameters.

    The loss is recorded before every step (and after the last); lambda_max by ``lanczos_steps`` Lanczos
    steps at steps 0, every, 2 every, ... and at the end. Cost: steps gradients + (steps / every)
    lanczos_steps Hessian-vector products (each about two gradients). The model is not changed.
    """
    if lr <= 0 or steps < 1 or every < 1:
        raise ValueError(f"need lr > 0, steps >= 1 and every >= 1; got lr={lr}, steps={steps}, every={every}")
    theta = obj.theta.detach().clone()
    losses, tracked, sharp = [], [], []
    bar = tqdm(total=steps, desc=f"GD eta={lr:g}", delay=_progress.PROGRESS_DELAY, leave=False, disable=not progress)
    with bar:
        for t in range(steps + 1):
            if t % every == 0 or t == steps:
                tracked.append(t)
                sharp.append(sharpness(obj, theta, lanczos_steps, seed)[0])
            loss, g = obj.loss_and_grad(theta)
            losses.append(float(loss))
            if t < steps:
                theta = theta - lr * g
                bar.update(1)
    return GDRun(float(lr), np.array(losses), np.array(tracked), np.array(sharp), theta)


@dataclass
class Overshoot:
    """Loss change of a step of size eta along the top eigenvector: ``actual`` and ``quadratic`` (G,)."""

    lrs: np.ndarray
    actual: np.ndarray
    quadratic: np.ndarray
    sharpness: float

    @property
    def edge(self) -> float:
        return 2.0 / self.sharpness


def overshoot(obj: Objective, lrs, theta: torch.Tensor | None = None, lanczos_steps: int = 30,
              seed: int = 0) -> Overshoot:
    """The step -eta g_u u (the gradient's component along the top eigenvector u) for each eta in ``lrs``:
    actual L(theta - eta g_u u) - L(theta) and the quadratic model g_u^2 eta (eta lambda / 2 - 1), which
    changes sign at eta = 2 / lambda_max."""
    theta = obj.resolve_theta(theta).detach()
    lam, u = sharpness(obj, theta, lanczos_steps, seed)
    g_u = float(obj.grad(theta) @ u)
    base = float(obj.loss(theta))
    lrs = np.asarray(lrs, dtype=float)
    actual = np.array([float(obj.loss(theta - eta * g_u * u)) - base for eta in lrs])
    return Overshoot(lrs, actual, g_u**2 * lrs * (lrs * lam / 2 - 1), lam)


def negative_fraction(density: SpectralDensity, below: float = 0.0) -> float:
    """The share of eigenvalues below ``-below`` estimated by SLQ: the mean over probes of the weights of the
    Ritz values below it. With ``below`` = 0 the near-zero bulk, split by round-off and quadrature into tiny
    values of both signs, counts half; a small positive threshold (e.g. 1e-3 lambda_max) counts real negative
    curvature only."""
    nodes, weights = density.nodes.double(), density.weights.double()
    return float((weights * (nodes < -abs(below))).sum(1).mean())


def negative_mass(density: SpectralDensity) -> float:
    """``sum |lambda_i|`` over negative eigenvalues / ``sum |lambda_i|`` over all, estimated by SLQ (in [0, 1])."""
    nodes, weights = density.nodes.double(), density.weights.double()
    mass = weights * nodes.abs()
    return float((mass * (nodes < 0)).sum() / mass.sum())


def quadratic_iterates(lr: float, curvature: float, steps: int, start: float = 1.0) -> np.ndarray:
    """Gradient descent on q(x) = curvature x^2 / 2 from ``start``: x_t = (1 - lr curvature)^t start, (steps + 1,)."""
    return start * (1.0 - lr * curvature) ** np.arange(steps + 1)
