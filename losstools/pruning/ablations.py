"""Ablations the paper lacks, each a small study next to the main one (same base networks, same seeds).

Each ablation changes one choice of the paper's protocol and re-runs the affected criteria at the
largest number of steps over a few lambdas; its baseline is the main study's records restricted to
the same criteria, steps and lambdas:

- ``signed``: rank by the signed predicted change (no ``|.|``) instead of its absolute value;
- ``mc_fisher`` / ``empirical_fisher``: Monte-Carlo (one sampled label) or empirical Fisher diagonal
  instead of the exact GGN (= true Fisher) diagonal;
- ``layer_scope``: every layer pruned to the same sparsity instead of one global ranking;
- ``finetune_long``: fine-tuning for the whole training budget (100 epochs) instead of 20: does
  Table 2's ranking survive a longer budget?
- ``obs`` (separate, on a toy digits MLP 64-8-10 where the dense curvature is cheap): OBS with the
  exact GGN and with its K-FAC approximation (weights re-adjusted) against the diagonal criteria, kappa = 0.8.

The correlation between the loss change after pruning and the error after fine-tuning needs no new
runs: :func:`outcome_correlation` reads the main study's records.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Callable, Sequence

from .._validate import choice
from ._study import load_records, study, table1, table2

ABLATION_REGS = (0.0, 1e-4, 1e-2, 1.0)
#: The ablations the paper lacks (each name maps to the study settings it changes; see the module's docstring).
ABLATIONS: dict[str, dict] = {
    "signed": {"criteria": ("lm", "qm"), "signed": True, "finetune_epochs": 0},
    "mc_fisher": {"criteria": ("obd", "qm"), "curvature": "mc", "finetune_epochs": 0},
    "empirical_fisher": {"criteria": ("obd", "qm"), "curvature": "empirical", "finetune_epochs": 0},
    "layer_scope": {"criteria": ("mp", "obd", "lm", "qm"), "scope": "layer", "finetune_epochs": 0},
    "finetune_long": {"criteria": ("mp", "obd", "lm", "qm"), "finetune_epochs": 100},
}
# settings that decide the base network: an ablation may reuse the main study's base_seed<seed>.pt
_BASE_KEYS = ("data", "model", "hidden", "activation", "init", "optimizer", "lr", "momentum", "weight_decay",
              "batch_size", "train_epochs")


def _reuse_base_models(baseline: Path, out: Path, seeds: Sequence[int]) -> None:
    """Copy the baseline's trained base networks (same training settings) so that the ablation prunes them."""
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        source, target = baseline / f"base_seed{seed}.pt", out / f"base_seed{seed}.pt"
        if source.exists() and not target.exists():
            shutil.copyfile(source, target)


def run(name: str, baseline: str | Path, out: str | Path, seeds: Sequence[int] = (0,), steps: int = 140,
        regs: Sequence[float] = ABLATION_REGS, progress: bool = True,
        log: Callable[[str], None] | None = None) -> list[dict]:
    """Run (or resume) ablation ``name`` of :data:`ABLATIONS` in ``<out>/<name>``; the main study in ``baseline``
    gives the data, protocol and base networks (its settings.json must exist). Returns the ablation's records."""
    choice(name, ABLATIONS, "ablation")
    baseline, folder = Path(baseline), Path(out) / name
    settings_path = baseline / "settings.json"
    if not settings_path.exists():
        raise FileNotFoundError(f"{baseline} holds no study (settings.json missing); run the main study first, "
                                "e.g. python -m losstools prune --data mnist5k --out results/mnist5k_mlp")
    base = json.loads(settings_path.read_text())
    options = {k: v for k, v in base.items() if k not in ("data", "protocol")}
    spec = dict(ABLATIONS[name])
    criteria = spec.pop("criteria")
    options.update(spec)
    _reuse_base_models(baseline, folder, seeds)
    return study(folder, base["data"], criteria, (steps,), regs, seeds, base["protocol"], progress=progress,
                 log=log, **options)


def run_obs(out: str | Path, seeds: Sequence[int] = (0,), steps: Sequence[int] = (1, 14),
            regs: Sequence[float] = (0.0, 1e-3, 1e-1), sparsity: float = 0.8, progress: bool = True,
            log: Callable[[str], None] | None = None) -> list[dict]:
    """OBS (exact GGN, and K-FAC) against MP/OBD/LM/QM on a digits MLP 64-8-10 (592 weights, a dense curvature
    in about a second), ``<out>/obs_ggn`` and ``<out>/obs_kfac``; no fine-tuning. Returns all records."""
    common = {"hidden": (8,), "sparsity": sparsity, "finetune_epochs": 0, "train_epochs": 100, "samples": 1000,
              "progress": progress, "log": log}
    records = study(Path(out) / "obs_ggn", "digits", ("mp", "obd", "lm", "qm", "obs"), steps, regs, seeds, "quick",
                    curvature="ggn", **common)
    _reuse_base_models(Path(out) / "obs_ggn", Path(out) / "obs_kfac", seeds)
    kfac = study(Path(out) / "obs_kfac", "digits", ("obs",), steps, regs, seeds, "quick", curvature="kfac", **common)
    return records + [{**r, "criterion": "obs-kfac"} for r in kfac]


def _subset(records: list[dict], like: list[dict]) -> list[dict]:
    keys = {(r["criterion"], r["steps"], float(r["reg"]), r["seed"]) for r in like}
    return [r for r in records if (r["criterion"], r["steps"], float(r["reg"]), r["seed"]) in keys
            or (r["criterion"] == "mp" and any(k[0] == "mp" and k[3] == r["seed"] for k in keys))]


def compare(name: str, baseline: str | Path, out: str | Path) -> dict:
    """``{"variant": table, "baseline": table}`` for ablation ``name`` (Table 2 for ``finetune_long``, else
    Table 1), both over the same criteria, steps, lambdas and seeds; tables as :func:`table1`."""
    choice(name, ABLATIONS, "ablation")
    variant = load_records(Path(out) / name)
    if not variant:
        raise FileNotFoundError(f"no records in {Path(out) / name}; run the ablation first")
    reference = _subset(load_records(baseline), variant)
    summarise = table2 if name == "finetune_long" else table1
    return {"table": summarise.__name__, "variant": summarise(variant), "baseline": summarise(reference)}


def outcome_correlation(records: list[dict]) -> dict[str, float]:
    """Spearman rank correlation, over all runs, between dL after pruning and the validation error after
    fine-tuning (overall and within each criterion but MP; NaN with fewer than 3 runs)."""
    from scipy.stats import spearmanr

    def rho(rows):
        if len(rows) < 3:
            return math.nan
        return float(spearmanr([r["dL"] for r in rows], [r["finetuned"]["val_error"] for r in rows]).statistic)

    out = {"all": rho(records)}
    for criterion in sorted({r["criterion"] for r in records} - {"mp"}):
        out[criterion] = rho([r for r in records if r["criterion"] == criterion])
    return out

