"""Which replicas count as stuck: on no node too long while a live node has room (pure logic, no Ray)."""

from __future__ import annotations

from servelab.serving.placement import gpu_instances, stuck, take_gpu
from servelab.serving.snapshot import Node, Replica, Snapshot

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
