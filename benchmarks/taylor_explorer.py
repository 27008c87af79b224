"""Timings of the Taylor tools, one thread: a 200-step loss profile (vmap versus a Python loop of
``Objective.loss``) and one redraw of the notebook-01 explorer per control (profile + figure + PNG).

    PYTHONPATH=. python benchmarks/taylor_explorer.py

Wall time is what a user waits; CPU time is the same work without the waiting for a busy machine.
"""
import time

import numpy as np
import torch

from losstools import directions, taylor, widgets


def clock(fn, repeat: int = 5) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn()`` over ``repeat`` runs (after one warm-up)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return 1000 * float(np.median(wall)), 1000 * float(np.median(cpu))


def main() -> None:
    torch.set_num_threads(1)
    explorer = widgets.taylor_explorer()
    obj = explorer._checkpoints["converged"].objective
    H = explorer._checkpoints["converged"].curvatures["hessian"]
    d, steps = directions.gradient(obj), np.linspace(-2, 2, 200)
    rows = [
        ("profile, 200 steps, vmap (4 models)", clock(lambda: taylor.profile(obj, d, steps, curvature=H))),
        ("loss_along, 200 steps, vmap", clock(lambda: taylor.loss_along(obj, d, steps))),
        ("200 x Objective.loss in a loop", clock(lambda: [obj.loss(obj.theta + t * d) for t in steps], 2)),
    ]
    c = explorer.controls
    interactions = [("step_range", 1.0), ("step_range", 3.0), ("direction", "magnitude pruning"),
                    ("sparsity", 0.8), ("curvature", "GGN"), ("state", "early"),
                    ("direction", "top Hessian eigenvector"), ("models", ("linear", "quadratic"))]
    for name, value in interactions:
        def move(name=name, value=value):
            c[name].value = value
            explorer.update()                    # the same redraw the observer just did, timed again
        rows.append((f"explorer redraw: {name} = {value}", clock(move, 3)))
    print(f"P = {obj.num_params}, N = {obj.num_examples}, torch threads = {torch.get_num_threads()}")
    print(f"| {'what':52s} | wall ms | CPU ms |\n|{'-' * 54}|---------|--------|")
    for what, (wall, cpu) in rows:
        print(f"| {what:52s} | {wall:7.1f} | {cpu:6.1f} |")


if __name__ == "__main__":
    main()
