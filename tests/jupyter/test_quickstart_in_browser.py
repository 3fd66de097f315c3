"""The quickstart, run in real JupyterLab in headless Chromium: widgets render, compaction frees a node.

Screenshots of ClusterView and CompactionPanel go to ``SERVELAB_SCREENSHOTS`` (default: a temporary
directory); the README's images come from here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servelab.testing.lab import CHROMIUM_ARGS, LabServer, chromium_path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    import nbformat

    root = tmp_path_factory.mktemp("lab")
    notebook = nbformat.read(EXAMPLES / "01_quickstart.ipynb", as_version=4)
    for cell in notebook.cells:  # the stored outputs must not answer for the run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, root / "01_quickstart.ipynb")
    with LabServer(root) as server:
        yield server


@pytest.fixture(scope="module")
def page(lab: LabServer) -> Iterator[object]:
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        try:
            yield page
        finally:
            browser.close()


def prompts(page: object) -> list[str]:
    return [t.strip() for t in page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()]  # type: ignore[attr-defined]


def wait_until_idle(page: object, cells: int, timeout_s: float) -> None:
    """Until the first ``cells`` code cells show an execution count (they start with none) and none runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shown = prompts(page)
        if all(p[1:-2].strip().isdigit() for p in shown[:cells]) and not any("*" in p for p in shown):
            return
        time.sleep(1)
    raise AssertionError(f"cells still running after {timeout_s:.0f} s: {prompts(page)}")


def test_quickstart_runs_and_its_widgets_render(lab: LabServer, page: object) -> None:
    shots = Path(os.environ.get("SERVELAB_SCREENSHOTS") or lab._state / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    page.goto(lab.url("lab/tree/01_quickstart.ipynb"))  # type: ignore[attr-defined]
    page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=120_000)  # type: ignore[attr-defined]
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)  # type: ignore[attr-defined]
    code_cells = len(prompts(page))
    # Run everything above the last cell (which stops the cluster): select it, then Run > Run All Above.
    last = page.locator(".jp-CodeCell").last  # type: ignore[attr-defined]
    last.locator(".jp-InputArea-prompt").click()
    page.get_by_role("menuitem", name="Run", exact=True).click()  # type: ignore[attr-defined]
    page.get_by_text("Run All Above Selected Cell").click()  # type: ignore[attr-defined]
    wait_until_idle(page, code_cells - 1, timeout_s=600)

    text = page.locator(".jp-NotebookPanel").inner_text()  # type: ignore[attr-defined]
    assert "failed requests: 0" in text and "nodes freed: 1" in text
    assert "Traceback" not in text and "servelab: " not in text

    view = page.locator(".servelab-cluster-view").first  # type: ignore[attr-defined]
    view.scroll_into_view_if_needed()
    view.locator(".main-svg").first.wait_for(timeout=60_000)
    assert view.locator(".trace.bars .point").count() > 0  # plotly drew bars
    assert "node(s) in use" in view.inner_text()
    time.sleep(3)  # one more refresh of the live view
    view.screenshot(path=str(shots / "cluster_view.png"))

    panel = page.locator(".servelab-compaction-panel").first  # type: ignore[attr-defined]
    panel.scroll_into_view_if_needed()
    assert panel.locator(".main-svg").count() >= 2  # before and after
    assert "Plan" in panel.inner_text() and "Compact: free 1 node(s)" in panel.inner_text()
    panel.screenshot(path=str(shots / "compaction_panel.png"))
    page.screenshot(path=str(shots / "notebook.png"))  # type: ignore[attr-defined]

    last.locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Shift+Enter")  # type: ignore[attr-defined]
    wait_until_idle(page, code_cells, timeout_s=120)
    assert "stopped" in page.locator(".jp-NotebookPanel").inner_text()  # type: ignore[attr-defined]
