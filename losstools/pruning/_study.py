"""The paper's grid (criteria x steps x lambda x seeds) on a data set: one record per run, on disk as it goes.

Records are JSON lines in ``<out>/records.jsonl``; a study started again on the same folder skips the
runs already recorded, so an interrupted study resumes without redoing or losing finished runs.
Every option is validated before anything is written or trained; the settings, the base models
(``base_seed<seed>.pt``) and each record are written atomically (a temporary file and ``os.replace``,
or one locked, flushed append per record).
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import data as datasets
from .. import models
from .._validate import choice, finite, fraction, int_list, option_errors, positive_int, usable_device
from ..data import Dataset
from .criteria import check_criterion
from .finetuning import error, finetune
from .loop import prune
from .masks import SCOPES
from .schedules import SCHEDULES
from .statistics import check_curvature

#: The paper's nine values of the step-norm penalty lambda.
PAPER_REGS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
PAPER_CRITERIA = ("mp", "obd", "lm", "qm")  # the column order of the paper's tables
#: The paper's Tables 1 and 2 as ``{table: {network: {criterion: (mean, std)}}}``.
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
#: The data sets a study can be run on by name.
DATA_SETS = ("digits", "moons", "spirals", "mnist5k")
#: The networks a study can prune by name.
MODELS = ("mlp", "lenet5")
#: The paper's MLP sparsity on MNIST (1.15 % of the weights kept).
MLP_SPARSITY = 0.98847  # the paper's MLP on MNIST: 1.15 % of the weights kept
#: The paper's CNN sparsity (VGG11 / PreActResNet18 on CIFAR-10).
CNN_SPARSITY = 0.956  # the paper's VGG11 / PreActResNet18 on CIFAR-10
#: The study's default settings per protocol (``"paper"`` for MNIST, ``"quick"`` for the demo).
PROTOCOLS: dict[str, dict] = {
    # The paper's (and the authors' code's) protocol: Kaiming-normal weights, SGD with momentum and weight decay,
    # best epoch by validation error, kappa = 0.98847. Fine-tuning uses the training recipe with a fresh optimiser
    # for FINETUNE_UPDATES optimiser steps ("auto": 20 epochs on mnist5k's 4 000 training images, 2 on full MNIST;
    # the paper fine-tuned for its whole training budget, which the finetune_long ablation compares), see
    # docs/reproduction.md.
    "paper": {"model": "mlp", "hidden": (300, 100), "activation": "tanh", "init": "kaiming", "optimizer": "sgd",
              "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 100, "train_epochs": 100,
              "finetune_epochs": "auto", "sparsity": MLP_SPARSITY, "samples": 1000, "schedule": "exponential",
              "scope": "global", "curvature": "ggn", "signed": False, "predict": False},
    # The quick digits demo: PyTorch's default initialisation, Adam, kappa = 0.9 (the digits MLP collapses at the
    # paper's 0.98847, see docs/guides/pruning.md).
    "quick": {"model": "mlp", "hidden": (300, 100), "activation": "tanh", "init": "default", "optimizer": "adam",
              "lr": 1e-3, "momentum": 0.0, "weight_decay": 0.0, "batch_size": 100, "train_epochs": 100,
              "finetune_epochs": 30, "sparsity": 0.9, "samples": 1000, "schedule": "exponential",
              "scope": "global", "curvature": "ggn", "signed": False, "predict": True},
}


#: The ``"auto"`` fine-tuning budget in optimiser steps (20 epochs of mnist5k at batch 100).
FINETUNE_UPDATES = 800  # the "auto" fine-tuning budget in optimiser steps (20 epochs of mnist5k at batch 100)


def finetune_epochs_for(num_train: int, batch_size: int, updates: int = FINETUNE_UPDATES) -> int:
    """Epochs of fine-tuning that take about ``updates`` optimiser steps on ``num_train`` examples (at least 1):
    the "auto" budget, so that fine-tuning costs the same whatever the data size.

    >>> finetune_epochs_for(4000, 100), finetune_epochs_for(50000, 100), finetune_epochs_for(1000, 100)
    (20, 2, 80)
    """
    steps_per_epoch = math.ceil(num_train / batch_size)
    return max(1, math.ceil(updates / steps_per_epoch))


def default_protocol(data) -> str:
    """``"paper"`` for MNIST (``"mnist5k"``, ``"mnist"`` or a Dataset named so), else ``"quick"``."""
    name = data if isinstance(data, str) else getattr(data, "name", "")
    return "paper" if str(name).startswith("mnist") else "quick"


def metrics(model: nn.Module, loss_fn: Callable, ds: Dataset) -> dict[str, float]:
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


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temporary file in the same folder and ``os.replace`` (never half-written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def _locked_append(path: Path):
    """Open ``path`` for appending under an exclusive lock (two studies on one folder never interleave lines)."""
    with open(path, "a") as file:
        try:
            import fcntl

            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: no advisory locks, appends are still whole lines
            pass
        yield file


def _append_record(path: Path, record: dict) -> None:
    line = json.dumps(record) + "\n"
    with _locked_append(path) as file:
        if file.tell() and not path.read_bytes().endswith(b"\n"):
            file.write("\n")  # a line cut short by an interruption: close it, load_records skips it
        file.write(line)
        file.flush()
        os.fsync(file.fileno())


def make_model(settings: dict, ds: Dataset, seed: int) -> nn.Module:
    """The untrained network of a study's ``settings`` for data ``ds`` (an MLP or a LeNet-5-like CNN)."""
    if settings["model"] == "lenet5":
        shape = ds.input_shape
        if len(shape) != 3 or shape[1:] != (28, 28):
            raise ValueError(f"model='lenet5' needs images of shape (channels, 28, 28), {ds.name} has {shape}; "
                             "load them unflattened (data.mnist5k(flatten=False))")
        return models.lenet5(ds.num_classes, activation=settings["activation"], seed=seed, init=settings["init"],
                             channels=shape[0])
    sizes = [ds.num_features, *settings["hidden"], ds.num_classes]
    return nn.Sequential(nn.Flatten(), *models.mlp(sizes, settings["activation"], seed, init=settings["init"])) \
        if len(ds.input_shape) > 1 else models.mlp(sizes, settings["activation"], seed, init=settings["init"])


