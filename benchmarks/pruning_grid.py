"""The speed target of the MNIST study: the paper's whole MLP grid for one seed, timed end to end (one thread).

    PYTHONPATH=. python benchmarks/pruning_grid.py [--seed 0] [--model mlp]
                                                   [--json benchmarks/pruning_grid_results.json]

Runs ``pruning.study`` on ``mnist5k`` with the paper protocol's defaults (784-300-100-10 tanh MLP, 100 training
epochs, MP / OBD / LM / QM x pi in {1, 14, 140} x the nine lambdas, fine-tuning for the "auto" budget of 800 SGD
steps) in a temporary folder, and reports the wall-clock and CPU time of the whole grid and where it went: training the
base network, pruning (per criterion and number of steps) and fine-tuning, from the records' timings.
``--model lenet5 --steps 1 14`` times the CNN row's grid. ``--records DIR`` runs nothing and reads instead the
per-run timings a study's records hold for ``--seed`` (pruning and fine-tuning; not the training of the base network),
e.g. the CNN grid run in parts: ``--records results/mnist5k_cnn --model lenet5``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="mlp", choices=["mlp", "lenet5"])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 14, 140])
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--records", default=None, help="read the timings of this study's records instead of running")
    args = parser.parse_args()
    import torch

    from losstools import pruning
    from losstools.pruning.summary import select_runs

    torch.set_num_threads(1)
    extra = {"model": "lenet5", "sparsity": pruning.CNN_SPARSITY} if args.model == "lenet5" else {}
    if args.records:
        settings = json.loads((Path(args.records) / "settings.json").read_text())
        records = select_runs(pruning.load_records(args.records), pruning.PAPER_REGS, (args.seed,), args.steps)
        wall = cpu = sum(r["seconds"]["prune"] + r["seconds"]["finetune"] for r in records)
    else:
        with tempfile.TemporaryDirectory() as out:
            wall, cpu = time.perf_counter(), time.process_time()
            records = pruning.study(out, "mnist5k", steps=args.steps, seeds=(args.seed,), progress=False,
                                    log=lambda _: None, **extra)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            settings = json.loads((Path(out) / "settings.json").read_text())
    prune, finetune = defaultdict(float), 0.0
    for r in records:
        prune[f"{r['criterion']} {r['steps']}"] += r["seconds"]["prune"]
        finetune += r["seconds"]["finetune"]
    result = {"model": args.model, "seed": args.seed, "runs": len(records), "steps": args.steps,
              "source": f"records of {args.records} (wall = cpu = their pruning + fine-tuning seconds)"
              if args.records else "run here",
              "regs": list(pruning.PAPER_REGS), "finetune_epochs": settings["finetune_epochs"],
              "wall_s": wall, "cpu_s": cpu, "prune_s": dict(prune), "finetune_s": finetune,
              "train_and_rest_s": wall - sum(prune.values()) - finetune, "torch": torch.__version__}
    took = f"{wall / 60:.1f} min of run time in the records" if args.records else \
        f"{wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU"
    print(f"{args.model} grid, seed {args.seed}: {len(records)} runs in {took} (pruning {sum(prune.values()):.0f} s, "
          f"fine-tuning {finetune:.0f} s, training and the rest {result['train_and_rest_s']:.0f} s)")
    for key, seconds in sorted(prune.items()):
        print(f"  prune {key:>8}: {seconds:6.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
