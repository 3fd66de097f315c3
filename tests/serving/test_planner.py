"""The compaction planner on synthetic snapshots (no Ray): valid plans, optimal on small instances."""

from __future__ import annotations

import itertools
import json
import random
import time
from dataclasses import replace

import pytest

from bench.ray_greedy import nodes_after_ray
from servelab.serving import planner
from servelab.serving.fragmentation import fragmentation
from servelab.serving.placement import fits, label_match
from servelab.serving.planner import Plan, PlanError, plan
from servelab.serving.snapshot import Node, Replica, Snapshot
from servelab.testing.clusters import fragmented_cluster, wide_cluster

GPU = {"GPU": 1.0, "CPU": 2.0}


def node(name: str, gpus: float = 4.0, cpus: float = 16.0, **kwargs) -> Node:
    total = {"GPU": gpus, "CPU": cpus}
    return Node(name, f"{gpus:g}gpu", total, dict(total), **kwargs)


def cluster(nodes: list[Node], placement: dict[str, list[Replica]]) -> Snapshot:
    """Nodes with replicas placed on them; available resources follow from the placement."""
    placed = []
    final = []
    for n in nodes:
        free = dict(n.total)
        for r in placement.get(n.id, []):
            for k, v in r.resources.items():
                free[k] -= v
            placed.append(
                Replica(r.id, r.deployment, r.app, n.id, r.resources, r.state, r.label_selector, r.max_replicas_per_node)
            )
        final.append(Node(n.id, n.type, n.total, free, n.labels, n.alive, n.draining, n.head, n.cost_per_hour))
    return Snapshot(tuple(final), tuple(placed), taken_at=0.0)


def replica(name: str, resources: dict[str, float] = GPU, deployment: str = "d", **kwargs) -> Replica:
    return Replica(name, deployment, "app", None, resources, **kwargs)


def assert_valid(snapshot: Snapshot, result: Plan, keep: tuple[str, ...] = ()) -> None:
    """Capacity never exceeded, labels and per-node limits kept, only freed nodes' replicas move."""
    nodes = {n.id: n for n in snapshot.nodes}
    freed = set(result.nodes_to_free)
    assert not freed & set(keep)
    assert not any(nodes[n].head or nodes[n].draining for n in freed)
    usage = {n: dict.fromkeys(nodes[n].total, 0.0) for n in nodes}
    per_node = {}
    for r in snapshot.replicas:
        target = result.layout[r.id]
        assert target not in freed
        assert not nodes[target].draining or target == r.node_id
        assert label_match(nodes[target], r.label_selector)
        if target != r.node_id:
            assert r.node_id in freed, f"{r.id} moved off a node that stays"
        for k, v in r.resources.items():
            usage[target][k] = usage[target].get(k, 0.0) + v
        per_node[(r.key, target)] = per_node.get((r.key, target), 0) + 1
        if r.max_replicas_per_node is not None:
            assert per_node[(r.key, target)] <= r.max_replicas_per_node
    for n, used in usage.items():
        assert fits(nodes[n].total, used), f"{n} over capacity: {used}"
    assert {m.replica for m in result.moves} == {r.id for r in snapshot.replicas if result.layout[r.id] != r.node_id}


def brute_force_nodes_after(snapshot: Snapshot) -> int:
    """The fewest worker nodes in use after compaction, trying every set of nodes to keep in use.

    Same rules as the planner: replicas on a node kept in use stay; the others go to kept nodes or
    the head; idle workers may receive replicas but then count as in use. Tiny instances only.
    """
    workers = [n for n in snapshot.nodes if not n.head and not n.draining]
    fixed = [n.id for n in snapshot.nodes if n.head]
    for count in range(len(workers) + 1):
        for kept in itertools.combinations(workers, count):
            kept_ids = {n.id for n in kept}
            room = {n: dict(snapshot.node(n).available) for n in [*kept_ids, *fixed]}
            movers = sorted(
                (r for r in snapshot.replicas if r.node_id not in kept_ids and r.node_id not in fixed),
                key=lambda r: -sum(r.resources.values()),
            )
            if _assign(movers, room, snapshot):
                return count
    raise AssertionError("unreachable: keeping every node is always feasible")


