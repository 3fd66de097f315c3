"""Every magic through a real IPython shell against a real embedded cluster; widget state after refreshes.

One module-scoped cluster, started by ``%servelab up`` itself; tests run in file order and each
states what it needs. The module ends with ``down(); up()`` and a second process scaling a
deployment this one made.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from safetensors.torch import save_file

from servelab import serving
from servelab.kernel.magics import MagicError
from servelab.kernel.results import Deployed, Streamed
from servelab.loader import CheckpointInfo
from servelab.serving.gpus import LOGICAL_NOTE
from servelab.widgets import ClusterView, CompactionPanel
from tests.kernel import failure

CLASS_CELL = """
class Tagged:
    def __init__(self, weights):
        self.total = float(sum(float(t.double().sum()) for t in weights.values()))
    async def __call__(self, request):
        return {"total": self.total}
"""
ECHO_CELL = """
class Helper:
    pass

class Echo:
    async def __call__(self, request):
        return "echo"
"""


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "servelab")
    yield ip
    ip.run_line_magic("servelab", "down")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tagged.safetensors"
    save_file({"w": torch.arange(100, dtype=torch.float32), "b": torch.full((4,), 0.5)}, path)
    return path


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def line(shell: InteractiveShell, magic: str, text: str = "") -> object:
    return shell.run_line_magic(magic, text)


def test_every_magic_says_no_cluster_yet_in_one_line(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    for source in ("%servelab status", "%scale a 1", "%compact --dry-run", "%undeploy a", "%%deploy a\n" + ECHO_CELL):
        shown = failure(shell, source, capsys)
        assert shown.startswith("servelab: no cluster yet: start one with up() (%servelab up)"), shown


def test_up_deploy_query_and_status(
    shell: InteractiveShell, weights: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    snap = line(shell, "servelab", "up --nodes 3 --gpus-per-node 2 --cpus-per-node 1")
    assert isinstance(snap, serving.Snapshot) and len(snap.workers) == 3
    printed = capsys.readouterr().out
    assert "cluster up at" in printed and LOGICAL_NOTE in printed
    # Said once, in that line: not again as a warning, which a notebook shows on red as if it were an error.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and LOGICAL_NOTE in r.getMessage()]
    deployed = shell.run_cell_magic("deploy", f"tagged --replicas 4 --gpus 0.5 --weights {weights}", CLASS_CELL)
    assert isinstance(deployed, Deployed)
    assert (deployed.info.status, deployed.info.running_replicas) == ("HEALTHY", 4)
    assert json.loads(get(deployed.url)) == {"total": float(sum(range(100))) + 2.0}
    assert len(deployed.loads) == 4 and all(w.nbytes == 416 and 0 < w.stream_s <= w.seconds for w in deployed.loads)
    assert {w.source for w in deployed.loads} == {"remote", "peer"}  # the first from the file, the rest from its copy
    assert "weights 416 B per replica: " in repr(deployed) and "from the source (1 replica)" in repr(deployed)
    echo = shell.run_cell_magic("deploy", "echo --replicas 4 --gpus 0.5 --class Echo", ECHO_CELL)
    assert isinstance(echo, Deployed) and get(echo.url) == b"echo"
    status = line(shell, "servelab", "status")
    assert isinstance(status, serving.Snapshot)
    assert {(d.name, d.running_replicas) for d in status.deployments} == {("tagged", 4), ("echo", 4)}
    html = shell.display_formatter.format(status)[0]["text/html"]
    assert "tagged" in html and "fragmentation" in html


@pytest.mark.parametrize(
    ("magic", "text", "message"),
    [
        ("scale", "tagged -1", "replicas=-1 must be a non-negative integer"),
        ("scale", "ghost 2", "no deployment named 'ghost' on this cluster (deployments: echo, tagged)"),
        # 8 halves of 3 x 2 GPUs run: room for 4 more, and this fixed cluster gets no node (in the magics' words).
        ("scale", "tagged 40", "'tagged': 32 of 36 new replica(s) of GPU 0.5 cannot be placed now, and this fixed cluster"),
        ("scale", "tagged 40", "start a bigger cluster (%servelab up --nodes N). Nothing was changed."),
        ("undeploy", "ghost", "no deployment named 'ghost'"),
        ("compact", "--objective speed", "argument --objective: invalid choice: 'speed'"),
        ("compact", "--bogus", "unrecognized arguments: --bogus"),
        ("compact", "--max-draining 0", "max_draining=0 must be a positive integer"),
        ("compact", "--auto on --delay -5", "delay_s=-5.0 must be >= 0"),
        ("servelab", "launch", "argument action: invalid choice: 'launch'"),
        ("servelab", "up", "a cluster is already up at"),
        ("servelab", "up --nodes 2", "%servelab down first, or keep using it"),  # in the words of magics
        ("stream", "http://127.0.0.1:9/none.safetensors", "none.safetensors"),
        ("stream", "/nonexistent/model.safetensors --into 3x", "--into 3x: give a Python variable name"),
    ],
)
def test_bad_input_fails_the_cell_in_one_line_and_changes_nothing(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], magic: str, text: str, message: str
) -> None:
    before = serving.snapshot().fingerprint()
    assert message in failure(shell, f"%{magic} {text}", capsys)
    assert serving.snapshot().fingerprint() == before


def test_up_on_a_running_cluster_refuses_before_announcing_a_start(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert isinstance(shell.run_cell("%servelab up").error_in_exec, MagicError)
    printed = capsys.readouterr()
    assert "a cluster is already up" in printed.out + printed.err
    assert "starting an embedded cluster" not in printed.out + printed.err


@pytest.mark.parametrize(
    ("args", "cell", "message"),
    [
        ("bad", "x = 1", "the %%deploy bad cell defines no class"),
        ("bad --class Nope", ECHO_CELL, "--class Nope: the cell defines Helper, Echo"),
        ("bad", "class Broken(:\n    pass", "the cell does not parse"),
        ("bad", "class Boom:\n    pass\nraise ValueError('no')", "the cell raised ValueError: no"),
        ("bad --replicas -2", ECHO_CELL, "replicas=-2 must be a non-negative integer"),
        ("bad --gpus 8", ECHO_CELL, "no node of this cluster can ever hold"),
        ("bad --weights http://127.0.0.1:9/x.safetensors", CLASS_CELL, "weights cannot be loaded"),
        ("bad --storage-options missing --weights /x.safetensors", CLASS_CELL, "missing is not a dict in this notebook"),
        ("bad --multiplex /models/model.safetensors", CLASS_CELL, "must be a URI with one {model_id} field"),
        ("bad --multiplex /m/{model_id}.safetensors --max-models 0", CLASS_CELL, "max_models_per_replica=0 must be a positive"),
        ("bad --multiplex /m/{model_id}.safetensors --weights /w.safetensors", CLASS_CELL, "give a class and no weights="),
    ],
)
def test_bad_deploy_cells_fail_in_one_line_and_deploy_nothing(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], args: str, cell: str, message: str
) -> None:
    assert message in failure(shell, f"%%deploy {args}\n{cell}", capsys)
    assert "bad" not in {d.name for d in serving.deployments()}


def test_deploy_multiplex_serves_a_model_per_request(shell: InteractiveShell, tmp_path: Path) -> None:
    for i in range(3):
        save_file({"w": torch.full((8,), float(i))}, tmp_path / f"m{i}.safetensors")
    deployed = shell.run_cell_magic("deploy", f"mux --multiplex {tmp_path}/{{model_id}}.safetensors --max-models 2", CLASS_CELL)
    assert isinstance(deployed, Deployed) and deployed.info.healthy
    for i in (0, 1, 2, 0):
        request = urllib.request.Request(deployed.url, headers={"serve_multiplexed_model_id": f"m{i}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read()) == {"total": 8.0 * i}
    (replica,) = [r for r in serving.snapshot().replicas if r.deployment == "mux"]
    assert sorted((c.model_id, c.misses) for c in replica.models) == [("m0", 2), ("m1", 1), ("m2", 1)]
    line(shell, "undeploy", "mux")


def test_a_replica_that_fails_to_start_is_not_left_served(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    cell = "class Crashes:\n    def __init__(self):\n        raise RuntimeError('no GPU driver')\n"
    shown = failure(shell, "%%deploy crashes\n" + cell, capsys)
    assert "'crashes' failed to start" in shown and "no GPU driver" in shown
    assert "crashes" not in {d.name for d in serving.deployments()}


def test_cluster_view_draws_every_node_and_deployment(shell: InteractiveShell) -> None:
    view = ClusterView(autostart=False)
    snap = view.refresh()
    assert snap is not None
    names = {t.name for t in view.figure.data}
    assert {"tagged/tagged", "echo/echo", "free"} <= names
    gpu_rows = [t for t in view.figure.data if t.xaxis == "x" and t.name in ("tagged/tagged", "echo/echo")]
    held = sum(x for t in gpu_rows for x in t.x) * 2  # fractions of 2-GPU nodes
    assert held == pytest.approx(0.5 * 8)
    assert len(set(view.figure.layout.yaxis.categoryarray)) == len(snap.nodes)
    assert "node(s) in use" in view.header.value and "fragmentation" in view.header.value
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "tagged" in bundle["text/html"]
    view.close()


def shown_widget(shell: InteractiveShell, value: object) -> object:
    """The widget the notebook displays for ``value`` (by the model id in its display bundle)."""
    from ipywidgets.widgets.widget import _instances

    bundle = shell.display_formatter.format(value)[0]
    return _instances[bundle["application/vnd.jupyter.widget-view+json"]["model_id"]]


def test_scale_down_then_dry_run_then_compaction_from_the_panel(shell: InteractiveShell) -> None:
    before = len([n for n in serving.snapshot().workers if serving.snapshot().replicas_on(n.id)])
    for name, count in (("echo", 2), ("tagged", 2)):
        result = line(shell, "scale", f"{name} {count}")
        assert isinstance(result, Deployed) and result.info.running_replicas == count and result.info.healthy
    view = ClusterView(autostart=False)
    view.pause.value = True
    assert view.paused
    plan = line(shell, "compact", "--dry-run --max-draining 2 --min-saving 0")
    assert isinstance(plan, serving.Plan)  # the domain object: plan.nodes_to_free works, compact(plan) runs it
    assert plan.budget == serving.Budget(max_draining=2, min_saving_per_move=0.0)
    assert plan.nodes_after < plan.nodes_before == before
    assert "up to 2 nodes draining at once" in shell.display_formatter.format(plan)[0]["text/plain"]
    panel = shown_widget(shell, plan)  # what the notebook shows for it
    assert isinstance(panel, CompactionPanel) and panel.plan is plan
    assert panel.button.disabled is False and "free" in panel.button.description
    assert len(panel.after.data) > 0 and "Plan" in panel.summary_html()
    panel.run()
    report = panel.wait(300)
    assert report is not None, panel.error
    assert not report.stopped, report.reason
    assert report.budget == plan.budget  # the button ran what the dry run showed, not the default budget
    assert len(report.nodes_freed) == len(panel.plan.nodes_to_free)
    assert report.failed_requests == 0
    assert [e.kind for e in panel.events][-1] == "done" and "freed" in panel.outcome.value
    after = view.refresh()
    freed = len(report.nodes_freed)
    assert (
        after is not None and f"{freed} node{'s' if freed > 1 else ''} left since this view opened" in view.header.value
    )  # opened before the compaction
    assert serving.fragmentation(after).nodes_in_use == panel.plan.nodes_after


def test_compact_magic_reports_and_prints_events(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    report = line(shell, "compact", "")
    assert isinstance(report, serving.CompactionReport) and report.nodes_freed == ()  # already compact
    assert "nothing to free" in capsys.readouterr().out
    assert "Compaction done" in shell.display_formatter.format(report)[0]["text/plain"]


def test_automatic_compaction_turns_on_reports_and_turns_off(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    line(shell, "compact", "--auto on --delay 600 --max-draining 2")
    out = capsys.readouterr().out
    assert "automatic compaction waiting: acts after 600 s of stability" in out
    assert serving.autocompact_status() is not None
    assert serving.autocompact_status().policy["budget"]["max_draining"] == 2
    line(shell, "compact", "--auto status")
    assert "0 compaction(s)" in capsys.readouterr().out
    line(shell, "compact", "--auto off")
    assert "automatic compaction is off" in capsys.readouterr().out
    assert serving.autocompact_status() is None


def test_stream_into_a_variable_and_dry_run(shell: InteractiveShell, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import servelab.widgets

    views: list[servelab.widgets.LoadProgressView] = []

    class Kept(servelab.widgets.LoadProgressView):  # the view %stream shows, kept to read its line
        def __init__(self) -> None:
            super().__init__()
            views.append(self)

    monkeypatch.setattr(servelab.widgets, "LoadProgressView", Kept)
    info = line(shell, "stream", f"{weights} --dry-run")
    assert isinstance(info, CheckpointInfo) and info.names == ["b", "w"] and info.nbytes == 416
    assert repr(info).endswith("416 B in 1 file(s))")
    result = line(shell, "stream", f"{weights} --into w --include w")
    assert isinstance(result, Streamed) and result.into == "w" and result.nbytes == 400
    shown_rate = views[0].summary_text().rsplit(", ", 1)[-1]  # "... 0.01 s, 40 kB/s"
    assert f"({shown_rate})" in repr(result)  # one load, one rate: the progress line's and the result's agree
    assert torch.equal(shell.user_ns["w"]["w"], torch.arange(100, dtype=torch.float32))
    assert list(shell.user_ns["w"]) == ["w"]


def test_undeploy(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    line(shell, "undeploy", "echo")
    assert "removed echo" in capsys.readouterr().out
    assert {d.name for d in serving.deployments()} == {"tagged"}


def test_a_second_process_finds_the_cluster_and_scales_what_this_one_made(shell: InteractiveShell) -> None:
    code = (
        "from servelab import serving\n"
        "serving.connect()\n"  # no address: the discovery record this kernel wrote
        "serving.scale('tagged', 3)\n"
        "serving.wait_healthy()\n"
        "print([(d.name, d.running_replicas) for d in serving.deployments()])\n"
        "serving.down()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[('tagged', 3)]"
    assert {(d.name, d.running_replicas) for d in serving.deployments()} == {("tagged", 3)}


def test_down_then_up_leaves_nothing_stale(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    line(shell, "servelab", "down")
    assert "stopped" in capsys.readouterr().out
    assert serving.find_clusters() == [] or all(r.pid != __import__("os").getpid() for r in serving.find_clusters())
    snap = line(shell, "servelab", "up --nodes 1")
    assert isinstance(snap, serving.Snapshot) and snap.deployments == ()
    assert "no deployment named 'tagged'" in failure(shell, "%scale tagged 1", capsys)
