"""The paper's grid (criteria x steps x lambda x seeds) on a data set: one record per run, on disk as it goes.

Records are JSON lines in ``<out>/records.jsonl``; a study started again on the same folder skips the
runs already recorded, so an interrupted study resumes without redoing or losing finished runs.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import data as datasets
from .. import models
from ..data import Dataset
from .finetune import error, finetune
from .loop import prune
from .saliency import check_criterion
from .schedules import check_sparsity, check_steps

PAPER_REGS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
PAPER_CRITERIA = ("mp", "obd", "lm", "qm")  # the column order of the paper's tables
PAPER = {  # mean, std over 5 seeds (paper-notes.md)
    "table1": {
        "MLP / MNIST": {"mp": (2.02, 0.10), "obd": (1.83, 0.11), "lm": (1.17, 0.03), "qm": (1.05, 0.04)},
        "VGG11 / CIFAR-10": {"mp": (1.84, 0.44), "obd": (0.89, 0.24), "lm": (0.90, 0.21), "qm": (0.86, 0.22)},
        "PreActResNet18 / CIFAR-10": {"mp": (2.23, 0.14), "obd": (1.95, 0.46), "lm": (1.36, 0.18),
                                      "qm": (1.22, 0.31)},
    },
    "table2": {
        "MLP / MNIST": {"mp": (2.4, 0.3), "obd": (2.0, 0.1), "lm": (1.9, 0.3), "qm": (1.9, 0.2)},
        "VGG11 / CIFAR-10": {"mp": (0.2, 0.2), "obd": (-0.1, 0.2), "lm": (-0.3, 0.1), "qm": (-0.1, 0.1)},
        "PreActResNet18 / CIFAR-10": {"mp": (0.2, 0.2), "obd": (0.2, 0.2), "lm": (0.1, 0.1), "qm": (0.2, 0.2)},
    },
}
RECORDS = "records.jsonl"


def _metrics(model: nn.Module, loss_fn: Callable, ds: Dataset) -> dict[str, float]:
    out = {}
    with torch.no_grad():
        for split in ("train", "val", "test"):
            X, y = getattr(ds, split)
            out[f"{split}_loss"] = float(loss_fn(model(X), y))
            out[f"{split}_error"] = error(model, X, y)
    return out


def run_key(record: dict) -> tuple:
    return (record["seed"], record["criterion"], record["steps"], float(record["reg"]))


def load_records(out: str | Path) -> list[dict]:
    """The finished runs recorded in ``<out>/records.jsonl`` (a line cut short by an interruption is ignored)."""
    path = Path(out) / RECORDS
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def grid(criteria: Sequence[str], steps: Sequence[int], regs: Sequence[float], seeds: Sequence[int]) -> list[tuple]:
    """The runs (seed, criterion, steps, reg) of a study. MP's mask depends on neither steps nor lambda
    (without retraining), so MP runs once per seed with steps=1, reg=0, as in the authors' scripts."""
    runs = []
    for seed in seeds:
        for criterion in criteria:
            if criterion == "mp":
                runs.append((seed, "mp", 1, 0.0))
            else:
                runs += [(seed, criterion, int(s), float(r)) for s in steps for r in regs]
    return runs


def _base_model(settings: dict, ds: Dataset, seed: int, out: Path, loss_fn, log) -> nn.Module:
    sizes = [ds.num_features, *settings["hidden"], ds.num_classes]
    net = models.mlp(sizes, activation=settings["activation"], seed=seed)
    path = out / f"base_seed{seed}.pt"
    if path.exists():
        net.load_state_dict(torch.load(path))
    else:
        log(f"seed {seed}: training a {'-'.join(map(str, sizes))} {settings['activation']} MLP on {ds.name} "
            f"({settings['train_epochs']} epochs, best epoch by validation error)")
        finetune(net, None, ds, epochs=settings["train_epochs"], lr=settings["lr"], loss_fn=loss_fn, seed=seed,
                 progress=settings["progress"])
        torch.save(net.state_dict(), path)
    return net.eval()


