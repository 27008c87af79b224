"""Loss-modelling pruning (Laurent et al. 2020): saliencies, schedules, masks, Algorithm 1, fine-tuning, the study.

The study lives in the private module ``_study`` so that the function ``pruning.study`` shadows nothing.

>>> from losstools import pruning
>>> result = pruning.prune(net, nn.CrossEntropyLoss(), ds, "qm", sparsity=0.9, steps=14, reg=1e-3)  # doctest: +SKIP
>>> pruning.finetune(result.model, result.masks, ds, epochs=20)                                    # doctest: +SKIP
"""
from ._parallel import StudyIncomplete
from ._study import (
    CNN_SPARSITY,
    FINETUNE_UPDATES,
    MLP_SPARSITY,
    PAPER,
    PAPER_REGS,
    PROTOCOLS,
    finetune_epochs_for,
    format_table,
    load_records,
    study,
    table1,
    table2,
)
from .criteria import CRITERIA, DIAGONAL_CRITERIA, predicted_change, saliency
from .finetuning import finetune
from .loop import PruneResult, prune
from .masks import (
    apply_masks_,
    copy_pruned,
    full_masks,
    make_permanent,
    prunable_names,
    select,
    sparsity,
    to_torch_prune,
)
from .obs import obs_remove
from .schedules import SCHEDULES, schedule
from .statistics import SALIENCY_CURVATURES, curvature_diagonal, gradient

__all__ = [
    "CNN_SPARSITY", "CRITERIA", "DIAGONAL_CRITERIA", "FINETUNE_UPDATES", "MLP_SPARSITY", "PAPER", "PAPER_REGS",
    "PROTOCOLS", "PruneResult", "SALIENCY_CURVATURES", "SCHEDULES", "StudyIncomplete", "apply_masks_",
    "copy_pruned",
    "curvature_diagonal", "finetune", "finetune_epochs_for", "format_table", "full_masks", "gradient", "load_records",
    "make_permanent", "obs_remove",
    "predicted_change", "prunable_names", "prune", "saliency", "schedule", "select", "sparsity", "study", "table1",
    "table2", "to_torch_prune",
]
