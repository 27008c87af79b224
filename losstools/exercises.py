"""Exercise notebooks with nbgrader: a course directory for teachers, and the student versions of this repository.

The solution notebooks (``notebooks/exercises/solutions/``) are nbgrader *source* notebooks: answer cells marked
``### BEGIN SOLUTION`` / ``### END SOLUTION`` (autograded answers), test cells with points whose asserts sit between
``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``, and written answers in Markdown between solution markers
(model answers, not graded). nbgrader itself makes the student versions (``nbgrader generate_assignment``: solutions
replaced by ``# YOUR CODE HERE``, hidden tests removed, outputs cleared, checksums). What nbgrader does not do is left
here: the course configuration (:data:`NBGRADER_CONFIG`), laying out a course directory, copying the released
notebooks back into the repository and executing them to store their outputs (what ``pytest --nbval`` compares)::

    python -m losstools.exercises course COURSE_DIR               # a course for nbgrader, see docs/teaching.md
    python -m losstools.exercises generate notebooks/exercises/solutions notebooks/exercises --execute
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ASSIGNMENT = "exercises"
# Student versions that run to the end: a blank answer is a comment (the checks then say "Not yet"), not
# nbgrader's default ``raise NotImplementedError()``; Markdown cells with solution markers but no nbgrader metadata
# (the ungraded written answers) are cleared too.
#: The ``nbgrader_config.py`` that :func:`make_course` writes: blanks become ``# YOUR CODE HERE``.
NBGRADER_CONFIG = '''c = get_config()
c.CourseDirectory.course_id = "losstools"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE"}
c.ClearSolutions.text_stub = "*Your answer here.*"
c.ClearSolutions.enforce_metadata = False
c.ExecutePreprocessor.timeout = 600
# nbgrader's OverwriteCells warns "checksum has changed" for every test cell with hidden tests, untouched ones included
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput", "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec", "losstools._nbgrader.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata"]
'''


def _sources(solutions: Path) -> list[Path]:
    sources = sorted(Path(solutions).glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no solution notebooks (*.ipynb) in {solutions}")
    return sources


def make_course(course: Path, solutions: Path, assignment: str = ASSIGNMENT) -> Path:
    """Write ``course/nbgrader_config.py`` and copy the solution notebooks to ``course/source/<assignment>/``.

    Refuses an existing non-empty ``source/<assignment>`` (nothing is overwritten). Returns the course folder.
    """
    sources = _sources(solutions)
    target = Path(course) / "source" / assignment
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty: pick a new course folder or assignment name")
    target.mkdir(parents=True, exist_ok=True)
    config = Path(course) / "nbgrader_config.py"
    if not config.exists():
        config.write_text(NBGRADER_CONFIG)
    for source in sources:
        shutil.copy2(source, target / source.name)
    return Path(course)


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in ``course`` (with this interpreter); a failure raises with nbgrader's output."""
    if not _has_module("nbgrader"):
        raise RuntimeError("nbgrader is not installed: pip install -e '.[classroom]'")
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed in {course}:\n{done.stdout}\n{done.stderr}")
    return done


def _has_module(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None


def execute(path: Path, timeout: int = 600) -> None:
    """Run the notebook at ``path`` in its folder and store its outputs in place, without widget state."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


def generate(solutions: Path, students: Path, run: bool = False) -> list[Path]:
    """Student versions of every ``solutions/NAME.ipynb``, made by ``nbgrader generate_assignment`` in a temporary
    course and written to ``students/NAME.ipynb``; with ``run``, both versions are executed and their outputs stored."""
    sources = _sources(solutions)
    written = []
    with tempfile.TemporaryDirectory(prefix="losstools-course-") as tmp:
        course = make_course(Path(tmp), solutions)
        nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
        Path(students).mkdir(parents=True, exist_ok=True)
        for source in sources:
            target = Path(students) / source.name
            shutil.copyfile(course / "release" / ASSIGNMENT / source.name, target)
            written.append(target)
    if run:
        for source, target in zip(sources, written):
            execute(source)
            execute(target)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m losstools.exercises", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    course = commands.add_parser("course",
                                 help="lay out an nbgrader course folder with the exercises as one assignment")
    course.add_argument("course", type=Path, help="course folder (created)")
    course.add_argument("--solutions", type=Path, default=Path("notebooks/exercises/solutions"),
                        help="folder of the nbgrader source notebooks")
    course.add_argument("--assignment", default=ASSIGNMENT, help="assignment name")
    gen = commands.add_parser("generate", help="make the student versions with nbgrader (and store outputs)")
    gen.add_argument("solutions", type=Path, help="folder of solution (nbgrader source) notebooks")
    gen.add_argument("students", type=Path, help="folder to write the student versions to")
    gen.add_argument("--execute", action="store_true", help="run all notebooks and store their outputs")
    args = parser.parse_args(argv)
    if args.command == "course":
        folder = make_course(args.course, args.solutions, args.assignment)
        print(f"course in {folder}: nbgrader_config.py and source/{args.assignment}/ "
              f"({len(_sources(args.solutions))} notebooks); next: cd {folder} && nbgrader generate_assignment "
              f"{args.assignment}")
    else:
        for path in generate(args.solutions, args.students, args.execute):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
