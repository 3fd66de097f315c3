"""The one JSON model of a cluster that the sidebar draws: a pure function of a Snapshot.

The same pieces as ClusterView (``servelab.widgets.model``): per node a bar per resource split by
deployment, other use, stranded and free capacity; the header figures; every deployment with its
state and replica counts; what the peer weight cache holds, and where. Plans travel with the node
labels the sidebar shows for their ids. Every answer is one of ``schema``'s types, built field by
field (never a dataclass's ``asdict``), so renaming a field of the core changes no answer.
"""

from __future__ import annotations

from dataclasses import replace

from servelab.jupyter_ext import schema
from servelab.serving.autocompact import AutoStatus
from servelab.serving.budget import Budget
from servelab.serving.executor import CompactionEvent, CompactionReport
from servelab.serving.fragmentation import fragmentation, stranded_by_node
from servelab.serving.planner import Move, Plan
from servelab.serving.probe import LatencyStats
from servelab.serving.snapshot import DeploymentInfo, Node, Snapshot
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


def cluster_model(
    snapshot: Snapshot, address: str, auto: AutoStatus | None = None, group: str | None = None
) -> schema.SnapshotModel:
    """Nodes with their bars, deployments, fragmentation, the header and the automatic compactor
    (``auto``, None when it is off), as JSON-ready data. A large cluster (``overview.is_large``) comes
    as node types and cells instead (``overview``), with per-node bars only for the most stranded
    nodes of ``group``, the type a person picked: 1000 nodes stay about 100 kB, not 1.3 MB."""
    strand = stranded_by_node(snapshot)
    resources = resources_of(snapshot)
    view = overview(snapshot) if is_large(snapshot) else None
    shown = ordered_nodes(snapshot) if view is None else group_detail(snapshot, group) if group else []
    header = Header.of(snapshot)
    frag = fragmentation(snapshot)
    return {
        "address": address,
        "taken_at": snapshot.taken_at,
        "fingerprint": snapshot.fingerprint(),
        "header": {
            "nodes": header.nodes,
            "nodes_in_use": header.nodes_in_use,
            "lower_bound": header.lower_bound,
            "score": header.score,
            "cost_per_hour": header.cost_per_hour,
            "stranded_gpus": header.stranded_gpus,
            "draining": header.draining,
            "gone": header.gone,
            "gpus": header.gpus,
            "pricing": header.pricing,
            "autoscaler": header.autoscaler,
            "stranded_note": header.stranded_note,
        },
        "fragmentation": {
            "nodes_in_use": frag.nodes_in_use,
            "lower_bound": frag.lower_bound,
            "stranded": frag.stranded,
            "score": frag.score,
        },
        "resources": resources,
        "holders": holders(snapshot) if view is None else [*view.shown, *([OTHERS] if view.folded else [])],
        "colours": deployment_colours(snapshot) if view is None else view.colours,
        "nodes": [node_model(snapshot, node, strand, resources, view) for node in shown],
        "overview": None if view is None else overview_model(view, group),
        "deployments": [deployment_model(d, snapshot) for d in sorted(snapshot.deployments, key=lambda d: (d.app, d.name))],
        "weight_cache": [
            {
                "uri": e.uri,
                "nbytes": e.nbytes,
                "reads": e.reads,
                "published_by": e.published_by,
                "published_at": e.published_at,
                "last_used": e.last_used,
                "node": e.node,
                "node_label": label_of(snapshot, e.node),
            }
            for e in snapshot.weight_cache
        ],
        "autocompact": None if auto is None else auto_model(auto),
    }


def deployment_model(d: DeploymentInfo, snapshot: Snapshot) -> schema.DeploymentModel:
    """A deployment's row: Serve's figures, whether it is healthy and how many replicas wait for a node."""
    return {
        "name": d.name,
        "app": d.app,
        "status": d.status,
        "target_replicas": d.target_replicas,
        "running_replicas": d.running_replicas,
        "replicas": d.replicas,
        "resources": d.resources,
        "route_prefix": d.route_prefix,
        "autoscaling": d.autoscaling,
        "message": d.message,
        "healthy": d.healthy,
        "unplaced": sum(1 for r in snapshot.unplaced if r.key == (d.app, d.name)),
    }


def node_model(
    snapshot: Snapshot, node: Node, strand: dict[str, dict[str, float]], resources: list[str], view: Overview | None
) -> schema.NodeModel:
    """One node's card: its state, price, replicas, cached bytes and a bar per resource (in a large
    cluster, the deployments outside ``view.shown`` merged as OTHERS, as its overview draws them)."""
    parts = node_segments(snapshot, node, strand, resources)
    if view is not None:
        parts = folded(parts, set(view.shown))
    replicas = len(snapshot.replicas_on(node.id))
    return {
        "id": node.id,
        "label": node_label(node),
        "type": node.type,
        "head": node.head,
        "draining": node.draining,
        "drained_by": node.drained_by,
        "in_use": bool(replicas) and not node.head,
        "cost_per_hour": node.cost,
        "total": node.total,
        "available": node.available,
        "replicas": replicas,
        "cached_bytes": snapshot.cached_on(node.id),
        "bars": bar_model(parts),
    }


