"""Exact dense Hessians on CPU, side by side: losstools.hessian against the alternatives a user would pick.

    PYTHONPATH=. python benchmarks/hessian.py            # full run (about 10-20 minutes, needs ~13 GB RAM)
    PYTHONPATH=. python benchmarks/hessian.py --quick    # smoke run on tiny nets (seconds)
    PYTHONPATH=. python benchmarks/hessian.py --cases digits-16 mlp-7434 --methods losstools torch.func.hessian

Cases: the digits MLP 64-h-10 (tanh, the 1 078 training images) at h = 8, 16, 32, 64 (610 ... 4 810
parameters) and a 40-64-64-10 tanh MLP on 1 000 synthetic examples (7 434 parameters); cross-entropy,
float32, parameters at initialisation, one thread (``torch.set_num_threads(1)``).

Every method runs in its own fresh subprocess, so its peak memory is its own: ``peak MB`` is the growth
of the resident set (``ru_maxrss``) over the process's resident set just before the method ran. Times
are the minimum over repeats (one repeat when a run takes over 20 s). ``max|dH|`` is the largest
absolute difference to a float64 reference (batched double backward in float64), relative to max|H|.
``bound`` is the arithmetic bound of the HVP approach: P Hessian-vector products at the FLOPs counted by
``torch.utils.flop_counter`` for one forward-over-reverse HVP, run at this machine's single-thread
matrix-multiply speed (measured here).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import grad, hessian, jacfwd, jacrev, jvp
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import losstools as lt
from losstools.curvature import _columns

CASES = {"digits-8": 8, "digits-16": 16, "digits-32": 32, "digits-64": 64, "mlp-7434": None}
QUICK_CASES = {"quick-digits-4": 4, "quick-mlp": None}
METHODS = ["losstools", "losstools generic HVPs", "torch.func.hessian", "jacfwd(jacrev)", "double-backward loop",
           "is_grads_batched", "curvlinops H @ I"]
COLUMN_CHUNK = 256  # columns of the identity per call for the batched methods (is_grads_batched, curvlinops)


# ----------------------------------------------------------------------------- cases
def make_case(name: str, dtype: torch.dtype = torch.float32) -> lt.Objective:
    """The Objective of a named case (deterministic)."""
    quick = name.startswith("quick")
    if name.endswith("mlp-7434") or name == "quick-mlp":
        sizes, n = ([40, 64, 64, 10], 1000) if not quick else ([8, 6, 6, 3], 50)
        g = torch.Generator().manual_seed(0)
        X = torch.randn(n, sizes[0], generator=g)
        teacher = lt.models.mlp([sizes[0], 32, sizes[-1]], seed=1)
        with torch.no_grad():
            y = teacher(X).argmax(1)
        net = lt.models.mlp(sizes, activation="tanh", seed=0)
        data = (X, y)
    else:
        hidden = (CASES | QUICK_CASES)[name]
        ds = lt.data.digits()
        net = lt.models.mlp([64, hidden, 10], activation="tanh", seed=0)
        data = ds.train if not quick else (ds.train[0][:100], ds.train[1][:100])
    net = net.to(dtype)
    X, y = data
    return lt.Objective(net, nn.CrossEntropyLoss(), (X.to(dtype), y))


# ----------------------------------------------------------------------------- methods
def _loss_fn(obj: lt.Objective):
    X, y = next(obj.batches())  # every case is a single batch
    return lambda t: obj.batch_loss(t, X, y)


def _double_backward(obj: lt.Objective, batched: bool) -> torch.Tensor:
    theta = obj.theta.requires_grad_(True)
    (g,) = torch.autograd.grad(_loss_fn(obj)(theta), theta, create_graph=True)  # the graph is reused below
    P = obj.num_params
    H = torch.empty(P, P, dtype=obj.dtype)
    if not batched:
        e = torch.zeros(P, dtype=obj.dtype)
        for i in range(P):
            e[i] = 1
            H[i] = torch.autograd.grad(g, theta, e, retain_graph=True)[0]
            e[i] = 0
        return H
    for s in range(0, P, COLUMN_CHUNK):
        E = torch.eye(P, dtype=obj.dtype)[s : s + COLUMN_CHUNK]
        H[s : s + len(E)] = torch.autograd.grad(g, theta, E, retain_graph=True, is_grads_batched=True)[0]
    return H


def _curvlinops(obj: lt.Objective) -> torch.Tensor:
    from curvlinops import HessianLinearOperator

    model = obj.model
    params = [p for p in model.parameters() if p.requires_grad]
    op = HessianLinearOperator(model, nn.CrossEntropyLoss(), params, list(obj.batches()), check_deterministic=False)
    P = obj.num_params
    eye = torch.eye(P, dtype=obj.dtype)
    return torch.cat([op @ eye[:, s : s + COLUMN_CHUNK] for s in range(0, P, COLUMN_CHUNK)], 1)


def run_method(method: str, obj: lt.Objective) -> torch.Tensor:
    if method == "losstools":
        return lt.hessian(obj)
    if method == "losstools generic HVPs":
        return _columns.hessian_tensor_blocks(obj, obj.theta, "dense", _columns.auto_chunk(obj, None))
    if method == "torch.func.hessian":
        return hessian(_loss_fn(obj))(obj.theta)
    if method == "jacfwd(jacrev)":
        return jacfwd(jacrev(_loss_fn(obj)))(obj.theta)
    if method == "double-backward loop":
        return _double_backward(obj, batched=False)
    if method == "is_grads_batched":
        return _double_backward(obj, batched=True)
    if method == "curvlinops H @ I":
        return _curvlinops(obj)
    if method == "reference":
        return _double_backward(obj, batched=True)
    raise ValueError(f"unknown method {method!r}")


# ----------------------------------------------------------------------------- one measurement (subprocess)
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(case: str, method: str, repeats: int, reference: str | None, save: str | None) -> dict:
    torch.set_num_threads(1)
    dtype = torch.float64 if method == "reference" else torch.float32
    run_method(method, make_case("quick-mlp", dtype))  # warm-up: lazy imports and first-call set-up
    obj = make_case(case, dtype)
    before = _rss_mb()
    times: list[float] = []
    while len(times) < repeats and sum(times) < 20:
        H = None  # the previous result must not count towards this run's peak
        start = time.perf_counter()
        H = run_method(method, obj)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10 - before  # KiB on Linux
    result = {"time": min(times), "runs": len(times), "peak_mb": peak, "P": obj.num_params, "N": obj.num_examples}
    if save:
        torch.save(H, save)
    if reference:
        ref = torch.load(reference)
        result["err"] = ((H.double() - ref).abs().max() / ref.abs().max()).item()
        result["asym"] = ((H - H.T).abs().max() / H.abs().max()).item()
    return result


def measure(case: str, method: str, repeats: int, reference: str | None = None, save: str | None = None,
            timeout: float | None = None, inline: bool = False) -> dict:
    """Run one method on one case in a fresh subprocess (or in this process if ``inline``: then its peak
    memory is not its own and is not reported); its result, or {'error': ...}."""
    if inline:
        return {**worker(case, method, repeats, reference, save), "peak_mb": None}
    cmd = [sys.executable, __file__, "--worker", case, method, "--repeats", str(repeats)]
    cmd += ["--reference", reference] if reference else []
    cmd += ["--save", save] if save else []
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:100]}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- the arithmetic bound
class _FlopCount(TorchDispatchMode):
    """Counts FLOPs with torch's flop formulas (matrix products); unlike ``FlopCounterMode`` it puts
    no hooks on modules, which clash with ``torch.func.grad``."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(fn) -> int:
    """FLOPs of ``fn()`` (matrix products; elementwise work is not counted)."""
    with _FlopCount() as counter:
        fn()
    return counter.total