def study(out: str | Path = "results", data: str | Dataset | Callable[[int], Dataset] = "digits", criteria: Sequence[str] = PAPER_CRITERIA,
          steps: Sequence[int] = (1, 14, 140), regs: Sequence[float] = PAPER_REGS, seeds: Sequence[int] = (0,),
          sparsity: float = 0.9, hidden: Sequence[int] = (300, 100), activation: str = "tanh",
          train_epochs: int = 100, finetune_epochs: int = 30, lr: float = 1e-3, samples: int = 1000,
          schedule: str = "exponential", scope: str = "global", curvature: str = "ggn", predict: bool = True,
          progress: bool = True, log: Callable[[str], None] | None = None) -> list[dict]:
    """Run (or resume) the pruning study; returns all records of this grid, one per run.

    For each seed, an MLP ``features-hidden-classes`` is trained on ``data`` (a name in
    :mod:`losstools.data`, loaded with that seed; a :class:`Dataset`; or a function seed -> Dataset) with Adam, keeping the best
    epoch by validation error, and cached as ``base_seed<seed>.pt``. Each run prunes it with one
    criterion, number of steps and lambda (:func:`prune`), then fine-tunes the pruned copy for
    ``finetune_epochs`` (:func:`finetune`). A record holds the settings, the reached sparsity,
    ``dL`` (train loss after - before pruning, over the whole train split), ``predicted`` (each loss
    model's prediction summed over the steps), ``before`` / ``pruned`` / ``finetuned`` train, val and
    test loss and error, the per-step ``history`` and ``seconds``. Records are appended to
    ``<out>/records.jsonl`` as each run finishes; runs already there are skipped. The settings are
    kept in ``<out>/settings.json`` and a resumed study must use the same ones.
    """
    criteria = [check_criterion(c) for c in criteria]
    steps = [check_steps(s) for s in steps]
    check_sparsity(sparsity)
    log = log or print
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    load = (lambda seed: data) if isinstance(data, Dataset) else (
        (lambda seed: getattr(datasets, data)(seed=seed)) if isinstance(data, str) else data)
    settings = {"data": data if isinstance(data, str) else getattr(data, "name", getattr(data, "__name__", "custom")), "sparsity": sparsity, "hidden": list(hidden),
                "activation": activation, "train_epochs": train_epochs, "finetune_epochs": finetune_epochs, "lr": lr,
                "samples": samples, "schedule": schedule, "scope": scope, "curvature": curvature, "predict": predict}
    settings_path = out / "settings.json"
    if settings_path.exists() and json.loads(settings_path.read_text()) != settings:
        raise ValueError(f"{out} holds a study with other settings ({settings_path.read_text().strip()}); "
                         f"use another --out folder or delete that one to start afresh")
    settings_path.write_text(json.dumps(settings, indent=1))
    settings["progress"] = progress
    done = {run_key(r): r for r in load_records(out)}
    runs = grid(criteria, steps, regs, seeds)
    todo = [r for r in runs if r not in done]
    if done:
        log(f"resuming: {len(runs) - len(todo)} of {len(runs)} runs already in {out / RECORDS}")
    loss_fn = nn.CrossEntropyLoss()
    cache: dict[int, tuple] = {}
    bar = tqdm(todo, desc="pruning study", disable=not progress)
    path = out / RECORDS
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with open(path, "a") as file:  # a line cut short by an interruption: close it, load_records skips it
            file.write("\n")
    with open(path, "a") as file:
        for seed, criterion, n_steps, reg in bar:
            bar.set_postfix_str(f"seed={seed} {criterion} steps={n_steps} reg={reg:g}")
            if seed not in cache:
                ds = load(seed)
                net = _base_model(settings, ds, seed, out, loss_fn, log)
                cache = {seed: (ds, net, _metrics(net, loss_fn, ds))}
            ds, net, before = cache[seed]
            start = time.perf_counter()
            result = prune(net, loss_fn, ds, criterion, sparsity, n_steps, schedule, reg, samples, scope, seed,
                           curvature, predict=predict)
            pruned = _metrics(result.model, loss_fn, ds)
            middle = time.perf_counter()
            finetune(result.model, result.masks, ds, epochs=finetune_epochs, lr=lr, loss_fn=loss_fn, seed=seed,
                     progress=False)
            record = {
                "seed": seed, "criterion": criterion, "steps": n_steps, "reg": reg, "sparsity": result.sparsity,
                "train_loss_before": before["train_loss"], "train_loss_after": pruned["train_loss"],
                "dL": pruned["train_loss"] - before["train_loss"],
                "predicted": {m: sum(h["predicted"].get(m, math.nan) for h in result.history)
                              for m in ("lm", "qm", "obd")},
                "before": before, "pruned": pruned, "finetuned": _metrics(result.model, loss_fn, ds),
                "history": result.history,
                "seconds": {"prune": middle - start, "finetune": time.perf_counter() - middle},
            }
            file.write(json.dumps(record) + "\n")
            file.flush()
            os.fsync(file.fileno())
            done[run_key(record)] = record
    return [done[r] for r in runs]


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    return float(np.mean(values)), float(np.std(values)), len(values)


def table1(records: list[dict]) -> dict[str, tuple[float, float, int]]:
    """Paper's Table 1: per criterion, dL best (lowest) over lambda at the largest number of steps;
    mean, std (population, ddof=0) and number of seeds."""
    out = {}
    for criterion in sorted({r["criterion"] for r in records}, key=_column):
        rows = [r for r in records if r["criterion"] == criterion]
        most = max(r["steps"] for r in rows)
        per_seed = {}
        for r in rows:
            if r["steps"] == most:
                per_seed[r["seed"]] = min(per_seed.get(r["seed"], math.inf), r["dL"])
        out[criterion] = _mean_std(list(per_seed.values()))
    return out


def table2(records: list[dict]) -> dict[str, tuple[float, float, int]]:
    """Paper's Table 2: per criterion, the validation-error gap in percentage points (after fine-tuning
    minus before pruning), best over lambda and steps; mean, std (ddof=0), number of seeds."""
    out = {}
    for criterion in sorted({r["criterion"] for r in records}, key=_column):
        per_seed = {}
        for r in records:
            if r["criterion"] == criterion:
                gap = 100 * (r["finetuned"]["val_error"] - r["before"]["val_error"])
                per_seed[r["seed"]] = min(per_seed.get(r["seed"], math.inf), gap)
        out[criterion] = _mean_std(list(per_seed.values()))
    return out


def _column(criterion: str) -> int:
    order = (*PAPER_CRITERIA, "obs")
    return order.index(criterion) if criterion in order else len(order)


def format_table(summary: dict[str, tuple[float, float, int]], which: str, label: str, digits: int = 2) -> str:
    """A Markdown table: this study's row (``label``) above the paper's rows for ``which`` ("table1"/"table2")."""
    columns = sorted(set(summary) | set(PAPER_CRITERIA), key=_column)
    lines = ["| network | " + " | ".join(c.upper() for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]

    def cell(pair):
        return "-" if pair is None else f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"

    seeds = max((n for *_, n in summary.values()), default=0)
    lines.append(f"| {label} ({seeds} seed{'s' if seeds != 1 else ''}) | "
                 + " | ".join(cell(summary.get(c)) for c in columns) + " |")
    for network, row in PAPER[which].items():
        lines.append(f"| paper: {network} | " + " | ".join(cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)
