"""Make the student versions of exercise notebooks from their solution versions.

In a solution notebook, the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` (each marker
alone on its line) are replaced by one line ``# YOUR CODE HERE`` at the marker's indentation, or by
``*Your answer here.*`` in a Markdown cell. Put the student's starting point before the block (e.g.
``Hv = None``) so that the student version still runs to the end and its checks say "not yet".
Student versions get the solution's cells and ids, without outputs; ``--execute`` then runs every
solution and student notebook and stores the outputs (what ``pytest --nbval`` compares)::

    python -m losstools.exercises notebooks/exercises/solutions notebooks/exercises --execute
"""
from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
PLACEHOLDER = {"code": "# YOUR CODE HERE", "markdown": "*Your answer here.*"}
_MARKER = re.compile(r"^(\s*)(### (?:BEGIN|END) SOLUTION)\s*$")


def strip_solutions(source: str, placeholder: str = PLACEHOLDER["code"], where: str = "cell") -> str:
    """``source`` with every solution block replaced by ``placeholder`` (indented like its BEGIN line)."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(keepends=True), 1):
        match = _MARKER.match(line.rstrip("\n"))
        marker = match.group(2) if match else None
        if marker == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: {BEGIN} inside a solution block (close it with {END})")
            inside = True
            out.append(f"{match.group(1)}{placeholder}\n")
        elif marker == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END} without a {BEGIN} before it")
            inside = False
        elif not inside:
            out.append(line)
        elif BEGIN in line or END in line:
            raise ValueError(f"{where}, line {number}: a solution marker must stand alone on its line")
    if inside:
        raise ValueError(f"{where}: {BEGIN} without a matching {END}")
    return "".join(out).removesuffix("\n") if not source.endswith("\n") else "".join(out)


def student_version(nb):
    """A copy of the solution notebook ``nb`` with solutions stripped, outputs and widget state cleared."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type in PLACEHOLDER:
            cell.source = strip_solutions(cell.source, PLACEHOLDER[cell.cell_type], f"cell {index}")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    return nb


def execute(path: Path, timeout: int = 600) -> None:
    """Run the notebook at ``path`` in its folder and store its outputs in place, without widget state."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


def make_student_versions(solutions: Path, students: Path, run: bool = False) -> list[Path]:
    """Write ``students/NAME.ipynb`` for every ``solutions/NAME.ipynb``; with ``run``, execute both."""
    import nbformat

    sources = sorted(Path(solutions).glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no solution notebooks (*.ipynb) in {solutions}")
    written = []
    for source in sources:
        target = Path(students) / source.name
        nbformat.write(student_version(nbformat.read(source, as_version=4)), target)
        written.append(target)
        if run:
            execute(source)
            execute(target)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m losstools.exercises", description=__doc__.split("\n\n")[0])
    parser.add_argument("solutions", type=Path, help="folder of solution notebooks (with solution markers)")
    parser.add_argument("students", type=Path, help="folder to write the student versions to")
    parser.add_argument("--execute", action="store_true", help="run all notebooks and store their outputs")
    args = parser.parse_args(argv)
    for path in make_student_versions(args.solutions, args.students, args.execute):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