def hvp_flops(obj: lt.Objective) -> int:
    """FLOPs of one forward-over-reverse Hessian-vector product."""
    f, v = _loss_fn(obj), torch.randn(obj.num_params, dtype=obj.dtype)
    return count_flops(lambda: jvp(grad(f), (obj.theta,), (v,)))


def matmul_gflops() -> float:
    """Single-thread float32 matrix-multiply speed of this machine (best of a few 1024^3 products)."""
    torch.set_num_threads(1)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(20):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 1024**3 / best / 1e9


# ----------------------------------------------------------------------------- the table
def markdown(rows: list[dict]) -> str:
    """A saved run as a Markdown table: a column per case, a row per method (seconds, peak MB), then
    losstools' speed-ups, its agreement with the float64 reference and the P-HVP bound."""
    cases = list(dict.fromkeys(r["case"] for r in rows))
    res = {c: {r["method"]: r for r in rows if r["case"] == c} for c in cases}
    methods = list(dict.fromkeys(r["method"] for r in rows))

    def cell(r):
        return r.get("error", "?") if "error" in r else f"{r['time']:.3g} s, {r['peak_mb']:,.0f} MB"

    def speedup(c, against):
        times = [r["time"] for m, r in res[c].items() if against(m) and "error" not in r]
        return f"{min(times) / res[c]['losstools']['time']:.1f}x" if times else "-"

    lines = ["| P = | " + " | ".join(f"{res[c]['losstools']['P']:,}" for c in cases) + " |",
             "|---" + "|---:" * len(cases) + "|"]
    lines += [f"| {m} | " + " | ".join(cell(res[c][m]) if m in res[c] else "-" for c in cases) + " |" for m in methods]
    lines.append("| **losstools faster than the best other** | "
                 + " | ".join(speedup(c, lambda m: not m.startswith("losstools")) for c in cases) + " |")
    lines.append("| **losstools faster than torch.func.hessian** | "
                 + " | ".join(speedup(c, lambda m: m == "torch.func.hessian") for c in cases) + " |")
    lines.append("| losstools max abs error / max abs H | "
                 + " | ".join(f"{res[c]['losstools'].get('err', float('nan')):.1e}" for c in cases) + " |")
    speed = max(r.get("matmul_gflops", 0) for r in rows)  # the best speed seen in the run: the fairest bound
    bound = {c: (res[c]["losstools"]["P"] * res[c]["losstools"]["hvp_mflop"] / (speed * 1e3) if speed
                 else res[c]["losstools"]["bound_s"]) for c in cases}
    at = f"{speed:.0f} GFLOP/s" if speed else "peak matmul speed"
    lines.append(f"| P HVPs at {at} (bound) | " + " | ".join(f"{bound[c]:.2f} s" for c in cases) + " |")
    lines.append("| losstools time / bound | "
                 + " | ".join(f"{res[c]['losstools']['time'] / bound[c]:.2f}" for c in cases) + " |")
    return "\n".join(lines)


