"""Approximate curvature, side by side in one run: losstools vs BackPACK and curvlinops (one thread).

    PYTHONPATH=. python benchmarks/curvature.py [--repeat 5] [--problems mlp lenet]

Problems (float32, random data and initialisation, seeded):
- ``mlp``: 784-128-10, tanh, 1 000 examples, cross-entropy (101 770 parameters);
- ``lenet``: LeNet-like CNN on 3x32x32 (conv 6@5x5, max-pool, conv 16@5x5, max-pool, 120, 84, 10; ReLU),
  a batch of 128, cross-entropy (62 006 parameters).
Each time is the best of ``--repeat`` runs after a warm-up, in ms of CPU time of this process
(``time.process_time``: on one thread it is the compute time, robust to other jobs sharing the machine). Ratios < 1 mean losstools is faster.
"Agreement" is max |ours - theirs| / max |theirs| (for estimators: the estimate's relative error vs the
exact BackPACK diagonal). The second table counts Hessian-vector products (HVPs) for the top eigenvalue
and the trace against PyHessian's algorithms (power iteration; Hutchinson with its stopping rule,
tolerance 1e-3, at most 100 iterations, re-implemented here: PyHessian is not a pip-installable package).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch
from torch import nn

from losstools import curvature as C

warnings.filterwarnings("ignore", message="Full backward hook")


def timed(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best * 1e3


def problem(name: str):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if name == "mlp":
        model = nn.Sequential(nn.Linear(784, 128), nn.Tanh(), nn.Linear(128, 10))
        X = torch.randn(1000, 784, generator=g)
    else:
        model = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                              nn.ReLU(), nn.Linear(84, 10))
        X = torch.randn(128, 3, 32, 32, generator=g)
    return model, nn.CrossEntropyLoss(), X, torch.randint(0, 10, (len(X),), generator=g)


def relative(ours, theirs) -> float:
    ours = torch.cat([t.reshape(-1) for t in ours]) if isinstance(ours, (list, tuple)) else ours.reshape(-1)
    theirs = torch.cat([t.reshape(-1) for t in theirs]) if isinstance(theirs, (list, tuple)) else theirs.reshape(-1)
    return float((ours - theirs).abs().max() / theirs.abs().max())


def speed_table(name: str, repeat: int, probes: int) -> list[dict]:
    model, loss_fn, X, y = problem(name)
    data = (X, y)
    params = list(model.parameters())
    rows = []

    def row(quantity, ours, backpack=None, curvlinops=None, agreement=""):
        rows.append({"problem": name, "quantity": quantity, "ours": ours, "backpack": backpack,
                     "curvlinops": curvlinops, "agreement": agreement})

    def gradient():
        model.zero_grad()
        loss_fn(model(X), y).backward()

    grad_ms = timed(gradient, repeat)
    ours_ggn = C.diag_ggn(model, loss_fn, data)
    t_ggn = timed(lambda: C.diag_ggn(model, loss_fn, data), repeat)
    t_mc = timed(lambda: C.diag_ggn(model, loss_fn, data, mc_samples=1), repeat)
    ours_ef = C.diag_fisher(model, loss_fn, data)
    t_ef = timed(lambda: C.diag_fisher(model, loss_fn, data), repeat)
    hessian = C.HessianOperator(model, loss_fn, data)
    ours_hd = C.hutchinson_diag(hessian, probes, seed=0, progress=False)
    t_hd = timed(lambda: C.hutchinson_diag(hessian, probes, seed=0, progress=False), max(1, repeat // 3))
    t_kfac = timed(lambda: C.kfac(model, loss_fn, data, progress=False), repeat)
    t_kfac_mc = timed(lambda: C.kfac(model, loss_fn, data, kind="mc", progress=False), repeat)
    v = torch.randn(hessian.num_params, generator=torch.Generator().manual_seed(1))
    ggn = C.GGNOperator(model, loss_fn, data)
    t_hvp = timed(lambda: hessian @ v, repeat)
    t_gvp = timed(lambda: ggn @ v, repeat)

    bp = {}
    try:
        import backpack
        from backpack.extensions import KFAC, KFLR, DiagGGNExact, DiagGGNMC, DiagHessian, SumGradSquared
        from backpack.hessianfree.ggnvp import ggn_vector_product_from_plist
        from backpack.hessianfree.hvp import hessian_vector_product

        net, lossb = backpack.extend(copy.deepcopy(model)), backpack.extend(copy.deepcopy(loss_fn))

        def run(ext):
            net.zero_grad()
            with backpack.backpack(ext):
                lossb(net(X), y).backward()

        run(DiagGGNExact())
        bp["ggn"] = ([p.diag_ggn_exact for p in net.parameters()], timed(lambda: run(DiagGGNExact()), repeat))
        bp["mc"] = (None, timed(lambda: run(DiagGGNMC()), repeat))
        run(SumGradSquared())
        bp["ef"] = ([p.sum_grad_squared * len(X) for p in net.parameters()], timed(lambda: run(SumGradSquared()), repeat))
        if name == "mlp":  # BackPACK's DiagHessian has no MaxPool2d extension
            run(DiagHessian())
            bp["hd"] = ([p.diag_h for p in net.parameters()], timed(lambda: run(DiagHessian()), repeat))
        bp["kfac"] = (None, timed(lambda: run(KFLR()), repeat))
        bp["kfac_mc"] = (None, timed(lambda: run(KFAC()), repeat))
        vs = [t.view_as(p) for t, p in zip(v.split([p.numel() for p in params]), params)]
        plain = copy.deepcopy(model)
        plist = list(plain.parameters())

        def bp_hvp():
            return hessian_vector_product(loss_fn(plain(X), y), plist, vs)

        def bp_gvp():
            out = plain(X)
            return ggn_vector_product_from_plist(loss_fn(out, y), out, plist, vs)

        bp["hvp"] = (torch.cat([t.reshape(-1) for t in bp_hvp()]), timed(bp_hvp, repeat))
        bp["gvp"] = (torch.cat([t.reshape(-1) for t in bp_gvp()]), timed(bp_gvp, repeat))
    except ImportError:
        pass

    cl = {}
    try:
        import curvlinops

        H = curvlinops.HessianLinearOperator(model, loss_fn, params, [data], check_deterministic=False)
        G = curvlinops.GGNLinearOperator(model, loss_fn, params, [data], check_deterministic=False)
        cl["hvp"] = (H @ v, timed(lambda: H @ v, repeat))
        cl["gvp"] = (G @ v, timed(lambda: G @ v, repeat))
        cl["hd"] = (None, timed(lambda: curvlinops.hutchinson_diag(H, probes), max(1, repeat // 3)))

        def cl_kfac(fisher_type):
            K = curvlinops.KFACLinearOperator(model, loss_fn, params, [data], fisher_type=fisher_type,
                                              check_deterministic=False, separate_weight_and_bias=False)
            K.compute_kronecker_factors()
            return K

        K = cl_kfac("type-2")
        ours_k = C.kfac(model, loss_fn, data, progress=False)
        factors_theirs = [t for m in K._input_covariances for t in (K._input_covariances[m], K._gradient_covariances[m])]
        factors_ours = [t for m in ours_k.factors for t in ours_k.factors[m]]
        cl["kfac"] = (relative(factors_ours, factors_theirs), timed(lambda: cl_kfac("type-2"), repeat))
        cl["kfac_mc"] = (None, timed(lambda: cl_kfac("mc"), repeat))
    except ImportError:
        pass

    def agree(key, ours):
        ref = bp.get(key, (None,))[0]
        return f"{relative(list(ours.values()) if isinstance(ours, dict) else ours, ref):.1e} (BackPACK)" if ref is not None else ""

    row("gradient (reference)", grad_ms)
    row("GGN diagonal, exact", t_ggn, bp.get("ggn", (0, None))[1], None, agree("ggn", ours_ggn))
    row("GGN diagonal, MC (1 sample)", t_mc, bp.get("mc", (0, None))[1])
    row("empirical Fisher diagonal", t_ef, bp.get("ef", (0, None))[1], None, agree("ef", ours_ef))
    hd_ref = bp.get("hd", (None,))[0]
    row(f"Hessian diagonal (ours, curvlinops: Hutchinson {probes} probes; BackPACK: exact)", t_hd,
        bp.get("hd", (0, None))[1], cl.get("hd", (0, None))[1],
        f"{relative(list(hessian.unflatten(ours_hd).values()), hd_ref):.1e} (estimate vs exact)" if hd_ref is not None else "")
    row("K-FAC factors, exact (type-2 / KFLR)", t_kfac, bp.get("kfac", (0, None))[1], cl.get("kfac", (0, None))[1],
        f"{cl['kfac'][0]:.1e} (curvlinops)" if "kfac" in cl else "")
    row("K-FAC factors, MC (1 sample)", t_kfac_mc, bp.get("kfac_mc", (0, None))[1], cl.get("kfac_mc", (0, None))[1])
    row("Hessian-vector product", t_hvp, bp.get("hvp", (0, None))[1], cl.get("hvp", (0, None))[1],
        f"{relative(hessian @ v, cl['hvp'][0]):.1e} (curvlinops)" if "hvp" in cl else "")
    row("GGN-vector product", t_gvp, bp.get("gvp", (0, None))[1], cl.get("gvp", (0, None))[1],
        f"{relative(ggn @ v, cl['gvp'][0]):.1e} (curvlinops)" if "gvp" in cl else "")
    rows.append({"problem": name, "quantity": "HVP / gradient", "ours": t_hvp / grad_ms, "ratio_only": True})
    return rows, (model, loss_fn, data, bp.get("hd", (None,))[0])


def power_iteration(op, tol=1e-3, max_iter=100, seed=0):
    """PyHessian's top eigenvalue: power iteration, stop when the relative change is below ``tol``."""
    v = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(seed), dtype=op.dtype)
    v, eig = v / v.norm(), None
    for i in range(max_iter):
        w = op @ v
        new = float(w @ v)
        if eig is not None and abs(new - eig) / (abs(eig) + 1e-6) < tol:
            return new, i + 1
        eig, v = new, w / w.norm()
    return eig, max_iter


