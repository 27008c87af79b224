"""Small, committed summaries of a study: tables, compact per-run records and timings in one JSON file.

A study's ``records.jsonl`` holds every step of every run (megabytes); :func:`summarise` keeps what
the tables, the figures and the notebooks need (kilobytes): one compact row per run, both tables,
the per-step history of the best QM run only, and where the time went.

>>> summary = summarise(load_records("results/mnist5k_mlp"), "mnist5k MLP")  # doctest: +SKIP
>>> write_summary(summary, "mlp.json"); load_summary("mlp.json")["table1"]  # doctest: +SKIP

The summaries of the MNIST studies ship with the package (``losstools/pruning/mnist5k/``):

>>> stored_summary("mlp")["table1"]["qm"]
(0.97..., 0.03..., 5)
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from ._study import run_key, table1, table2

_KEEP = ("seed", "criterion", "steps", "reg", "sparsity", "dL", "predicted", "seconds")


def compact(record: dict) -> dict:
    """One run without its per-step history: settings, dL, the predictions, and the metrics the tables use."""
    row = {k: record[k] for k in _KEEP if k in record}
    for stage in ("before", "pruned", "finetuned"):
        row[stage] = {k: record[stage][k] for k in ("train_loss", "val_error", "test_error") if k in record[stage]}
    return row


def select_runs(records: Sequence[dict], regs: Sequence[float] | None = None,
                seeds: Sequence[int] | None = None, steps: Sequence[int] | None = None) -> list[dict]:
    """The records whose lambda is in ``regs``, seed in ``seeds`` and number of steps in ``steps`` (None: all);
    MP (lambda- and step-free) is kept whatever ``regs`` and ``steps``."""
    regs = None if regs is None else set(map(float, regs))
    seeds = None if seeds is None else set(seeds)
    steps = None if steps is None else set(steps)

    def kept(r: dict) -> bool:
        free = r["criterion"] == "mp"
        return ((regs is None or free or float(r["reg"]) in regs) and (steps is None or free or r["steps"] in steps)
                and (seeds is None or r["seed"] in seeds))

    return [r for r in records if kept(r)]


def complete_seeds(records: Sequence[dict]) -> list[int]:
    """The seeds that ran the whole grid the records span: every (criterion, steps, lambda) run by any seed.

    Tables over a study still running (or stopped) should use these only: a seed missing some lambdas at
    the largest number of steps would enter Table 1 with a best over fewer lambdas."""
    ran: dict[int, set] = defaultdict(set)
    for r in records:
        seed, *run = run_key(r)
        ran[seed].add(tuple(run))
    grid = set().union(*ran.values())
    return sorted(seed for seed, runs in ran.items() if runs == grid)


def summarise(records: Sequence[dict], label: str, settings: dict | None = None,
              wall_seconds: dict | None = None) -> dict:
    """Tables 1 and 2 (mean, std, seeds per criterion), compact runs, the best QM run's history, timings."""
    records = list(records)
    multi = [r for r in records if r["criterion"] != "mp"]
    preferred = [r for r in multi if r["criterion"] == "qm"] or multi
    best = None
    if preferred:
        most = max(r["steps"] for r in preferred)
        best = min((r for r in preferred if r["steps"] == most), key=lambda r: r["dL"])
    prune_s = sum(r["seconds"]["prune"] for r in records)
    finetune_s = sum(r["seconds"]["finetune"] for r in records)
    steps = sum(r["steps"] for r in records)
    return {
        "label": label, "settings": settings or {},
        "seeds": sorted({r["seed"] for r in records}), "regs": sorted({float(r["reg"]) for r in multi}),
        "steps": sorted({r["steps"] for r in multi}), "criteria": sorted({r["criterion"] for r in records}),
        "table1": table1(records), "table2": table2(records),
        "runs": [compact(r) for r in records],
        "best_qm": None if best is None else {**compact(best), "history": best["history"]},
        "timing": {"runs": len(records), "pruning_steps": steps, "prune_seconds": prune_s,
                   "finetune_seconds": finetune_s, "ms_per_step": 1000 * prune_s / max(steps, 1),
                   **({"wall_seconds": wall_seconds} if wall_seconds else {})},
    }


def write_summary(summary: dict, path: str | Path) -> None:
    """Write a summary as indented JSON (floats rounded to 6 significant digits, so the file stays small)."""
    def rounded(value):
        if isinstance(value, float):
            return float(f"{value:.6g}")
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [rounded(v) for v in value]
        return value

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(rounded(summary), indent=None, separators=(",", ":")) + "\n")


STORED = ("mlp", "cnn", "cnn_steps14", "ablations")
"""The summaries shipped with the package (the MLP and CNN studies on mnist5k, the CNN also at π ≤ 14; ablations)."""


def stored_summary(name: str) -> dict:
    """A summary of the MNIST studies shipped with losstools (package data written by docs/reproduction/summarise.py).

    ``name`` is one of :data:`STORED`: ``"mlp"``, ``"cnn"`` and ``"cnn_steps14"`` are study summaries as returned by
    :func:`load_summary`; ``"ablations"`` is the dict of ablation comparisons (``ablations.compare`` per variant).
    """
    if name not in STORED:
        raise ValueError(f"no stored summary {name!r}; choose one of {', '.join(STORED)}")
    path = Path(__file__).resolve().parent / "mnist5k" / f"{name}.json"
    return json.loads(path.read_text()) if name == "ablations" else load_summary(path)


def load_summary(path: str | Path) -> dict:
    """A summary written by :func:`write_summary`; tables as {criterion: (mean, std, seeds)}."""
    summary = json.loads(Path(path).read_text())
    for key in ("table1", "table2"):
        summary[key] = {c: tuple(v) for c, v in summary[key].items()}
    return summary
