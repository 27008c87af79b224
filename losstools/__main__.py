"""Command line: ``python -m losstools demo`` (the main job). Run with ``--help`` for the options."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from . import data, models, plotting  # noqa: E402
from .curvature import eigh, hessian  # noqa: E402
from .objective import Objective  # noqa: E402
from .pruning.cli import add_ablations_parser, add_prune_parser, demo_pruning  # noqa: E402


def demo_hessian(args, out: Path, log) -> dict:
    """Train a small tanh MLP on digits, compute its exact Hessian, write figure and summary."""
    ds = data.digits(seed=args.seed).to(dtype=torch.float64)
    sizes = [ds.num_features, *args.hidden, ds.num_classes]
    net = models.mlp(sizes, activation="tanh", seed=args.seed).double()
    log(f"training a {'-'.join(map(str, sizes))} tanh MLP on digits ({len(ds.train[0])} examples, "
        f"{args.epochs} epochs)")
    history = models.train(net, ds, epochs=args.epochs, lr=args.lr, seed=args.seed, progress=not args.no_progress)
    obj = Objective(net, nn.CrossEntropyLoss(), ds.train)
    start = time.perf_counter()
    H = hessian(obj)
    seconds = time.perf_counter() - start
    values, _ = eigh(H)
    boundaries = [s.stop for s in obj.slices().values()][:-1]
    name = f"Hessian of the {'-'.join(map(str, sizes))} MLP"
    fig = plotting.curvature_overview(H, values, boundaries, name=name, labels=list(obj.slices()))
    fig.savefig(out / "hessian.png", dpi=120)
    plotting.loss_history(history, title=f"Training the {'-'.join(map(str, sizes))} tanh MLP on digits (Adam, "
                                         f"lr {args.lr:g})").savefig(out / "training.png", dpi=120)
    g = obj.grad()
    top, bottom = values[:5].tolist(), values[-5:].tolist()
    lines = [
        f"model: tanh MLP {'-'.join(map(str, sizes))} on digits, seed {args.seed}",
        f"parameters P: {obj.num_params}",
        f"train examples N: {obj.num_examples}",
        f"train loss (mean cross-entropy): {obj.loss().item():.6f}",
        f"validation accuracy: {models.accuracy(net, *ds.val):.4f}",
        f"gradient norm: {g.norm().item():.6e}",
        f"exact Hessian: {obj.num_params} x {obj.num_params} in {seconds:.2f} s",
        "top 5 eigenvalues: " + ", ".join(f"{v:.5g}" for v in top),
        "bottom 5 eigenvalues: " + ", ".join(f"{v:.5g}" for v in bottom),
        f"negative eigenvalues: {(values < 0).sum().item()} of {len(values)}",
        f"trace: {H.trace().item():.6g}",
    ]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        log("  " + line)
    return {"net": net, "data": ds, "objective": obj, "hessian": H}


def demo_taylor(args, out: Path, log, base: dict) -> dict:
    """Taylor models of a step on the demo net: loss along the negative gradient, a random and a
    magnitude-pruning direction (50 %), the log-log error plot, and the fitted orders (taylor.txt)."""
    from . import taylor
    from .directions import gradient, pruning, random

    obj, H = base["objective"], base["hessian"]
    full = pruning(obj, 0.5, normalize=None)
    cases = {"gradient": (gradient(obj), 2.0, {}), "random": (random(obj, args.seed), 2.0, {}),
             "pruning": (full / full.norm(), 1.2 * full.norm().item(), {"full pruning step": full.norm().item()})}
    titles = {"gradient": "negative gradient", "random": "random direction", "pruning": "magnitude pruning, 50%"}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    lines = ["Taylor models on the demo net (exact Hessian), unit directions; order = fitted log-log slope of "
             "|model - actual| for 1e-4 <= t <= 0.1"]
    for (name, (d, t_max, marks)), ax in zip(cases.items(), axes):
        along = taylor.profile(obj, d, np.linspace(-t_max, t_max, 201), curvature=H)
        plotting.taylor_profile(along, title=f"{titles[name]}", marks=marks).savefig(out / f"taylor_{name}.png",
                                                                                     dpi=120)
        small = taylor.profile(obj, d, np.geomspace(1e-4, t_max, 50), curvature=H)
        plotting.taylor_error(small, ax=ax, title=f"error of each model: {titles[name]}")
        orders = ", ".join(f"{m} {small.order(m, t_max=0.1):.2f}" for m in small.models)
        lines.append(f"{name:9s} g.d = {small.slope:+.3e}, d.H.d = {small.curvature:.3e}; orders: {orders}")
    fig.savefig(out / "taylor_error.png", dpi=120)
    plt.close("all")
    (out / "taylor.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        log("  " + line)
    return {"lines": lines}


def run_demo(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    log = print
    base = demo_hessian(args, out, log)
    demo_taylor(args, out, log, base)
    demo_pruning(args, out, log, base)
    log(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m losstools", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="train a small MLP on digits and write curvature figures and a summary",
        description="Train a small tanh MLP on the bundled digits data, compute its exact Hessian, and write "
                    "figures (Hessian heatmap and eigenvalue spectrum, training curve) and summary.txt.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--out", default="results", help="output folder (created if missing)")
    demo.add_argument("--hidden", type=int, nargs="+", default=[16], help="hidden layer widths of the MLP")
    demo.add_argument("--epochs", type=int, default=150, help="training epochs (Adam, mini-batches of 128)")
    demo.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    demo.add_argument("--seed", type=int, default=0, help="seed for the data split, initialisation and batches")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(run=run_demo)
    add_prune_parser(commands)
    add_ablations_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: what finished is saved; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
