"""Timings of the notebooks' explorers, one thread: every interaction's redraw (recompute + update the figure in place
+ render the PNG that the Output widget shows), for the explorers of notebooks 01 (Taylor models), 02 (curvature zoo,
estimators' cost), 03 (pruning) and 05 (edge of stability), built on the notebooks' own networks; and a 200-step
loss profile (vmap versus a
Python loop of ``Objective.loss``).

    PYTHONPATH=. python benchmarks/taylor_explorer.py            # --repeat N (default 5)

Wall time is what a user waits; CPU time is the same work without the waiting for a busy machine. The target is a
redraw below 0.5 s on 2 CPU cores. What the browser adds (sending the PNG to JupyterLab) is not included.
"""
import argparse
import time

import numpy as np
import torch
from torch import nn

import losstools as lt
from losstools import curvature as C
from losstools import directions, pruning, spectrum, taylor, widgets


def clock(fn, repeat: int = 5) -> tuple[float, float, float]:
    """Median and maximum wall and median CPU milliseconds of ``fn()`` over ``repeat`` runs (after one warm-up)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return 1000 * float(np.median(wall)), 1000 * float(np.max(wall)), 1000 * float(np.median(cpu))


def interactions(explorer, moves, repeat):
    """Time ``explorer.update()`` after each control move ``(name, value)`` (the observer's redraw, timed again)."""
    rows = []
    for name, value in moves:
        def move(name=name, value=value):
            getattr(explorer, "_runs", {}).clear()     # the pruning explorer's cache: time a first visit
            explorer.controls[name].value = value
            explorer.update()
        rows.append((f"{type(explorer).__name__}: {name} = {value}", clock(move, repeat)))
    return rows


def notebook02():
    """The 2-6-3 MLP of notebook 02 with its snapshots' matrices, and the estimators' cost study."""
    ds = lt.data.spirals(n=300, arms=3, seed=0).to(dtype=torch.float64)
    loss_fn = nn.CrossEntropyLoss()
    net = lt.models.mlp([2, 6, 3], activation="tanh", seed=0).double()
    zoos, done = {}, 0
    for epoch in (0, 10, 40, 150, 600):
        lt.models.train(net, ds.train, epochs=epoch - done, lr=0.03, batch_size=None, progress=False)
        done = epoch
        zoos[epoch] = {"Hessian": C.Hessian(net, loss_fn, ds.train).to_dense(),
                       "GGN": C.GGN(net, loss_fn, ds.train).to_dense(),
                       "true Fisher": C.Fisher(net, loss_fn, ds.train).to_dense(),
                       "empirical Fisher": C.EmpiricalFisher(net, loss_fn, ds.train).to_dense(),
                       "K-FAC": C.kfac(net, loss_fn, ds.train, progress=False).to_dense()}
    boundaries = list(np.cumsum(lt.Objective(net, loss_fn, ds.train).sizes)[:-1])
    study = C.study.cost_accuracy(net, loss_fn, ds.train, budgets=(1, 2, 4, 8, 16, 32, 64), seeds=3)
    budgets = study.pop("budgets")
    return widgets.curvature_zoo_explorer(zoos, boundaries, 150), widgets.cost_accuracy_explorer(study, budgets, 8)


def notebook03():
    ds = lt.data.digits(seed=0)
    net = lt.models.mlp([64, 32, 10], activation="tanh", seed=0)
    pruning.finetune(net, None, ds, epochs=60, lr=3e-3, progress=False)
    return widgets.pruning_explorer(net, nn.CrossEntropyLoss(), ds, samples=300)


def notebook05():
    """Notebook 05's three gradient-descent runs (500 steps, eta 0.1, 0.25, 0.5) and its explorer."""
    X, y = lt.data.digits().train
    obj = lt.Objective(lt.models.mlp([64, 100, 100, 10], activation="tanh", seed=0), spectrum.half_squared_error,
                       spectrum.one_hot_data(X[:500], y[:500], classes=10))
    runs = [spectrum.gradient_descent(obj, eta, steps=500, every=20, lanczos_steps=16, progress=False)
            for eta in (0.1, 0.25, 0.5)]
    return widgets.edge_of_stability_explorer(runs, lr=0.5, step=200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per interaction (after one warm-up)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    taylor_ex = widgets.taylor_explorer(widgets.toy_checkpoints(0))
    obj = taylor_ex._checkpoints["converged"].objective
    H = taylor_ex._checkpoints["converged"].curvatures["hessian"]
    d, steps = directions.gradient(obj), np.linspace(-2, 2, 200)
    rows = [
        ("profile, 200 steps, vmap (4 models)", clock(lambda: taylor.profile(obj, d, steps, curvature=H))),
        ("loss_along, 200 steps, vmap", clock(lambda: taylor.loss_along(obj, d, steps))),
        ("200 x Objective.loss in a loop", clock(lambda: [obj.loss(obj.theta + t * d) for t in steps], 2)),
    ]
    rows += interactions(taylor_ex, [("step_range", 1.0), ("step_range", 8.0), ("direction", "magnitude pruning"),
                                     ("sparsity", 0.8), ("curvature", "GGN"), ("state", "early"),
                                     ("direction", "top Hessian eigenvector"), ("models", ("linear", "quadratic"))],
                         args.repeat)
    zoo, cost = notebook02()
    rows += interactions(zoo, [("epoch", 0), ("epoch", 600)], args.repeat)
    rows += interactions(cost, [("m", 1), ("m", 64)], args.repeat)
    rows += interactions(notebook03(), [("steps", 20), ("sparsity", 0.98), ("reg", 1.0), ("criterion", "obd"),
                                        ("steps", 1)], args.repeat)
    rows += interactions(notebook05(), [("step", 100), ("step", 400), ("eta", 0.1), ("eta", 0.25)], args.repeat)
    print(f"torch threads = {torch.get_num_threads()}, {args.repeat} timed runs each")
    print(f"| {'what':58s} | median wall ms | max wall ms | CPU ms |\n|{'-' * 60}|---:|---:|---:|")
    for what, (wall, worst, cpu) in rows:
        print(f"| {what:58s} | {wall:7.1f} | {worst:7.1f} | {cpu:6.1f} |")


if __name__ == "__main__":
    main()
