"""Every Python code block of the README and of the site's pages runs as written, in a fresh interpreter.

A block is self-contained unless its first line is a comment starting with ``# continues``: then it runs after the
blocks before it on the same page, in the same interpreter (and says so to the reader)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = [ROOT / "README.md"] + [p for p in sorted((ROOT / "docs").rglob("*.md"))
                                 if "_build" not in p.parts and BLOCK.search(p.read_text())]


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a Markdown text, in order."""
    return [m.group(1) for m in BLOCK.finditer(text)]


def scripts(text: str) -> list[str]:
    """One script per self-contained block; a block starting with ``# continues`` joins the script before it."""
    out: list[str] = []
    for block in python_blocks(text):
        if block.startswith("# continues") and out:
            out[-1] += block
        else:
            out.append(block)
    return out


def test_python_blocks_are_found():
    text = "text\n```python\na = 1\n```\n```bash\nls\n```\n```python\n# continues the block above\nb = a\n```\n"
    assert python_blocks(text) == ["a = 1\n", "# continues the block above\nb = a\n"]
    assert scripts(text) == ["a = 1\n# continues the block above\nb = a\n"]
    assert scripts("```python\na = 1\n```\n```python\nb = 2\n```\n") == ["a = 1\n", "b = 2\n"]


def test_readme_and_guides_have_examples():
    assert python_blocks((ROOT / "README.md").read_text()), "the README lost its Python example"
    assert len(PAGES) >= 5, "the user guides lost their Python examples"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run_in_fresh_interpreters(page, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}           # small problems: one thread is fastest on a shared machine
    for i, script in enumerate(scripts(page.read_text())):
        path = tmp_path / f"block{i + 1}.py"
        path.write_text("import matplotlib\nmatplotlib.use('Agg')\n" + script)   # figures without a display
        done = subprocess.run([sys.executable, path.name], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{page.name}, example {i + 1} fails when run alone:\n{done.stderr[-4000:]}"
