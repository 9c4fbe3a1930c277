"""The book in a real browser: every slider of every notebook moves and redraws its figure.

nbval proves the notebooks run; it cannot see a dead slider or a blank figure. This test starts
JupyterLab from the project's environment (loopback, no token, news and update checks off) over a
temporary COPY of notebooks/ (autosave must never write into the repository), drives Debian's
Chromium with Playwright, and for each notebook that has a slider: opens it, runs all cells in
fast mode, waits for the kernel, moves each slider one step with the keyboard, waits for the
readout to name the new value and for the figure's image data to change, and saves a screenshot
to ``artifacts/browser/`` (git-ignored). Without Chromium the test is skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]
RUN_ALL_TIMEOUT_S = 1200  # fast mode takes about a minute per notebook; a loaded 2-core CI machine, several
REDRAW_TIMEOUT_S = 300


def has_slider(path: Path) -> bool:
    """A notebook with an ipywidgets slider: its saved widget state names one, or it builds an explorer."""
    text = path.read_text(encoding="utf-8")
    return "Slider" in text or re.search(r"widgets\.\w+_explorer\(", text) is not None


SLIDER_NOTEBOOKS = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb") if has_slider(p))


def why_no_browser() -> str | None:
    if not CHROMIUM.exists():
        return (f"Chromium is not installed at {CHROMIUM}: `apt-get install chromium` (.ci/run does it) "
                f"or set COURSE_CHROMIUM to a Chromium binary")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        return f"the Python package playwright is missing ({error}): pip install -e '.[dev]'"
    return None


pytestmark = pytest.mark.skipif(why_no_browser() is not None, reason=why_no_browser() or "")


# ---------------------------------------------------------------------------- JupyterLab over a copy
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server for this test only; yields its base URL."""
    home = tmp_path_factory.mktemp("lab")
    book = home / "book"
    shutil.copytree(NOTEBOOKS, book, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    config_dir, settings_dir = home / "config", home / "settings"
    lab_config = {
        "ServerApp": {"ip": "127.0.0.1", "port": free_port(), "port_retries": 0, "open_browser": False,
                      "allow_root": True, "root_dir": str(book),
                      "terminals_enabled": False},
        "IdentityProvider": {"token": ""},
        "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                   "expose_app_in_browser": True},
        "LanguageServerManager": {"autodetect": False},
    }
    for name in ("jupyter_server_config.json", "jupyter_lab_config.json"):  # LabApp reads the second
        write_json(config_dir / name, lab_config)
    # user settings: no news or update toasts, and every cell kept in the page (no windowing), so
    # sliders far down a notebook exist in the DOM
    write_json(settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
               {"checkForUpdates": False, "fetchNews": "false"})
    write_json(settings_dir / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
               {"windowingMode": "none"})
    env = {**os.environ, "COURSE_FAST": "1", "CI": "true", "JUPYTER_CONFIG_DIR": str(config_dir),
           "JUPYTERLAB_SETTINGS_DIR": str(settings_dir), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_DATA_DIR": str(home / "data"), "IPYTHONDIR": str(home / "ipython"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = (home / "lab.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab"], cwd=book, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{lab_config['ServerApp']['port']}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=5) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"JupyterLab did not start:\n{(home / 'lab.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield url
    server.terminate()  # shuts its kernels down too
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


# ---------------------------------------------------------------------------- the notebook page
NOTEBOOK_STATE = """() => {
    if (!window.jupyterapp) return null;  // the page is still loading
    const panel = window.jupyterapp.shell.currentWidget;
    if (!panel || !panel.sessionContext || !panel.content) return null;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
    const errors = [];
    for (const cell of cells) {
        for (const output of cell.model.outputs.toJSON()) {
            if (output.output_type === 'error') errors.push(output.ename + ': ' + output.evalue);
        }
    }
    return {kernel: kernel ? kernel.status : null, code_cells: cells.length,
            unrun: cells.filter(cell => cell.model.executionCount === null).length,
            running: cells.filter(cell => (cell.promptNode && cell.promptNode.textContent || '').includes('*')).length,
            errors: errors};
}"""

# the image of the figure an explorer draws: the first <img> in the output area of the slider's explorer
FIGURE_OF = """(slider) => {
    let box = slider.parentElement;
    while (box && !(box.querySelector && box.querySelector('.widget-output'))) box = box.parentElement;
    const img = box ? box.querySelector('.widget-output img') : null;
    return img ? img.getAttribute('src') : null;
}"""

# why an element is not shown: its nearest ancestor (or itself) with display none, visibility hidden or
# an empty box
HIDDEN_BY = """(element) => {
    for (let node = element; node && node.nodeType === 1; node = node.parentElement) {
        const style = getComputedStyle(node), box = node.getBoundingClientRect();
        if (style.display === 'none' || style.visibility === 'hidden' || box.width === 0 || box.height === 0)
            return `<${node.tagName.toLowerCase()} class="${node.className}"> has display ${style.display}, ` +
                   `visibility ${style.visibility}, box ${box.width}x${box.height}`;
    }
    return 'no hidden ancestor found';
}"""


def wait_for(page, predicate, timeout_s: float, what: str, poll_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        page.wait_for_timeout(poll_s * 1000)


def open_and_run_all(page, url: str, name: str) -> dict:
    # a workspace of its own, reset: the default workspace would reopen the notebooks of the earlier
    # tests in hidden tabs, whose sliders (drawn from their saved widget state) the locators would find
    workspace = re.sub(r"\W", "-", Path(name).stem)
    page.goto(f"{url}/lab/workspaces/{workspace}/tree/{name}?reset", wait_until="domcontentloaded",
              timeout=300_000)
    wait_for(page, lambda: page.evaluate(NOTEBOOK_STATE) and page.evaluate(NOTEBOOK_STATE)["kernel"] == "idle",
             300, f"{name}: the kernel to start")
    # a notebook saved with outputs has every cell numbered already: clear them first (that also resets
    # the execution counts), or "all cells ran" would hold before Run All has started
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    wait_for(page, lambda: page.evaluate(NOTEBOOK_STATE)["unrun"] == page.evaluate(NOTEBOOK_STATE)["code_cells"],
             60, f"{name}: its saved outputs to clear")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    def finished():
        state = page.evaluate(NOTEBOOK_STATE)
        if state["errors"]:
            pytest.fail(f"{name}: a cell raised {state['errors'][0]}")
        return state if (state["kernel"] == "idle" and state["unrun"] == 0 and state["running"] == 0) else None

    return wait_for(page, finished, RUN_ALL_TIMEOUT_S, f"{name}: Run All to finish", poll_s=2.0)


def readout_number(slider) -> float:
    return float(slider.locator(".widget-readout").inner_text().strip())


def move_one_step(page, slider, what: str) -> tuple[float, float]:
    """Focus the slider's handle, press an arrow key; wait for the new value and a new figure."""
    try:
        slider.wait_for(state="visible", timeout=60_000)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError; say which ancestor hides it
        pytest.fail(f"{what} is on the page but not visible: {slider.evaluate(HIDDEN_BY)}")
    slider.scroll_into_view_if_needed()
    handle = slider.locator(".noUi-handle").first
    handle_value, top = float(handle.get_attribute("aria-valuenow")), float(handle.get_attribute("aria-valuemax"))
    value = readout_number(slider)
    # noUiSlider writes aria-valuenow with one decimal (toFixed(1)): a guidance of 1.85 reads 1.9 there
    assert value == pytest.approx(handle_value, abs=0.05 + 1e-9), f"{what}: the readout disagrees with the handle"
    before = wait_for(page, lambda: slider.evaluate(FIGURE_OF), REDRAW_TIMEOUT_S, f"{what}'s figure")
    key = "ArrowRight" if value < top else "ArrowLeft"
    handle.focus()
    page.keyboard.press(key)

    def new_value():
        number = readout_number(slider)
        return (number,) if number != value else None

    (moved,) = wait_for(page, new_value, 60, f"{what}'s readout to name a new value after {key}", poll_s=0.2)

    def new_figure():
        src = slider.evaluate(FIGURE_OF)
        return src if src and src != before else None

    after = wait_for(page, new_figure, REDRAW_TIMEOUT_S, f"{what}'s figure to redraw", poll_s=0.5)
    assert (moved > value) == (key == "ArrowRight"), f"{what}: {key} moved it from {value} to {moved}"
    assert after != before  # the image data (a data: URL holding the PNG) changed
    return value, moved


@pytest.mark.parametrize("name", SLIDER_NOTEBOOKS)
def test_every_slider_moves_and_redraws_its_figure(lab, browser, name):
    started = time.monotonic()
    page = browser.new_page()
    try:
        state = open_and_run_all(page, lab, name)
        ran_s = time.monotonic() - started
        panels = page.evaluate("() => [...document.querySelectorAll('.jp-NotebookPanel')].map(panel => panel.id)")
        current = page.evaluate("() => window.jupyterapp.shell.currentWidget.id")
        assert panels == [current], f"{name}: expected only its own notebook open, found panels {panels}"
        sliders = page.locator(f"#{current} .jp-Notebook .widget-slider")
        try:  # a widget view is built after its output arrives
            sliders.first.wait_for(state="attached", timeout=60_000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; the assertion below says what is wrong
            pass
        count = sliders.count()
        assert count >= 1, f"{name} has a slider in its source, but none is on the page (widgets did not render)"
        for index in range(count):
            value, moved = move_one_step(page, sliders.nth(index), f"{name}: slider {index}")
            print(f"{name}: slider {index} {value:g} -> {moved:g}, figure redrawn")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{Path(name).stem}.png"))
        print(f"{name}: {state['code_cells']} code cells ran in {ran_s:.0f} s; {count} slider(s) moved; "
              f"{time.monotonic() - started:.0f} s in all")
    finally:
        try:  # free the CPU for the next notebook
            page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        except Exception:  # noqa: BLE001 - the page may already be gone; the server stops the kernel at the end
            pass
        page.close()
