"""Curvature of the loss: one engine of linear operators on an Objective, exact and approximate.

Operators (``@`` on (P,) / (P, k), ``dense()``, ``diagonal()``, ``blocks()``, ``to_scipy()``):
``Hessian``, ``GGN``, ``Fisher``, ``EmpiricalFisher``, ``KFAC``; build them from an Objective, ``Hessian(obj)``,
or from ``(model, loss_fn, data, params=...)``. A curvature given by hand, with the same interface: ``Matrix``,
``Diagonal``, ``Products``.
Dense conveniences: ``hessian``, ``hessian_diag``, ``hessian_blocks``, ``ggn``, ``eigh``; per-parameter
dictionaries: ``diag_ggn``, ``diag_fisher``, ``kfac``.
Matrix-free estimators: ``hutchinson_diag``, ``hutchinson_trace``, ``hutchpp_trace``, ``lanczos``,
``spectral_density``. Cost versus accuracy of the estimators: ``study.cost_accuracy``.
"""
from .._probe import PathFallbackWarning, VerificationError
from .._structure import HookError
from . import study
from .diagonal import diag_fisher, diag_ggn
from .estimators import SpectralDensity, hutchinson_diag, hutchinson_trace, hutchpp_trace, lanczos, spectral_density
from .exact import eigh, eigvalsh, ggn, hessian, hessian_blocks, hessian_diag
from .explicit import Diagonal, Matrix, Products
from .kronecker import KFAC, kfac
from .layers import UnsupportedLayerError
from .memory import DenseTooLargeError, check_dense, memory_budget, set_memory_budget
from .operators import GGN, CurvatureOperator, EmpiricalFisher, Fisher, Hessian

__all__ = [
    "CurvatureOperator", "DenseTooLargeError", "Diagonal", "EmpiricalFisher", "Fisher", "GGN", "Hessian",
    "HookError", "KFAC", "Matrix", "PathFallbackWarning", "Products", "SpectralDensity", "UnsupportedLayerError",
    "VerificationError", "check_dense", "diag_fisher", "diag_ggn", "eigh", "eigvalsh", "ggn", "hessian",
    "hessian_blocks", "hessian_diag", "hutchinson_diag", "hutchinson_trace", "hutchpp_trace", "kfac", "lanczos",
    "memory_budget", "set_memory_budget", "spectral_density", "study",
]