def _train_options(settings: dict, epochs: int) -> dict:
    return {"epochs": epochs, "lr": settings["lr"], "optimizer": settings["optimizer"],
            "momentum": settings["momentum"], "weight_decay": settings["weight_decay"],
            "batch_size": settings["batch_size"]}


def train_base(settings: dict, ds: Dataset, seed: int, loss_fn, device: torch.device) -> nn.Module:
    """The base network of ``seed``: trained on ``ds`` with the study's recipe (best epoch by validation error)."""
    net = make_model(settings, ds, seed).to(device)
    finetune(net, None, ds, loss_fn=loss_fn, seed=seed, progress=settings["progress"],
             **_train_options(settings, settings["train_epochs"]))
    return net.eval()


def training_message(settings: dict, ds_name: str, seed: int) -> str:
    return (f"seed {seed}: training the {settings['model']} on {ds_name} ({settings['train_epochs']} epochs, "
            f"{settings['optimizer']}, best epoch by validation error)")


def _base_model(settings: dict, ds: Dataset, seed: int, out: Path, loss_fn, log, device: torch.device) -> nn.Module:
    path = out / f"base_seed{seed}.pt"
    if path.exists():
        net = make_model(settings, ds, seed).to(device)
        net.load_state_dict(torch.load(path, map_location=device))
        return net.eval()
    log(training_message(settings, ds.name, seed))
    net = train_base(settings, ds, seed, loss_fn, device)
    _write_atomic(path, lambda tmp: torch.save(net.state_dict(), tmp))
    return net


