"""Matrix-free estimators on any curvature operator (anything with ``op @ M``, ``shape``, ``dtype``, ``device``).

- :func:`hutchinson_diag`: diag(A) ~ mean_j z_j * (A z_j), Rademacher z; unbiased, variance
  sum_{j != i} A_ij^2 / m per entry.
- :func:`hutchinson_trace`: tr(A) ~ mean_j z_j^T A z_j; unbiased, variance 2 (||A||_F^2 - sum A_ii^2) / m.
- :func:`hutchpp_trace`: Hutch++ (Meyer et al. 2021): exact trace on a sketched top subspace plus
  Hutchinson on the rest; error O(1/m) instead of O(1/sqrt(m)) for m products.
- :func:`lanczos`: top-k eigenpairs by Lanczos with full reorthogonalisation (or use ``scipy``'s
  ``eigsh(op.to_scipy(), k)``); usually far fewer products than power iteration.
- :func:`spectral_density`: stochastic Lanczos quadrature (Ghorbani et al. 2019; PyHessian).

Probes are drawn on the operator's device from ``seed`` (an int or a ``torch.Generator``).
Products go ``block`` columns at a time (one vmapped product per block).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import _progress
from .._progress import progress_bar
from .._random import generator


def rademacher(shape: tuple[int, ...], gen: torch.Generator, dtype: torch.dtype, device) -> torch.Tensor:
    """Independent +-1 entries with probability 1/2 each."""
    return torch.randint(0, 2, shape, generator=gen, device=device).to(dtype) * 2 - 1


def _check_count(value: int, what: str) -> int:
    if int(value) < 1:
        raise ValueError(f"{what} must be a positive integer, got {value}")
    return int(value)


def _bar(total: int, progress: bool, desc: str) -> tqdm:
    """A tqdm bar counting products (shown when the loop lasts over ``_progress.PROGRESS_DELAY`` s)."""
    return tqdm(total=total, desc=desc, unit="products", delay=_progress.PROGRESS_DELAY, leave=False,
                disable=not progress)


def _products(op, M: torch.Tensor, block: int, bar: tqdm) -> torch.Tensor:
    """op @ M (P, k), ``block`` columns at a time, advancing ``bar``."""
    parts = []
    for s in range(0, M.shape[1], block):
        parts.append(op @ M[:, s : s + block])
        bar.update(parts[-1].shape[1])
    return torch.cat(parts, 1)


def _probe_blocks(op, num_probes: int, block: int, seed, progress: bool, desc: str):
    """Yield (Z (P, b), A Z (P, b)) for ``num_probes`` Rademacher probes, ``block`` at a time."""
    gen = generator(seed, op.device)
    P = op.shape[0]
    starts = range(0, num_probes, block)
    for start in progress_bar(starts, progress, desc, total=len(starts)):
        Z = rademacher((P, min(block, num_probes - start)), gen, op.dtype, op.device)
        yield Z, op @ Z


def hutchinson_diag(op, num_probes: int = 100, seed: int | torch.Generator | None = 0, block: int = 16,
                    progress: bool = True) -> torch.Tensor:
    """Unbiased estimate of diag(A), shape (P,), from ``num_probes`` products (``op.unflatten`` splits it)."""
    num_probes = _check_count(num_probes, "num_probes")
    total = sum((Z * AZ).sum(1)
                for Z, AZ in _probe_blocks(op, num_probes, block, seed, progress, "Hutchinson diagonal"))
    return total / num_probes


def hutchinson_trace(op, num_probes: int = 100, seed: int | torch.Generator | None = 0, block: int = 16,
                     progress: bool = True) -> torch.Tensor:
    """Unbiased estimate of tr(A) (a 0-d tensor) from ``num_probes`` products."""
    num_probes = _check_count(num_probes, "num_probes")
    total = sum((Z * AZ).sum() for Z, AZ in _probe_blocks(op, num_probes, block, seed, progress, "Hutchinson trace"))
    return total / num_probes


def hutchpp_trace(op, num_matvecs: int = 99, seed: int | torch.Generator | None = 0, block: int = 16,
                  progress: bool = True) -> torch.Tensor:
    """Hutch++ estimate of tr(A) (0-d tensor) from ``num_matvecs`` products (a multiple of 3 is best).

    A third of the products sketch the dominant range (Q = orth(A S)), a third compute tr(Q^T A Q)
    exactly, a third run Hutchinson on (I - QQ^T) A (I - QQ^T). Unbiased. Products go ``block``
    columns at a time; ``progress`` shows a bar counting them on runs over a second.
    """
    m = _check_count(num_matvecs, "num_matvecs")
    if m < 3:
        raise ValueError(f"Hutch++ needs at least 3 products, got {m}")
    gen = generator(seed, op.device)
    P, k = op.shape[0], m // 3
    S = rademacher((P, k), gen, op.dtype, op.device)
    G = rademacher((P, m - 2 * k), gen, op.dtype, op.device)
    with _bar(m, progress, "Hutch++ trace") as bar:
        Q, _ = torch.linalg.qr(_products(op, S, block, bar))
        G = G - Q @ (Q.T @ G)
        return torch.trace(Q.T @ _products(op, Q, block, bar)) + (G * _products(op, G, block, bar)).sum() / G.shape[1]


class _Lanczos:
    """Lanczos with full reorthogonalisation, run on the b columns of V0 (P, b) at once.

    After m steps: ``alphas`` (m of (b,)), ``betas`` (m of (b,)); T_m is tridiagonal with diagonal
    alphas and off-diagonal betas[:m-1]; betas[m-1] |S[m-1, i]| is the residual of Ritz pair i.
    A column whose Krylov space is exhausted (beta ~ 0) continues with zeros, which adds decoupled
    Ritz values of zero weight.
    """

    def __init__(self, op, V0: torch.Tensor):
        self.op, self.basis = op, [V0 / V0.norm(dim=0, keepdim=True)]
        self.alphas: list[torch.Tensor] = []
        self.betas: list[torch.Tensor] = []
        self.scale = 0.0

    def step(self) -> None:
        v = self.basis[-1]
        w = self.op @ v
        alpha = (w * v).sum(0)
        self.alphas.append(alpha)
        self.scale = max(self.scale, float(alpha.abs().max()))
        Vs = torch.stack(self.basis)  # (m, P, b)
        for _ in range(2):  # reorthogonalising twice is enough (Kahan-Parlett)
            w = w - torch.einsum("mpb,mb->pb", Vs, torch.einsum("mpb,pb->mb", Vs, w))
        beta = w.norm(dim=0)
        alive = beta > 1e-10 * max(self.scale, 1e-30)
        beta = torch.where(alive, beta, torch.zeros_like(beta))
        self.betas.append(beta)
        self.basis.append(torch.where(alive, w / beta.clamp_min(torch.finfo(w.dtype).tiny), torch.zeros_like(w)))

    def ritz(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ritz values (b, m) and eigenvectors of T_m (b, m, m), ascending, in float64."""
        a = torch.stack(self.alphas).T.double()
        c = torch.stack(self.betas[:-1]).T.double() if len(self.alphas) > 1 else a[:, :0]
        return torch.linalg.eigh(torch.diag_embed(a) + torch.diag_embed(c, 1) + torch.diag_embed(c, -1))


