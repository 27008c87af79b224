"""Exercises graded with nbgrader: the source notebooks are valid nbgrader sources, the committed student versions
are exactly what ``nbgrader generate_assignment`` makes of them, and ``nbgrader autograde`` in a temporary course gives
the solution full marks, the untouched student version zero and a typical wrong answer part of the marks."""
import json
import re
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbgrader", reason="nbgrader is not installed (pip install -e '.[classroom]')")

from losstools import exercises  # noqa: E402

EXERCISES = Path(__file__).resolve().parents[1] / "notebooks" / "exercises"
SOLUTIONS = EXERCISES / "solutions"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def _grading(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The student versions that nbgrader makes of the solution notebooks (one generate_assignment run)."""
    return exercises.generate(SOLUTIONS, tmp_path_factory.mktemp("students"))


def test_solution_notebooks_are_nbgrader_sources():
    """Every answer cell is an autograded answer followed by a locked test cell with points and hidden tests."""
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        answers = [i for i, c in enumerate(cells) if c.cell_type == "code" and BEGIN in c.source]
        assert answers, f"{path.name} has no answer cell"
        for i in answers:
            assert _grading(cells[i]).get("solution") is True and _grading(cells[i]).get("grade") is False, path.name
            test = cells[i + 1]
            meta = _grading(test)
            assert meta.get("grade") is True and meta.get("locked") is True and meta.get("points", 0) > 0, \
                f"{path.name}: the cell after answer cell {i} must be an autograded test cell with points"
            assert HIDDEN[0] in test.source and HIDDEN[1] in test.source and "assert" in test.source
        ids = [_grading(c)["grade_id"] for c in cells if _grading(c)]
        assert len(ids) == len(set(ids)), f"{path.name}: grade ids must be unique"


def test_committed_student_versions_are_what_nbgrader_generates(released):
    """Same cells (type, source, nbgrader metadata) as a fresh ``nbgrader generate_assignment``; outputs are not
    compared here (the committed ones are from running them, and strict nbval re-runs them)."""
    committed = sorted(p.name for p in EXERCISES.glob("*.ipynb"))
    assert committed == sorted(p.name for p in SOLUTIONS.glob("*.ipynb")), "every solution needs a student version"
    for fresh in released:
        stored = EXERCISES / fresh.name

        def cells(path):
            return [(c.cell_type, c.source, json.dumps(_grading(c), sort_keys=True))
                    for c in nbformat.read(path, as_version=4).cells]

        assert cells(fresh) == cells(stored), (
            f"{fresh.name}: the student version is out of date; run python -m losstools.exercises generate "
            "notebooks/exercises/solutions notebooks/exercises --execute")
        text = "".join(source for _, source, _ in cells(stored))
        assert BEGIN not in text and END not in text and HIDDEN[0] not in text and "assert " not in text
        assert "# YOUR CODE HERE" in text and "raise NotImplementedError" not in text


def test_student_versions_have_outputs_and_say_not_yet():
    for path in sorted(EXERCISES.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), f"{path.name}: store outputs (generate with --execute)"
        text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for c in code for o in c.outputs)
        assert "Not yet: " in text and "Correct!" not in text, path.name
        assert not any(o.output_type == "error" for c in code for o in c.outputs), path.name


def test_solutions_pass_every_check():
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                       for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert "Correct!" in text and "Not yet" not in text, path.name


def test_course_folder_is_laid_out_and_never_overwritten(tmp_path):
    course = exercises.make_course(tmp_path / "course", SOLUTIONS)
    assert "ClearSolutions.code_stub" in (course / "nbgrader_config.py").read_text()
    assert sorted(p.name for p in (course / "source" / "exercises").iterdir()) == \
        sorted(p.name for p in SOLUTIONS.glob("*.ipynb"))
    with pytest.raises(FileExistsError, match="not empty"):
        exercises.make_course(course, SOLUTIONS)
    with pytest.raises(FileNotFoundError, match="no solution notebooks"):
        exercises.make_course(tmp_path / "other", tmp_path / "empty")


def _fill(release: Path, answers: dict[str, str], target: Path) -> None:
    """``release`` with the sources of the answer cells named in ``answers`` (grade id -> source) replaced."""
    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        grade_id = _grading(cell).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)


def test_nbgrader_autograde_gives_full_zero_and_partial_marks(tmp_path):
    """A course with exercise 4: generate, release to a local exchange, autograde three submissions."""
    from nbgrader.api import Gradebook

    name = "04_trust_radius.ipynb"
    one = tmp_path / "solutions"
    one.mkdir()
    shutil.copy(SOLUTIONS / name, one / name)
    course = exercises.make_course(tmp_path / "course", one, "e4")
    exercises.nbgrader(course, "generate_assignment", "e4", "--force")
    exchange = tmp_path / "exchange"
    exercises.nbgrader(course, "release_assignment", "e4", f"--Exchange.root={exchange}")
    released = exchange / "losstools" / "outbound" / "e4" / name
    assert released.exists()

    source = {_grading(c)["grade_id"]: c.source for c in nbformat.read(one / name, as_version=4).cells
              if _grading(c).get("solution")}
    assert set(source) == {"slope_curvature", "t_star", "t_pred"}
    submitted = course / "submitted"
    _fill(released, source, submitted / "solution" / "e4" / name)          # every answer right
    _fill(released, {}, submitted / "untouched" / "e4" / name)             # the student version as handed out
    _fill(released, {"slope_curvature": source["slope_curvature"],         # s and q right, the radius without the
                     "t_star": "t_star = None\nt_star = tol * abs(s) / q   # forgot (1 + tol) and the 2\n"},
          submitted / "typical" / "e4" / name)                             # factors, t_pred not attempted
    tampered = nbformat.read(released, as_version=4)                     # a locked test cell edited by a student
    locked = next(c for c in tampered.cells if _grading(c).get("locked") and _grading(c).get("grade"))
    locked.source += "\nassert True  # added by the student\n"
    (submitted / "tampered" / "e4").mkdir(parents=True)
    nbformat.write(tampered, submitted / "tampered" / "e4" / name)
    done = exercises.nbgrader(course, "autograde", "e4", "--force")

    # nbgrader 0.9 alone warns "Attribute 'checksum' ... has changed!" for every test cell whose hidden tests the
    # student version lacks, in every submission (jupyter/nbgrader#1961); the course config warns only on a real edit
    log = done.stdout + done.stderr
    warned = re.findall(r"\[(?:\w+) \| WARNING\] Attribute 'checksum' for cell (\S+) has changed", log)
    assert warned == [_grading(locked)["grade_id"]], log[-3000:]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {s: gradebook.find_submission("e4", s).score for s in ("solution", "untouched", "typical")}
        maximum = gradebook.find_assignment("e4").max_score
    assert maximum == 4
    assert scores == {"solution": maximum, "untouched": 0, "typical": 1}
