"""What the widgets draw, from synthetic snapshots: pure logic, no cluster, no frontend."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest

from servelab.serving import CacheEntry, Node, Replica, Snapshot, plan, projected
from servelab.serving.snapshot import DeploymentInfo
from servelab.widgets.figures import cluster_traces
from servelab.widgets.model import (
    FIXED,
    FREE,
    OTHER,
    STRANDED,
    Header,
    colours,
    deployment_colours,
    node_label,
    resources_of,
    segments,
)
from servelab.widgets.summary import header_html, plan_aim, plan_text, snapshot_html, snapshot_text


def node(name: str, gpus: float, free_gpus: float, cpus: float = 4, free_cpus: float = 4, head: bool = False) -> Node:
    return Node(
        name,
        "head" if head else "gpu",
        {"GPU": gpus, "CPU": cpus},
        {"GPU": free_gpus, "CPU": free_cpus},
        head=head,
        cost_per_hour=None if head else 3.0,
    )


def replica(name: str, deployment: str, node_id: str, gpus: float) -> Replica:
    return Replica(name, deployment, deployment, node_id, {"GPU": gpus})


@pytest.fixture
def snap() -> Snapshot:
    # n1: 2 x 1.5-GPU replicas of "big" leave 1 GPU that no 1.5-GPU shape fits; n2: one 0.5-GPU "small".
    return Snapshot(
        nodes=(node("h", 0, 0, cpus=2, free_cpus=1, head=True), node("n1", 4, 1), node("n2", 2, 1.5), node("n3", 2, 2)),
        replicas=(replica("r1", "big", "n1", 1.5), replica("r2", "big", "n1", 1.5), replica("r3", "small", "n2", 0.5)),
    )


def test_each_bar_adds_up_to_the_node_and_names_who_holds_what(snap: Snapshot) -> None:
    parts = segments(snap)
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for part in parts:
        totals[(part.node, part.resource)] += part.fraction
    assert all(total == pytest.approx(1.0) for total in totals.values())
    n1 = {p.holder: p.amount for p in parts if p.node == node_label(snap.node("n1")) and p.resource == "GPU"}
    assert n1["big/big"] == 3.0
    # two of three replicas are 1.5-GPU "big", which cannot use n1's free GPU: two thirds of it are stranded
    assert n1[STRANDED] == pytest.approx(2 / 3) and n1[FREE] == pytest.approx(1 / 3)
    head = {p.holder: p.amount for p in parts if p.node == node_label(snap.node("h")) and p.resource == "CPU"}
    assert head[OTHER] == 1.0  # Serve's controller and proxy, not a replica
    assert head[FREE] == 1.0 and STRANDED not in head  # no GPU shape fits the head, but its capacity is not for replicas
    assert resources_of(snap) == ["GPU", "CPU"]  # no replica asks for memory: no memory column


def test_header_and_labels(snap: Snapshot) -> None:
    header = Header.of(snap)
    assert (header.nodes_in_use, header.lower_bound) == (2, 1)
    assert header.cost_per_hour == pytest.approx(9.0 + 0.08)  # three priced workers and a head priced by its CPUs
    draining = Node("n9", "gpu", {"GPU": 1}, {"GPU": 1}, draining=True)
    assert node_label(draining) == "gpu n9 (draining)" and node_label(snap.node("h")).endswith("(head)")
    assert "big x2" in snapshot_text(snap)
    assert header.pricing.startswith("$/h: 1 of 4 node(s) priced by their resources at on-demand cloud rates ($2 per GPU")
    logical = replace(snap, gpu_mode="logical")
    assert Header.of(logical).pricing.endswith(
        "the GPUs are logical, so these are what such nodes would cost, not what this machine costs"
    )
    assert header.pricing in header_html(header)  # the $/h figure's tooltip


def test_a_deployment_keeps_its_colour_when_another_scales_to_zero(snap: Snapshot) -> None:
    def info(name: str, replicas: int) -> DeploymentInfo:
        return DeploymentInfo(name, name, "HEALTHY", replicas, replicas, replicas, {"GPU": 0.5}, None)

    names = [f"d{i}" for i in range(10)]
    full = replace(snap, replicas=tuple(replica(f"r{i}", n, "n3", 0.1) for i, n in enumerate(names)))
    full = replace(full, deployments=tuple(info(n, 1) for n in names))
    before = deployment_colours(full)
    assert len({before[f"{n}/{n}"] for n in names}) == 10  # ten deployments, ten colours
    for gone in names:  # each in turn scaled to 0: it has no replica, but is still a deployment
        scaled = replace(full, replicas=tuple(r for r in full.replicas if r.deployment != gone))
        scaled = replace(scaled, deployments=tuple(info(n, 0 if n == gone else 1) for n in names))
        assert deployment_colours(scaled) == before


def test_every_node_is_a_row_in_every_column_and_colours_are_distinct(snap: Snapshot) -> None:
    traces = cluster_traces(snap)
    for axis in ("y", "y2"):
        rows = {y for t in traces if t.yaxis == axis for y in t.y}
        assert rows == {node_label(n) for n in snap.nodes}
    assert colours(["b/b", "a/a", "b/b"])["b/b"] == colours(["a/a", "b/b"])["b/b"]  # one colour per name, repeats or not
    palette = colours(["a/a", "b/b", "c/c"])
    assert len({palette[d] for d in ("a/a", "b/b", "c/c")}) == 3
    assert all(palette[k] == v for k, v in FIXED.items())


def test_the_projected_layout_matches_the_plan(snap: Snapshot) -> None:
    compaction = plan(snap)
    assert compaction.optimal and plan_aim(compaction) == "free the most nodes; no plan does better"
    assert plan_aim(compaction) in plan_text(compaction)
    after = projected(snap, compaction)
    assert {n.id for n in after.nodes} == {n.id for n in snap.nodes} - set(compaction.nodes_to_free)
    for move in compaction.moves:
        assert next(r for r in after.replicas if r.id == move.replica).node_id == move.target
    target = after.node(compaction.moves[0].target)
    used = sum(r.resources["GPU"] for r in after.replicas if r.node_id == target.id)
    assert target.available["GPU"] == pytest.approx(target.total["GPU"] - used)
    assert "move small" in plan_text(compaction)


def test_load_progress_view_draws_a_bar_per_file_and_the_rate() -> None:
    from servelab.loader import LoadProgress
    from servelab.widgets import LoadProgressView

    view = LoadProgressView()
    files = (
        ("s3://m/model-00001-of-00002.safetensors", 50_000_000, 100_000_000),
        ("s3://m/model-00002-of-00002.safetensors", 0, 100_000_000),
    )
    view(LoadProgress("s3://m/index.json", 50_000_000, 200_000_000, 3, 10, 0.5, files))
    bars = list(view.files.children)
    assert [b.description for b in bars] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert [b.value for b in bars] == [0.5, 0.0]
    done = tuple((uri, total, total) for uri, _, total in files)
    view(LoadProgress("s3://m/index.json", 200_000_000, 200_000_000, 10, 10, 1.0, done))
    assert [b.value for b in bars] == [1.0, 1.0] and {b.bar_style for b in bars} == {"success"}
    assert view.summary_text() == "200 MB of 200 MB, 10/10 tensors, 2 file(s), 1.00 s, 200 MB/s"


def test_models_are_summed_over_the_replicas_of_a_multiplexed_deployment() -> None:
    from servelab.serving import ModelCount
    from servelab.widgets import ModelsView
    from servelab.widgets.model import model_rows

    counts = {
        "r1": (
            ModelCount("m0", requests=5, misses=1, load_s=0.2, nbytes=100, loaded=True),
            ModelCount("m1", requests=1, misses=1, evictions=1),
        ),
        "r2": (
            ModelCount("m0", requests=3, misses=2, evictions=1, load_s=0.4, nbytes=200, loaded=True),
            ModelCount("bad", errors=2),
        ),
    }
    replicas = tuple(Replica(r, "mux", "mux", "n1", {"GPU": 0.5}, models=m) for r, m in counts.items())
    snap = Snapshot((node("n1", 2, 1),), (*replicas, replica("r3", "plain", "n1", 0.5)))
    rows = model_rows(snap, "mux")
    assert [r.count.model_id for r in rows] == ["m0", "m1", "bad"]  # busiest first
    m0 = rows[0].count
    assert (rows[0].held_by, m0.requests, m0.hits, m0.misses, m0.evictions, m0.loaded) == (2, 8, 5, 3, 1, True)
    assert m0.hit_rate == pytest.approx(5 / 8) and m0.mean_load_s == pytest.approx(0.2)
    assert (rows[1].held_by, rows[1].count.loaded) == (0, False)
    assert rows[2].count.hit_rate is None and rows[2].count.errors == 2
    assert model_rows(snap, "plain") == []
    view = ModelsView("mux", read=lambda: snap, autostart=False)
    assert "mux: 3 model(s) asked for, 1 loaded now, 9 request(s), hit rate 56%" in view.summary_text()
    assert "<td" in view.table.value and "m0" in view.summary_html()
    view.close()


def test_replica_timelines_become_one_row_of_phases_per_replica() -> None:
    from servelab.serving import ReplicaTimeline
    from servelab.widgets import TimelineView
    from servelab.widgets.model import timeline_phases

    first = ReplicaTimeline("aaaaaaaa1", "clf", "clf", "n1", 102.0, 103.0, 106.0, "remote", 2**30, 106.5, 110.0, 100.0, 1.0)
    later = ReplicaTimeline("bbbbbbbb2", "clf", "clf", "n2", 121.0, 121.0, 121.5, "peer", 2**30, 122.0, None, 120.0, 0.25)
    phases = timeline_phases([later, first])
    assert [(p.replica, p.phase, p.start_s, p.seconds) for p in phases] == [
        ("aaaaaaaa (clf)", "process start", 0.0, 3.0),  # until the weights were asked for: imports included
        ("aaaaaaaa (clf)", "weights (remote)", 3.0, 3.0),
        ("aaaaaaaa (clf)", "constructor", 6.0, 0.5),
        ("aaaaaaaa (clf)", "until first request", 6.5, 3.5),
        ("bbbbbbbb (clf)", "process start", 20.0, 1.0),
        ("bbbbbbbb (clf)", "weights (peer)", 21.0, 0.5),
        ("bbbbbbbb (clf)", "constructor", 21.5, 0.5),
    ]
    assert "1.07 GB/s (1.00 s of 3.00 s" in phases[1].detail  # the bytes' own rate, not over the whole phase
    assert "peer cache at 4.29 GB/s" in phases[5].detail
    view = TimelineView("clf", read=lambda: [first, later], autostart=False)
    assert "2 replica start(s), 1 from the peer cache, 1 from remote storage" in view.header.value
    assert {t.name for t in view.figure.data} == {
        "process start",
        "weights (remote)",
        "weights (peer)",
        "constructor",
        "until first request",
    }
    assert "peer: 1.07 GB" in view.summary_text() and "10.00 s" in view.summary_text()
    view.close()


def test_a_replica_that_waited_for_a_launched_node_shows_the_wait_first() -> None:
    from servelab.serving import ReplicaTimeline
    from servelab.widgets.model import timeline_phases

    waited = ReplicaTimeline("cccccccc3", "clf", "clf", "n3", 112.0, 113.0, 114.0, "peer", 2**20, 114.5, 115.0, 100.0, 0.5, 108.0)
    phases = [(p.phase, p.start_s, p.seconds) for p in timeline_phases([waited])]
    assert phases[:2] == [("waiting for a node", 0.0, 8.0), ("process start", 8.0, 5.0)]


def test_the_snapshot_summary_lists_the_cached_weights_and_where_they_are(snap: Snapshot) -> None:
    cached = replace(snap, weight_cache=(CacheEntry("http://m/w.safetensors", 1_050_000_000, 2, "r1", 1.0, 2.0, "n1"),))
    assert "cached weights" not in snapshot_text(snap) and "cached weights" not in snapshot_html(snap)
    assert "cached weights http://m/w.safetensors: 1.05 GB on gpu n1, read 2 time(s)" in snapshot_text(cached)
    assert "<td " in snapshot_html(cached) and "1.05 GB" in snapshot_html(cached) and "gpu n1" in snapshot_html(cached)