def lanczos(op, k: int = 1, tol: float = 1e-4, max_steps: int | None = None, which: str = "largest",
            seed: int | torch.Generator | None = 0, check_every: int = 1,
            progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k eigenpairs of a symmetric operator: (values (k,), unit vectors (P, k)), wanted ones first.

    ``which``: "largest" (algebraic) or "magnitude" (largest ``|lambda|``, what power iteration finds).
    Stops when the residuals ``||A u - lambda u|| = beta_m |s_m|`` of the k wanted Ritz pairs are below
    ``tol |lambda|`` (checked every ``check_every`` steps), or after ``max_steps`` (default min(P, 300))
    products. Products used: ``op.matvecs`` (for this package's operators). ``progress`` shows a bar
    counting products on runs over a second.
    """
    if which not in ("largest", "magnitude"):
        raise ValueError(f"which must be 'largest' or 'magnitude', got {which!r}")
    P = op.shape[0]
    k = _check_count(k, "k")
    if k > P:
        raise ValueError(f"k={k} eigenpairs asked of a {P} x {P} operator")
    max_steps = min(P, 300 if max_steps is None else _check_count(max_steps, "max_steps"))
    run = _Lanczos(op, rademacher((P, 1), generator(seed, op.device), op.dtype, op.device))
    with _bar(max_steps, progress, f"Lanczos (top {k})") as bar:
        return _lanczos_steps(run, k, tol, max_steps, which, check_every, bar)


def _lanczos_steps(run: "_Lanczos", k: int, tol: float, max_steps: int, which: str, check_every: int,
                   bar: tqdm) -> tuple[torch.Tensor, torch.Tensor]:
    op = run.op
    for m in range(1, max_steps + 1):
        run.step()
        bar.update(1)
        if m < k or (m % check_every and m < max_steps):
            continue
        values, S = run.ritz()
        values, S = values[0], S[0]
        key = values if which == "largest" else values.abs()
        top = key.argsort(descending=True)[:k]
        residual = run.betas[-1].double()[0] * S[-1, top].abs()
        if m == max_steps or bool((residual <= tol * values[top].abs()).all()):
            basis = torch.cat(run.basis[:m], 1)
            return values[top].to(op.dtype), basis @ S[:, top].to(op.dtype)
    raise AssertionError("unreachable")


@dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature: per probe, Ritz ``nodes`` (probes, m) with ``weights`` summing to 1.

    The eigenvalue density of the (P, P) operator is approximated by the average over probes of
    sum_j weights_j delta(lambda - nodes_j); :meth:`density` smooths it with Gaussians.
    """
    nodes: torch.Tensor
    weights: torch.Tensor
    num_params: int

    def density(self, grid, sigma: float) -> np.ndarray:
        """The smoothed density on ``grid`` (G,), integrating to about 1 (Gaussian kernels of width ``sigma``)."""
        grid = np.asarray(grid, dtype=float)[:, None, None]
        nodes, weights = self.nodes.cpu().double().numpy(), self.weights.cpu().double().numpy()
        kernel = np.exp(-0.5 * ((grid - nodes) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return (kernel * weights).sum(2).mean(1)

    def trace(self) -> float:
        """The trace estimate P * mean_probes sum_j w_j theta_j (equals Hutchinson with normalised probes)."""
        return float(self.num_params * (self.nodes * self.weights).sum(1).mean())


def spectral_density(op, num_probes: int = 4, num_steps: int = 60, seed: int | torch.Generator | None = 0,
                     block: int = 4, progress: bool = True) -> SpectralDensity:
    """Spectral density by stochastic Lanczos quadrature: ``num_steps`` Lanczos steps from each of
    ``num_probes`` Rademacher probes (``block`` probes run together); costs num_probes x num_steps products."""
    num_probes, num_steps = _check_count(num_probes, "num_probes"), _check_count(num_steps, "num_steps")
    P = op.shape[0]
    gen = generator(seed, op.device)
    nodes, weights = [], []
    steps = min(num_steps, P)
    with _bar(num_probes * steps, progress, "spectral density") as bar:
        for start in range(0, num_probes, block):
            run = _Lanczos(op, rademacher((P, min(block, num_probes - start)), gen, op.dtype, op.device))
            for _ in range(steps):
                run.step()
                bar.update(run.basis[0].shape[1])
            values, S = run.ritz()
            nodes.append(values)
            weights.append(S[:, 0, :] ** 2)
    return SpectralDensity(torch.cat(nodes), torch.cat(weights), P)