def summary(results: dict, bound: float) -> str:
    """One line: losstools against the best alternative, torch.func.hessian and the P-HVP bound."""
    ours = results["losstools"]
    others = {m: r for m, r in results.items() if not m.startswith("losstools") and "error" not in r}
    text = f"losstools: {ours['time'] / bound:.2f} x the P-HVP bound ({bound:.2f} s)"
    if others:
        best = min(others, key=lambda m: others[m]["time"])
        text += f"; {others[best]['time'] / ours['time']:.1f} x faster than the best alternative ({best})"
    fh = results.get("torch.func.hessian", {})
    if "error" not in fh and fh and ours.get("peak_mb") and fh.get("peak_mb"):
        text += f"; peak memory {ours['peak_mb'] / fh['peak_mb']:.3f} of torch.func.hessian's"
    return text



def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny nets, one repeat, all in this process (no memory column): a smoke run in seconds")
    parser.add_argument("--cases", nargs="+", choices=[*CASES, *QUICK_CASES], help="cases to run (default: all)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS, help="methods (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per method; the minimum is shown")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before one method is given up")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print a saved run (--json) as a Markdown table")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats, args.reference, args.save)))
        return []
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return []

    cases = args.cases or (list(QUICK_CASES) if args.quick else list(CASES))
    repeats = 1 if args.quick else args.repeats
    speed = matmul_gflops()
    print(f"one thread, float32; matrix-multiply speed {speed:.0f} GFLOP/s; torch {torch.__version__}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            speed = max(speed, matmul_gflops())  # others share the cores: keep the best speed seen
            obj = make_case(case)
            P, flops, own = obj.num_params, hvp_flops(obj), count_flops(lambda: lt.hessian(obj))
            bound = P * flops / (speed * 1e9)
            ref_path = os.path.join(tmp, "reference.pt")
            ref = measure(case, "reference", 1, save=ref_path, timeout=args.timeout, inline=args.quick)
            if "error" in ref:
                print(f"  reference failed: {ref['error']}")
                ref_path = None
            print(f"\n{case}: P = {P:,}, N = {obj.num_examples:,}; one HVP = {flops / 1e6:.1f} MFLOP, "
                  f"P HVPs = {P * flops / 1e9:.1f} GFLOP = {bound:.2f} s at {speed:.0f} GFLOP/s; "
                  f"losstools.hessian does {own / 1e9:.1f} GFLOP")
            print(f"  {'method':<24}{'time s':>9}{'x losstools':>12}{'x func.hess':>12}{'peak MB':>9}"
                  f"{'max|dH|':>10}{'runs':>5}")
            results = {}
            for method in args.methods:
                if method == "curvlinops H @ I" and importlib.util.find_spec("curvlinops") is None:
                    results[method] = {"error": "not installed"}
                    continue
                results[method] = measure(case, method, repeats, ref_path, timeout=args.timeout, inline=args.quick)
            base = results.get("losstools", {}).get("time")
            fh = results.get("torch.func.hessian", {}).get("time")
            for method, r in results.items():
                row = {"case": case, "P": P, "method": method, "bound_s": bound, "hvp_mflop": flops / 1e6,
                       "losstools_gflop": own / 1e9, "matmul_gflops": speed, **r}
                rows.append(row)
                if "error" in r:
                    print(f"  {method:<24}  {r['error']}")
                    continue
                ratio = f"{r['time'] / base:.2f}" if base else "-"
                vs_fh = f"{r['time'] / fh:.2f}" if fh else "-"
                err = f"{r['err']:.1e}" if "err" in r else "-"
                peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
                print(f"  {method:<24}{r['time']:>9.3f}{ratio:>12}{vs_fh:>12}{peak:>9}{err:>10}{r['runs']:>5}")
            if base:
                print("  " + summary(results, bound))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