def loader(data, model: str) -> Callable[[int], Dataset]:
    if isinstance(data, Dataset):
        return lambda seed: data
    if isinstance(data, str):
        if data == "mnist5k":
            return lambda seed: datasets.mnist5k(seed=seed, flatten=model != "lenet5")
        return lambda seed: getattr(datasets, data)(seed=seed)
    return data


def study(out: str | Path = "results", data: str | Dataset | Callable[[int], Dataset] = "digits",
          criteria: Sequence[str] = PAPER_CRITERIA, steps: Sequence[int] = (1, 14, 140),
          regs: Sequence[float] = PAPER_REGS, seeds: Sequence[int] = (0,), protocol: str | None = None, *,
          model: str | None = None, sparsity: float | None = None, hidden: Sequence[int] | None = None,
          activation: str | None = None, init: str | None = None, optimizer: str | None = None,
          lr: float | None = None, momentum: float | None = None, weight_decay: float | None = None,
          batch_size: int | None = None, train_epochs: int | None = None, finetune_epochs: int | str | None = None,
          samples: int | None = None, schedule: str | None = None, scope: str | None = None,
          curvature: str | None = None, signed: bool | None = None, predict: bool | None = None,
          device: str | torch.device = "cpu", progress: bool = True,
          log: Callable[[str], None] | None = None, executor: Executor | None = None) -> list[dict]:
    """Run (or resume) the pruning study; returns all records of this grid, one per run.

    ``protocol`` fills every option left as None (see :data:`PROTOCOLS`): ``"paper"`` (the default for
    MNIST data: 784-300-100-10 tanh MLP, Kaiming-normal initialisation, SGD lr 0.01 momentum 0.9 weight
    decay 5e-4, batch 100, 100 epochs with the best epoch by validation error, kappa = 0.98847, 1000
    samples per step, exact GGN diagonal, fine-tuning for ``finetune_epochs="auto"``: about
    :data:`FINETUNE_UPDATES` optimiser steps, :func:`finetune_epochs_for`, 20 epochs on mnist5k) or ``"quick"``
    (the default otherwise: PyTorch's initialisation, Adam lr 1e-3, kappa = 0.9). ``model="lenet5"`` uses the
    LeNet-5-like CNN (``data="mnist5k"`` is then loaded as 28x28 images; the paper's CNN sparsity is
    :data:`CNN_SPARSITY`).

    For each seed the network is trained on ``data`` (``"digits"``, ``"moons"``, ``"spirals"`` or ``"mnist5k"``,
    loaded with that seed; a :class:`Dataset`; or a function seed -> Dataset) and cached as ``base_seed<seed>.pt``.
    Each run prunes it with one criterion, number of steps and lambda (:func:`prune`), then fine-tunes the pruned
    copy with a fresh optimiser for ``finetune_epochs``, masks re-applied after every step, keeping the
    best epoch by validation error (:func:`finetune`). A record holds the settings, the reached sparsity,
    ``dL`` (train loss after - before pruning, over the whole train split), ``predicted`` (each loss
    model's prediction summed over the steps; NaN where the run did not compute it), ``before`` /
    ``pruned`` / ``finetuned`` train, val and test loss and error, the per-step ``history`` and
    ``seconds``. Records are appended to ``<out>/records.jsonl`` as each run finishes; runs already there
    are skipped. The settings are kept in ``<out>/settings.json`` and a resumed study must use the same ones.
    ``device`` (e.g. ``"cuda"``) is where the networks and data live; it is not a setting (a study may be
    resumed on another device), and results agree across devices up to round-off.

    ``executor`` (any :class:`concurrent.futures.Executor`: a ``ProcessPoolExecutor``, a Dask
    ``Client(...).get_executor()``) runs the grid on its workers instead of in this process: each seed's
    base network is trained once (seeds in parallel), then its runs fan out, each worker on one torch thread
    (see :mod:`losstools.pruning._parallel`). Only this process writes to ``out``, appending each record as its
    run completes (so in completion order; readers key records by run, never by position). The records are
    those of the serial study, ``seconds`` aside. Data given as a function is sent to the workers by reference:
    it must be importable there (a module-level function, not a lambda or a local function). A run that
    raises is logged with its key and the others go on; then ``pruning.StudyIncomplete`` names what failed.
    """
    with option_errors():  # every option checked before any side effect
        criteria = [check_criterion(c) for c in criteria]
        steps = int_list(steps, "steps (numbers of pruning iterations)")
        regs = [finite(r, "reg (lambda)", low=0.0) for r in regs]
        seeds = int_list(seeds, "seeds", minimum=0)
        if not criteria or not regs:
            raise ValueError("criteria and regs must each list at least one value")
        protocol = choice(protocol if protocol is not None else default_protocol(data), PROTOCOLS, "protocol")
        given = {"model": model, "sparsity": sparsity, "hidden": hidden, "activation": activation, "init": init,
                 "optimizer": optimizer, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                 "batch_size": batch_size, "train_epochs": train_epochs, "finetune_epochs": finetune_epochs,
                 "samples": samples, "schedule": schedule, "scope": scope, "curvature": curvature, "signed": signed,
                 "predict": predict}
        settings = {k: (v if v is not None else PROTOCOLS[protocol][k]) for k, v in given.items()}
        settings.update(_checked(settings, criteria))
        device = usable_device(device)
        if isinstance(data, str):
            choice(data, DATA_SETS, "data set")
        elif not (isinstance(data, Dataset) or callable(data)):
            raise TypeError(f"data must be a name in {DATA_SETS}, a losstools Dataset or a function seed -> Dataset, "
                            f"got {type(data).__name__}")
        if executor is not None:
            from ._parallel import check_shippable

            check_shippable(data)
        log = log or print
        load = loader(data, settings["model"])
        if settings["finetune_epochs"] == "auto":
            settings["finetune_epochs"] = finetune_epochs_for(len(load(seeds[0]).train[0]), settings["batch_size"])
        name = data if isinstance(data, str) else getattr(data, "name", getattr(data, "__name__", "custom"))
        settings = {"data": name, "protocol": protocol, **settings}
        out = Path(out)
        settings_path = out / "settings.json"
        if settings_path.exists() and _differences(settings_path, settings):
            raise ValueError(f"{out} holds a study with other settings ({_differences(settings_path, settings)}); "
                             "use the same options to resume it, or another --out folder to start afresh")
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(settings_path, lambda tmp: tmp.write_text(json.dumps(settings, indent=1)))
    settings["progress"] = progress
    done = {run_key(r): r for r in load_records(out)}
    runs = grid(criteria, steps, regs, seeds)
    todo = [r for r in runs if r not in done]
    if done:
        log(f"resuming: {len(runs) - len(todo)} of {len(runs)} runs already in {out / RECORDS}")
    if executor is not None:
        from ._parallel import run_grid

        records = run_grid(executor, out, settings, data, todo, device, log)
    else:
        records = _run_serially(out, settings, load, todo, device, log)
    done.update({run_key(r): r for r in records})
    return [done[r] for r in runs]


