"""What "verify, then trust" costs: the structural recording and the float64 probes, against one call (one thread).

    PYTHONPATH=. python benchmarks/probes.py [--repeat 3]

For the problems of ``benchmarks/curvature.py`` (MLP 784-128-10 on 1 000 examples, LeNet on 128 images), each row
times, in ms of CPU time (best of ``--repeat``): the recording of parameter usage (``Objective.structure``), the
probes of a quantity's paths with an empty verdict cache (its first call minus a later call), and a later call of the
quantity itself (verdicts cached). Results go to ``benchmarks/probes_results.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from losstools import _probe
from losstools import curvature as C
from losstools.objective import Objective

torch.set_num_threads(1)


def cpu_ms(fn) -> float:
    start = time.process_time()
    fn()
    return 1e3 * (time.process_time() - start)


def problem(name: str):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from curvature import problem as curvature_problem  # benchmarks/curvature.py: the same problems

    return curvature_problem(name)


QUANTITIES = {
    "GGN diagonal": lambda obj: C.GGN(obj).diagonal(),
    "Hessian-vector product": lambda obj: obj.hvp(obj.theta),
    "GGN-vector product": lambda obj: C.GGN(obj) @ obj.theta,
    "empirical Fisher diagonal": lambda obj: C.EmpiricalFisher(obj).diagonal(),
}


def rows(name: str, repeat: int) -> list[dict]:
    model, loss_fn, X, y = problem(name)
    data = (X, y)
    out = []
    for quantity, fn in QUANTITIES.items():
        first, later, record = [], [], []
        for _ in range(repeat):
            _probe._verdicts.clear()
            obj = Objective(model, loss_fn, data)
            record.append(cpu_ms(lambda: obj.structure))
            first.append(cpu_ms(lambda: fn(obj)))
            later.append(cpu_ms(lambda: fn(obj)))
        probe = min(first) - min(later)
        out.append({"problem": name, "quantity": quantity, "recording_ms": min(record), "probes_ms": probe,
                    "call_ms": min(later), "probe_over_call": probe / min(later)})
        print(f"{name:6s} {quantity:28s} recording {min(record):7.1f} ms  probes {probe:7.1f} ms  "
              f"call {min(later):8.1f} ms  probes/call {probe / min(later):5.2f}", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--problems", nargs="+", default=["mlp", "lenet"], choices=["mlp", "lenet"])
    args = parser.parse_args(argv)
    results = [r for name in args.problems for r in rows(name, args.repeat)]
    path = Path(__file__).with_name("probes_results.json")
    path.write_text(json.dumps({"torch": torch.__version__, "threads": 1, "rows": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
