"""Curvature given by the user, as operators of the one engine: a dense matrix, a diagonal, or a product function.

Each has the interface of every operator (``@`` on (P,) / (P, k), ``diagonal()``, ``dense()``, ``blocks()``,
``to_scipy()``), so Taylor models, estimators and widgets take a tensor a student computed by hand exactly as they
take ``Hessian(obj)``:

- :class:`Matrix`: a (P, P) tensor;
- :class:`Diagonal`: a (P,) tensor, or a function computing it (called once, on first use);
- :class:`Products`: a function v (P,) -> C v, with an optional function for the diagonal (else P products).
"""
from __future__ import annotations

from typing import Callable

import torch

from .operators import CurvatureOperator


class Matrix(CurvatureOperator):
    """A dense symmetric (P, P) curvature matrix ``A``, moved to the Objective's device and dtype."""

    name = "matrix"

    def __init__(self, objective, A: torch.Tensor, name: str | None = None):
        super().__init__(objective)
        P = self.num_params
        self.A = torch.as_tensor(A).to(device=self.device, dtype=self.dtype)
        if self.A.shape != (P, P):
            raise ValueError(f"a curvature matrix must have shape ({P}, {P}), got {tuple(self.A.shape)}")
        self.name = name or self.name

    def _matmat(self, M):
        return self.A @ M

    def diagonal(self, chunk_size: int | None = None) -> torch.Tensor:
        return self.A.diagonal()


class Diagonal(CurvatureOperator):
    """diag(d) for a (P,) tensor ``d``, or a function returning it (computed on first use, then kept)."""

    name = "diagonal"

    def __init__(self, objective, d: torch.Tensor | Callable[[], torch.Tensor], name: str | None = None):
        super().__init__(objective)
        self._d, self._compute = (None, d) if callable(d) else (self._checked(d), None)
        self.name = name or self.name

    def _checked(self, d) -> torch.Tensor:
        d = torch.as_tensor(d).to(device=self.device, dtype=self.dtype)
        if d.shape != (self.num_params,):
            raise ValueError(f"a curvature diagonal must have shape ({self.num_params},), got {tuple(d.shape)}")
        return d

    def diagonal(self, chunk_size: int | None = None) -> torch.Tensor:
        if self._d is None:
            self._d = self._checked(self._compute())
        return self._d

    def _matmat(self, M):
        return self.diagonal()[:, None] * M


class Products(CurvatureOperator):
    """C given by a function ``v (P,) -> C v``; ``diagonal`` (a function) gives diag(C), else P products do."""

    def __init__(self, objective, products: Callable[[torch.Tensor], torch.Tensor],
                 diagonal: Callable[[], torch.Tensor] | None = None, name: str = "products"):
        super().__init__(objective)
        self._products, self._diagonal, self.name = products, diagonal, name

    def _column(self, v: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self._products(v)).to(device=self.device, dtype=self.dtype).reshape(self.num_params)

    def _matmat(self, M):
        return torch.stack([self._column(v) for v in M.T], 1)

    def diagonal(self, chunk_size: int | None = None) -> torch.Tensor:
        if self._diagonal is None:
            return super().diagonal(chunk_size)
        return torch.as_tensor(self._diagonal()).to(device=self.device, dtype=self.dtype).reshape(self.num_params)
