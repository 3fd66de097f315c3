"""Fragmentation metrics on hand-built snapshots (no Ray)."""

from __future__ import annotations

import pytest

from servelab.serving.fragmentation import fragmentation, lower_bound, stranded, stranded_note

from .test_planner import cluster, node, replica

HALF = {"GPU": 0.5, "CPU": 1.0}
WHOLE = {"GPU": 1.0, "CPU": 1.0}


def test_packed_cluster_scores_zero() -> None:
    snapshot = cluster([node("head", 0, 4, head=True), node("a"), node("b")], {"a": [replica(f"r{i}") for i in range(4)]})
    result = fragmentation(snapshot)
    assert (result.nodes_in_use, result.lower_bound, result.score) == (1, 1, 0.0)


def test_spread_cluster_scores_the_surplus_share_of_nodes() -> None:
    nodes = [node("head", 0, 4, head=True)] + [node(f"n{i}") for i in range(4)]
    snapshot = cluster(nodes, {f"n{i}": [replica(f"r{i}")] for i in range(4)})  # 4 GPUs over 4 nodes of 4
    result = fragmentation(snapshot)
    assert (result.nodes_in_use, result.lower_bound) == (4, 1)
    assert result.score == pytest.approx(0.75)


def test_lower_bound_takes_the_scarcest_resource_and_largest_nodes_first() -> None:
    nodes = [node("head", 0, 0, head=True), node("big", 8, 8), node("small1", 2, 8), node("small2", 2, 8)]
    placement = {
        "small1": [replica("a", {"GPU": 2, "CPU": 1})],
        "small2": [replica("b", {"GPU": 2, "CPU": 1})],
        "big": [replica("c", {"GPU": 1, "CPU": 6})],
    }
    snapshot = cluster(nodes, placement)
    assert lower_bound(snapshot) == 1  # 5 GPU and 8 CPU fit the 8-GPU, 8-CPU node
    assert lower_bound(snapshot, keep=["big"]) == 0  # kept, big's spare room takes both small replicas


def test_stranded_counts_free_capacity_no_running_shape_can_use() -> None:
    # Node a has 0.5 GPU free but no CPU left: neither shape fits there, so its free GPU is stranded.
    nodes = [node("head", 0, 0, head=True), node("a", 2, 2), node("b", 2, 4)]
    snapshot = cluster(nodes, {"a": [replica("x", {"GPU": 1.5, "CPU": 2})], "b": [replica("y", HALF)]})
    result = stranded(snapshot)
    assert result["GPU"] == pytest.approx(0.5)  # a's free 0.5 GPU, for both shapes; b can still host both
    assert result["CPU"] == pytest.approx(0.0)


def test_empty_cluster() -> None:
    snapshot = cluster([node("head", 0, 4, head=True), node("a")], {})
    assert fragmentation(snapshot).score == 0.0 and fragmentation(snapshot).nodes_in_use == 0


def test_the_stranded_figure_is_explained_with_the_shapes_it_weighs() -> None:
    # 0.5 GPU free on a: it fits the half-GPU replica, not the whole-GPU one (1 of 2 replicas): 0.25 stranded.
    half, whole = {"GPU": 0.5, "CPU": 1.0}, {"GPU": 1.0, "CPU": 1.0}
    snap = cluster(
        [node("head", 0, 4, head=True), node("a", 2, 4), node("b", 1, 1)],
        {"a": [replica("h", half, "halves"), replica("w", whole, "wholes")], "b": [replica("w2", whole, "wholes")]},
    )
    assert stranded(snap)["GPU"] == pytest.approx(0.5 * 2 / 3)
    assert stranded_note(snap) == (
        "GPU 0.5 is free on worker nodes; 0.333 of it counts as stranded: each node's free GPU is weighted by the "
        "share of running replicas whose shape does not fit there (CPU 1, GPU 1: 2 of 3 replicas)"
    )


def test_the_stranded_note_says_plainly_when_nothing_is_stranded() -> None:
    half = {"GPU": 0.5, "CPU": 1.0}
    fitting = cluster([node("a", 1, 2)], {"a": [replica("h", half)]})
    assert stranded_note(fitting) == (
        "GPU 0.5 is free on worker nodes, and every running replica shape fits where it is: none is stranded"
    )
    full = cluster([node("a", 1, 2)], {"a": [replica("h", half), replica("i", half)]})
    assert stranded_note(full) == "no GPU is free on worker nodes: none is stranded"
