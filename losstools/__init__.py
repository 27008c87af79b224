"""losstools: Taylor models of the loss, curvature and loss-modelling pruning, for teaching and research."""
from . import curvature, data, directions, models, pruning, taylor
from .curvature import DenseTooLargeError, eigh, eigvalsh, ggn, hessian, hessian_blocks, hessian_diag, set_memory_budget
from .objective import Objective, select_parameters

__version__ = "0.1.0"
__all__ = [
    "DenseTooLargeError", "Objective", "curvature", "data", "directions", "eigh", "eigvalsh", "ggn", "hessian",
    "hessian_blocks", "hessian_diag", "models", "pruning", "select_parameters", "set_memory_budget", "taylor",
]
