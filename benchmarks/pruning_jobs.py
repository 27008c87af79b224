"""The pruning study on several worker processes: the MLP mnist5k grid seed on --jobs 1 then --jobs 2, and
the LeNet grid's makespan on W workers computed from the runs' recorded seconds.

    PYTHONPATH=. python benchmarks/pruning_jobs.py --mlp                    # ~10 min on 2 idle cores
    PYTHONPATH=. python benchmarks/pruning_jobs.py --lenet-steps 1          # LeNet seed 0, 1-step runs, --jobs 2
    PYTHONPATH=. python benchmarks/pruning_jobs.py                          # only the makespans (seconds)

``--mlp`` runs ``pruning.study`` on mnist5k with the paper protocol (784-300-100-10 tanh MLP, MP/OBD/LM/QM x
{1, 14, 140} steps x nine lambdas: 82 runs plus the base network) twice, one after the other, in fresh folders:
in this process on one thread (``--jobs 1``) and on a pool of 2 spawned processes of one thread each
(``--jobs 2``); it reports both wall times, their ratio and whether the records are identical (all fields but
``seconds``). ``--lenet-steps S...`` runs the LeNet grid's runs with those numbers of steps for seed 0 on
``--jobs 2`` (base network included, timed on its own) and sets their wall time beside the sum of the same runs'
seconds recorded by the serial study in docs/mnist5k/cnn.json. The makespans on W workers are a longest-first
list schedule of the five-seed LeNet grid's 410 recorded run times (pruning + fine-tuning; the five base
networks, trained first and in parallel, are not in the records and not counted), beside the lower bound
max(longest run, total / W). The load average (``uptime``) before and after each timing is kept in the JSON.
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent


def load() -> list[float]:
    """The 1-, 5- and 15-minute load averages of this machine."""
    return [round(x, 2) for x in os.getloadavg()]


def comparable(records: list[dict]) -> list[str]:
    return sorted(json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True) for r in records)


def timed_study(jobs: int, **options) -> dict:
    """One study in a fresh folder on ``jobs`` workers (1: in this process): wall time, load, records."""
    from losstools import pruning
    from losstools.pruning._parallel import executor_for

    with tempfile.TemporaryDirectory() as out:
        before, start = load(), time.perf_counter()
        with executor_for(jobs, None) as executor:
            records = pruning.study(out, progress=False, log=lambda _: None, executor=executor, **options)
        return {"jobs": jobs, "wall_s": time.perf_counter() - start, "load_before": before, "load_after": load(),
                "runs": len(records), "records": records}


def mlp() -> dict:
    serial, pool = timed_study(1, data="mnist5k", seeds=(0,)), timed_study(2, data="mnist5k", seeds=(0,))
    same = comparable(serial.pop("records")) == comparable(pool.pop("records"))
    ratio = pool["wall_s"] / serial["wall_s"]
    print(f"MLP mnist5k grid seed 0: --jobs 1 {serial['wall_s']:.0f} s, --jobs 2 {pool['wall_s']:.0f} s, "
          f"ratio {ratio:.2f} (target <= 0.6), identical records: {same}; load {serial['load_before']} -> "
          f"{pool['load_after']}")
    return {"jobs1": serial, "jobs2": pool, "ratio": ratio, "identical_records": same}


def recorded_cnn() -> list[dict]:
    return json.loads((HERE.parent / "docs" / "mnist5k" / "cnn.json").read_text())["runs"]


def seconds(run: dict) -> float:
    return run["seconds"]["prune"] + run["seconds"]["finetune"]


def makespan(durations: list[float], workers: int) -> float:
    """Longest-first list scheduling: each run, longest first, to the worker that is free first."""
    free = [0.0] * workers
    for d in sorted(durations, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def makespans(workers=(1, 2, 8, 32)) -> dict:
    runs = recorded_cnn()
    durations = [seconds(r) for r in runs]
    total, longest = sum(durations), max(durations)
    out = {"runs": len(runs), "total_s": total, "longest_run_s": longest,
           "longest_run": {k: runs[durations.index(longest)][k] for k in ("seed", "criterion", "steps", "reg")}}
    for w in workers:
        out[f"workers_{w}"] = {"makespan_s": makespan(durations, w), "lower_bound_s": max(longest, total / w)}
        print(f"LeNet grid (5 seeds, {len(runs)} runs) on {w:2d} workers: {makespan(durations, w) / 60:6.1f} min "
              f"(lower bound {max(longest, total / w) / 60:.1f} min)")
    return out


def lenet(steps: list[int]) -> dict:
    from losstools import pruning

    options = {"data": "mnist5k", "model": "lenet5", "sparsity": pruning.CNN_SPARSITY, "seeds": (0,), "steps": steps}
    with tempfile.TemporaryDirectory() as out:
        from losstools.pruning._parallel import executor_for

        start, before = time.perf_counter(), load()
        with executor_for(2, None) as executor:  # the base network alone first: timed on its own
            pruning.study(out, **{**options, "criteria": ("mp",)}, progress=False, log=lambda _: None,
                          executor=executor)
        base = time.perf_counter() - start
        start = time.perf_counter()
        with executor_for(2, None) as executor:
            records = pruning.study(out, **options, progress=False, log=lambda _: None, executor=executor)
        wall = time.perf_counter() - start
    recorded = {(r["criterion"], r["steps"], r["reg"]): r for r in recorded_cnn() if r["seed"] == 0}
    keys = [(r["criterion"], r["steps"], r["reg"]) for r in records if r["criterion"] != "mp"]
    serial = sum(seconds(recorded[k]) for k in keys)
    worker = sum(seconds(r) for r in records if r["criterion"] != "mp")
    result = {"steps": steps, "runs": len(keys), "base_and_mp_s": base, "wall_jobs2_s": wall,
              "recorded_serial_s": serial, "ratio_to_recorded_serial": wall / serial,
              "sum_of_worker_run_s": worker, "load_before": before, "load_after": load()}
    print(f"LeNet seed 0, steps {steps}: {len(keys)} runs on --jobs 2 in {wall:.0f} s against {serial:.0f} s recorded "
          f"serially (ratio {wall / serial:.2f}; the runs' own seconds on the workers sum to {worker:.0f} s); base "
          f"network + MP {base:.0f} s; load {before} -> {result['load_after']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mlp", action="store_true", help="time the MLP grid seed on --jobs 1 then --jobs 2")
    parser.add_argument("--lenet-steps", type=int, nargs="+", default=None,
                        help="time LeNet seed 0's runs with these numbers of steps on --jobs 2")
    parser.add_argument("--json", default=str(HERE / "pruning_jobs_results.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    path = Path(args.json)
    result = json.loads(path.read_text()) if path.exists() else {}
    result.update({"torch": torch.__version__, "cpus": os.cpu_count(), "makespan_lenet": makespans()})
    if args.mlp:
        result["mlp"] = mlp()
    if args.lenet_steps:
        result["lenet_measured"] = lenet(args.lenet_steps)
    path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