def _assign(movers: list[Replica], free: dict[str, dict[str, float]], snapshot: Snapshot) -> bool:
    if not movers:
        return True
    first, rest = movers[0], movers[1:]
    for node_id, room in free.items():
        if fits(room, first.resources) and label_match(snapshot.node(node_id), first.label_selector):
            for k, v in first.resources.items():
                room[k] -= v
            if _assign(rest, free, snapshot):
                return True
            for k, v in first.resources.items():
                room[k] += v
    return False


def test_frees_the_node_whose_replicas_fit_elsewhere() -> None:
    snapshot = cluster(
        [node("head", 0, 4, head=True), node("a"), node("b"), node("c")],
        {"a": [replica("r1"), replica("r2"), replica("r3")], "b": [replica("r4")], "c": [replica("r5"), replica("r6")]},
    )
    result = plan(snapshot)
    assert_valid(snapshot, result)
    assert result.nodes_before == 3 and result.nodes_after == 2
    assert result.nodes_to_free == ("b",)
    assert [(m.replica, m.source) for m in result.moves] == [("r4", "b")]
    assert result.freed_resources == {"GPU": 4.0, "CPU": 16.0}
    assert result.optimal


def test_frees_several_nodes_at_once_and_may_use_any_staying_node() -> None:
    nodes = [node("head", 0, 4, head=True)] + [node(f"n{i}") for i in range(5)]
    placement = {f"n{i}": [replica(f"r{i}")] for i in range(5)}
    snapshot = cluster(nodes, placement)
    result = plan(snapshot)
    assert_valid(snapshot, result)
    assert result.nodes_after == 2  # 5 one-GPU replicas on 4-GPU nodes
    assert len(result.nodes_to_free) == 3


def test_never_plans_onto_draining_nodes_or_frees_kept_ones() -> None:
    nodes = [node("head", 0, 4, head=True), node("a"), node("b"), node("drain", draining=True)]
    snapshot = cluster(nodes, {"a": [replica("r1")], "b": [replica("r2")], "drain": []})
    result = plan(snapshot, keep=["a"])
    assert_valid(snapshot, result, keep=("a",))
    assert result.nodes_to_free == ("b",)
    assert result.layout["r2"] == "a"


def test_labels_and_max_replicas_per_node_are_respected() -> None:
    zone = {"zone": "x"}
    nodes = [node("head", 0, 4, head=True), node("a", labels=zone), node("b"), node("c", labels=zone)]
    placement = {
        "a": [replica("p1", deployment="pinned", max_replicas_per_node=1)],
        "b": [replica("p2", deployment="pinned", max_replicas_per_node=1)],
        "c": [replica("z1", deployment="zonal", label_selector=zone)],
    }
    snapshot = cluster(nodes, placement)
    result = plan(snapshot)
    assert_valid(snapshot, result)
    assert result.nodes_after == 2  # z1 may only join a; p1 and p2 never share a node


def test_reports_why_a_node_stays() -> None:
    big = {"GPU": 3.0, "CPU": 2.0}
    snapshot = cluster(
        [node("head", 0, 4, head=True), node("a"), node("b")],
        {"a": [replica("r1", big)], "b": [replica("r2", big)]},
    )
    result = plan(snapshot, exact_limit=0)
    assert result.nodes_to_free == ()
    assert (
        result.blocked["a"]
        == "its replica r1 (app/d, needs CPU 2, GPU 3) fits on no other node that stays: none has that much free"
    )
    assert result.kept_by == {"a": "room", "b": "room"}


