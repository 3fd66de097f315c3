"""The placement model (pure logic, no Ray): which replicas count as stuck, what Room allows, and that the
planner, the steering and the executor's check agree with it."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from servelab.serving.executor import _cannot_move
from servelab.serving.placement import NoRoom, Room, gpu_instances, place_new, stuck, take_gpu
from servelab.serving.planner import plan as make_plan
from servelab.serving.snapshot import Node, Replica, Snapshot
from servelab.testing.clusters import fragmented_cluster, wide_cluster

NOW = 1_000.0


def node(name: str, free_gpus: float, **kwargs) -> Node:
    return Node(name, "gpu", {"GPU": 4.0}, {"GPU": free_gpus}, **kwargs)


def pending(name: str, age_s: float, gpus: float = 1.0, **kwargs) -> Replica:
    return Replica(name, "d", "app", None, {"GPU": gpus}, state="STARTING", started_at=NOW - age_s, **kwargs)


def test_a_replica_pending_too_long_while_a_live_node_has_room_is_stuck() -> None:
    snap = Snapshot((node("a", 3.0),), (pending("old", 45), pending("young", 5)), taken_at=NOW)
    assert [r.id for r in stuck(snap, after_s=30)] == ["old"]


def test_waiting_for_capacity_is_not_stuck() -> None:
    full = Snapshot(
        (node("a", 0.5), node("dead", 4.0, alive=False), node("drained", 4.0, draining=True)), (pending("r", 300),), taken_at=NOW
    )
    assert stuck(full, after_s=30) == []
    labelled = Snapshot((node("a", 4.0),), (pending("r", 300, label_selector={"zone": "b"}),), taken_at=NOW)
    assert stuck(labelled, after_s=30) == []


def test_placed_replicas_and_unknown_start_times_are_never_stuck() -> None:
    placed = Replica("p", "d", "app", "a", {"GPU": 1.0}, state="STARTING", started_at=0.0)
    unknown = Replica("u", "d", "app", None, {"GPU": 1.0}, state="STARTING")
    assert stuck(Snapshot((node("a", 3.0),), (placed, unknown), taken_at=NOW), after_s=30) == []


def test_gpus_are_taken_per_instance_as_the_raylet_does() -> None:
    assert take_gpu([0.5, 0.5], 1.0) is None  # "1.0 GPU free", no GPU entirely free
    assert take_gpu([0.5, 1.0, 1.0], 2.0) == [0.5, 0.0, 0.0]
    assert take_gpu([1.0, 0.75, 0.5], 0.5) == [1.0, 0.75, 0.0]  # the best-fitting instance
    assert take_gpu([1.0, 0.25], 0.5) == [0.5, 0.25]
    assert take_gpu([0.25, 0.25], 0.5) is None
    assert take_gpu([0.0], 0.0) == [0.0]


def test_unread_gpu_instances_follow_the_scalar_count() -> None:
    assert gpu_instances(Node("a", "gpu", {"GPU": 4.0}, {"GPU": 2.5})) == [1.0, 1.0, 0.5, 0.0]
    assert gpu_instances(Node("a", "gpu", {"GPU": 2.0}, {"GPU": 1.0}, gpu_free=(0.5, 0.5))) == [0.5, 0.5]
    assert gpu_instances(Node("c", "cpu", {"CPU": 8.0}, {"CPU": 8.0})) == []


def test_gpu_instances_are_read_from_worker_slots_and_reconciled_with_the_gcs() -> None:
    from servelab.serving.ray_adapter import instances_free

    assert instances_free(2, [(0, 0.5), (1, 0.5)], 1.0) == (0.5, 0.5)  # split halves: no whole GPU
    assert instances_free(2, [(0, 0.5), (0, 0.5)], 1.0) == (0.0, 1.0)
    assert instances_free(4, [(0, 0.5)], 2.5) == (0.5, 0.0, 1.0, 1.0)  # a placement group holds one whole GPU
    # A replica just stopped: its worker still lists a slot the GCS already counts as free. The raylet
    # is behind; its figures would hide room that exists, so the scalar view stays for this look.
    assert instances_free(2, [(0, 0.5), (1, 0.5), (1, 0.5)], 1.0) is None


def test_the_executor_will_not_move_a_wave_onto_a_node_at_its_max_replicas_per_node() -> None:
    # s has the room but already runs the deployment's one replica per node: Serve would refuse it, so
    # the executor must not drain v (before, its check ignored the limit and the compaction stalled).
    limited = {"max_replicas_per_node": 1}
    snap = Snapshot(
        (node("s", 3.0), node("v", 3.0)),
        (Replica("a", "d", "app", "s", {"GPU": 1.0}, **limited), Replica("b", "d", "app", "v", {"GPU": 1.0}, **limited)),
        taken_at=NOW,
    )
    assert "no longer fits" in _cannot_move(["v"], snap, {"a": "s", "b": "s"})
    unlimited = Snapshot(snap.nodes, tuple(replace(r, max_replicas_per_node=None) for r in snap.replicas), taken_at=NOW)
    assert _cannot_move(["v"], unlimited, {"a": "s", "b": "s"}) == ""
    room = Room.of(snap, leaving=["v"])
    assert "max_replicas_per_node=1" in room.why_not(snap.replicas[1], "s")


@pytest.mark.parametrize("seed", range(24))
def test_every_move_the_planner_makes_is_one_the_placement_model_allows(seed: int) -> None:
    # Random fragmented clusters, half the deployments limited to as many replicas per node as they
    # now run on their fullest node and one labelled: the planner's array rules and Room must agree.
    rng = random.Random(seed)
    snap = (wide_cluster if seed % 2 else fragmented_cluster)(rng.choice([8, 12, 16]), seed=seed)
    fullest: dict[str, int] = {}
    for (deployment, _), count in Counter((r.deployment, r.node_id) for r in snap.replicas).items():
        fullest[deployment] = max(fullest.get(deployment, 0), count)
    limits = {d: n for d, n in sorted(fullest.items()) if rng.random() < 0.5}
    zone = {n.id: {"zone": rng.choice("ab")} for n in snap.nodes}
    nodes = tuple(replace(n, labels=zone[n.id]) for n in snap.nodes)
    labelled = rng.choice(sorted({r.deployment for r in snap.replicas}))
    replicas = tuple(
        replace(
            r, max_replicas_per_node=limits.get(r.deployment), label_selector={"zone": "a"} if r.deployment == labelled else {}
        )
        for r in snap.replicas
    )
    snap = Snapshot(nodes, replicas, taken_at=NOW)
    plan = make_plan(snap, time_limit_s=0.5)
    by_id = {r.id: r for r in snap.replicas}
    room = Room.of(snap, leaving=plan.nodes_to_free)
    for move in plan.moves:
        assert move.source in plan.nodes_to_free  # it empties nodes, it does not shuffle the ones that stay
        replica = by_id[move.replica]
        assert room.why_not(replica, move.target) == "", move
        room.place(replica, move.target)
    if plan.nodes_to_free:
        assert _cannot_move(list(plan.nodes_to_free), snap, plan.layout) == ""


def test_new_replicas_are_placed_as_serves_pack_scheduler_would_or_the_missing_ones_counted() -> None:
    snap = Snapshot((node("a", 0.5), node("b", 1.0), node("c", 0.0)), ())
    assert place_new(snap, {"GPU": 0.5}, 3) is None  # a's half, then b's two halves
    assert place_new(snap, {"GPU": 0.5}, 4) == NoRoom(1, 4, {"GPU": 1.0}, "b")
    assert place_new(snap, {"GPU": 1.0}, 2) == NoRoom(1, 2, {"GPU": 1.0}, "b")  # a's half holds no whole GPU
    full = Snapshot((node("a", 0.0), node("drained", 4.0, draining=True)), ())
    assert place_new(full, {"GPU": 1.0}, 1) == NoRoom(1, 1, {}, "a")  # a draining node offers nothing


def test_new_replicas_keep_to_split_gpus_labels_and_max_per_node() -> None:
    split = Snapshot((Node("a", "gpu", {"GPU": 2.0}, {"GPU": 1.0}, gpu_free=(0.5, 0.5)),), ())
    assert place_new(split, {"GPU": 1.0}, 1) == NoRoom(1, 1, {"GPU": 1.0}, "a")  # "1.0 GPU free", none whole
    wide = Snapshot((node("a", 4.0, labels={"zone": "a"}),), ())
    assert place_new(wide, {"GPU": 1.0}, 2, max_replicas_per_node=1) == NoRoom(1, 2, {"GPU": 4.0}, "a")
    assert place_new(wide, {"GPU": 1.0}, 2, label_selector={"zone": "b"}) == NoRoom(2, 2, {"GPU": 4.0}, "a")
    assert place_new(wide, {"GPU": 1.0}, 4, label_selector={"zone": "a"}) is None
    # Replicas already there count toward the deployment's limit.
    running = Snapshot((node("a", 3.0),), (Replica("r", "d", "app", "a", {"GPU": 1.0}, max_replicas_per_node=2),))
    assert place_new(running, {"GPU": 1.0}, 2, key=("app", "d"), max_replicas_per_node=2) == NoRoom(1, 2, {"GPU": 3.0}, "a")


def test_the_largest_free_room_is_told_in_the_resources_the_replica_asks_for() -> None:
    rich = Node("a", "gpu", {"GPU": 2.0, "CPU": 8.0, "memory": 2.0**34}, {"GPU": 0.5, "CPU": 6.0, "memory": 2.0**33})
    assert place_new(Snapshot((rich,), ()), {"GPU": 1.0, "CPU": 0.0}, 1) == NoRoom(1, 1, {"GPU": 0.5}, "a")
    assert place_new(Snapshot((rich,), ()), {"GPU": 1.0, "CPU": 1.0}, 1) == NoRoom(1, 1, {"GPU": 0.5, "CPU": 6.0}, "a")
