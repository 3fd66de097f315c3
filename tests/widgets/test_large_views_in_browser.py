"""Large clusters as a person sees them, in real JupyterLab in headless Chromium.

A 1000-node cluster cannot run on this machine, so the cluster is synthetic
(``many_deployments_cluster``: three node types, 42 deployments, fragmented) and everything that
draws it is real: the notebook's ClusterView and CompactionPanel in a running kernel, and the
sidebar drawing the JSON model the server extension would send for it (``cluster_model`` and
``plan_model``, answered through Playwright's routing in place of a cluster's driver).
Screenshots go to ``SERVELAB_SCREENSHOTS``; docs/images/large_*.png come from here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import nbformat
import pytest

from servelab.jupyter_ext.model import cluster_model, plan_model
from servelab.jupyter_ext.schema import API_VERSION
from servelab.serving.planner import Plan, plan
from servelab.serving.snapshot import Snapshot
from servelab.testing.clusters import many_deployments_cluster
from servelab.testing.lab import CHROMIUM_ARGS, LabServer, chromium_path, prompts, wait_for, wait_until_idle
from servelab.widgets.overview import DETAIL_NODES, overview

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)"),
]
NODES, SEED = 1000, 1
SIDEBAR = "#servelab-sidebar"
ADDRESS = "127.0.0.1:6379"
CELLS = [
    "from servelab.serving.planner import plan\n"
    "from servelab.testing.clusters import many_deployments_cluster\n"
    "from servelab.widgets import ClusterView, CompactionPanel\n"
    f"snap = many_deployments_cluster({NODES}, seed={SEED})\n"
    "chosen = plan(snap)",
    "view = ClusterView(read=lambda: snap, autostart=False)\nview.picker.value = 'gpu8'\nview",
    "CompactionPanel(snap, chosen)",
]


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return many_deployments_cluster(NODES, seed=SEED)


@pytest.fixture(scope="module")
def chosen(snapshot: Snapshot) -> Plan:
    return plan(snapshot)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, snapshot: Snapshot, chosen: Plan) -> Iterator[Any]:
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    workspace = tmp_path_factory.mktemp("large")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, workspace / "large.ipynb")
    with LabServer(workspace) as lab, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 2600})  # tall: whole outputs in a screenshot
        serve_synthetic_cluster(page, snapshot, chosen)
        page.goto(lab.url("lab/tree/large.ipynb"))
        page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=120_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        try:
            yield page
        finally:
            browser.close()


def serve_synthetic_cluster(page: Any, snapshot: Snapshot, chosen: Plan) -> None:
    """Answer the sidebar's cluster, listing and plan requests with the models of ``snapshot`` and ``chosen``."""

    def answer(route: Any, body: dict[str, Any]) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    def cluster(route: Any) -> None:
        group = parse_qs(urlsplit(route.request.url).query).get("group", [None])[0]
        model = cluster_model(snapshot, ADDRESS, group=group)
        answer(route, {**model, "compaction": None, "refresh_interval_s": 60})

    listing = {"address": ADDRESS, "source": "configured", "reachable": True, "attached": True, "record": None}
    page.route(
        "**/servelab/api/clusters*",
        lambda route: answer(route, {"clusters": [listing], "refresh_interval_s": 60, "api_version": API_VERSION}),
    )
    page.route("**/servelab/api/cluster?*", cluster)
    # JupyterLab adds a cache-busting query to every request: "plans?1796602417876".
    page.route("**/servelab/api/plans?*", lambda route: answer(route, plan_model(chosen, snapshot, ADDRESS)))


def run_all_cells(page: Any) -> None:
    """Run > Run All Cells, once more if no cell was queued within a minute: twice in ten runs here,
    right after another test's Ray cluster stopped, every prompt stayed '[ ]' for 300 s."""
    for attempt in (1, 2):
        page.locator(".jp-CodeCell").first.click()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        try:
            wait_for(lambda: any(p != "[ ]:" for p in prompts(page)), 60, "a queued cell")
            return
        except AssertionError:
            page.screenshot(path=str(shots() / f"large_not_queued_{attempt}.png"))


