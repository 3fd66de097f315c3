"""Read the live cluster into a Snapshot: nodes from the GCS, deployments and replicas from Serve.

Everything comes from the cluster itself (what servelab knows of a node beyond Ray's figures, its
type, price and physical GPUs, travels in the labels up() gave it), never from this process's
Session: a process that attached, or the automatic compactor on the head, reads the same snapshot
as the one that started the cluster."""

from __future__ import annotations

import time
from dataclasses import replace

from servelab.serving import context, gpu_metrics, ray_adapter
from servelab.serving.autoscaler import parse_status
from servelab.serving.cluster import GPU_MODE_LABEL, cost_from_labels, devices_from_labels, node_type_of
from servelab.serving.gpu_metrics import GpuReading
from servelab.serving.gpus import LOGICAL
from servelab.serving.multiplex import counts_by_replica
from servelab.serving.snapshot import AutoscalerState, CacheEntry, Node, Snapshot
from servelab.serving.weight_cache import weight_cache

DRAIN_RECORD = "drain"  # key-value records of the drains servelab started, by node id


def snapshot() -> Snapshot:
    """Read nodes (totals, availability, labels, draining), deployments, replicas and what the peer
    weight cache holds once, as plain data.

    >>> snap = snapshot()
    >>> [(n.id[:8], n.available.get("GPU")) for n in snap.nodes]
    """
    return _read(detailed=True)


def quick_snapshot() -> Snapshot:
    """Where each replica runs and in what state, the deployments, and which nodes are alive and
    draining: cheap enough to read several times a second while waiting on a migration. It carries
    no availability, no per-GPU view, no model counts and no weight cache: ``snapshot()`` asks the
    raylets for the per-GPU view, a query each raylet passes on to every worker process, serving
    replicas included."""
    return _read(detailed=False)


def _read(detailed: bool) -> Snapshot:
    if not ray_adapter.is_initialized():
        context.current()  # no cluster: says how to start or attach to one
    draining = ray_adapter.draining_nodes()
    ours = set(ray_adapter.reports(DRAIN_RECORD))
    available = ray_adapter.available_per_node() if detailed else {}
    serve = ray_adapter.serve_state()
    # Serve's own compaction drains no node in the GCS: it marks the replicas it moves PENDING_MIGRATION.
    migrating = {r.node_id for r in serve.replicas if r.state == "PENDING_MIGRATION"} - set(draining)
    # GPUs split across instances only where a fraction is held: ask those raylets which GPU holds what.
    fractional = {r.node_id for r in serve.replicas if r.resources.get("GPU", 0.0) % 1.0 > 0.0}
    alive = [raw for raw in ray_adapter.nodes() if raw.alive]
    gpus_free = {raw.id: available.get(raw.id, {}).get("GPU", 0.0) for raw in alive}
    asked = [(raw, gpus_free[raw.id]) for raw in alive if raw.id in fractional or gpus_free[raw.id] % 1.0 > 1e-6]
    split = ray_adapter.gpu_free_many(asked) if detailed else {}
    nodes = []
    for raw in alive:
        free = available.get(raw.id, {})
        kind = node_type_of(raw.labels) or ("head" if raw.head else "worker")
        nodes.append(
            Node(
                id=raw.id,
                type=kind,
                total=raw.total,
                available=free,
                labels=raw.labels,
                draining=raw.id in draining or raw.id in migrating,
                head=raw.head,
                cost_per_hour=cost_from_labels(raw.labels),
                drained_by=_drained_by(raw.id, draining, ours, migrating),
                gpu_free=split.get(raw.id),
            )
        )
    replicas = serve.replicas
    cached: tuple[CacheEntry, ...] = ()
    if detailed:
        counts = counts_by_replica()
        replicas = tuple(replace(r, models=counts[r.id]) if r.id in counts else r for r in serve.replicas)
        cached = tuple(weight_cache())
    readings: tuple[GpuReading, ...] = ()
    # Nodes given physical GPUs are raylets up() started on this machine (they are reached through
    # 127.0.0.1), so this process's NVML sees their GPUs.
    owners = {index: raw.id for raw in alive for index in devices_from_labels(raw.labels)}
    if detailed and owners:
        readings = gpu_metrics.read(sorted(owners), owners)
    return Snapshot(
        tuple(nodes),
        replicas,
        taken_at=time.time(),
        deployments=serve.deployments,
        weight_cache=cached,
        gpu_mode=_gpu_mode_of(nodes),
        gpus=readings,
        autoscaler=autoscaler_state() if detailed else None,
    )


def autoscaler_state() -> AutoscalerState | None:
    """What Ray's autoscaler is doing (node lifecycle, launches, unmet demand), read from its state
    API; None where the cluster's autoscaler reports nothing (no autoscaler, or autoscaler v1: the
    GCS answers for any cluster, with state version "0" until an autoscaler v2 has reported)."""
    status = ray_adapter.autoscaler_status()
    if status is None or status.stats.autoscaler_version in (None, "", "0"):
        return None
    return parse_status(status)


def _gpu_mode_of(nodes: list[Node]) -> str:
    """The GPU mode up() labelled its workers with; "" for a cluster it did not start."""
    modes = {n.labels.get(GPU_MODE_LABEL, "") for n in nodes if not n.head} - {""}
    return LOGICAL if LOGICAL in modes else next(iter(modes), "")


def _drained_by(node_id: str, draining: set[str], ours: set[str], migrating: set[str | None]) -> str | None:
    if node_id in draining:
        return "servelab" if node_id in ours else "other"
    return "ray" if node_id in migrating else None