def test_a_node_kept_by_max_replicas_per_node_names_the_limit_not_the_room() -> None:
    # b has 3 GPUs free, so room is not what keeps a: b already runs the one replica of d it may hold.
    limited = {"max_replicas_per_node": 1}
    snapshot = cluster(
        [node("head", 0, 4, head=True), node("a"), node("b")],
        {"a": [replica("r1", **limited)], "b": [replica("r2", **limited)]},
    )
    result = plan(snapshot, exact_limit=0)
    assert result.nodes_to_free == ()
    assert result.kept_by == {"a": "max-per-node", "b": "max-per-node"}
    assert result.blocked["a"] == (
        "its replica r1 (app/d, needs CPU 2, GPU 1) may not go on the nodes that stay with room for it (b): "
        "each already runs max_replicas_per_node=1 of app/d"
    )


def test_a_node_kept_by_labels_names_the_selector() -> None:
    snapshot = cluster(
        [node("head", 0, 4, head=True), node("a", labels={"zone": "x"}), node("b", labels={"zone": "y"})],
        {"a": [replica("r1", label_selector={"zone": "x"})], "b": [replica("r2", deployment="e")]},
    )
    result = plan(snapshot, exact_limit=0)
    assert result.nodes_to_free == ("b",)  # r2 has no selector: it may join a
    assert result.kept_by == {"a": "labels"}
    assert result.blocked["a"] == (
        "its replica r1 (app/d, needs CPU 2, GPU 1) needs nodes labelled zone=x; the nodes that stay with room for it (b) are not"
    )


def test_unsettled_replicas_pin_their_node() -> None:
    snapshot = cluster(
        [node("head", 0, 4, head=True), node("a"), node("b")],
        {"a": [replica("r1"), replica("r2")], "b": [replica("r3", state="STARTING")]},
    )
    result = plan(snapshot)
    assert "b" not in result.nodes_to_free
    assert "r3 is STARTING" in result.blocked["b"] and result.kept_by["b"] == "unsettled"
    assert_valid(snapshot, result)


def test_a_node_pinned_by_a_starting_replica_still_takes_replicas() -> None:
    # Bug: the pinned node kept its node-in-use cost in the MILP, so the plan avoided it (freed c only).
    two = {"GPU": 2.0, "CPU": 2.0}
    snapshot = cluster(
        [node("head", 0, 4, head=True), node("a"), node("b"), node("c", 2.0), node("e", 2.0)],
        {"a": [replica("s", two, state="STARTING")], "b": [replica("r1")], "c": [replica("rc", two)], "e": [replica("re", two)]},
    )
    result = plan(snapshot)
    assert_valid(snapshot, result)
    assert sorted(result.nodes_to_free) == ["c", "e"] and result.nodes_after == 2
    assert {m.replica: m.target for m in result.moves} in ({"rc": "a", "re": "b"}, {"rc": "b", "re": "a"})


def test_a_replica_on_a_node_its_labels_do_not_match_stays_while_the_node_stays() -> None:
    # Bug: the MILP offered such a replica no way to stay, so it was moved off a node that stays.
    # No node can be freed here (the optimum keeps all three, above the lower bound of 2), so the MILP decides.
    zone_b = {"zone": "b"}
    snapshot = cluster(
        [node("head", 0, 4, head=True), node("a", labels={"zone": "a"}), node("b", labels=zone_b), node("c", labels=zone_b)],
        {
            "a": [replica("misplaced", {"GPU": 0.5, "CPU": 1.0}, label_selector=zone_b), replica("r2", {"GPU": 2.0, "CPU": 1.0})],
            "b": [replica("r3", {"GPU": 3.0, "CPU": 1.0})],
            "c": [replica("r4", {"GPU": 2.5, "CPU": 1.0})],
        },
    )
    result = plan(snapshot)
    assert result.lower_bound == 2 and result.nodes_after == 3
    assert result.moves == () and result.nodes_to_free == ()


