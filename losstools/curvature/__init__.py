"""Curvature of the loss: exact dense matrices for toy nets, approximations for larger ones.

Exact (toy nets): ``hessian``, ``hessian_diag``, ``hessian_blocks``, ``ggn``, ``eigh``.
Per layer (nn.Linear / nn.Conv2d, any model): ``diag_ggn``, ``diag_fisher``, ``kfac``.
Operators (``@``, ``to_dense``, ``to_scipy``, ``diagonal``): ``HessianOperator``, ``GGNOperator``,
``FisherOperator``, ``EmpiricalFisherOperator``, ``KFACOperator``.
Matrix-free estimators: ``hutchinson_diag``, ``hutchinson_trace``, ``hutchpp_trace``, ``lanczos``,
``spectral_density``. Cost versus accuracy of the estimators: ``study.cost_accuracy``.
"""
from . import study
from .diagonal import diag_fisher, diag_ggn
from .estimators import SpectralDensity, hutchinson_diag, hutchinson_trace, hutchpp_trace, lanczos, spectral_density
from .exact import eigh, eigvalsh, ggn, ggn_vector_product, hessian, hessian_blocks, hessian_diag
from .kfac import KFACOperator, kfac
from .layers import UnsupportedLayerError
from .memory import DenseTooLargeError, check_dense, memory_budget, set_memory_budget
from .operators import (CurvatureOperator, EmpiricalFisherOperator, FisherOperator, GGNOperator,
                        HessianOperator)

__all__ = [
    "CurvatureOperator", "DenseTooLargeError", "EmpiricalFisherOperator", "FisherOperator", "GGNOperator",
    "HessianOperator", "KFACOperator", "SpectralDensity", "UnsupportedLayerError", "check_dense",
    "diag_fisher", "diag_ggn", "eigh", "eigvalsh", "ggn", "ggn_vector_product", "hessian", "hessian_blocks",
    "hessian_diag", "hutchinson_diag", "hutchinson_trace", "hutchpp_trace", "kfac", "lanczos",
    "memory_budget", "set_memory_budget", "spectral_density",
]