def pyhessian_trace(op, tol=1e-3, max_iter=100, seed=0):
    """PyHessian's trace: Hutchinson (Rademacher) until the running mean changes by less than ``tol``."""
    g, values, mean = torch.Generator().manual_seed(seed), [], 0.0
    for i in range(max_iter):
        z = torch.randint(0, 2, (op.shape[0],), generator=g).to(op.dtype) * 2 - 1
        values.append(float(z @ (op @ z)))
        new = sum(values) / len(values)
        if i > 0 and abs(new - mean) / (abs(mean) + 1e-6) < tol:
            return new, i + 1
        mean = new
    return mean, max_iter


def hvp_count_table(name, model, loss_fn, data, exact_diag, seeds=3) -> list[dict]:
    op = C.HessianOperator(model, loss_fn, data)
    reference = float(C.lanczos(op, k=1, tol=1e-8, max_steps=200)[0][0])
    rows = []
    for seed in range(seeds):
        value, count = power_iteration(op, seed=seed)
        op.matvecs = 0
        ours = float(C.lanczos(op, k=1, tol=1e-3, seed=seed)[0][0])
        rows.append({"problem": name, "quantity": "top eigenvalue", "seed": seed, "pyhessian_hvps": count,
                     "pyhessian_error": abs(value - reference) / abs(reference), "ours_hvps": op.matvecs,
                     "ours_error": abs(ours - reference) / abs(reference)})
    if exact_diag is not None:
        trace = float(sum(t.sum() for t in exact_diag))
        for seed in range(seeds):
            value, count = pyhessian_trace(op, seed=seed)
            op.matvecs = 0
            ours = float(C.hutchpp_trace(op, max(3, count), seed=seed))
            rows.append({"problem": name, "quantity": "trace (Hutch++, same HVPs)", "seed": seed, "pyhessian_hvps": count,
                         "pyhessian_error": abs(value - trace) / abs(trace), "ours_hvps": op.matvecs,
                         "ours_error": abs(ours - trace) / abs(trace)})
    return rows


