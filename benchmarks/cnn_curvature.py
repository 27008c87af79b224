"""Approximate curvature of a ~1M-parameter CNN with BatchNorm (eval mode): losstools vs BackPACK and curvlinops.

    PYTHONPATH=. python benchmarks/cnn_curvature.py                # ~10 min on one CPU thread
    PYTHONPATH=. python benchmarks/cnn_curvature.py --quick        # tiny CNN, batch 16: a smoke run
    PYTHONPATH=. python benchmarks/cnn_curvature.py --device cuda  # where a GPU exists (not measured here)

The net: 28x28x1 inputs, four 3x3 convolutions (32, 64, 128, 128 channels, padding 1) each followed by
BatchNorm2d and ReLU, max-pooling after the 1st, 2nd and 4th, then Linear 1152-640, ReLU, Linear 640-10:
985 290 parameters, of which 984 586 in the convolutions and Linear layers. BatchNorm in eval mode
(running statistics randomised, seeded), cross-entropy, one batch of 256 random images (seeded),
float32, one thread. The curvature is taken w.r.t. the Conv2d / Linear parameters (every competitor the
same; BatchNorm's affine parameters are held fixed: K-FAC and the per-layer diagonals are defined per
Conv/Linear layer).

Each (quantity, method) runs in its own fresh subprocess: a warm-up of the same call on a batch of 8,
then one timed call (``time.process_time``: CPU time of the process, on one thread its compute time,
robust to other jobs on the machine). ``peak RSS`` is the process's peak resident set, runtime
included (a bare process with torch and the model: about 0.4 GB). Nothing here forms a (P, P) matrix:
memory grows with P (vectors, Lanczos bases) and with the batch's activations, never with P^2.

- GGN / Fisher diagonals: ``diag_ggn`` (exact; MC with one sampled label), ``diag_fisher`` (empirical)
  vs BackPACK's DiagGGNExact / DiagGGNMC / SumGradSquared;
- K-FAC: ``kfac`` (exact type-2 and MC) vs BackPACK KFLR / KFAC and curvlinops' KFACLinearOperator;
- top 5 Hessian eigenvalues: ``lanczos(H, k=5, tol=1e-3)`` vs scipy's ``eigsh(k=5, which="LA", tol=1e-3)``
  on curvlinops' HessianLinearOperator (what a curvlinops user would run);
- trace: ``hutchpp_trace(H, 30)`` vs ``curvlinops.hutchpp_trace(H, 30)``;
- spectral density: ``spectral_density(H, 1 probe, 30 steps)`` vs curvlinops'
  ``lanczos_approximate_spectrum(H, ncv=30)`` given the same spectrum boundaries (its own
  boundary estimate would add eigsh runs).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from losstools import curvature as C

warnings.filterwarnings("ignore", message="Full backward hook")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benchmark modules (scripts, not a package)
import _measure  # noqa: E402

QUANTITIES = {  # quantity -> competitors
    "GGN diagonal, exact": ["losstools", "BackPACK"],
    "Fisher diagonal, MC (1 sample)": ["losstools", "BackPACK"],
    "empirical Fisher diagonal": ["losstools", "BackPACK"],
    "K-FAC, exact (type-2)": ["losstools", "BackPACK", "curvlinops"],
    "K-FAC, MC (1 sample)": ["losstools", "BackPACK", "curvlinops"],
    "top 5 Hessian eigenvalues": ["losstools", "curvlinops"],
    "Hessian trace (Hutch++, 30 products)": ["losstools", "curvlinops"],
    "spectral density (SLQ, 30 steps)": ["losstools", "curvlinops"],
}


def cnn(quick: bool = False) -> nn.Sequential:
    """The benchmark CNN (module docstring) in eval mode with randomised BatchNorm statistics, seeded."""
    torch.manual_seed(0)
    widths = [1, 4, 4, 8, 8] if quick else [1, 32, 64, 128, 128]
    hidden = 16 if quick else 640
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
        if i != 2:
            layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(widths[-1] * 9, hidden), nn.ReLU(), nn.Linear(hidden, 10)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            for p in m.parameters():
                p.requires_grad_(False)
    return model.eval()


def make_problem(quick: bool, batch: int, device: str):
    model = cnn(quick).to(device)
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return model, nn.CrossEntropyLoss(), X.to(device), y.to(device), names


def run(quantity: str, method: str, model, loss_fn, X, y, names, extra: dict):
    """One computation; returns a tensor (or tensors) to compare across methods."""
    data, params = (X, y), [p for p in model.parameters() if p.requires_grad]
    flat = lambda d: torch.cat([t.reshape(-1) for t in d.values()])  # noqa: E731
    if method == "losstools":
        H = lambda: C.Hessian(model, loss_fn, data, params=names)  # noqa: E731
        if quantity == "GGN diagonal, exact":
            return flat(C.diag_ggn(model, loss_fn, data, params=names))
        if quantity.startswith("Fisher diagonal, MC"):
            return flat(C.diag_ggn(model, loss_fn, data, mc_samples=1, params=names))
        if quantity == "empirical Fisher diagonal":
            return flat(C.diag_fisher(model, loss_fn, data, params=names))
        if quantity.startswith("K-FAC"):
            K = C.kfac(model, loss_fn, data, kind="exact" if "exact" in quantity else "mc", params=names)
            return [t for A, G in K.factors.values() for t in (A, G)]
        if quantity == "top 5 Hessian eigenvalues":
            op = H()
            values = C.lanczos(op, k=5, tol=1e-3)[0]
            return {"values": values, "products": op.matvecs}
        if quantity.startswith("Hessian trace"):
            return C.hutchpp_trace(H(), 30, block=6)
        if quantity.startswith("spectral density"):
            density = C.spectral_density(H(), num_probes=1, num_steps=30, block=1)
            return density.nodes
    if method == "BackPACK":
        from backpack import backpack, extend
        from backpack.extensions import KFAC, KFLR, DiagGGNExact, DiagGGNMC, SumGradSquared

        ext, attr = {"GGN diagonal, exact": (DiagGGNExact, "diag_ggn_exact"),
                     "Fisher diagonal, MC (1 sample)": (DiagGGNMC, "diag_ggn_mc"),
                     "empirical Fisher diagonal": (SumGradSquared, "sum_grad_squared"),
                     "K-FAC, exact (type-2)": (KFLR, "kflr"), "K-FAC, MC (1 sample)": (KFAC, "kfac")}[quantity]
        net, lossb = extend(model), extend(loss_fn)
        with backpack(ext()):
            lossb(net(X), y).backward()
        if quantity.startswith("K-FAC"):
            return [t for p in params if p.dim() > 1 for t in getattr(p, attr)]
        scale = len(X) if attr == "sum_grad_squared" else 1.0  # BackPACK: squares of the mean's per-example terms
        return torch.cat([getattr(p, attr).reshape(-1) * scale for p in params])
    import curvlinops
    from scipy.sparse.linalg import eigsh

    if quantity.startswith("K-FAC"):
        K = curvlinops.KFACLinearOperator(model, loss_fn, params, [data], check_deterministic=False,
                                          fisher_type="type-2" if "exact" in quantity else "mc",
                                          separate_weight_and_bias=False)
        K.compute_kronecker_factors()
        return [t for m in K._input_covariances for t in (K._input_covariances[m], K._gradient_covariances[m])]
    H = curvlinops.HessianLinearOperator(model, loss_fn, params, [data], check_deterministic=False)
    if quantity == "top 5 Hessian eigenvalues":
        count = [0]
        scipy_op = H.to_scipy()
        matvec = scipy_op.matvec

        def counted(v):
            count[0] += 1
            return matvec(v)

        from scipy.sparse.linalg import LinearOperator

        op = LinearOperator(scipy_op.shape, matvec=counted, dtype=scipy_op.dtype)
        values = eigsh(op, k=5, which="LA", tol=1e-3, return_eigenvectors=False)
        return {"values": torch.as_tensor(sorted(values, reverse=True)), "products": count[0]}
    if quantity.startswith("Hessian trace"):
        return curvlinops.hutchpp_trace(H, 30)
    grid, density = curvlinops.lanczos_approximate_spectrum(H, ncv=30, boundaries=extra["boundaries"])
    return density






def worker(quantity: str, method: str, quick: bool, batch: int, device: str, save: str | None, extra: dict) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, loss_fn, X, y, names = make_problem(quick, batch, device)
    run(quantity, method, *make_problem(True, 8, device), extra)  # warm-up: lazy imports, first calls
    base = _measure.rss_mb()
    start = _measure.clock(device)
    result = run(quantity, method, model, loss_fn, X, y, names, extra)
    seconds = _measure.clock(device) - start
    if save:
        torch.save(result, save)
    return {"time": seconds, "peak_mb": _measure.peak_rss_mb(), "base_mb": base,
            "P": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def measure(quantity, method, args, save, extra) -> dict:
    """One (quantity, method) in a fresh subprocess (or in this process with ``--inline``: a smoke test)."""
    if args.inline:
        try:
            return worker(quantity, method, args.quick, args.batch, args.device, save, extra)
        except NotImplementedError as err:
            return {"error": f"NotImplementedError: {err}"[:160]}
    cmd = [sys.executable, __file__, "--worker", quantity, method, "--batch", str(args.batch), "--device", args.device,
           "--save", save, "--extra", json.dumps(extra)] + (["--quick"] if args.quick else [])
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(lines[-1])


def relative(ours, theirs) -> float:
    if isinstance(ours, list):
        ours, theirs = torch.cat([t.reshape(-1) for t in ours]), torch.cat([t.reshape(-1) for t in theirs])
    return float((ours.double() - theirs.double()).abs().max() / theirs.double().abs().max())


def difference(quantity: str, ours, theirs) -> float | None:
    """max relative difference of an exact quantity (diagonals, K-FAC factors; the top eigenvalues to the
    solvers' tolerance) between losstools and a competitor; None for random estimates or missing results."""
    if ours is None or theirs is None or "MC" in quantity or quantity.startswith(("Hessian trace", "spectral")):
        return None
    if quantity == "top 5 Hessian eigenvalues":
        return relative(ours["values"].double(), theirs["values"].double())
    return relative(ours, theirs)


def compare(quantity: str, results: dict) -> str:
    """How the methods' results relate (exact quantities: max relative difference; estimates: their values)."""
    ours = results.get("losstools")
    if ours is None:
        return ""
    if quantity == "top 5 Hessian eigenvalues":
        cells = [f"{m}: " + ", ".join(f"{v:.4g}" for v in r["values"].tolist()) + f" ({r['products']} products)"
                 for m, r in results.items()]
        return "; ".join(cells)
    if quantity.startswith("Hessian trace"):
        return "; ".join(f"{m}: {float(r):.4g}" for m, r in results.items())
    if quantity.startswith("spectral density"):
        return f"losstools Ritz values in [{float(ours.min()):.3g}, {float(ours.max()):.3g}]"
    cells = []
    for m, r in results.items():
        if m != "losstools" and "MC" not in quantity:
            cells.append(f"max rel diff to {m} {relative(ours, r):.1e}")
    return "; ".join(cells) or "(different random draws)"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=2, metavar=("QUANTITY", "METHOD"), help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    ap.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="a tiny CNN (seconds)")
    ap.add_argument("--inline", action="store_true", help="run the methods in this process (smoke tests)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu", help="'cpu' (measured here) or 'cuda'")
    ap.add_argument("--quantities", nargs="+", default=list(QUANTITIES), choices=list(QUANTITIES))
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.quick, args.batch, args.device, args.save, json.loads(args.extra))))
        return []
    torch.set_num_threads(1)
    model, loss_fn, X, y, names = make_problem(args.quick, args.batch, args.device)
    total = sum(p.numel() for p in model.parameters())
    P = sum(p.numel() for n, p in model.named_parameters() if n in names)
    print(f"CNN: {total:,} parameters ({P:,} in Conv2d/Linear), batch {args.batch}, {args.device}, one thread")
    extra = {}
    if any(q.startswith("spectral") for q in args.quantities):  # common boundaries for curvlinops' density
        H = C.Hessian(model, loss_fn, (X, y), params=names)
        top = float(C.lanczos(H, k=1, tol=1e-2, progress=False)[0][0])
        extra["boundaries"] = [-top, top]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for quantity in args.quantities:
            results = {}
            for method in QUANTITIES[quantity]:
                save = os.path.join(tmp, f"{len(rows)}.pt")
                row = {"quantity": quantity, "method": method, **measure(quantity, method, args, save, extra)}
                if "error" not in row:
                    results[method] = torch.load(save, weights_only=False)
                rows.append(row)
                print(row, flush=True)
            note = compare(quantity, results)
            for row in rows[-len(QUANTITIES[quantity]):]:
                row["agreement"] = note
                row["diff"] = difference(quantity, results.get("losstools"), results.get(row["method"]))
    table = markdown(rows)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| quantity | losstools s (peak RSS GB) | BackPACK s (GB) | curvlinops s (GB) | / BackPACK | / curvlinops "
             "| agreement |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for quantity in dict.fromkeys(r["quantity"] for r in rows):
        by = {r["method"]: r for r in rows if r["quantity"] == quantity}

        def cell(m):
            r = by.get(m)
            if r is None:
                return "—"
            if "error" in r:
                return "not supported" if "NotImplementedError" in r["error"] else r["error"][:40]
            return f"{r['time']:.2f} ({r['peak_mb'] / 1024:.2f})"

        def ratio(m):
            ours, other = by.get("losstools"), by.get(m)
            if not ours or not other or "error" in ours or "error" in other:
                return "—"
            return f"{ours['time'] / other['time']:.2f}"

        agreement = next(iter(by.values())).get("agreement", "")
        lines.append(f"| {quantity} | {cell('losstools')} | {cell('BackPACK')} | {cell('curvlinops')} | "
                     f"{ratio('BackPACK')} | {ratio('curvlinops')} | {agreement} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
