"""The student-version generator: marker handling, and the committed student notebooks are up to date."""
from pathlib import Path

import pytest

from losstools.exercises import BEGIN, END, main, strip_solutions, student_version

nbformat = pytest.importorskip("nbformat")

EXERCISES = Path(__file__).resolve().parents[1] / "notebooks" / "exercises"
SOLUTIONS = EXERCISES / "solutions"


def test_strip_solutions_keeps_indentation_and_surroundings():
    source = f"def f(x):\n    y = None\n    {BEGIN}\n    y = 2 * x\n    {END}\n    return y"
    assert strip_solutions(source) == "def f(x):\n    y = None\n    # YOUR CODE HERE\n    return y"
    assert strip_solutions(f"a = 1\n{BEGIN}\nb = 2\n{END}\n") == "a = 1\n# YOUR CODE HERE\n"
    assert strip_solutions(f"{BEGIN}\n*An answer.*\n{END}", "*Your answer here.*") == "*Your answer here.*"
    assert strip_solutions("no markers\n") == "no markers\n"


@pytest.mark.parametrize("source, problem", [
    (f"{BEGIN}\nx = 1\n", "without a matching"),
    (f"x = 1\n{END}\n", "without a"),
    (f"{BEGIN}\n{BEGIN}\n{END}\n", "inside a solution block"),
    (f"{BEGIN}\nx = 1  {END}\n", "alone on its line"),
])
def test_strip_solutions_rejects_broken_markers(source, problem):
    with pytest.raises(ValueError, match=problem):
        strip_solutions(source, where="cell 3")


def test_student_version_clears_outputs_and_keeps_ids():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"x = None\n{BEGIN}\nx = 42\n{END}\nprint(x)"),
                nbformat.v4.new_markdown_cell(f"Why?\n\n{BEGIN}\nBecause.\n{END}")]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="42\n")]
    nb.cells[0].execution_count = 1
    nb.metadata["widgets"] = {"state": {}}
    student = student_version(nb)
    assert student.cells[0].source == "x = None\n# YOUR CODE HERE\nprint(x)"
    assert student.cells[0].outputs == [] and student.cells[0].execution_count is None
    assert student.cells[1].source == "Why?\n\n*Your answer here.*"
    assert [c.id for c in student.cells] == [c.id for c in nb.cells]
    assert "widgets" not in student.metadata
    assert nb.cells[0].outputs  # the solution notebook is not changed


def _cells(path):
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.id, c.source) for c in nb.cells]


def test_committed_student_versions_are_regenerated_exactly(tmp_path):
    """Regenerate every student version from its solution; the committed ones must have the same cells.

    Outputs are not compared here: the committed student versions store the outputs of running them (the
    checks saying "not yet"), and strict nbval compares those with a fresh run.
    """
    solutions = sorted(SOLUTIONS.glob("*.ipynb"))
    assert len(solutions) >= 4
    main([str(SOLUTIONS), str(tmp_path)])
    committed = sorted(p.name for p in EXERCISES.glob("*.ipynb"))
    assert committed == [p.name for p in solutions], "every solution needs a student version and vice versa"
    for solution in solutions:
        fresh, stored = _cells(tmp_path / solution.name), _cells(EXERCISES / solution.name)
        assert fresh == stored, (f"{solution.name}: the student version is out of date; run "
                                 "python -m losstools.exercises notebooks/exercises/solutions notebooks/exercises --execute")
        assert any(BEGIN in source for _, _, source in _cells(solution)), f"{solution.name} has no solution block"
        assert not any(BEGIN in source or END in source for _, _, source in stored)


def test_student_versions_have_outputs_and_say_not_yet():
    for path in sorted(EXERCISES.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), f"{path.name}: store outputs (run with --execute)"
        text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for c in code for o in c.outputs)
        assert "Not yet: " in text and "Correct!" not in text, path.name
        assert not any(o.output_type == "error" for c in code for o in c.outputs), path.name


def test_solutions_pass_every_check():
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                       for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert "Correct!" in text and "Not yet" not in text, path.name
