"""The exact Hessian diagonal of wide tanh MLPs: losstools.hessian_diag against BackPACK's DiagHessian.

    PYTHONPATH=. python benchmarks/hessian_diag.py                # ~4 min, peaks ~12 GB (BackPACK)
    PYTHONPATH=. python benchmarks/hessian_diag.py --quick        # smoke run, seconds
    PYTHONPATH=. python benchmarks/hessian_diag.py --device cuda  # where a GPU exists (not measured here)

Problems (float32, PyTorch's default initialisation, seeded; inputs: the first N standardised digits
images, their labels; cross-entropy, mean over the N examples):
- ``wide``: 64-1000-1000-10 tanh (1 076 010 parameters): two hidden layers, where the structured diagonal
  needs no per-example (O, O) matrix;
- ``deep``: 64-500-500-500-10 tanh (538 010 parameters): three hidden layers, where the residual
  curvature of the lowest layer is formed per example (the structure stops helping there).

Methods, each in its own fresh subprocess (so that its peak memory is its own), one thread:
- ``losstools``: ``lt.hessian_diag`` (low-rank + diagonal residual split, :mod:`losstools.curvature.linear_chain`);
- ``losstools dense M``: the previous algorithm, diag(x^2 @ diag(M_l)) from the full per-example M_l (n, O, O);
- ``BackPACK``: ``DiagHessian`` (needs ~24 GB on ``wide`` at N = 1 000: only run at N = 500 here).

``time`` is one run after a warm-up on a tiny net (seconds of CPU time of the process: on one thread its
compute time, robust to other jobs on the machine); ``peak RSS`` the peak resident
set of the whole process (data and the Python/torch runtime, about 0.3-0.4 GB, included); ``max rel diff`` =
max |d - d_BackPACK| / max |d_BackPACK|. ``flops`` are the matrix-product FLOPs of one losstools run counted with
torch's flop formulas, and ``bound`` = flops at this machine's single-thread matmul speed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

import losstools as lt
from losstools.curvature import linear_chain as structured

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benchmark modules (scripts, not a package)
import _measure  # noqa: E402

PROBLEMS = {"wide": [64, 1000, 1000, 10], "deep": [64, 500, 500, 500, 10], "quick": [64, 40, 40, 10]}
METHODS = ["losstools", "losstools dense M", "BackPACK"]


def _hessian_tools():
    """benchmarks/hessian.py's flop counter and matmul speed (one implementation of each)."""
    import hessian

    return hessian


def make_problem(name: str, n: int, device: str = "cpu"):
    digits = lt.data.digits()
    X, y = digits.train
    reps = -(-n // len(X))
    X, y = X.repeat(reps, 1)[:n].float(), y.repeat(reps)[:n]
    torch.manual_seed(0)
    sizes = PROBLEMS[name]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.Tanh()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers).to(device), nn.CrossEntropyLoss(), X.to(device), y.to(device)


def run(method: str, model, loss_fn, X, y) -> torch.Tensor:
    if method == "losstools":
        return lt.hessian_diag(lt.Objective(model, loss_fn, (X, y)))
    if method == "losstools dense M":
        obj = lt.Objective(model, loss_fn, (X, y))
        chain = structured.linear_chain(obj)
        out = torch.zeros(obj.num_params, device=obj.device)
        for ch in chain.chunks(obj.theta):
            for layer, x, M in zip(chain.layers, ch.xs, ch.M):
                D = (x.square().T @ M.diagonal(dim1=1, dim2=2)).T
                for p in layer.parts:
                    out[p.offset : p.offset + D.shape[0] * p.width].view(D.shape[0], p.width).add_(D[:, p.cols])
        return out
    from backpack import backpack, extend
    from backpack.extensions import DiagHessian

    model, loss_fn = extend(model), extend(loss_fn)
    with backpack(DiagHessian()):
        loss_fn(model(X), y).backward()
    return torch.cat([p.diag_h.reshape(-1) for p in model.parameters()])






