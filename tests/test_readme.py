"""Every Python code block of the README runs as written, top to bottom, in one fresh interpreter."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a Markdown text, in order."""
    return [m.group(1) for m in BLOCK.finditer(text)]


def test_python_blocks_are_found():
    blocks = python_blocks("text\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a\n```\n")
    assert blocks == ["a = 1\n", "b = a\n"]


def test_readme_python_blocks_run_in_one_fresh_interpreter(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 4, "the README lost its Python examples"
    script = "\n".join(f"# ---- README block {i + 1}\n{block}" for i, block in enumerate(blocks))
    script = "import matplotlib\nmatplotlib.use('Agg')\n" + script   # figures without a display
    (tmp_path / "readme_blocks.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}           # small problems: one thread is fastest on a shared machine
    done = subprocess.run([sys.executable, "readme_blocks.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"a README block failed:\n{done.stderr[-4000:]}"
