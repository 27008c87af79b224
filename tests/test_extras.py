"""The optional extras resolve to importable packages: every installed requirement of an extra imports in a fresh
interpreter, and so does everything the ``anchors`` extra pulls in (torchvision 0.28 from the package registry is a
CUDA build that cannot be imported beside the CPU torch 2.13: it must not be installed, or must import)."""
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
# installed with --no-deps by the README's test command, beside the anchors extra (see the README)
ANCHORS = ("backpack-for-pytorch", "curvlinops-for-pytorch")


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _modules() -> dict[str, list[str]]:
    """distribution name -> its importable top-level modules (private ones left out)."""
    out: dict[str, list[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        if module.startswith("_") or not module.isidentifier():
            continue
        for dist in dists:
            out.setdefault(dist.lower().replace("_", "-"), []).append(module)
    return out


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def _closure(names) -> set[str]:
    """``names`` and every installed distribution they require (markers for extras are skipped)."""
    seen, todo = set(), [n for n in names if _installed(n)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in metadata.distribution(name).requires or []:
            if "extra ==" in requirement:
                continue
            dependency = _name(requirement)
            if _installed(dependency):
                todo.append(dependency)
    return seen


def _import_fresh(modules: list[str]) -> subprocess.CompletedProcess:
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    return subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_every_installed_requirement_of_an_extra_imports(extra):
    modules = _modules()
    names = [_name(r) for r in EXTRAS[extra]] + (list(ANCHORS) if extra == "anchors" else [])
    installed = [n for n in names if _installed(n)]
    if not installed:
        pytest.skip(f"the {extra!r} extra is not installed (pip install -e '.[{extra}]')")
    wanted = sorted({m for n in installed for m in modules.get(n, [])})
    done = _import_fresh(wanted)
    assert done.returncode == 0, f"importing the {extra!r} extra's packages {wanted} failed:\n{done.stderr[-3000:]}"


def test_anchors_and_all_they_pull_in_import():
    if not all(_installed(n) for n in ANCHORS):
        pytest.skip("BackPACK and curvlinops are not installed (see the README's test command)")
    modules = _modules()
    closure = _closure(ANCHORS)
    wanted = sorted({m for n in closure for m in modules.get(n, [])})
    assert "backpack" in wanted and "curvlinops" in wanted
    done = _import_fresh(wanted)
    assert done.returncode == 0, (
        f"a package that BackPACK/curvlinops pull in does not import ({sorted(closure)}):\n{done.stderr[-3000:]}\n"
        "torchvision from the package registry is a CUDA build: install the anchors as the README's test command does")
