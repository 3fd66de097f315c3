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
from servelab.serving.snapshot import Node, Snapshot
from servelab.widgets.model import (
    Header,
    Segment,
    deployment_colours,
    holders,
    label_of,
    node_label,
    node_segments,
    ordered_nodes,
    resources_of,
)
from servelab.widgets.overview import DETAIL_NODES, OTHERS, Overview, folded, group_detail, is_large, overview
from servelab.widgets.summary import plan_aim


def cluster_model(snapshot: Snapshot, address: str, auto: AutoStatus | None = None, group: str | None = None) -> dict[str, Any]:
    """Nodes with their bars, deployments, fragmentation, the header and the automatic compactor
    (``auto``, None when it is off), as JSON-ready data. A large cluster (``overview.is_large``) comes
    as node types and cells instead (``overview``), with per-node bars only for the most stranded
    nodes of ``group``, the type a person picked: 1000 nodes stay about 100 kB, not 1.3 MB."""
    strand = stranded_by_node(snapshot)
    resources = resources_of(snapshot)
    large = is_large(snapshot)
    view = overview(snapshot) if large else None
    shown = ordered_nodes(snapshot) if view is None else group_detail(snapshot, group) if group else []
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
        "holders": holders(snapshot) if view is None else [*view.shown, *([OTHERS] if view.folded else [])],
        "colours": deployment_colours(snapshot) if view is None else view.colours,
        "nodes": [node_model(snapshot, node, strand, resources, view) for node in shown],
        "overview": None if view is None else overview_model(view, group),
        "deployments": deployments,
        "weight_cache": [{**asdict(e), "node_label": label_of(snapshot, e.node)} for e in snapshot.weight_cache],
        "autocompact": None if auto is None else auto_model(auto),
    }


def node_model(
    snapshot: Snapshot, node: Node, strand: dict[str, dict[str, float]], resources: list[str], view: Overview | None
) -> dict[str, Any]:
    """One node's card: its state, price, replicas, cached bytes and a bar per resource (in a large
    cluster, the deployments outside ``view.shown`` merged as OTHERS, as its overview draws them)."""
    parts = node_segments(snapshot, node, strand, resources)
    if view is not None:
        parts = folded(parts, set(view.shown))
    return {
        "id": node.id,
        "label": node_label(node),
        "type": node.type,
        "head": node.head,
        "draining": node.draining,
        "drained_by": node.drained_by,
        "in_use": bool(snapshot.replicas_on(node.id)) and not node.head,
        "cost_per_hour": node.cost,
        "total": node.total,
        "available": node.available,
        "replicas": len(snapshot.replicas_on(node.id)),
        "cached_bytes": snapshot.cached_on(node.id),
        "bars": bar_model(parts),
    }


def bar_model(parts: list[Segment]) -> dict[str, list[dict[str, Any]]]:
    """Segments as the sidebar draws them: per resource, holder, amount and fraction in order."""
    bars: dict[str, list[dict[str, Any]]] = {}
    for s in parts:
        bars.setdefault(s.resource, []).append({"holder": s.holder, "amount": s.amount, "fraction": s.fraction})
    return bars


def overview_model(view: Overview, group: str | None) -> dict[str, Any]:
    """A large cluster for the sidebar: per node type a row of bars and a cell per node with its short
    state, colour and hover text (which names the node) as the widgets draw them: a thousand cells
    travel, about 110 bytes each."""
    return {
        "groups": [
            {
                "type": g.type,
                "label": g.label,
                "nodes": g.nodes,
                "in_use": g.in_use,
                "idle": g.idle,
                "draining": g.draining,
                "freed": g.freed,
                "cost_per_hour": g.cost_per_hour,
                "bars": bar_model(list(g.segments)),
                "cells": [
                    {"state": c.state, "colour": c.colour, "stranded": c.stranded > 0, "title": c.title}
                    for c in view.cells
                    if c.type == g.type
                ],
            }
            for g in view.groups
        ],
        "folded": view.folded,
        "group": group,
        "detail_nodes": DETAIL_NODES,
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
    named = {*plan.nodes_to_free, *plan.blocked, *(m.source for m in plan.moves), *(m.target for m in plan.moves)}
    return {**plan.to_dict(), "aim": plan_aim(plan), "labels": {n.id: node_label(n) for n in snapshot.nodes if n.id in named}}