def _run_serially(out: Path, settings: dict, load: Callable[[int], Dataset], todo: list[tuple],
                  device: torch.device, log) -> list[dict]:
    """The runs ``todo`` one after the other in this process, each record appended as it finishes."""
    loss_fn = nn.CrossEntropyLoss()
    cache: dict[int, tuple] = {}
    records = []
    bar = tqdm(todo, desc="pruning study", disable=not settings["progress"])
    for seed, criterion, n_steps, reg in bar:
        bar.set_postfix_str(f"seed={seed} {criterion} steps={n_steps} reg={reg:g}")
        if seed not in cache:
            ds = load(seed).to(device)
            net = _base_model(settings, ds, seed, out, loss_fn, log, device)
            cache = {seed: (ds, net, metrics(net, loss_fn, ds))}
        record = run_one(settings, *cache[seed], (seed, criterion, n_steps, reg), loss_fn)
        _append_record(out / RECORDS, record)
        records.append(record)
    return records


def run_one(settings: dict, ds: Dataset, net: nn.Module, before: dict, key: tuple, loss_fn) -> dict:
    """One run of the grid: prune ``net`` (left unchanged) as ``key`` = (seed, criterion, steps, reg) says,
    fine-tune the pruned copy, and return its record."""
    seed, criterion, n_steps, reg = key
    start = time.perf_counter()
    result = prune(net, loss_fn, ds, criterion, settings["sparsity"], n_steps, settings["schedule"], reg,
                   settings["samples"], settings["scope"], seed, settings["curvature"], signed=settings["signed"],
                   predict=settings["predict"])
    pruned = metrics(result.model, loss_fn, ds)
    middle = time.perf_counter()
    if settings["finetune_epochs"]:
        finetune(result.model, result.masks, ds, loss_fn=loss_fn, seed=seed, progress=False,
                 **_train_options(settings, settings["finetune_epochs"]))
    return {
        "seed": seed, "criterion": criterion, "steps": n_steps, "reg": reg, "sparsity": result.sparsity,
        "train_loss_before": before["train_loss"], "train_loss_after": pruned["train_loss"],
        "dL": pruned["train_loss"] - before["train_loss"],
        "predicted": {m: sum(h["predicted"].get(m, math.nan) for h in result.history)
                      for m in ("lm", "qm", "obd")},
        "before": before, "pruned": pruned, "finetuned": metrics(result.model, loss_fn, ds),
        "history": result.history,
        "seconds": {"prune": middle - start, "finetune": time.perf_counter() - middle},
    }


