"""One benchmark script on two source trees, interleaved (a, b, a, b, ...), ratios side by side in one run.

    python benchmarks/interleaved.py --trees before=/path/to/old/checkout after=. --rounds 3 \
        --script benchmarks/curvature.py -- --repeat 5

Each round runs the script once per tree in a fresh process (``PYTHONPATH`` set to that tree, one thread), so a
slow phase of the machine hits both alike. The script prints Markdown table rows ``| problem | method | ours | ... |
...``; for every row the best (lowest) time of each method over the rounds is kept, and the ratios are taken of
those. Results go to
``benchmarks/interleaved_results.json`` and a table of the ratio columns is printed: the old code's (e.g. ``git
worktree add /tmp/before <commit>``) beside the new.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def table_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """``{(problem, row name): cells}`` of the Markdown rows whose first cell is a problem name."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) > 3 and cells[0] in ("mlp", "lenet") and cells[2] not in ("", "-"):
            rows.setdefault((cells[0], cells[1]), cells[2:])
    return rows


def best(old: list[str] | None, new: list[str]) -> list[str]:
    if old is None:
        return new
    out = []
    for a, b in zip(old, new):
        try:
            out.append(str(min(float(a), float(b))))
        except ValueError:
            out.append(a)
    return out


def ratio(row: list[str], competitor: int) -> str:
    """Our best time over a competitor's best time (columns: ours, BackPACK, curvlinops), or "-"."""
    try:
        return f"{float(row[0]) / float(row[competitor]):.2f}"
    except (ValueError, IndexError, ZeroDivisionError):
        return "-"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", nargs="+", required=True, help="name=path of each source tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--script", default="benchmarks/curvature.py")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the script (after --)")
    args = parser.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.trees)
    extra = [a for a in args.rest if a != "--"]
    results: dict[str, dict] = {name: {} for name in trees}
    for r in range(args.rounds):
        for name, path in trees.items():
            env = {**os.environ, "PYTHONPATH": str(Path(path).resolve()), "OMP_NUM_THREADS": "1"}
            script = Path(path) / args.script
            out = subprocess.run([sys.executable, str(script), *extra], env=env, capture_output=True, text=True,
                                 cwd=path, check=True).stdout
            for key, cells in table_rows(out).items():
                results[name][key] = best(results[name].get(key), cells)
            print(f"round {r + 1}: {name} done", flush=True)
    keys = list(next(iter(results.values())))
    print("| problem | row | " + " | ".join(f"{n}: ours / BackPACK | {n}: ours / curvlinops" for n in trees) + " |")
    print("|---|---|" + "---|---|" * len(trees))
    for key in keys:
        cells = []
        for name in trees:
            row = results[name].get(key, ["-"] * 3)
            cells += [ratio(row, 1), ratio(row, 2)]
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    Path(__file__).with_name("interleaved_results.json").write_text(json.dumps(
        {"script": args.script, "arguments": extra, "rounds": args.rounds, "trees": trees,
         "rows": {name: {f"{k[0]} | {k[1]}": v for k, v in rows.items()} for name, rows in results.items()}},
        indent=1) + "\n")


if __name__ == "__main__":
    main()
