"""Plans name the targets Ray Serve's pack scheduler will choose, and an order in which it keeps to them (no Ray)."""

from __future__ import annotations

from dataclasses import replace

from servelab.serving.planner import Move, Plan
from servelab.serving.snapshot import Node, Replica, Snapshot
from servelab.serving.steering import as_serve_places


def node(name: str, gpus: float, used: float) -> Node:
    return Node(name, "gpu", {"GPU": gpus, "CPU": 8.0}, {"GPU": gpus - used, "CPU": 8.0})


def replica(name: str, node_id: str, gpus: float) -> Replica:
    return Replica(name, name, name, node_id, {"GPU": gpus})


def plan_for(snapshot: Snapshot, moves: list[tuple[str, str, str]]) -> Plan:
    placement = {r.id: str(r.node_id) for r in snapshot.replicas} | {r: t for r, _, t in moves}
    freed = tuple(dict.fromkeys(s for _, s, _ in moves))
    steps = tuple(Move(r, r, r, s, t) for r, s, t in moves)
    return Plan(
        snapshot.fingerprint(), "nodes", freed, steps, placement, (), {}, 0.0, {}, 3, 3 - len(freed), 1, "exact", True, 0.0
    )


def test_each_move_names_the_node_serve_best_fits_it_to() -> None:
    # The planner may send r to s2; Serve puts it where the least GPU is left over: s1.
    snap = Snapshot(
        (node("s1", 2, 1.0), node("s2", 2, 0.5), node("v", 2, 0.5)),
        (replica("a", "s1", 1.0), replica("b", "s2", 0.5), replica("r", "v", 0.5)),
    )
    steered = as_serve_places(snap, plan_for(snap, [("r", "v", "s2")]))
    assert [(m.replica, m.source, m.target) for m in steered.moves] == [("r", "v", "s1")]
    assert steered.layout["r"] == "s1" and steered.nodes_to_free == ("v",)


def test_nodes_drain_together_when_one_at_a_time_serve_would_fill_the_next_one_to_free() -> None:
    # One at a time, each victim's replica best-fits onto the other victim (1 GPU left there, 2 on s).
    snap = Snapshot(
        (node("s", 4, 2.0), node("v1", 2, 1.0), node("v2", 2, 1.0)),
        (replica("a", "s", 2.0), replica("r1", "v1", 1.0), replica("r2", "v2", 1.0)),
    )
    plan = plan_for(snap, [("r1", "v1", "s"), ("r2", "v2", "s")])
    assert as_serve_places(snap, plan, max_draining=1) is plan  # no order keeps to it: the executor re-plans
    together = as_serve_places(snap, plan, max_draining=2)
    assert sorted((m.replica, m.target) for m in together.moves) == [("r1", "s"), ("r2", "s")]


def test_an_order_in_which_serve_sends_a_whole_gpu_to_split_halves_is_not_taken() -> None:
    # s1 shows 1.0 GPU free, the best fit by Serve's scalar view, but as two half-free GPUs: the
    # raylet cannot start a 1-GPU replica there. No order avoids it, so the plan is not steered.
    snap = Snapshot(
        (replace(node("s1", 2, 1.0), gpu_free=(0.5, 0.5)), node("s2", 4, 2.0), node("v", 2, 1.0)),
        (replica("h1", "s1", 0.5), replica("h2", "s1", 0.5), replica("b", "s2", 2.0), replica("r", "v", 1.0)),
    )
    plan = plan_for(snap, [("r", "v", "s2")])
    assert as_serve_places(snap, plan) is plan
    whole = replace(snap, nodes=tuple(replace(n, gpu_free=(0.0, 1.0)) if n.id == "s1" else n for n in snap.nodes))
    assert [m.target for m in as_serve_places(whole, plan).moves] == ["s1"]