def worker(problem: str, n: int, method: str, save: str | None, device: str = "cpu") -> dict:
    torch.set_num_threads(1)
    run(method, *make_problem("quick", 8, device))  # warm-up: lazy imports, first-call set-up
    args = make_problem(problem, n, device)
    before = _measure.rss_mb()
    start = _measure.clock(device)
    d = run(method, *args)
    seconds = _measure.clock(device) - start
    peak = _measure.peak_rss_mb()
    if save:
        torch.save(d.cpu(), save)
    return {"time": seconds, "peak_mb": peak, "base_mb": before, "P": d.numel()}


def measure(problem: str, n: int, method: str, save: str | None, inline: bool = False, device: str = "cpu") -> dict:
    """One method in a fresh subprocess (or in this process if ``inline``: a smoke test; peak RSS is then shared)."""
    if inline:
        return worker(problem, n, method, save, device)
    cmd = [sys.executable, __file__, "--worker", problem, str(n), method, "--device", device]
    cmd += ["--save", save] if save else []
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    return json.loads(lines[-1])


def flops(problem: str, n: int) -> int:
    tools = _hessian_tools()
    model, loss_fn, X, y = make_problem(problem, n)
    obj = lt.Objective(model, loss_fn, (X, y))
    return tools.count_flops(lambda: lt.hessian_diag(obj))


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=3, metavar=("PROBLEM", "N", "METHOD"), help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="tiny problem, seconds")
    ap.add_argument("--inline", action="store_true", help="run the methods in this process (smoke tests)")
    ap.add_argument("--runs", nargs="+", default=["wide:500:all", "wide:1000:losstools,losstools dense M",
                                                   "deep:500:all"],
                    help="PROBLEM:N:METHODS (comma-separated, or 'all')")
    ap.add_argument("--device", default="cpu",
                    help="'cpu' (measured here) or 'cuda' (wall-clock times after synchronising)")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    if args.worker:
        problem, n, method = args.worker
        print(json.dumps(worker(problem, int(n), method, args.save, args.device)))
        return []
    runs = ["quick:200:all"] if args.quick else args.runs
    gflops = _hessian_tools().matmul_gflops()
    print(f"single-thread float32 matmul: {gflops:.0f} GFLOP/s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in runs:
            problem, n, methods = spec.split(":")
            n = int(n)
            methods = METHODS if methods == "all" else methods.split(",")
            saved = {}
            for method in methods:
                saved[method] = os.path.join(tmp, f"{problem}-{n}-{len(saved)}.pt")
                row = {"problem": problem, "N": n, "method": method,
                       **measure(problem, n, method, saved[method], args.inline, args.device)}
                rows.append(row)
                print(row, flush=True)
            if "BackPACK" in saved and os.path.exists(saved["BackPACK"]):
                ref = torch.load(saved["BackPACK"])
                for row in rows[-len(methods):]:
                    if "error" not in row:
                        d = torch.load(saved[row["method"]])
                        row["max_rel_diff"] = float((d - ref).abs().max() / ref.abs().max())
            count = flops(problem, n)
            for row in rows[-len(methods):]:
                row["losstools_gflop"], row["bound_s"] = count / 1e9, count / (gflops * 1e9)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| net | N | method | time (s) | peak RSS (MB) | / BackPACK | max rel diff to BackPACK |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        ref = next((q for q in rows if q["problem"] == r["problem"] and q["N"] == r["N"] and q["method"] == "BackPACK"
                    and "error" not in q), None)
        if "error" in r:
            lines.append(f"| {r['problem']} | {r['N']} | {r['method']} | {r['error']} | | | |")
            continue
        ratio = f"{r['time'] / ref['time']:.3f}" if ref else ""
        diff = f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else ""
        lines.append(f"| {r['problem']} | {r['N']} | {r['method']} | {r['time']:.2f} | {r['peak_mb']:,.0f} | {ratio} "
                     f"| {diff} |")
    bounds = {(r["problem"], r["N"]): (r["losstools_gflop"], r["bound_s"]) for r in rows if "bound_s" in r}
    for (problem, n), (g, s) in bounds.items():
        lines.append(f"\n{problem}, N = {n}: losstools runs {g:.1f} GFLOP of matrix products (bound {s:.2f} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
