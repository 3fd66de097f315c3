"""Automatic compaction in a detached actor on the real embedded cluster: it waits, compacts, stops cleanly."""

from __future__ import annotations

import time

import pytest

from servelab import serving
from servelab.errors import CompactionError
from servelab.serving import Snapshot, ray_adapter
from servelab.serving.autocompact import ACTOR_NAME

pytestmark = pytest.mark.slow


def workers_in_use(snapshot: Snapshot) -> int:
    return sum(1 for n in snapshot.nodes if not n.head and snapshot.replicas_on(n.id))


def test_the_policy_compacts_a_stable_cluster_by_itself_then_stops(fragmented: Snapshot) -> None:
    assert workers_in_use(fragmented) == 2
    try:
        status = serving.autocompact(delay_s=3, interval_s=1)
        assert status is not None and status.state == "waiting" and status.policy["delay_s"] == 3
        deadline = time.monotonic() + 150
        # The compactor's own count, not the node count: the node empties before compact() returns.
        while time.monotonic() < deadline and not (serving.autocompact_status() or status).compactions:
            time.sleep(1)
        serving.wait_healthy()
        assert workers_in_use(serving.snapshot()) == 1
        status = serving.autocompact_status()
        assert status is not None and status.compactions >= 1 and status.nodes_freed == 1, status
        kinds = [e["kind"] for e in status.events]
        assert kinds[:2] == ["planned", "draining"] and "done" in kinds
        assert {(d.name, d.running_replicas) for d in serving.deployments()} == {("a", 2), ("b", 2)}
    finally:
        last = serving.autocompact(False)
    assert last is not None and last.state == "stopped" and last.nodes_freed == 1
    assert serving.autocompact(False) is None  # none runs any more
    assert serving.autocompact_status() is None and ray_adapter.named_actor(ACTOR_NAME) is None


def test_a_bad_policy_is_refused_and_nothing_starts(cluster: str) -> None:
    with pytest.raises(CompactionError, match="objective='speed'"):
        serving.autocompact(objective="speed")
    assert serving.autocompact_status() is None


def test_a_first_look_counts_the_quiet_time_from_the_newest_replica() -> None:
    from dataclasses import replace

    from servelab.serving.autocompact import quiet_since
    from servelab.testing.clusters import fragmented_cluster

    snap = fragmented_cluster(4, seed=0)
    now = time.time()
    started = replace(snap, replicas=tuple(replace(r, started_at=now - 60 - i) for i, r in enumerate(snap.replicas)))
    assert quiet_since(started, time.time()) == pytest.approx(now - 60)  # the newest replica started a minute ago
    unknown = replace(started, replicas=(replace(started.replicas[0], started_at=None), *started.replicas[1:]))
    assert quiet_since(unknown, time.time()) >= now  # a start not known: the delay starts now
    future = replace(snap, replicas=tuple(replace(r, started_at=now + 30) for r in snap.replicas))
    assert quiet_since(future, time.time()) <= time.time()  # a clock ahead of this one never makes a negative wait


def test_the_quiet_clock_restarts_on_replica_changes_not_on_idle_nodes() -> None:
    from dataclasses import replace

    from servelab.serving.autocompact import QuietClock
    from servelab.testing.clusters import fragmented_cluster

    snap = fragmented_cluster(6, seed=1)
    idle = [n for n in snap.nodes if not snap.replicas_on(n.id)]
    assert idle, "the generator leaves an idle node to remove"
    clock = QuietClock(looked=True)
    assert clock.observe(snap, now=100.0) == 100.0
    without_idle = replace(snap, nodes=tuple(n for n in snap.nodes if n.id != idle[0].id))
    assert clock.observe(without_idle, now=110.0) == 100.0  # an autoscaler removed an idle node: still quiet
    assert without_idle.fingerprint() != snap.fingerprint()  # but a plan made before is stale
    moved = replace(snap, replicas=(replace(snap.replicas[0], node_id=idle[0].id), *snap.replicas[1:]))
    assert clock.observe(moved, now=120.0) == 120.0  # a replica moved: the delay starts again
    draining = replace(moved, nodes=(replace(moved.nodes[0], draining=True), *moved.nodes[1:]))
    assert clock.observe(draining, now=130.0) is None
    assert clock.observe(moved, now=140.0) == 140.0


def test_a_first_look_guesses_only_when_it_finds_the_cluster_settled() -> None:
    from dataclasses import replace

    from servelab.serving.autocompact import QuietClock
    from servelab.testing.clusters import fragmented_cluster

    snap = fragmented_cluster(4, seed=0)
    settled = replace(snap, replicas=tuple(replace(r, started_at=50.0) for r in snap.replicas))
    assert QuietClock().observe(settled, now=100.0) == 50.0  # first look: from the newest replica's start
    changing = replace(settled, nodes=(replace(settled.nodes[0], draining=True), *settled.nodes[1:]))
    clock = QuietClock()
    assert clock.observe(changing, now=100.0) is None
    # Seen changing (a scale-down stopping replicas starts none): it settled when seen settled, not at 50.
    assert clock.observe(settled, now=101.0) == 101.0