def bar_model(parts: list[Segment]) -> dict[str, list[schema.Segment]]:
    """Segments as the sidebar draws them: per resource, holder, amount and fraction in order."""
    bars: dict[str, list[schema.Segment]] = {}
    for s in parts:
        bars.setdefault(s.resource, []).append({"holder": s.holder, "amount": s.amount, "fraction": s.fraction})
    return bars


def overview_model(view: Overview, group: str | None) -> schema.OverviewModel:
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


def auto_model(auto: AutoStatus) -> schema.AutoModel:
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


def plan_model(plan: Plan, snapshot: Snapshot, address: str, unowned_warning: str = "") -> schema.PlanModel:
    """A plan as JSON (every field, so ``plan_of`` gives it back to be run), with what it aimed for in
    words, the label of every node it names (ids are long; the sidebar shows labels) and, where no
    autoscaler takes its freed nodes away, the warning the user confirms before it runs."""
    named = {*plan.nodes_to_free, *plan.blocked, *(m.source for m in plan.moves), *(m.target for m in plan.moves)}
    return {
        "fingerprint": plan.fingerprint,
        "objective": plan.objective,
        "nodes_to_free": list(plan.nodes_to_free),
        "moves": [move_model(m) for m in plan.moves],
        "layout": plan.layout,
        "idle_nodes": list(plan.idle_nodes),
        "freed_resources": plan.freed_resources,
        "freed_cost_per_hour": plan.freed_cost_per_hour,
        "blocked": plan.blocked,
        "kept_by": plan.kept_by,
        "nodes_before": plan.nodes_before,
        "nodes_after": plan.nodes_after,
        "lower_bound": plan.lower_bound,
        "method": plan.method,
        "optimal": plan.optimal,
        "planning_s": plan.planning_s,
        "memory_warnings": plan.memory_warnings,
        "budget": budget_model(plan.budget),
        "address": address,
        "aim": plan_aim(plan),
        "labels": {n.id: node_label(n) for n in snapshot.nodes if n.id in named},
        "unowned_warning": unowned_warning,
    }


def plan_of(model: schema.PlanModel) -> Plan:
    """The Plan a ``plan_model`` answer describes, with the budget it was planned with."""
    return Plan(
        fingerprint=model["fingerprint"],
        objective=model["objective"],
        nodes_to_free=tuple(model["nodes_to_free"]),
        moves=tuple(Move(**m) for m in model["moves"]),
        layout=dict(model["layout"]),
        idle_nodes=tuple(model["idle_nodes"]),
        freed_resources=dict(model["freed_resources"]),
        freed_cost_per_hour=model["freed_cost_per_hour"],
        blocked=dict(model["blocked"]),
        nodes_before=model["nodes_before"],
        nodes_after=model["nodes_after"],
        lower_bound=model["lower_bound"],
        method=model["method"],
        optimal=model["optimal"],
        planning_s=model["planning_s"],
        memory_warnings=dict(model["memory_warnings"]),
        budget=Budget(**model["budget"]),
        kept_by=dict(model["kept_by"]),
    )


def move_model(move: Move) -> schema.Move:
    return {"replica": move.replica, "deployment": move.deployment, "app": move.app, "source": move.source, "target": move.target}


def run_budget(plan: Plan, sent: schema.Budget | None) -> Budget:
    """The budget a compaction from the sidebar runs within: the plan's own, with what the request
    sends in its place (the sidebar sends ``max_draining`` alone; the rest stays the plan's)."""
    return replace(plan.budget, **(sent or {}))


def budget_model(budget: Budget) -> schema.Budget:
    return {
        "max_draining": budget.max_draining,
        "max_migrating": budget.max_migrating,
        "min_saving_per_move": budget.min_saving_per_move,
    }


def event_model(event: CompactionEvent) -> schema.CompactionEvent:
    """One step of a compaction, as the sidebar follows it."""
    return {
        "kind": event.kind,
        "node": event.node,
        "message": event.message,
        "elapsed_s": event.elapsed_s,
        "nodes_done": event.nodes_done,
        "nodes_total": event.nodes_total,
    }


def report_model(report: CompactionReport) -> schema.ReportModel:
    """What a compaction did, without the plan and the events the sidebar has already."""
    return {
        "nodes_freed": list(report.nodes_freed),
        "replicas_moved": report.replicas_moved,
        "replicas_as_planned": report.replicas_as_planned,
        "seconds": report.seconds,
        "stopped": report.stopped,
        "reason": report.reason,
        "budget": budget_model(report.budget or report.plan.budget),
        "before": latency_model(report.before),
        "during": latency_model(report.during),
        "terminated": [(node, seconds) for node, seconds in report.terminated],
    }


def latency_model(stats: LatencyStats | None) -> schema.LatencyStats | None:
    if stats is None:
        return None
    return {"requests": stats.requests, "failed": stats.failed, "p50_ms": stats.p50_ms, "p99_ms": stats.p99_ms}
