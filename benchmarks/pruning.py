"""Where the time of a pruning step goes, before and after the speed work of issue 12 (one run, interleaved).

The paper's MLP 784-300-100-10 (tanh, Kaiming init, SGD, 20 epochs here) on mnist5k, pruned to
kappa = 0.98847 in 14 steps with 1000 samples per step (``--model lenet5``: the CNN row's LeNet-5, tanh,
kappa = 0.956), once per criterion, by two versions of ``losstools.pruning.prune``, each in its own
subprocess (same trained weights, one thread):

- ``before``: the code given by ``--old`` (a copy of an earlier losstools, e.g. ``git archive 076e4c6
  losstools | tar -x -C /tmp/old``) with its study's setting ``predict=True`` (every step computed the
  gradient and the GGN diagonal whatever the criterion, for the predictions of all three loss models);
- ``after``: this checkout with the paper protocol's ``predict=False`` (only the statistics the
  criterion uses) and the ranking that sorts only the weights still alive.

Each step's time is split into gradient, curvature diagonal, ranking and mask selection, loss
evaluations and the rest, by wrapping the functions the loop calls. The versions alternate, and
every cell is the median over ``--repeats`` runs. Usage::

    PYTHONPATH=. python benchmarks/pruning.py --old /tmp/old --repeats 3 --json benchmarks/pruning_results.json
    PYTHONPATH=. python benchmarks/pruning.py --model lenet5 --old /tmp/old --old-predict 0 \
        --json benchmarks/pruning_cnn_results.json

``--old-predict 0`` runs the earlier code with ``predict=False`` too (for a version that already had it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARTS = {  # part of a step: the functions of pruning.loop timed for it (whichever the version has)
    "gradient": ("gradient", "loss_and_gradient"),
    "curvature_diagonal": ("curvature_diagonal",),
    "select": ("select",),
    "_loss": ("_loss",),
}
SPARSITY = {"mlp": 0.98847, "lenet5": 0.956}


def _model(name: str, **init):
    """The benchmark's network (``init``: e.g. init="kaiming", for training; the workers load trained weights)."""
    from losstools import models

    if name == "lenet5":
        return models.lenet5(activation="tanh", seed=0)
    return models.mlp([784, 300, 100, 10], seed=0, **init)


def worker(state_path: str, criterion: str, predict: bool, steps: int, model: str = "mlp") -> dict:
    import torch
    from torch import nn

    import losstools
    from losstools.pruning import loop

    torch.set_num_threads(1)
    saved = torch.load(state_path)
    net = _model(model)
    net.load_state_dict(saved["net"])
    ds = saved["train"]  # an (X, y) pair: the earlier version may not have data.mnist5k
    spent = {part: 0.0 for part in PARTS}
    for part, names in PARTS.items():
        for name in (n for n in names if hasattr(loop, n)):
            original = getattr(loop, name)

            def timed(*args, _original=original, _part=part, **kwargs):
                start = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    spent[_part] += time.perf_counter() - start

            setattr(loop, name, timed)
    start = time.perf_counter()
    loop.prune(net, nn.CrossEntropyLoss(), ds, criterion, SPARSITY[model], steps, "exponential", 0.0, 1000, "global",
               0, "ggn", predict=predict)
    total = time.perf_counter() - start
    out = {part: 1000 * spent[part] / steps for part in PARTS}
    out["other"] = 1000 * total / steps - sum(out.values())
    out["total"] = 1000 * total / steps
    out["path"] = os.path.dirname(os.path.dirname(losstools.__file__))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="folder holding the earlier losstools package to compare with")
    parser.add_argument("--old-predict", choices=["0", "1"], default="1",
                        help="predict= of the earlier version's runs (1: every statistic in every step, as before "
                             "issue 12)")
    parser.add_argument("--model", choices=list(SPARSITY), default="mlp")
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--worker", nargs=4, metavar=("STATE", "CRITERION", "PREDICT", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        state, criterion, predict, steps = args.worker
        print(json.dumps(worker(state, criterion, predict == "1", int(steps), args.model)))
        return
    import torch

    from losstools import data, models

    torch.set_num_threads(1)
    here = str(Path(__file__).resolve().parent.parent)
    ds = data.mnist5k(seed=0, flatten=args.model == "mlp")
    net = _model(args.model, init="kaiming")
    models.train(net, ds, epochs=args.epochs, lr=0.01, batch_size=100, optimizer="sgd", momentum=0.9,
                 weight_decay=5e-4, keep_best=True, progress=False)
    versions = {"before": (args.old, args.old_predict), "after": (here, "0")}
    results: dict = {v: {} for v in versions}
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "net.pt")
        torch.save({"net": net.state_dict(), "train": ds.train}, state)
        for _ in range(args.repeats):
            for criterion in ("mp", "lm", "qm", "obd"):
                for version, (path, predict) in versions.items():
                    env = {**os.environ, "PYTHONPATH": path}
                    line = subprocess.run([sys.executable, __file__, "--old", args.old, "--model", args.model,
                                           "--worker", state, criterion, predict, str(args.steps)], env=env,
                                          capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                    row = json.loads(line)
                    assert os.path.samefile(row.pop("path"), path), "the subprocess imported the wrong losstools"
                    results[version].setdefault(criterion, []).append(row)
    table = {v: {c: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for c, rows in per.items()}
             for v, per in results.items()}
    net_name = "LeNet-5 (tanh)" if args.model == "lenet5" else "MLP 784-300-100-10"
    print(f"ms per pruning step (median of {args.repeats}), {net_name} on mnist5k, {args.steps} steps, 1000 samples, "
          "one thread")
    print("| criterion | version | gradient | curvature diagonal | ranking + selection | loss evaluations | other "
          "| total |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for criterion in ("mp", "lm", "qm", "obd"):
        for version in versions:
            r = table[version][criterion]
            print(f"| {criterion} | {version} | {r['gradient']:.1f} | {r['curvature_diagonal']:.1f} | "
                  f"{r['select']:.1f} | {r['_loss']:.1f} | {r['other']:.1f} | {r['total']:.1f} |")
        ratio = table['after'][criterion]['total'] / table['before'][criterion]['total']
        print(f"| {criterion} | after / before | | | | | | {ratio:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "steps": args.steps, "repeats": args.repeats,
                                               "old_predict": args.old_predict, "ms_per_step": table,
                                               "raw": results}, indent=1))


if __name__ == "__main__":
    main()
