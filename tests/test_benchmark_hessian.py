"""benchmarks/hessian.py --quick runs and every method agrees with the float64 reference (no timings checked)."""
import importlib.util
from pathlib import Path


def test_quick_benchmark_runs_and_methods_agree(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "hessian.py"
    spec = importlib.util.spec_from_file_location("benchmark_hessian", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--cases", "quick-mlp"])
    assert [r["method"] for r in rows] == bench.METHODS
    for r in rows:
        if r.get("error") == "not installed":
            continue
        assert "error" not in r, r
        assert r["time"] > 0 and r["err"] < 1e-5, r  # float32 result vs float64 reference, relative
    assert "quick-mlp: P = 117" in capsys.readouterr().out
