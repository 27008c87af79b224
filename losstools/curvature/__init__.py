"""Curvature of the loss: exact dense matrices for toy nets, approximations for larger ones."""
from .diagonal import diag_fisher, diag_ggn
from .exact import eigh, eigvalsh, ggn, ggn_vector_product, hessian, hessian_blocks, hessian_diag
from .memory import DenseTooLargeError, check_dense, memory_budget, set_memory_budget

__all__ = [
    "DenseTooLargeError", "check_dense", "diag_fisher", "diag_ggn", "eigh", "eigvalsh", "ggn", "ggn_vector_product", "hessian",
    "hessian_blocks", "hessian_diag", "memory_budget", "set_memory_budget",
]
