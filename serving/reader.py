"""Read the live cluster into a Snapshot: nodes from the GCS, deployments and replicas from Serve."""

from __future__ import annotations

import time

from servelab.serving import context, ray_adapter
from servelab.serving.cluster import node_type_of
from servelab.serving.snapshot import Node, Snapshot


def snapshot() -> Snapshot:
    """Read nodes (totals, availability, labels, draining), deployments and replicas once, as plain data.

    >>> snap = snapshot()
    >>> [(n.id[:8], n.available.get("GPU")) for n in snap.nodes]
    """
    session = context.current()
    draining = ray_adapter.draining_nodes()
    available = ray_adapter.available_per_node()
    nodes = []
    for raw in ray_adapter.nodes():
        if not raw.alive:
            continue
        kind = node_type_of(raw.labels) or ("head" if raw.head else "worker")
        spec = session.node_types.get(kind)
        nodes.append(
            Node(
                id=raw.id,
                type=kind,
                total=raw.total,
                available=available.get(raw.id, {}),
                labels=raw.labels,
                draining=raw.id in draining,
                head=raw.head,
                cost_per_hour=spec.cost_per_hour if spec is not None else None,
            )
        )
    serve = ray_adapter.serve_state()
    return Snapshot(tuple(nodes), serve.replicas, taken_at=time.time(), deployments=serve.deployments)
