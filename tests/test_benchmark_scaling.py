"""benchmarks/hessian_diag.py and benchmarks/cnn_curvature.py in quick mode: they run and every method agrees
(no timings checked)."""
import importlib.util
from pathlib import Path

import pytest


def load(name):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hessian_diag_benchmark_quick():
    pytest.importorskip("backpack")
    rows = load("hessian_diag").main(["--quick", "--inline"])
    assert [r["method"] for r in rows] == ["losstools", "losstools dense M", "BackPACK"]
    for r in rows:
        assert "error" not in r, r
        assert r["time"] > 0 and r["peak_mb"] > 0 and r["max_rel_diff"] < 1e-5, r  # float32 vs BackPACK
        assert r["losstools_gflop"] > 0


def test_cnn_benchmark_quick():
    pytest.importorskip("backpack")
    pytest.importorskip("curvlinops")
    quantities = ["GGN diagonal, exact", "K-FAC, exact (type-2)", "top 5 Hessian eigenvalues"]
    rows = load("cnn_curvature").main(["--quick", "--inline", "--batch", "16", "--quantities", *quantities])
    by = {(r["quantity"], r["method"]): r for r in rows}
    assert by[("GGN diagonal, exact", "BackPACK")]["diff"] < 1e-5
    assert by[("K-FAC, exact (type-2)", "curvlinops")]["diff"] < 1e-5
    assert "not supported" in load("cnn_curvature").markdown(rows)  # BackPACK has no K-FAC through BatchNorm2d
    assert by[("top 5 Hessian eigenvalues", "curvlinops")]["diff"] < 1e-2  # both solvers at tolerance 1e-3
    assert all(r["time"] > 0 for r in rows if "error" not in r)
