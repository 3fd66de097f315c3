"""The one JSON model of a cluster that the sidebar draws: a pure function of a Snapshot.

The same pieces as ClusterView (``servelab.widgets.model``): per node a bar per resource split by
deployment, other use, stranded and free capacity; the header figures; every deployment with its
state and replica counts; what the peer weight cache holds, and where. Plans travel with the node
labels the sidebar shows for their ids.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from servelab.serving.autocompact import AutoStatus
from servelab.serving.fragmentation import fragmentation, stranded_by_node
from servelab.serving.planner import Plan
from servelab.serving.snapshot import Snapshot
from servelab.widgets.model import (
    Header,
    deployment_colours,
    holders,
    label_of,
    node_label,
    node_segments,
    ordered_nodes,
    resources_of,
)
from servelab.widgets.summary import plan_aim


def cluster_model(snapshot: Snapshot, address: str, auto: AutoStatus | None = None) -> dict[str, Any]:
    """Nodes with their bars, deployments, fragmentation, the header and the automatic compactor
    (``auto``, None when it is off), as JSON-ready data."""
    strand = stranded_by_node(snapshot)
    resources = resources_of(snapshot)
    in_use = {r.node_id for r in snapshot.replicas}
    nodes = [
        {
            "id": node.id,
            "label": node_label(node),
            "type": node.type,
            "head": node.head,
            "draining": node.draining,
            "drained_by": node.drained_by,
            "in_use": node.id in in_use and not node.head,
            "cost_per_hour": node.cost,
            "total": node.total,
            "available": node.available,
            "replicas": len(snapshot.replicas_on(node.id)),
            "cached_bytes": snapshot.cached_on(node.id),
            "bars": {
                resource: [
                    {"holder": s.holder, "amount": s.amount, "fraction": s.fraction}
                    for s in node_segments(snapshot, node, strand, [resource])
                ]
                for resource in resources
                if node.total.get(resource, 0.0) > 0
            },
        }
        for node in ordered_nodes(snapshot)
    ]
    deployments = [
        {
            **asdict(d),
            "healthy": d.healthy,
            "unplaced": sum(1 for r in snapshot.unplaced if r.key == (d.app, d.name)),
        }
        for d in sorted(snapshot.deployments, key=lambda d: (d.app, d.name))
    ]
    return {
        "address": address,
        "taken_at": snapshot.taken_at,
        "fingerprint": snapshot.fingerprint(),
        "header": asdict(Header.of(snapshot)),
        "fragmentation": fragmentation(snapshot).to_dict(),
        "resources": resources,
        "holders": holders(snapshot),
        "colours": deployment_colours(snapshot),
        "nodes": nodes,
        "deployments": deployments,
        "weight_cache": [{**asdict(e), "node_label": label_of(snapshot, e.node)} for e in snapshot.weight_cache],
        "autocompact": None if auto is None else auto_model(auto),
    }


def auto_model(auto: AutoStatus) -> dict[str, Any]:
    """What the sidebar says about automatic compaction: its state, how long the cluster has been
    stable against the delay, what it did so far and why it last did nothing."""
    return {
        "state": auto.state,
        "delay_s": auto.policy["delay_s"],
        "stable_for_s": auto.stable_for_s,
        "compactions": auto.compactions,
        "nodes_freed": auto.nodes_freed,
        "last_reason": auto.last_reason,
    }


PLAN_VIEW_ONLY = ("aim", "labels")  # what plan_model adds for the sidebar to show; not part of the Plan


def plan_model(plan: Plan, snapshot: Snapshot) -> dict[str, Any]:
    """A plan as JSON, with what it aimed for in words and the label of every node it names (ids are
    long; the sidebar shows labels)."""
    return {**plan.to_dict(), "aim": plan_aim(plan), "labels": {node.id: node_label(node) for node in snapshot.nodes}}
