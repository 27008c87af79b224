"""A real browser test: JupyterLab and headless Chromium run every lecture and one exercise; the built site opens.

Starts ``jupyter lab`` on 127.0.0.1 (a free port, a random token, ``--allow-root``) serving a temporary folder. For
each notebook it uploads an output-cleared copy under a fresh name (so a brand-new kernel runs it, and the
repository's file is never autosaved over), runs all cells from the menu and checks that every cell ran and none
printed an error. Then it moves every explorer once (its first slider with the keyboard) and waits until the
explorer's figure and readout have changed, and checks that no readout, label or dropdown of an explorer is cut off.
A screenshot of each notebook goes to ``results/browser/``. Only the server this module started is stopped.

The documentation site (built once per session by the ``built_site`` fixture) is opened from its files: its index, a
lecture and an API page must load every figure and have no broken internal link (a missing file or anchor); their
screenshots go to ``results/browser/site_*.png``.

Uses Debian's ``chromium`` through pytest-playwright (``executable_path``; nothing is downloaded) and is skipped,
with the reason, where pytest-playwright or Chromium is missing.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import types
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("pytest_playwright", reason="pytest-playwright is not installed (pip install -e '.[test]')")
nbformat = pytest.importorskip("nbformat")
from playwright.sync_api import Page, expect  # noqa: E402  (after the skip)

ROOT = Path(__file__).resolve().parents[1]
# the five lectures and the exercise that collects the lectures' exercises
NOTEBOOKS = [ROOT / "notebooks" / name for name in (
    "01_taylor_error.ipynb", "02_curvature_zoo.ipynb", "03_pruning_locality.ipynb", "04_after_finetuning.ipynb",
    "05_spectrum_in_training.ipynb", "exercises/00_lecture_exercises.ipynb")]
# the site's index, a lecture and an API page: (screenshot name, path in the built site, figures expected)
SITE_PAGES = [("index", "index.html", True), ("lecture", "course/01_taylor_error.html", True),
              ("api", "generated/losstools.objective.Objective.html", False)]
SCREENSHOTS = ROOT / "results" / "browser"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments plus the system Chromium (it has no CLI flag for a binary)."""
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("no Chromium on PATH: install Debian's package (apt-get install chromium) or set CHROMIUM")
    return {**browser_type_launch_args, "executable_path": exe}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """A JupyterLab server on a free port with a random token and an empty temporary root; stopped at the end."""
    root, config = tmp_path_factory.mktemp("lab"), tmp_path_factory.mktemp("jupyter-config")
    token = secrets.token_hex(16)
    # render every cell (JupyterLab 4 windowing leaves the prompts of off-screen cells empty)
    tracker = config / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTERLAB_SETTINGS_DIR": str(config / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(config / "workspaces"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    port = _free_port()
    log_path = root.parent / "jupyterlab.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
             f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    lab = types.SimpleNamespace(url=f"http://127.0.0.1:{port}", token=token, log=log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{lab.url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not start; see {log_path}") from None
                time.sleep(0.25)
        yield lab
    finally:
        proc.terminate()  # only the server started here; its kernels shut down with it
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _api(lab, method: str, path: str, body=None):
    request = urllib.request.Request(
        f"{lab.url}/api/{path}", method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        data = response.read()
    return json.loads(data) if data else None


@pytest.fixture
def lab_notebook(jupyter_lab):
    """``upload(path)`` -> server path of a fresh, output-cleared, uniquely named copy; removed afterwards."""
    made: list[str] = []

    def upload(path: Path) -> str:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.metadata.pop("widgets", None)
        name = f"{path.stem}-{uuid.uuid4().hex[:8]}.ipynb"
        _api(jupyter_lab, "PUT", f"contents/{name}", {"type": "notebook", "format": "json", "content": nb})
        made.append(name)
        return name

    yield upload
    for session in _api(jupyter_lab, "GET", "sessions"):
        if session["path"] in made:
            _api(jupyter_lab, "DELETE", f"sessions/{session['id']}")  # shuts its kernel down
    for name in made:
        _api(jupyter_lab, "DELETE", f"contents/{name}")


KERNEL_READY = """() => {
    const status = (document.querySelector('#jp-main-statusbar') || {}).textContent || '';
    const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
    return /Idle/.test(status) && !/Connecting|Initializing|Starting|Restarting/.test(status)
           && indicator && indicator.dataset.status === 'idle';
}"""

# Run All marks every cell [*] at once; the run is over when none is pending, one has run and the kernel is
# idle. After an error, JupyterLab clears the remaining prompts to [ ]: the caller checks that all have numbers.
RUN_OVER = """() => {
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
    const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
    return prompts.some(t => /^\\[\\d+\\]:$/.test(t)) && !prompts.some(t => t.includes('*'))
           && indicator && indicator.dataset.status === 'idle';
}"""

EXPLORERS = ".losstools-explorer"
STATE = """(explorer) => [explorer.querySelector('.widget-output img')?.src,
                         explorer.querySelector('.widget-html')?.textContent]"""
CHANGED = """([explorer, old]) => {
    const now = [explorer.querySelector('.widget-output img')?.src,
                 explorer.querySelector('.widget-html')?.textContent];
    return now[0] && now[0] !== old[0] && now[1] !== old[1];
}"""
# elements of an explorer whose text would be cut off: content wider than the box (ellipsis or clipping)
CUT_OFF = """(explorer) =>
    [...explorer.querySelectorAll('.widget-readout, .widget-label, select, .widget-html-content')]
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
    .map(e => e.className + ': ' + (e.textContent || e.value || '').trim().slice(0, 60))"""


def run_all(page: Page, lab, name: str) -> None:
    """Open ``name`` in JupyterLab with a new kernel, run all cells from the menu and wait until done."""
    page.set_default_timeout(60_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}")
    page.wait_for_function(KERNEL_READY)
    news = page.locator(".jp-toast-button", has_text="No")  # "receive official Jupyter news?" toast
    if news.count():
        news.first.click()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(RUN_OVER, timeout=300_000)
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    numbers = [int(m.group(1)) if (m := re.fullmatch(r"\[(\d+)\]:", p.strip())) else 0 for p in prompts]
    stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    if not all(numbers) or numbers != sorted(set(numbers)) or stderr.count():
        details = "\n".join(stderr.all_inner_texts())[-3000:]
        raise AssertionError(f"Run All did not run every cell in order without errors (prompts {prompts}); "
                             f"error output:\n{details}")


def move_explorer(page: Page, explorer) -> None:
    """Press ArrowRight on the explorer's first slider and wait until its figure and readout change."""
    explorer.scroll_into_view_if_needed()
    expect(explorer.locator(".widget-output img")).to_be_visible()
    before = explorer.evaluate(STATE)
    slider = explorer.locator(".widget-slider").first
    value = slider.locator(".widget-readout").inner_text()
    slider.locator(".noUi-handle").focus()  # the noUiSlider handle takes keyboard input
    page.keyboard.press("ArrowRight")
    expect(slider.locator(".widget-readout")).not_to_have_text(value)
    page.wait_for_function(CHANGED, arg=[explorer.element_handle(), before])
    page.wait_for_function(KERNEL_READY)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_its_explorers_replot_in_jupyterlab(page: Page, jupyter_lab, lab_notebook, notebook):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        run_all(page, jupyter_lab, lab_notebook(notebook))
        explorers = page.locator(EXPLORERS)
        for i in range(explorers.count()):
            explorer = explorers.nth(i)
            move_explorer(page, explorer)
            assert explorer.evaluate(CUT_OFF) == [], f"explorer {i + 1}: text cut off"
        if explorers.count():
            explorers.last.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / f"{notebook.stem}.png"))
    except Exception:
        page.screenshot(path=str(SCREENSHOTS / f"{notebook.stem}-failure.png"))
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        print(f"cell prompts at failure: {prompts}; server log: {jupyter_lab.log}")
        raise
    print(f"browser test of {notebook.name}: {explorers.count()} explorer(s), {time.monotonic() - start:.1f} s")


BROKEN_IMAGES = "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"


def broken_links(page_file: Path, hrefs: list[str]) -> list[str]:
    """The internal links (``file://`` after the browser resolved them) whose file or anchor does not exist."""
    broken = []
    for href in hrefs:
        url = urllib.parse.urlsplit(href)
        if url.scheme != "file":
            continue
        target = Path(urllib.parse.unquote(url.path))
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(href)
        elif url.fragment and target.suffix == ".html" and f'id="{url.fragment}"' not in target.read_text():
            broken.append(href)
    return broken


@pytest.mark.parametrize("name, path, with_figures", SITE_PAGES, ids=[p[0] for p in SITE_PAGES])
def test_site_page_loads_its_figures_and_has_no_broken_internal_link(page: Page, built_site, name, path, with_figures):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1300, "height": 1000})
    page.goto((built_site / path).as_uri(), wait_until="load")
    images = page.evaluate("() => [...document.images].map(i => i.src)")
    assert not with_figures or any("_images" in src or "images/" in src for src in images), f"no figure on {path}"
    assert page.evaluate(BROKEN_IMAGES) == [], f"figures that did not load on {path}"
    hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
    assert any(h.startswith("file:") for h in hrefs)
    assert broken_links(built_site / path, hrefs) == [], f"broken internal links on {path}"
    page.screenshot(path=str(SCREENSHOTS / f"site_{name}.png"))