def _differences(path: Path, settings: dict) -> str:
    """The settings in which ``settings`` differ from those saved at ``path`` ("" if none),
    e.g. ``sparsity 0.9 there, 0.5 now``."""
    old, new = _comparable(json.loads(path.read_text())), _comparable(settings)
    return ", ".join(f"{k} {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(old.keys() | new.keys())
                     if old.get(k) != new.get(k))


def _comparable(settings: dict) -> dict:
    """Settings as JSON would give them back (tuples as lists), for comparing a resumed study's settings."""
    return json.loads(json.dumps({k: v for k, v in settings.items() if k != "progress"}))


def _checked(s: dict, criteria: list[str]) -> dict:
    """Every study option validated (before any side effect), in canonical types."""
    checked = {
        "model": choice(s["model"], MODELS, "model"),
        "sparsity": fraction(s["sparsity"], "sparsity (fraction of weights removed)"),
        "hidden": int_list(s["hidden"], "hidden (widths of the hidden layers)") if s["hidden"] else [],
        "activation": choice(s["activation"], models.ACTIVATIONS, "activation"),
        "init": choice(s["init"], models.INITS, "init"),
        "optimizer": choice(s["optimizer"], models.OPTIMIZERS, "optimizer"),
        "lr": finite(s["lr"], "lr (learning rate)", low=0.0, low_inclusive=False),
        "momentum": finite(s["momentum"], "momentum", low=0.0),
        "weight_decay": finite(s["weight_decay"], "weight_decay", low=0.0),
        "batch_size": positive_int(s["batch_size"], "batch_size"),
        "train_epochs": positive_int(s["train_epochs"], "train_epochs", minimum=0),
        "finetune_epochs": "auto" if s["finetune_epochs"] == "auto" else
        positive_int(s["finetune_epochs"], "finetune_epochs (or 'auto')", minimum=0),
        "samples": positive_int(s["samples"], "samples (training examples per pruning step)"),
        "schedule": choice(s["schedule"], SCHEDULES, "schedule"),
        "scope": choice(s["scope"], SCOPES, "scope"),
        "curvature": check_curvature(s["curvature"], dense="obs" in criteria),
        "signed": bool(s["signed"]),
        "predict": bool(s["predict"]),
    }
    if checked["optimizer"] == "adam" and checked["momentum"]:
        raise ValueError("momentum applies to optimizer='sgd'; Adam has its own betas")
    return checked


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
