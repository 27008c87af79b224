"""Curvature of the loss: exact dense matrices for toy nets, approximations for larger ones."""
from .exact import eigh, eigvalsh, ggn, ggn_vector_product, hessian, hessian_blocks, hessian_diag
from .memory import DenseTooLargeError, check_dense, memory_budget, set_memory_budget

__all__ = [
    "DenseTooLargeError", "check_dense", "eigh", "eigvalsh", "ggn", "ggn_vector_product", "hessian",
    "hessian_blocks", "hessian_diag", "memory_budget", "set_memory_budget",
]