def shots() -> Path:
    folder = Path(os.environ.get("SERVELAB_SCREENSHOTS") or "/tmp/servelab-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_notebook_views_of_1000_nodes_fit_a_screen(page: Any, snapshot: Snapshot) -> None:
    run_all_cells(page)
    try:
        wait_until_idle(page, len(CELLS), timeout_s=300)
    except AssertionError:
        page.screenshot(path=str(shots() / "large_not_run.png"))  # what the page showed instead
        raise
    outputs = page.locator(".jp-Cell-outputArea")
    view, panel = outputs.nth(1), outputs.nth(2)
    # ClusterView: node types as bars, every node as a cell, the picked type's most stranded nodes.
    wait_for(lambda: view.locator(".js-plotly-plot").count() == 3, 120, "ClusterView's three figures")
    groups = overview(snapshot).groups
    for group in groups:
        assert view.locator(f"text={group.label}").count() >= 1, group.label
    assert view.locator(".scatterlayer .point").count() >= len(snapshot.nodes)  # a cell per node
    bars = view.locator(".js-plotly-plot").nth(0).bounding_box()
    assert bars is not None and bars["height"] < 700  # not 34 px a node
    assert view.locator(".js-plotly-plot").nth(2).locator(".ytick").count() == DETAIL_NODES
    view.screenshot(path=str(shots() / "large_cluster_view.png"))
    # The panel: each type now and after, and the freed nodes crossed in the cell map.
    wait_for(lambda: panel.locator(".js-plotly-plot").count() == 2, 120, "the panel's two figures")
    assert panel.locator(".legendtext", has_text="freed by the plan").count() == 1
    text = panel.inner_text()
    assert "more move(s)" in text and "Compact: free" in text
    height = panel.bounding_box()
    assert height is not None and height["height"] < 2000
    panel.screenshot(path=str(shots() / "large_compaction_panel.png"))


def test_the_sidebar_draws_1000_nodes_as_types_and_cells(page: Any, snapshot: Snapshot, chosen: Plan) -> None:
    view = overview(snapshot)
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="servelab-sidebar"]').click()
    page.wait_for_selector(f"{SIDEBAR} .servelab-Group", timeout=60_000)
    assert page.locator(f"{SIDEBAR} .servelab-Group").count() == len(view.groups)
    assert page.locator(f"{SIDEBAR} .servelab-Cell").count() == len(snapshot.nodes)
    stranded = sum(1 for c in view.cells if c.stranded > 0)
    assert page.locator(f"{SIDEBAR} .servelab-Cell.servelab-mod-stranded").count() == stranded > 0
    assert page.locator(f"{SIDEBAR} .servelab-Node").count() == 0  # no card per node until a type is picked
    box = page.locator(f"{SIDEBAR} .servelab-Groups").bounding_box()
    assert box is not None and box["height"] < 900
    page.locator(SIDEBAR).screenshot(path=str(shots() / "large_sidebar.png"))

    page.locator(f"{SIDEBAR} .servelab-Group[data-group='gpu8']").click()
    wait_for(lambda: page.locator(f"{SIDEBAR} .servelab-Node").count() == DETAIL_NODES, 30, "the gpu8 nodes' cards")
    first = page.locator(f"{SIDEBAR} .servelab-Node").first.get_attribute("data-node")
    assert first == next(c.id for c in view.cells if c.type == "gpu8")  # the most stranded first

    rows = page.locator(f"{SIDEBAR} .servelab-Deployment")
    assert rows.count() == len(snapshot.deployments)
    page.locator(f"{SIDEBAR} .servelab-Search").fill("chat")
    wanted = [f"{d.app}/{d.name}" for d in snapshot.deployments if "chat" in f"{d.app}/{d.name}"]
    wait_for(lambda: rows.count() == len(wanted), 10, "the deployments filtered")
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.deployment)")) == sorted(wanted)

    page.locator(f"{SIDEBAR} .servelab-plan").click()
    summary = page.locator(f"{SIDEBAR} .servelab-PlanSummary")
    summary.wait_for(timeout=60_000)
    assert f"Free {len(chosen.nodes_to_free)} node(s)" in summary.inner_text()
    assert page.locator(f"{SIDEBAR} .servelab-Moves li").count() == 11  # ten moves and "and N more"
    page.locator(f"{SIDEBAR} .servelab-Compaction").screenshot(path=str(shots() / "large_sidebar_plan.png"))
