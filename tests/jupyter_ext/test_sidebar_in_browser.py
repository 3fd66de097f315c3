"""The sidebar in real JupyterLab in headless Chromium, under a JupyterHub-style base URL.

It finds the test's embedded cluster through its discovery record, shows its nodes and deployments,
plans and runs a compaction from the panel and sees the node count drop, scales a deployment from
its row, and shows what the peer weight cache holds. Screenshots (light and
dark) go to ``SERVELAB_SCREENSHOTS`` (default: a temporary directory); the docs' images (docs/images) come from here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from servelab import serving
from servelab.serving import context
from servelab.testing import ClusterProcess, NginxServer
from servelab.testing.apps import WeightsDigest
from servelab.testing.lab import CHROMIUM_ARGS, LabServer, chromium_path, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)"),
]
SIDEBAR = "#servelab-sidebar"


@pytest.fixture
def page(tmp_path: Path, fragmented: serving.Snapshot) -> Iterator[Any]:
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    with (
        LabServer(tmp_path, base_url="/user/demo/", args=("--LabApp.expose_app_in_browser=True",)) as lab,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(lab.url("lab"))
        page.wait_for_selector(".jp-LabShell", timeout=120_000)
        try:
            yield page
        finally:
            browser.close()


def figure(page: Any, name: str) -> str:
    return str(page.locator(f"{SIDEBAR} .servelab-{name} .servelab-FigureValue").inner_text())


def test_sidebar_shows_the_cluster_and_compacts_it(
    page: Any, fragmented: serving.Snapshot, served_dir: Path, nginx: NginxServer
) -> None:
    shots = Path(os.environ.get("SERVELAB_SCREENSHOTS") or "/tmp/servelab-screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    assert "/user/demo/lab" in page.url
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="servelab-sidebar"]').click()
    page.wait_for_selector(f"{SIDEBAR} .servelab-Node", timeout=120_000)
    assert page.locator(f"{SIDEBAR} .servelab-Node").count() == 4  # the head and three workers
    rows = page.locator(f"{SIDEBAR} .servelab-Deployment")
    assert rows.count() == 2 and "HEALTHY" in rows.first.inner_text() and "2/2" in rows.first.inner_text()
    assert page.locator(f"{SIDEBAR} .servelab-Segment[data-holder='a/a']").count() >= 1
    assert (figure(page, "nodes-in-use"), figure(page, "lower-bound")) == ("2", "1")
    assert "(discovered)" in page.locator(f"{SIDEBAR} .servelab-Picker").inner_text()
    status = page.locator(".servelab-StatusItem")
    assert status.inner_text() == "Serve 2/1 nodes"
    page.locator(SIDEBAR).screenshot(path=str(shots / "sidebar_light.png"))

    page.locator(f"{SIDEBAR} .servelab-plan").click()
    summary = page.locator(f"{SIDEBAR} .servelab-PlanSummary")
    summary.wait_for(timeout=60_000)
    assert "Free 1 node(s): 2 → 1 in use" in summary.inner_text()
    assert page.locator(f"{SIDEBAR} .servelab-Moves li").count() == 2
    page.locator(SIDEBAR).screenshot(path=str(shots / "sidebar_plan.png"))

    ours = context.current().address
    picker = page.locator(f"{SIDEBAR} .servelab-Picker")
    with ClusterProcess(nodes=1) as other:  # another user's kernel starts a cluster on this machine mid-session
        wait_for(lambda: other.address in picker.inner_text(), 90, "the other cluster in the picker")
        time.sleep(3 * 2.0)  # three more refreshes with both clusters listed
        assert picker.input_value() == ours  # the sidebar stays on the cluster it showed
        assert (figure(page, "nodes-in-use"), figure(page, "lower-bound")) == ("2", "1")
        assert "Free 1 node(s): 2 → 1 in use" in summary.inner_text()  # the plan is kept, not dropped
        assert not page.locator(f"{SIDEBAR} .servelab-PlanNote").count()
        assert status.inner_text() == "Serve 2/1 nodes"
        page.locator(SIDEBAR).screenshot(path=str(shots / "sidebar_second_cluster.png"))

    page.locator(f"{SIDEBAR} .servelab-MaxDraining").select_option("2")  # sent as the budget; a bad one would be refused
    unowned = page.locator(f"{SIDEBAR} .servelab-Unowned")  # the server attached: no autoscaler owns these nodes
    assert unowned.inner_text().startswith("Before you compact: no autoscaler serves this cluster: compacting drains 1 node(s)")
    page.locator(f"{SIDEBAR} .servelab-compact").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=30_000)
    assert "Free nodes that no autoscaler owns?" in dialog.inner_text() and "machines keep running" in dialog.inner_text()
    page.screenshot(path=str(shots / "sidebar_unowned_dialog.png"))
    dialog.locator("button", has_text="Compact anyway").click()
    page.locator(f"{SIDEBAR} .servelab-Events li[data-kind='draining']").wait_for(timeout=120_000)  # live progress
    report = page.locator(f"{SIDEBAR} .servelab-Report")
    report.wait_for(timeout=300_000)
    assert "Freed 1 node(s), moved 2 replica(s)" in report.inner_text()
    wait_for(lambda: figure(page, "nodes-in-use") == "1", 30, "one node in use")
    wait_for(lambda: status.inner_text() == "Serve 1/1 nodes", 30, "the status bar's node count")
    assert serving.snapshot().all_healthy()
    page.locator(SIDEBAR).screenshot(path=str(shots / "sidebar_compacted_light.png"))

    b = page.locator(f"{SIDEBAR} .servelab-Deployment[data-deployment='b/b']")  # scaled by hand from its row
    b.locator(".servelab-scale-up").click()
    wait_for(lambda: "3/3" in b.inner_text() and "HEALTHY" in b.inner_text(), 120, "b at 3 of 3 replicas")
    assert serving.find("b").target_replicas == 3
    wait_for(lambda: figure(page, "nodes-in-use") == "2", 30, "the third replica on the idle node")
    page.locator(SIDEBAR).screenshot(path=str(shots / "sidebar_scaled.png"))
    b.locator(".servelab-scale-down").click()
    wait_for(lambda: "2/2" in b.inner_text(), 120, "b back at 2 replicas")
    assert serving.find("b").target_replicas == 2

    save_file({"w": torch.zeros(1024, 1024)}, served_dir / "sidebar.safetensors")  # 4.19 MB in the peer cache
    serving.deploy("w", WeightsDigest, replicas=1, gpus=0.5, weights=nginx.url("sidebar.safetensors"))
    (entry,) = serving.weight_cache()
    cached = page.locator(f"{SIDEBAR} .servelab-CacheEntry")
    cached.wait_for(timeout=60_000)
    assert cached.inner_text().split() == ["sidebar.safetensors", "4.19", "MB", "on", "gpu2", entry.node[:8], "·", "read", "0×"]
    badge = page.locator(f"{SIDEBAR} .servelab-Node[data-node='{entry.node}'] .servelab-mod-cached")
    assert badge.inner_text() == "4.19 MB cached"
    page.locator(SIDEBAR).screenshot(path=str(shots / "sidebar_cache.png"))

    serving.autocompact(delay_s=3600)  # the automatic compactor runs on the cluster: the sidebar says what it waits for
    try:
        auto = page.locator(f"{SIDEBAR} .servelab-Auto")
        auto.wait_for(timeout=60_000)
        assert auto.get_attribute("data-state") == "waiting"
        assert "Auto-compaction: waiting, cluster stable" in auto.inner_text() and "of 60 min" in auto.inner_text()
        page.locator(SIDEBAR).screenshot(path=str(shots / "sidebar_auto.png"))
    finally:
        serving.autocompact(False)
    auto.wait_for(state="detached", timeout=60_000)

    page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_selector("body[data-jp-theme-light='false']", state="attached", timeout=30_000)
    time.sleep(1)
    page.locator(SIDEBAR).screenshot(path=str(shots / "sidebar_compacted_dark.png"))
    page.screenshot(path=str(shots / "lab_dark.png"))
