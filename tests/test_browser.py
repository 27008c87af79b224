"""A real browser test: JupyterLab and headless Chromium run notebook 01 and move a slider of its explorer.

Starts ``jupyter lab`` on 127.0.0.1 (a free port, a random token) serving a temporary folder, uploads
an output-cleared copy of the notebook under a fresh name (so a brand-new kernel runs it, and the
repository's file is never autosaved over), runs all cells from the menu, moves the first slider with
the keyboard and waits until the figure in the Output widget and a Label's text have changed. A
screenshot goes to ``results/browser/``. Only the server this module started is stopped.

Uses Debian's ``chromium`` through pytest-playwright (``executable_path``; nothing is downloaded) and
is skipped, with the reason, where pytest-playwright, Chromium or the notebook is missing.
``LOSSTOOLS_BROWSER_NOTEBOOK=path.ipynb`` tests another notebook with a slider-driven figure instead.
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
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("pytest_playwright", reason="pytest-playwright is not installed (pip install -e '.[test]')")
nbformat = pytest.importorskip("nbformat")
from playwright.sync_api import Page, expect  # noqa: E402  (after the skip)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = Path(os.environ.get("LOSSTOOLS_BROWSER_NOTEBOOK", ROOT / "notebooks" / "01_taylor_error.ipynb"))
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
    if not NOTEBOOK.exists():
        pytest.skip(f"{NOTEBOOK} does not exist (yet): nothing to open in the browser")
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

IMAGE_CHANGED = """(old) => {
    const img = document.querySelector('.widget-output img');
    return img && img.src !== old;
}"""

LABELS = "() => [...document.querySelectorAll('.widget-label')].map(e => e.textContent)"
LABELS_CHANGED = f"(old) => JSON.stringify(({LABELS})()) !== old"


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
    page.wait_for_function(RUN_OVER, timeout=240_000)
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    numbers = [int(m.group(1)) if (m := re.fullmatch(r"\[(\d+)\]:", p.strip())) else 0 for p in prompts]
    if not all(numbers) or numbers != sorted(set(numbers)):
        stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        details = "\n".join(stderr.all_inner_texts())[-3000:]
        raise AssertionError(f"Run All did not run every cell in order (prompts {prompts}); stderr:\n{details}")


def test_explorer_slider_replots_in_jupyterlab(page: Page, jupyter_lab, lab_notebook):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        run_all(page, jupyter_lab, lab_notebook(NOTEBOOK))
        slider = page.locator(".widget-slider").first
        readout = slider.locator(".widget-readout")
        image = page.locator(".widget-output img").first
        slider.scroll_into_view_if_needed()
        expect(image).to_be_visible()
        value, figure = readout.inner_text(), image.get_attribute("src")
        labels = json.dumps(page.evaluate(LABELS))

        slider.locator(".noUi-handle").focus()  # the noUiSlider handle takes keyboard input
        for _ in range(3):
            page.keyboard.press("ArrowRight")

        expect(readout).not_to_have_text(value)
        page.wait_for_function(IMAGE_CHANGED, arg=figure)  # the Output widget shows a new figure
        page.wait_for_function(LABELS_CHANGED, arg=labels)  # and a Label shows new numbers,
        expect(page.locator(".widget-label", has_text=readout.inner_text()).first).to_be_visible()  # for the new value
        page.wait_for_function(KERNEL_READY)
        slider.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / f"{NOTEBOOK.stem}.png"))
    except Exception:
        page.screenshot(path=str(SCREENSHOTS / f"{NOTEBOOK.stem}-failure.png"))
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        print(f"cell prompts at failure: {prompts}; server log: {jupyter_lab.log}")
        raise
    print(f"browser test of {NOTEBOOK.name}: {time.monotonic() - start:.1f} s")
