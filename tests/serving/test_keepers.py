"""Where a compaction hands a freed node's cached weights: worker nodes that host replicas afterwards (no Ray)."""

from __future__ import annotations

from dataclasses import replace

from servelab.serving.executor import _keepers
from servelab.serving.snapshot import Snapshot
from tests.serving.test_steering import node, plan_for, replica


def test_cached_weights_go_to_nodes_that_host_replicas_after_the_plan() -> None:
    # v is freed into s1; s2 keeps its replica; idle stays idle (a copy there would keep it from an
    # autoscaler), the draining node and the head are never chosen.
    head = replace(node("head", 0, 0.0), head=True)
    idle, draining = node("idle", 2, 0.0), replace(node("d", 2, 0.5), draining=True)
    snap = Snapshot(
        (head, node("s1", 2, 0.0), node("s2", 2, 0.5), node("v", 2, 0.5), idle, draining),
        (replica("a", "s2", 0.5), replica("r", "v", 0.5), replica("x", "d", 0.5)),
    )
    assert _keepers(snap, plan_for(snap, [("r", "v", "s1")])) == ["s1", "s2"]
    assert _keepers(snap, plan_for(snap, [("a", "s2", "v")])) == ["v"]
