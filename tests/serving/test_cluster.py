"""Serving on a real embedded Ray cluster: deployments, snapshot, fragmentation and live compaction."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from servelab import serving
from servelab.errors import MAGIC, SIDEBAR, ClusterError, CompactionError, DeploymentError, StalePlanError
from servelab.serving import Snapshot, ray_adapter
from servelab.serving.cluster import GPU_MODE_LABEL, cost_from_labels, devices_from_labels
from servelab.serving.gpus import LOGICAL, LOGICAL_NOTE
from servelab.serving.placement import gpu_instances
from servelab.serving.snapshot import short_id
from servelab.testing import NginxServer
from servelab.testing.apps import Echo, Pipeline, WeightsSummary
from servelab.widgets.model import Header

from .conftest import WORKERS, reset


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def workers_in_use(snapshot: Snapshot) -> int:
    return sum(1 for n in snapshot.nodes if not n.head and snapshot.replicas_on(n.id))


def test_snapshot_and_fragmentation_of_a_scaled_down_cluster(fragmented: Snapshot) -> None:
    workers = [n for n in fragmented.nodes if not n.head]
    assert len(workers) == 3 and all(n.total["GPU"] == 2.0 and n.total["CPU"] == 1.0 for n in workers)
    assert {(n.type, n.cost, n.labels.get("zone")) for n in workers} == {("gpu2", 2.5, "a")}
    assert {cost_from_labels(n.labels) for n in workers} == {2.5}  # so a process that attaches prices them alike
    assert fragmented.autoscaler is None  # a fixed cluster: no autoscaler, and no autoscaler line in any view
    assert [r.resources for r in fragmented.replicas] == [{"GPU": 0.5}] * 4
    assert {r.app for r in fragmented.replicas} == {"a", "b"}
    fragmentation = serving.fragmentation(fragmented)
    assert (fragmentation.nodes_in_use, fragmentation.lower_bound) == (2, 1)
    assert fragmentation.score == 0.5
    assert get(serving.url("a")) == b"a" and get(serving.url("b")) == b"b"
    # Each raylet says which GPU instance holds what: it adds up to Ray's scalar count, and the two
    # halves left on a node hold at most one GPU each.
    for node in workers:
        halves = len(fragmented.replicas_on(node.id))
        if not halves:
            assert node.gpu_free is None  # no fraction held there: no raylet asked
            continue
        assert node.gpu_free is not None and len(node.gpu_free) == 2
        assert sum(node.gpu_free) == pytest.approx(node.available["GPU"])
        assert all(0.0 <= free <= 1.0 for free in node.gpu_free)
        assert sum(1.0 - free for free in node.gpu_free) == pytest.approx(0.5 * halves)


def test_compaction_under_load_frees_the_planned_node_with_zero_failures(fragmented: Snapshot) -> None:
    plan = serving.plan(fragmented)
    assert plan.nodes_before == 2 and plan.nodes_after == 1 and len(plan.moves) == 2
    assert plan.freed_cost_per_hour == 2.5 and plan.freed_resources["GPU"] == 2.0
    events: list[serving.CompactionEvent] = []
    probe = serving.LoadProbe([serving.url("a"), serving.url("b")])
    report = serving.compact(plan, probe=probe, on_event=events.append)

    after = serving.snapshot()
    assert not report.stopped, report.reason
    assert report.nodes_freed == plan.nodes_to_free
    assert workers_in_use(after) == plan.nodes_after
    assert not set(plan.nodes_to_free) & {n.id for n in after.nodes}  # released from the cluster
    assert {(d.name, d.status, d.running_replicas) for d in serving.deployments()} == {("a", "HEALTHY", 2), ("b", "HEALTHY", 2)}
    assert report.during is not None and report.during.requests > 10
    assert report.failed_requests == 0
    assert report.before is not None and report.before.p50_ms is not None and report.during.p99_ms is not None
    assert [e.kind for e in events] == ["planned", "draining", "migrated", "released", "done"]
    assert "servelab removed its raylet (this fixed cluster has no autoscaler" in events[3].message


@pytest.mark.parametrize("max_draining", [1, 2])
def test_two_nodes_are_freed_one_wave_at_a_time_or_together(cluster: str, max_draining: int) -> None:
    reset(cluster)
    # Three nodes with one replica each, one would do: a and b pack a node each and keep one replica,
    # and c's one replica goes to the last empty node, the only one with room (pack scheduling).
    for name, replicas in (("a", 4), ("b", 4), ("c", 1)):
        serving.deploy(name, Echo, replicas=replicas, gpus=0.5, init_args=(name,))
    for name in ("a", "b"):
        serving.scale(name, 1)
    serving.wait_healthy()
    plan = serving.plan(serving.snapshot())
    assert plan.nodes_before == 3 and plan.nodes_after == 1 and len(plan.nodes_to_free) == 2
    events: list[serving.CompactionEvent] = []
    probe = serving.LoadProbe([serving.url(name) for name in ("a", "b", "c")])
    report = serving.compact(plan, budget=serving.Budget(max_draining=max_draining), probe=probe, on_event=events.append)
    assert not report.stopped, report.reason
    assert len(report.nodes_freed) == 2
    waves = [e.kind for e in events if e.kind in ("draining", "migrated")]
    if max_draining == 2:  # one wave: Serve can only choose the node that stays, as planned
        assert sorted(report.nodes_freed) == sorted(plan.nodes_to_free)
        assert waves == ["draining", "draining", "migrated", "migrated"]
        assert report.replicas_moved == 2 and report.replicas_as_planned == 2
    else:  # two waves; Serve may start the first replacement on the second node (a tie), which then moves again
        assert waves == ["draining", "migrated", "draining", "migrated"]
        assert report.replicas_moved in (2, 3)
    # Each node is released once empty, the first while the second wave may already be migrating.
    released = [e.node for e in events if e.kind == "released"]
    assert sorted(released) == sorted(report.nodes_freed) and events[-1].kind == "done"
    assert all(
        events.index(next(e for e in events if e.kind == "migrated" and e.node == node))
        < events.index(next(e for e in events if e.kind == "released" and e.node == node))
        for node in released
    )
    assert report.failed_requests == 0
    assert workers_in_use(serving.snapshot()) == 1


def test_a_plan_not_worth_its_moves_is_not_run(fragmented: Snapshot) -> None:
    report = serving.compact(budget=serving.Budget(min_saving_per_move=100.0))
    assert report.nodes_freed == () and not report.dry_run
    assert "not worth it" in report.reason and "min_saving_per_move=$100.000/h" in report.reason
    assert serving.snapshot().fingerprint() == fragmented.fingerprint()


def test_dry_run_changes_nothing_and_stale_plans_are_refused(fragmented: Snapshot) -> None:
    report = serving.compact(dry_run=True)
    assert report.dry_run and report.plan.nodes_to_free and report.nodes_freed == ()
    assert serving.snapshot().fingerprint() == fragmented.fingerprint()
    stale = serving.plan(fragmented)
    serving.scale("a", 1)
    serving.wait_healthy()
    with pytest.raises(StalePlanError, match="the cluster changed since this plan was made") as refused:
        serving.compact(stale)
    assert "plan(snapshot())" in str(refused.value)  # Python's words; a magic and the sidebar say it their way
    assert "%compact --dry-run" in refused.value.in_words_of(MAGIC) and "Plan again" in refused.value.in_words_of(SIDEBAR)
    assert sum(1 for n in serving.snapshot().nodes if not n.head) == 3


def test_a_node_lost_midway_stops_compaction_and_nothing_is_lost(fragmented: Snapshot) -> None:
    plan = serving.plan(fragmented)
    idle = next(n.id for n in fragmented.nodes if not n.head and not fragmented.replicas_on(n.id))

    def lose_a_node(event: serving.CompactionEvent) -> None:
        if event.kind == "draining":
            serving.remove_node(idle)

    report = serving.compact(plan, on_event=lose_a_node)
    assert report.stopped and report.nodes_freed == ()
    assert "left the cluster during compaction" in report.reason
    assert report.events[-1].kind == "stopped"
    serving.wait_healthy()
    assert {(d.name, d.running_replicas) for d in serving.deployments()} == {("a", 2), ("b", 2)}


def test_replicas_stream_their_weights_from_http(cluster: str, served_dir: Path, nginx: NginxServer) -> None:
    reset(cluster)
    path = served_dir / "replica-weights.safetensors"
    save_file({"w": torch.arange(1000, dtype=torch.float32), "b": torch.ones(10, dtype=torch.bfloat16)}, path)
    serving.deploy("summary", WeightsSummary, replicas=2, gpus=0.5, weights=nginx.url(path.name))
    answer = json.loads(get(serving.url("summary")))
    expected = load_file(path)
    assert answer["tensors"] == 2
    assert answer["checksum"] == float(sum(float(t.double().sum()) for t in expected.values()))
    assert answer["load_s"] is not None and answer["load_s"] > 0
    if not torch.cuda.is_available():  # logical GPUs, labelled as such; the replicas run on the CPU and say so
        assert serving.gpu_mode().startswith(LOGICAL_NOTE) and "this machine has no GPU" in serving.gpu_mode()
        snapshot = serving.snapshot()
        assert snapshot.gpu_mode == LOGICAL and Header.of(snapshot).gpus == LOGICAL_NOTE
        # Read from the workers' labels, as a process that attached (the sidebar's) reads it; no physical GPUs to read.
        assert all(
            n.labels[GPU_MODE_LABEL] == LOGICAL and not devices_from_labels(n.labels) for n in snapshot.nodes if not n.head
        )
        assert answer["devices"] == ["cpu"] and answer["cuda_visible_devices"] == ""


def test_composition_through_a_handle(cluster: str) -> None:
    reset(cluster)
    serving.deploy("inner", Echo, replicas=1, gpus=0.25, init_args=("inner",))
    serving.deploy("outer", Pipeline, replicas=1, init_args=(serving.handle("inner"),))
    assert get(serving.url("outer")) == b"pipeline(inner)"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gpus": -1}, "gpus=-1 must be a non-negative number"),
        ({"cpus": "two"}, "cpus='two' must be a non-negative number"),
        ({"gpus": 3}, "no node of this cluster can ever hold"),
        ({"replicas": 1.5}, "replicas=1.5 must be a non-negative integer"),
        ({"weights": "http://127.0.0.1:9/none.safetensors"}, "weights cannot be loaded"),
    ],
)
def test_bad_deployments_change_nothing(cluster: str, options: dict, message: str) -> None:
    reset(cluster)
    with pytest.raises(DeploymentError, match=message):
        serving.deploy("bad", WeightsSummary, **options)
    assert serving.deployments() == []


def test_replicas_a_fixed_cluster_has_no_room_for_are_refused_at_once_and_change_nothing(fragmented: Snapshot) -> None:
    before = serving.snapshot()
    whole_free = sum(int(free + 1e-6) for n in before.workers for free in gpu_instances(n))
    assert whole_free == 4  # a's and b's halves pack onto one GPU of their nodes: 1 + 1 + 2 whole GPUs left

    with pytest.raises(DeploymentError) as refused:
        serving.deploy("extra", Echo, replicas=whole_free + 1, gpus=1)
    message = str(refused.value)
    assert message.startswith(f"'extra': 1 of {whole_free + 1} new replica(s) of GPU 1 cannot be placed now, ")
    assert "this fixed cluster gets no new nodes: the largest free room on a node is GPU 2" in message
    assert "Make room (scale another deployment down or delete one)" in message and "Nothing was changed." in message

    with pytest.raises(DeploymentError, match=r"^'a': 1 of 9 new replica\(s\) of GPU 0.5 cannot be placed now"):
        serving.scale("a", 2 + 2 * whole_free + 1)  # 2 running, room for 8 more halves

    after = serving.snapshot()
    assert after.fingerprint() == before.fingerprint()  # the cluster as it was: no app, no replica, no target changed
    assert {(d.name, d.target_replicas) for d in serving.deployments()} == {("a", 2), ("b", 2)}


def test_weights_that_are_not_safetensors(cluster: str, served_dir: Path, nginx: NginxServer) -> None:
    reset(cluster)
    (served_dir / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(DeploymentError, match=r"weights cannot be loaded: .*notes\.txt"):
        serving.deploy("bad", WeightsSummary, weights=nginx.url("notes.txt"))
    assert serving.deployments() == []


def test_unknown_names_and_second_up(cluster: str) -> None:
    with pytest.raises(DeploymentError, match="no deployment named 'ghost'"):
        serving.scale("ghost", 2)
    with pytest.raises(DeploymentError, match="no deployment named 'ghost'"):
        serving.delete("ghost")
    with pytest.raises(ClusterError, match="a cluster is already up"):
        serving.up()
    with pytest.raises(ClusterError, match="gpus=-1: resources must be non-negative numbers"):
        serving.up(gpus_per_node=-1)
    with pytest.raises(ClusterError, match="cpus='many': resources must be non-negative numbers"):
        serving.up(node_types={"big": {"count": 1, "cpus": "many"}})
    with pytest.raises(CompactionError, match="either a plan or planning options"):
        serving.compact(serving.plan(serving.snapshot()), objective="cost")


def test_connect_where_no_cluster_answers() -> None:
    import subprocess
    import sys

    code = "from servelab.serving import connect\ntry:\n    connect('127.0.0.1:1')\nexcept Exception as e:\n    print(type(e).__name__, e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("ClusterError no Ray cluster answers at '127.0.0.1:1'")


def test_connect_attaches_to_a_running_cluster_and_down_leaves_it_running(cluster: str) -> None:
    import subprocess
    import sys

    code = (
        "from servelab import serving\n"
        "from servelab.errors import CompactionError\n"
        f"serving.connect({cluster!r})\n"
        "snap = serving.snapshot()\n"
        "print(serving.freed_by())\n"  # attached, no autoscaler: nobody takes a freed node away
        "try:\n"
        "    serving.autocompact(delay_s=3600)\n"
        "except CompactionError as exc:\n"
        "    print('refused:', exc)\n"
        "print(sum(1 for n in snap.nodes if not n.head), sorted({r.app for r in snap.replicas}))\n"
        "serving.down()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    *_, frees, refused, counted = out.stdout.strip().splitlines()
    assert frees == "nobody"
    assert refused.startswith(
        "refused: automatic compaction: no autoscaler serves this cluster: compacting drains the nodes it frees"
    )
    assert refused.endswith("call autocompact(..., release_unowned_nodes=True).")
    assert serving.autocompact_status() is None  # nothing was turned on
    workers = sum(1 for n in serving.snapshot().nodes if not n.head)
    assert counted.startswith(f"{workers} ")
    assert serving.snapshot().nodes  # the embedded cluster is still up after the other process's down()


def test_rays_own_compaction_is_off_in_a_cluster_up_started(cluster: str) -> None:
    import ray

    @ray.remote(num_cpus=0)
    def setting(name: str) -> str | None:
        from ray.serve._private import constants  # what Serve's controller reads, in a process the cluster started

        return str(getattr(constants, name))

    assert ray.get(setting.remote("RAY_SERVE_USE_PACK_SCHEDULING_STRATEGY")) == "True"
    assert ray.get(setting.remote("RAY_SERVE_NODE_COMPACTION_DELAY_S")) == "inf"


def test_rays_usage_statistics_are_off_in_a_cluster_up_started(cluster: str) -> None:
    import ray
    from ray._common.usage import usage_lib

    @ray.remote(num_cpus=0)
    def reporting() -> bool:
        return usage_lib.usage_stats_enabled()  # what a process the cluster started would do

    metadata = usage_lib.get_cluster_metadata(ray._private.worker.global_worker.gcs_client)
    # The head records the commit and its start time only where usage statistics are on.
    assert "ray_version" in metadata and "git_commit" not in metadata and "session_start_timestamp_ms" not in metadata
    assert ray.get(reporting.remote()) is False


def test_compact_refuses_to_run_beside_a_drain_it_did_not_start(cluster: str) -> None:
    reset(cluster)
    serving.deploy("full", Echo, replicas=WORKERS, gpus=2, init_args=("full",))  # every GPU taken: nothing can migrate
    victim = serving.snapshot().replicas[0].node_id
    assert victim is not None
    accepted, _ = ray_adapter.drain_node(victim, "an operator's drain")
    assert accepted
    snap = serving.snapshot()
    assert [(n.id, n.drained_by) for n in snap.foreign_drains] == [(victim, "other")]
    with pytest.raises(CompactionError, match=f"being emptied already: {short_id(victim)} by a drain servelab did not start"):
        serving.compact()
    after = serving.snapshot()  # Serve's own pending replacement (no node has room) may appear: not a move
    assert [n.id for n in after.nodes if n.draining] == [victim]  # compact() drained nothing
    assert {(r.id, r.node_id) for r in after.replicas if r.node_id} == {(r.id, r.node_id) for r in snap.replicas if r.node_id}
    reset(cluster)
