"""Ray's own autoscaler in the loop: an autoscaling embedded cluster (Ray's autoscaler v2 with its
local node provider) scales up for a deployment, compaction frees nodes the autoscaler then
terminates, and a compaction never races a launch.

One cluster for the module; the tests run in file order, each leaving it as the next expects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servelab import serving
from servelab.errors import ClusterError, CompactionError
from servelab.serving import context, ray_adapter
from servelab.serving.snapshot import Snapshot
from servelab.testing import NginxServer, free_port
from servelab.testing.apps import Echo, WeightsSummary
from servelab.testing.checkpoints import write_llm_checkpoint
from servelab.widgets.model import timeline_phases

IDLE_TIMEOUT_S = 10
GPU2 = {"min": 0, "max": 3, "cpus": 1, "gpus": 2, "cost_per_hour": 2.5}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    address = serving.up(autoscale=True, node_types={"gpu2": GPU2}, idle_timeout_s=IDLE_TIMEOUT_S, http_port=free_port())
    try:
        yield address
    finally:
        serving.down()


def alive_workers() -> set[str]:
    """Worker node ids alive in Ray's own node list (the GCS), not in servelab's bookkeeping."""
    return {raw.id for raw in ray_adapter.nodes() if raw.alive and not raw.head}


class Watch:
    """Records what the views would say of the autoscaler, every half second, while a block runs."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            state = serving.snapshot().autoscaler
            if state is not None and state.describe():
                self.lines.append(state.describe())
            self._stop.wait(0.5)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_starts_with_no_workers_and_refuses_to_add_or_remove_nodes_itself(cluster: str) -> None:
    snap = serving.snapshot()
    assert [n.head for n in snap.nodes] == [True] and snap.autoscaler is not None and not snap.autoscaler.busy
    assert context.current().workers == {}
    with pytest.raises(ClusterError, match="the autoscaler launches nodes when replicas do not fit"):
        serving.add_node()
    with pytest.raises(ClusterError, match="its autoscaler terminates idle nodes"):
        serving.remove_node(snap.nodes[0].id)


def test_a_deployment_larger_than_the_cluster_makes_the_autoscaler_launch_nodes(cluster: str) -> None:
    with Watch() as watch:
        serving.deploy("a", Echo, replicas=4, gpus=0.5, init_args=("a",))
        serving.deploy("b", Echo, replicas=4, gpus=0.5, init_args=("b",))
    assert {(d.name, d.status, d.running_replicas) for d in serving.deployments()} == {("a", "HEALTHY", 4), ("b", "HEALTHY", 4)}
    snap = serving.snapshot()
    assert len(alive_workers()) == 2 and {n.type for n in snap.workers} == {"gpu2"}
    assert snap.autoscaler is not None and {n.node_id for n in snap.autoscaler.nodes} == alive_workers()
    assert any("wait for a node: launching 1 node(s) of type gpu2" in line for line in watch.lines), watch.lines
    assert context.current().workers == {}  # launched by the autoscaler, not by servelab


def scaled_down() -> Snapshot:
    serving.scale("a", 2)
    serving.scale("b", 2)
    serving.wait_healthy()
    # Serve reports the deployments healthy before the stopped replicas' processes have given their
    # GPUs back to Ray: the plan is made once Ray's own accounting holds only the running replicas
    # (a fresh-clone run planned while a stopped replica still held its GPU, and found nothing to free).
    return released()


def released(timeout_s: float = 60.0) -> Snapshot:
    """A snapshot in which the workers' used GPUs are exactly what the running replicas hold."""
    deadline = time.monotonic() + timeout_s
    while True:
        snap = serving.snapshot()
        used = sum(n.total.get("GPU", 0.0) - n.available.get("GPU", 0.0) for n in snap.workers)
        running = sum(r.resources.get("GPU", 0.0) for r in snap.replicas if r.state == "RUNNING")
        if abs(used - running) < 1e-6:
            return snap
        assert time.monotonic() < deadline, (
            f"GPUs still held by stopped replicas after {timeout_s:.0f} s: {used} used, {running} running"
        )
        time.sleep(0.5)


