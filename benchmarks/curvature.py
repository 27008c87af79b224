"""Approximate curvature, side by side in one run: losstools vs BackPACK and curvlinops (one thread).

    PYTHONPATH=. python benchmarks/curvature.py [--repeat 5] [--problems mlp lenet]

Problems (float32, random data and initialisation, seeded):
- ``mlp``: 784-128-10, tanh, 1 000 examples, cross-entropy (101 770 parameters);
- ``lenet``: LeNet-like CNN on 3x32x32 (conv 6@5x5, max-pool, conv 16@5x5, max-pool, 120, 84, 10; ReLU),
  a batch of 128, cross-entropy (62 006 parameters).
Each time is the best of ``--repeat`` runs after a warm-up, in ms of CPU time of this process
(``time.process_time``: on one thread it is the compute time, robust to other jobs sharing the machine).
Ratios < 1 mean losstools is faster.
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
from losstools.objective import Objective

warnings.filterwarnings("ignore", message="Full backward hook")


def timed_together(fns: dict, repeat: int) -> dict:
    """Best CPU time (ms) of each callable, calls interleaved (a, b, c, a, b, c, ...) after one warm-up each,
    so that a slow phase of the shared machine hits all competitors alike."""
    best = {}
    for name, fn in fns.items():
        fn()
        best[name] = float("inf")
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - start)
    return {name: t * 1e3 for name, t in best.items()}


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


def speed_table(name: str, repeat: int, probes: int):
    """Rows {quantity, ours, backpack, curvlinops (ms or None), agreement} and the problem with BackPACK's
    exact Hessian diagonal (None without BackPACK or with max-pooling)."""
    model, loss_fn, X, y = problem(name)
    data, params = (X, y), list(model.parameters())
    hessian, ggn = C.Hessian(model, loss_fn, data), C.GGN(model, loss_fn, data)
    v = torch.randn(hessian.num_params, generator=torch.Generator().manual_seed(1))

    def gradient():
        model.zero_grad()
        loss_fn(model(X), y).backward()

    quantities = {  # quantity -> {competitor: callable}
        "gradient (reference)": {"ours": gradient},
        "GGN diagonal, exact": {"ours": lambda: C.diag_ggn(model, loss_fn, data, progress=False)},
        "GGN diagonal, MC (1 sample)": {"ours": lambda: C.diag_ggn(model, loss_fn, data, mc_samples=1, progress=False)},
        "empirical Fisher diagonal": {"ours": lambda: C.diag_fisher(model, loss_fn, data, progress=False)},
        f"Hessian diagonal (ours, curvlinops: Hutchinson {probes} probes; BackPACK: exact)":
            {"ours": lambda: C.hutchinson_diag(hessian, probes, seed=0, progress=False)},
        "K-FAC factors, exact (type-2 / KFLR)": {"ours": lambda: C.kfac(model, loss_fn, data, progress=False)},
        "K-FAC factors, MC (1 sample)": {"ours": lambda: C.kfac(model, loss_fn, data, kind="mc", progress=False)},
        "Hessian-vector product": {"ours": lambda: hessian @ v},
        "GGN-vector product": {"ours": lambda: ggn @ v},
    }
    keys = list(quantities)
    agreement, exact_hessian_diag = {}, None
    ours_flat = lambda d: torch.cat([t.reshape(-1) for t in d.values()])  # noqa: E731
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

        def flat(attr, scale=1.0):
            return torch.cat([getattr(p, attr).reshape(-1) * scale for p in net.parameters()])

        vs = [t.view_as(p) for t, p in zip(v.split([p.numel() for p in params]), params)]
        plain = copy.deepcopy(model)
        plist = list(plain.parameters())

        def bp_hvp():
            return torch.cat([t.reshape(-1) for t in hessian_vector_product(loss_fn(plain(X), y), plist, vs)])

        def bp_gvp():
            out = plain(X)
            return torch.cat([t.reshape(-1) for t in ggn_vector_product_from_plist(loss_fn(out, y), out, plist, vs)])

        for key, ext in zip(keys[1:4], (DiagGGNExact, DiagGGNMC, SumGradSquared)):
            quantities[key]["backpack"] = lambda ext=ext: run(ext())
        if name == "mlp":  # BackPACK's DiagHessian has no MaxPool2d extension
            quantities[keys[4]]["backpack"] = lambda: run(DiagHessian())
            run(DiagHessian())
            exact_hessian_diag = flat("diag_h")
            estimate = C.hutchinson_diag(hessian, probes, seed=0, progress=False)
            agreement[keys[4]] = f"{relative(estimate, exact_hessian_diag):.1e} (estimate vs exact)"
        quantities[keys[5]]["backpack"] = lambda: run(KFLR())
        quantities[keys[6]]["backpack"] = lambda: run(KFAC())
        quantities[keys[7]]["backpack"] = bp_hvp
        quantities[keys[8]]["backpack"] = bp_gvp
        run(DiagGGNExact())
        agreement[keys[1]] = (f"{relative(ours_flat(C.diag_ggn(model, loss_fn, data)), flat('diag_ggn_exact')):.1e} "
                              "(BackPACK)")
        run(SumGradSquared())
        ef = ours_flat(C.diag_fisher(model, loss_fn, data))
        agreement[keys[3]] = f"{relative(ef, flat('sum_grad_squared', len(X))):.1e} (BackPACK)"
    except ImportError:
        pass
    try:
        import curvlinops

        H = curvlinops.HessianLinearOperator(model, loss_fn, params, [data], check_deterministic=False)
        G = curvlinops.GGNLinearOperator(model, loss_fn, params, [data], check_deterministic=False)

        def cl_kfac(fisher_type):
            K = curvlinops.KFACLinearOperator(model, loss_fn, params, [data], fisher_type=fisher_type,
                                              check_deterministic=False, separate_weight_and_bias=False)
            K.compute_kronecker_factors()
            return K

        quantities[keys[4]]["curvlinops"] = lambda: curvlinops.hutchinson_diag(H, probes)
        quantities[keys[5]]["curvlinops"] = lambda: cl_kfac("type-2")
        quantities[keys[6]]["curvlinops"] = lambda: cl_kfac("mc")
        quantities[keys[7]]["curvlinops"] = lambda: H @ v
        quantities[keys[8]]["curvlinops"] = lambda: G @ v
        K, ours_k = cl_kfac("type-2"), C.kfac(model, loss_fn, data, progress=False)
        theirs = [t for m in K._input_covariances for t in (K._input_covariances[m], K._gradient_covariances[m])]
        agreement[keys[5]] = (f"{relative([t for m in ours_k.factors for t in ours_k.factors[m]], theirs):.1e} "
                              "(curvlinops)")
        agreement[keys[7]] = f"{relative(hessian @ v, H @ v):.1e} (curvlinops)"
        agreement[keys[8]] = f"{relative(ggn @ v, G @ v):.1e} (curvlinops)"
    except ImportError:
        pass
    # the same quantities from an Objective built once (as a user computing several of them would): the
    # convenience calls above build and check one per call (about 1 ms on the MLP)
    obj = Objective(model, loss_fn, data)
    once = {keys[1]: lambda: C.GGN(obj).diagonal(), keys[2]: lambda: C.Fisher(obj, mc_samples=1).diagonal(),
            keys[3]: lambda: C.EmpiricalFisher(obj).diagonal(), keys[5]: lambda: C.KFAC(obj, progress=False),
            keys[6]: lambda: C.KFAC(obj, kind="mc", progress=False)}
    for key, fn in once.items():
        quantities[f"{key}, Objective built once"] = {**quantities[key], "ours": fn}
    rows = []
    for key, fns in quantities.items():
        slow = key.startswith("Hessian diagonal")
        times = timed_together(fns, max(1, repeat // 3) if slow else repeat)
        rows.append({"problem": name, "quantity": key, "ours": times["ours"], "backpack": times.get("backpack"),
                     "curvlinops": times.get("curvlinops"), "agreement": agreement.get(key, "")})
    rows.append({"problem": name, "quantity": "HVP / gradient", "ours": rows[7]["ours"] / rows[0]["ours"],
                 "ratio_only": True})
    return rows, (model, loss_fn, data, exact_hessian_diag)


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
    op = C.Hessian(model, loss_fn, data)
    reference = float(C.lanczos(op, k=1, tol=1e-8, max_steps=200)[0][0])
    rows = []
    for seed in range(seeds):
        value, count = power_iteration(op, seed=seed)
        op.matvecs = 0
        ours = float(C.lanczos(op, k=1, tol=1e-3, seed=seed)[0][0])
        target = abs(value - reference) / abs(reference)
        rows.append({"problem": name, "quantity": "top eigenvalue (Lanczos, tol 1e-3 on the residual)", "seed": seed,
                     "pyhessian_hvps": count, "pyhessian_error": target, "ours_hvps": op.matvecs,
                     "ours_error": abs(ours - reference) / abs(reference)})
        for steps in range(1, count + 1):  # the fewest Lanczos steps that reach PyHessian's accuracy
            error = (abs(float(C.lanczos(op, k=1, tol=0.0, max_steps=steps, seed=seed)[0][0]) - reference)
                     / abs(reference))
            if error <= target:
                break
        rows.append({"problem": name, "quantity": "top eigenvalue (Lanczos, fewest steps for the same error)",
                     "seed": seed, "pyhessian_hvps": count, "pyhessian_error": target, "ours_hvps": steps,
                     "ours_error": error})
    if exact_diag is not None:
        trace = float(exact_diag.sum())
        for seed in range(seeds):
            value, count = pyhessian_trace(op, seed=seed)
            op.matvecs = 0
            ours = float(C.hutchpp_trace(op, max(3, count), seed=seed))
            rows.append({"problem": name, "quantity": "trace (Hutch++, same HVPs)", "seed": seed,
                         "pyhessian_hvps": count,
                         "pyhessian_error": abs(value - trace) / abs(trace), "ours_hvps": op.matvecs,
                         "ours_error": abs(ours - trace) / abs(trace)})
        for budget in (30, 99):  # fixed budgets, median over seeds: Hutchinson (PyHessian's estimator) vs Hutch++
            hutch = [abs(float(C.hutchinson_trace(op, budget, seed=s, block=33, progress=False)) - trace) / abs(trace)
                     for s in range(seeds)]
            pp = [abs(float(C.hutchpp_trace(op, budget, seed=s)) - trace) / abs(trace) for s in range(seeds)]
            rows.append({"problem": name, "quantity": f"trace, median of {seeds} seeds (Hutchinson vs Hutch++)",
                         "seed": "-", "pyhessian_hvps": budget, "pyhessian_error": statistics.median(hutch),
                         "ours_hvps": budget, "ours_error": statistics.median(pp)})
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
    print("| problem | quantity | losstools ms | BackPACK ms | curvlinops ms | ours/BackPACK | ours/curvlinops "
          "| agreement |")
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
    print("| problem | estimate | seed | PyHessian HVPs | PyHessian rel. error | losstools HVPs "
          "| losstools rel. error |")
    print("|---|---|---|---|---|---|---|")
    for r in counts:
        print(f"| {r['problem']} | {r['quantity']} | {r['seed']} | {r['pyhessian_hvps']} | "
              f"{r['pyhessian_error']:.1e} | {r['ours_hvps']} | {r['ours_error']:.1e} |")


if __name__ == "__main__":
    main()