def test_neighbourhood_search_improves_and_keeps_plans_valid() -> None:
    snapshot = wide_cluster(100, seed=0)
    model = planner._build(snapshot, [], "nodes")
    start, blocked = planner._heuristic(model, None)
    # The search stops at its target, one node fewer than the start: it takes about 2 s on an idle core, and the
    # long deadline is there only so that a loaded CI machine still gets there (3 s once did not).
    target = planner._score(model, start) - 1.0
    searched = planner._search(model, start, target, time.perf_counter() + 60.0, random.Random(0))
    assert planner._score(model, searched) <= target
    result = planner._result(snapshot, model, searched, blocked, [], "nodes", "search", False, 0.0)
    assert_valid(snapshot, result)


@pytest.mark.parametrize("seed", range(3))
def test_plans_on_the_harder_generator_are_valid_and_beat_rays_greedy(seed: int) -> None:
    snapshot = wide_cluster(100, seed=seed)
    result = plan(snapshot)
    assert_valid(snapshot, result)
    assert fragmentation(snapshot).lower_bound <= result.nodes_after <= nodes_after_ray(snapshot)


def test_max_moves_bounds_the_plan() -> None:
    nodes = [node("head", 0, 4, head=True)] + [node(f"n{i}") for i in range(4)]
    snapshot = cluster(nodes, {f"n{i}": [replica(f"r{i}a"), replica(f"r{i}b")] for i in range(4)})
    assert plan(snapshot).nodes_after == 2
    limited = plan(snapshot, max_moves=2)
    assert_valid(snapshot, limited)
    assert len(limited.moves) <= 2 and limited.nodes_after == 3


def test_cost_objective_frees_the_dearest_node() -> None:
    nodes = [node("head", 0, 4, head=True), node("cheap", cost_per_hour=1.0), node("dear", cost_per_hour=10.0)]
    snapshot = cluster(nodes, {"cheap": [replica("r1")], "dear": [replica("r2")]})
    result = plan(snapshot, objective="cost")
    assert result.nodes_to_free == ("dear",)
    assert result.freed_cost_per_hour == 10.0


@pytest.mark.parametrize("seed", range(12))
def test_equals_brute_force_optimum_on_small_random_clusters(seed: int) -> None:
    rng = random.Random(seed)
    nodes = [node("head", 0, 4, head=True)] + [node(f"n{i}", rng.choice([2.0, 4.0]), 8.0) for i in range(rng.randint(3, 6))]
    shapes = [{"GPU": 1.0, "CPU": 2.0}, {"GPU": 0.5, "CPU": 1.0}, {"GPU": 2.0, "CPU": 2.0}, {"CPU": 3.0}]
    placement: dict[str, list[Replica]] = {}
    free = {n.id: dict(n.total) for n in nodes[1:]}
    for i in range(rng.randint(3, 9)):
        shape = rng.choice(shapes)
        options = [n for n in free if fits(free[n], shape)]
        if options:
            target = rng.choice(options)
            for k, v in shape.items():
                free[target][k] -= v
            placement.setdefault(target, []).append(replica(f"r{i}", shape))
    snapshot = cluster(nodes, placement)
    for exact_limit in (60, 0):  # exact, then the heuristic alone, which must stay valid
        result = plan(snapshot, exact_limit=exact_limit)
        assert_valid(snapshot, result)
    assert plan(snapshot).nodes_after == brute_force_nodes_after(snapshot)


@pytest.mark.parametrize(("size", "seed"), [(10, 0), (10, 1), (100, 0)])
def test_frees_at_least_as_many_nodes_as_rays_greedy_compaction(size: int, seed: int) -> None:
    snapshot = fragmented_cluster(size, seed=seed)
    result = plan(snapshot)
    assert_valid(snapshot, result)
    assert result.nodes_after <= nodes_after_ray(snapshot)
    assert result.nodes_after >= fragmentation(snapshot).lower_bound


def test_plan_and_snapshot_serialise_to_json() -> None:
    snapshot = fragmented_cluster(10, seed=3)
    assert Snapshot.from_json(snapshot.to_json()) == snapshot
    assert json.loads(plan(snapshot).to_json())["fingerprint"] == snapshot.fingerprint()