def test_compaction_frees_nodes_and_the_autoscaler_terminates_them_with_no_failed_request(cluster: str) -> None:
    snap = scaled_down()
    plan = serving.plan(snap)
    assert (plan.nodes_before, plan.nodes_after) == (2, 1), plan
    events: list[serving.CompactionEvent] = []
    probe = serving.LoadProbe([serving.url("a"), serving.url("b")])
    report = serving.compact(plan, probe=probe, on_event=events.append)

    assert not report.stopped, report.reason
    assert report.nodes_freed == plan.nodes_to_free
    assert report.failed_requests == 0 and report.during is not None and report.during.requests > 10
    assert [node for node, _ in report.terminated] == list(plan.nodes_to_free)
    assert all(0 < after_s < 180 for _, after_s in report.terminated)
    assert [e.kind for e in events] == ["planned", "draining", "migrated", "released", "terminated", "done"]
    assert "terminated by the autoscaler" in events[4].message
    (_, after_s), drained, terminated = report.terminated[0], events[1], events[4]
    assert terminated.elapsed_s == pytest.approx(drained.elapsed_s + after_s)  # one clock: the times add up
    assert f"{after_s:.1f} s after its drain at {drained.elapsed_s:.1f} s" in terminated.message
    assert "the autoscaler terminates the node" in events[3].message  # the words of an autoscaling cluster
    assert not set(plan.nodes_to_free) & alive_workers()  # gone from Ray's own node list
    assert len(alive_workers()) == 1
    assert {(d.name, d.status, d.running_replicas) for d in serving.deployments()} == {("a", "HEALTHY", 2), ("b", "HEALTHY", 2)}


def test_a_compaction_never_races_a_launch(cluster: str) -> None:
    """While the autoscaler launches a node for replicas that do not fit, compact() refuses and says why."""
    busy = threading.Event()
    refused: list[str] = []

    def compact_while_launching() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = serving.snapshot().autoscaler
            if state is not None and state.launching:
                busy.set()
                try:
                    serving.compact()
                except CompactionError as exc:
                    refused.append(str(exc))
                return
            time.sleep(0.2)

    racer = threading.Thread(target=compact_while_launching)
    racer.start()
    serving.deploy("c", Echo, replicas=4, gpus=0.5, init_args=("c",))  # 2 GPUs: no room on the node left
    racer.join()
    assert busy.is_set(), "the autoscaler never reported a launch"
    assert len(refused) == 1 and refused[0].startswith("the autoscaler is busy: "), refused
    assert "launching 1 node(s) of type gpu2" in refused[0]
    assert len(alive_workers()) == 2 and serving.all_healthy()


def test_once_nothing_runs_the_autoscaler_terminates_every_worker(cluster: str, served_dir: Path, nginx: NginxServer) -> None:
    """A replica that waited for a launch shows it in its timeline; nothing servelab leaves behind keeps
    a node busy: not a peer cache holder, once evicted."""
    serving.delete_all()
    write_llm_checkpoint(served_dir / "autoscaled", 4 * 2**20)
    # Three whole nodes: the two idle ones and one the autoscaler launches.
    serving.deploy("held", WeightsSummary, replicas=3, gpus=2, weights=nginx.url("autoscaled/model.safetensors"))
    assert serving.weight_cache()  # held on a worker by the peer cache's holder there
    waited = [t for t in serving.replica_timelines("held") if t.node_ready is not None]
    assert len(waited) == 1 and waited[0].scheduled is not None and waited[0].scheduled < waited[0].node_ready
    assert timeline_phases(waited)[0].phase == "waiting for a node"
    serving.delete_all()
    serving.evict_weights()
    deadline = time.monotonic() + IDLE_TIMEOUT_S + 60
    while alive_workers() and time.monotonic() < deadline:
        time.sleep(1)
    assert alive_workers() == set()
