"""The main job as a new user meets it: ``scripts/main.sh`` starts JupyterLab on a workspace of
copied tutorials, the quickstart runs from JupyterLab's Run menu in headless Chromium, the sidebar
shows its cluster and plans, and ``%servelab down`` leaves no servelab process using CPU. The
repository's notebooks are unchanged afterwards.

This run is also the quickstart's nbval check (``scripts/test.sh`` leaves it out of nbval, which took
another 100 s to run it again): no cell fails, and each ``# NBVAL_CHECK_OUTPUT`` cell prints what the
stored notebook holds.

Screenshots of each state go to ``SERVELAB_SCREENSHOTS`` (default /tmp/servelab-screenshots); the
documentation's images (docs/images) come from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from servelab.testing.lab import CHROMIUM_ARGS, LabServer, chromium_path, prompts, wait_for, wait_until_idle
from servelab.widgets.model import deployment_colours

ROOT = Path(__file__).resolve().parents[2]
SIDEBAR = "#servelab-sidebar"
IDLE_CPU_S = 0.2  # CPU seconds a process may use in IDLE_WINDOW_S and still count as idle (2%)
IDLE_WINDOW_S = 10.0
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)"),
]


def repository_notebooks() -> dict[str, str]:
    """Every file under examples/ (checkpoints folders included) with a hash of its bytes."""
    return {
        str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (ROOT / "examples").rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def before() -> dict[str, str]:
    return repository_notebooks()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, before: dict[str, str]) -> Iterator[LabServer]:
    workspace = tmp_path_factory.mktemp("workspace")
    with LabServer(workspace, main_script=ROOT / "scripts" / "main.sh") as server:
        assert sorted(p.name for p in workspace.glob("*.ipynb")) == sorted(p.name for p in (ROOT / "examples").glob("*.ipynb"))
        yield server


@pytest.fixture(scope="module")
def page(lab: LabServer) -> Iterator[Any]:
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        try:
            yield page
        finally:
            browser.close()


def busy_processes(root_pid: int) -> dict[str, float]:
    """CPU seconds each process below ``root_pid`` except JupyterLab's own used in IDLE_WINDOW_S (the
    kernel, the sidebar's drivers, anything a cluster left), for those over IDLE_CPU_S."""
    server = psutil.Process(root_pid)
    mine = [p for p in server.children(recursive=True) if "jupyterlab" not in " ".join(p.cmdline())]
    start = {}
    for process in mine:
        try:
            start[process] = sum(process.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    time.sleep(IDLE_WINDOW_S)
    used = {}
    for process, cpu in start.items():
        try:
            used[" ".join(process.cmdline())[:120]] = sum(process.cpu_times()[:2]) - cpu
        except psutil.NoSuchProcess:
            pass  # it exited: that counts as idle
    return {name: seconds for name, seconds in used.items() if seconds > IDLE_CPU_S}


def checked_outputs(notebook: Path) -> dict[int, str]:
    """What nbval compares: the text each code cell marked ``# NBVAL_CHECK_OUTPUT`` printed, by code cell index."""
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    return {
        i: "".join("".join(o.get("text", "")) for o in cell["outputs"]).rstrip("\n")
        for i, cell in enumerate(cells)
        if "".join(cell["source"]).startswith("# NBVAL_CHECK_OUTPUT")
    }


def rgb(colour: str) -> str:
    return "rgb({}, {}, {})".format(*(int(colour[i : i + 2], 16) for i in (1, 3, 5)))


def painted_in(page: Any, selector: str, colour: str) -> Callable[[], bool]:
    """Whether the element at ``selector`` shows ``colour``, found and read in one step in the page, to
    poll: each refresh redraws the sidebar, and a swatch found, then detached before it was read, had no
    computed style (one suite run read an empty colour)."""
    read = "s => { const e = document.querySelector(s); return e ? getComputedStyle(e).backgroundColor : '' }"
    return lambda: page.evaluate(read, selector) == colour


def test_the_main_job_from_the_run_menu_to_shutdown(lab: LabServer, page: Any, before: dict[str, str]) -> None:
    shots = Path(os.environ.get("SERVELAB_SCREENSHOTS") or "/tmp/servelab-screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    page.goto(lab.url("lab/tree/01_quickstart.ipynb"))
    page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=120_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    # Opening the notebook changes nothing in it: the tab may flag a change for a moment while the
    # kernel reports its language, then finds the content equal to the file's.
    wait_for(lambda: not page.locator(".jp-mod-dirty").count(), 15, "a clean notebook tab")
    code_cells = len(prompts(page))
    # Run > Run All Above Selected Cell with the last cell (which stops the cluster) selected, so that
    # the sidebar can be looked at before it runs; it runs last.
    last = page.locator(".jp-CodeCell").last
    last.locator(".jp-InputArea-prompt").click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Above Selected Cell").click()
    wait_until_idle(page, code_cells - 1, timeout_s=600)

    notebook = page.locator(".jp-NotebookPanel")
    text = notebook.inner_text()
    assert "failed requests: 0" in text and "nodes freed: 1" in text
    assert (
        not page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        .filter(has_text="Traceback")
        .count()
    )
    assert "Traceback" not in text and "servelab: " not in text  # no error and no magic's one-line refusal
    assert "Started Serve" not in text  # Ray's INFO lines stay out of the notebook
    stored = checked_outputs(ROOT / "examples" / "01_quickstart.ipynb")
    assert len(stored) >= 3
    cells = page.locator(".jp-CodeCell")
    printed = {i: "".join(cells.nth(i).locator(".jp-OutputArea-output").all_text_contents()).rstrip("\n") for i in stored}
    assert printed == stored  # as nbval would check them
    # The weights' line: bytes and GB/s per source, apart from each replica's wait.
    streamed = re.search(r"weights 67\.\d MB per replica: ([\d.]+) ([GM])B/s from the source \(1 replica\)", text)
    assert streamed, text[:3000]

    view = page.locator(".servelab-cluster-view").first
    view.scroll_into_view_if_needed()
    view.locator(".main-svg").first.wait_for(timeout=60_000)
    assert view.locator(".trace.bars .point").count() > 0  # plotly drew bars
    assert view.locator(".modebar").count() == 0  # no toolbar over the legend
    assert "node(s) in use" in view.inner_text()
    # The released raylet leaves Ray's node table a few seconds after the report (it shows as draining
    # until then); the live view catches up on a later refresh.
    wait_for(lambda: "1 node left since this view opened" in view.inner_text(), 60, "the freed node leaving the view")
    view.screenshot(path=str(shots / "cluster_view.png"))
    panel = page.locator(".servelab-compaction-panel").first
    panel.scroll_into_view_if_needed()
    assert panel.locator(".main-svg").count() >= 2  # before and after
    assert "free the most nodes; no plan does better" in panel.inner_text() and "Compact: free 1 node(s)" in panel.inner_text()
    panel.screenshot(path=str(shots / "compaction_panel.png"))
    page.screenshot(path=str(shots / "notebook.png"))
    # The status bar follows the cluster with the sidebar closed: in use / lower bound, compacted.
    status = page.locator(".servelab-StatusItem")
    wait_for(lambda: status.inner_text() == "Serve 1/1 nodes", 30, "the status bar's 'Serve 1/1 nodes'")

    # The sidebar finds the notebook's cluster, in the widgets' colours, and plans it.
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="servelab-sidebar"]').click()
    page.wait_for_selector(f"{SIDEBAR} .servelab-Node", timeout=120_000)
    assert page.locator(f"{SIDEBAR} .servelab-Deployment").count() == 2
    expected = deployment_colours_of_quickstart()
    for key, colour in expected.items():
        swatch = f"{SIDEBAR} .servelab-Deployment[data-deployment='{key}'] .servelab-Swatch"
        wait_for(painted_in(page, swatch, rgb(colour)), 10, f"{key}'s swatch in {rgb(colour)}")
    picker = page.locator(f"{SIDEBAR} .servelab-Picker")
    assert picker.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the cluster picker cuts its address"
    page.locator(f"{SIDEBAR} .servelab-plan").click()
    plan = page.locator(f"{SIDEBAR} .servelab-Plan")
    plan.wait_for(timeout=120_000)
    assert "Nothing to free: 1 node(s) in use, lower bound 1" in plan.inner_text()  # compacted already
    page.locator(SIDEBAR).screenshot(path=str(shots / "main_job_sidebar.png"))

    last.locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Shift+Enter")
    wait_until_idle(page, code_cells, timeout_s=120)
    assert re.search(r"stopped 127\.0\.0\.1:\d+", notebook.inner_text())
    assert "ServeController" not in notebook.inner_text()  # no raylet warning from the shutdown
    empty = page.locator(f"{SIDEBAR} .servelab-mod-empty")
    empty.wait_for(timeout=60_000)  # a calm empty state, not an error
    assert "No cluster yet" in empty.inner_text()
    page.locator(SIDEBAR).screenshot(path=str(shots / "main_job_sidebar_after_down.png"))
    assert busy_processes(lab.pid) == {}
    assert repository_notebooks() == before  # JupyterLab saved into the workspace, never into examples/


def deployment_colours_of_quickstart() -> dict[str, str]:
    from servelab.serving import Snapshot
    from servelab.serving.snapshot import DeploymentInfo

    deployments = tuple(DeploymentInfo(n, n, "HEALTHY", 2, 2, 2, {}, None) for n in ("classifier", "embedder"))
    palette = deployment_colours(Snapshot(nodes=(), replicas=(), deployments=deployments))
    return {key: palette[key] for key in ("classifier/classifier", "embedder/embedder")}