def fmt(x):
    return "—" if x is None else f"{x:.1f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--probes", type=int, default=10, help="Hutchinson probes for the Hessian diagonal")
    parser.add_argument("--problems", nargs="+", default=["mlp", "lenet"], choices=["mlp", "lenet"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, float32\n")
    print("| problem | quantity | losstools ms | BackPACK ms | curvlinops ms | ours/BackPACK | ours/curvlinops | agreement |")
    print("|---|---|---|---|---|---|---|---|")
    counts = []
    for name in args.problems:
        rows, (model, loss_fn, data, exact_diag) = speed_table(name, args.repeat, args.probes)
        for r in rows:
            if r.get("ratio_only"):
                print(f"| {name} | {r['quantity']} | {r['ours']:.2f}x | | | | | goal <= 3x |")
                continue
            ratio = lambda other: f"{r['ours'] / other:.2f}" if other else "—"  # noqa: E731
            print(f"| {name} | {r['quantity']} | {fmt(r['ours'])} | {fmt(r['backpack'])} | {fmt(r['curvlinops'])} | "
                  f"{ratio(r['backpack'])} | {ratio(r['curvlinops'])} | {r['agreement']} |")
        counts += hvp_count_table(name, model, loss_fn, data, exact_diag)
    print("\nHessian-vector products against PyHessian's algorithms (tol 1e-3), relative error vs exact")
    print("(top eigenvalue: vs Lanczos to 1e-8; trace: vs the exact BackPACK Hessian diagonal's sum)\n")
    print("| problem | estimate | seed | PyHessian HVPs | PyHessian rel. error | losstools HVPs | losstools rel. error |")
    print("|---|---|---|---|---|---|---|")
    for r in counts:
        print(f"| {r['problem']} | {r['quantity']} | {r['seed']} | {r['pyhessian_hvps']} | {r['pyhessian_error']:.1e} | "
              f"{r['ours_hvps']} | {r['ours_error']:.1e} |")


if __name__ == "__main__":
    main()