@pytest.mark.parametrize(("arguments", "message"), [
    ({"objective": "speed"}, "objective='speed'"),
    ({"max_moves": -1}, "max_moves=-1"),
    ({"keep": ["ghost"]}, r"keep names unknown node\(s\) \['ghost'\]"),
])  # fmt: skip
def test_bad_arguments(arguments: dict, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan(fragmented_cluster(10), **arguments)


def split_halves() -> Snapshot:
    """Node a: two half-GPU replicas on different GPUs ("1.0 GPU free", no GPU entirely free); node b:
    one whole-GPU replica and an entirely free GPU. Ray's scalar view would move b's replica onto a."""
    halves = {"GPU": 0.5, "CPU": 1.0}
    snap = cluster(
        [node("a", gpus=2.0), node("b", gpus=2.0)],
        {"a": [replica("h1", halves, "half"), replica("h2", halves, "half")], "b": [replica("w", GPU, "whole")]},
    )
    gpu_free = {"a": (0.5, 0.5), "b": (0.0, 1.0)}
    return replace(snap, nodes=tuple(replace(n, gpu_free=gpu_free[n.id]) for n in snap.nodes))


@pytest.mark.parametrize("exact_limit", [60, 0])
def test_a_whole_gpu_replica_never_moves_onto_gpus_that_are_only_partly_free(exact_limit: int) -> None:
    snap = split_halves()
    result = plan(snap, exact_limit=exact_limit)
    assert result.nodes_to_free == ("a",)
    assert sorted(m.replica for m in result.moves) == ["h1", "h2"]
    assert {m.target for m in result.moves} == {"b"}
    unknown = replace(snap, nodes=tuple(replace(n, gpu_free=None) for n in snap.nodes))
    assert [m.replica for m in plan(unknown, exact_limit=exact_limit).moves] == ["w"]  # the scalar view: one move


def test_where_no_gpu_is_entirely_free_a_whole_gpu_replica_blocks_its_node() -> None:
    snap = split_halves()
    crowded = replace(snap, nodes=tuple(replace(n, gpu_free=(0.5, 0.5) if n.id == "a" else (0.0, 0.5)) for n in snap.nodes))
    crowded = replace(
        crowded, nodes=tuple(replace(n, available={**n.available, "GPU": sum(n.gpu_free or ())}) for n in crowded.nodes)
    )
    result = plan(crowded)
    assert result.nodes_to_free == ()
    # b's whole-GPU replica: a has 1.0 GPU free to Ray's scalar count, but as two halves.
    assert result.kept_by["b"] == "whole-gpus"
    assert result.blocked["b"].endswith("the nodes that stay with room for it (a) have theirs split across GPUs")


def test_fractions_fill_partly_free_gpus_before_they_open_a_free_one() -> None:
    quarter = {"GPU": 0.25, "CPU": 1.0}
    snap = cluster(
        [node("a", gpus=2.0), node("b", gpus=2.0), node("c", gpus=1.0)],
        {
            "a": [replica("w1", GPU, "whole"), replica("q1", quarter, "q"), replica("q2", quarter, "q")],
            "b": [replica("w2", GPU, "whole")],
            "c": [replica("q3", quarter, "q"), replica("q4", quarter, "q")],
        },
    )
    # a: one GPU full, one half used by the quarters; b: one GPU free; c: half used.
    gpu_free = {"a": (0.0, 0.5), "b": (0.0, 1.0), "c": (0.5,)}
    snap = replace(snap, nodes=tuple(replace(n, gpu_free=gpu_free[n.id]) for n in snap.nodes))
    result = plan(snap)
    assert_valid(snap, result)
    assert result.nodes_after == 2  # c's quarters fill a's half-free GPU, or b's free one: either way c is freed
    assert "c" in result.nodes_to_free
