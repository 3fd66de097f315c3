"""Read the live cluster into a Snapshot: nodes from the GCS, replicas from the Serve controller."""

from __future__ import annotations

import time
from typing import Any

from servelab.serving.cluster import current, node_type_of
from servelab.serving.snapshot import Node, Replica, Snapshot

HEAD_MARKER = "node:__internal_head__"
KEPT_RESOURCES = ("CPU", "GPU", "memory")


def snapshot() -> Snapshot:
    """Read nodes (totals, availability, labels, draining) and Serve replicas once, as plain data.

    >>> snap = snapshot()
    >>> [(n.id[:8], n.available.get("GPU")) for n in snap.nodes]
    """
    import ray
    from ray._private.state import available_resources_per_node

    session = current()
    gcs = ray._private.worker.global_worker.gcs_client
    draining = set(gcs.get_draining_nodes())
    available = available_resources_per_node()
    nodes = []
    for info in ray.nodes():
        if not info["Alive"]:
            continue
        node_id = info["NodeID"]
        total = _resources(info["Resources"])
        labels = {k: v for k, v in info.get("Labels", {}).items() if not k.startswith("ray.io/")}
        kind = node_type_of(labels) or ("head" if HEAD_MARKER in info["Resources"] else "worker")
        spec = session.node_types.get(kind)
        nodes.append(
            Node(
                id=node_id,
                type=kind,
                total=total,
                available=_resources(available.get(node_id, {})),
                labels=labels,
                draining=node_id in draining,
                head=HEAD_MARKER in info["Resources"],
                cost_per_hour=spec.cost_per_hour if spec is not None else None,
            )
        )
    return Snapshot(tuple(nodes), tuple(_replicas()), taken_at=time.time())


def serve_details() -> dict[str, Any]:
    """The Serve controller's view of applications, deployments and replicas (the dashboard's data)."""
    from ray.serve.context import _get_global_client

    return _get_global_client().get_serve_details()


def _replicas() -> list[Replica]:
    replicas = []
    for app, app_details in serve_details().get("applications", {}).items():
        for name, deployment in app_details.get("deployments", {}).items():
            config = deployment.get("deployment_config", {})
            actor_options = config.get("ray_actor_options") or {}
            resources = _actor_resources(actor_options)
            for replica in deployment.get("replicas", []):
                replicas.append(
                    Replica(
                        id=replica["replica_id"],
                        deployment=name,
                        app=app,
                        node_id=replica.get("node_id"),
                        resources=resources,
                        state=str(getattr(replica["state"], "value", replica["state"])),
                        label_selector=dict(actor_options.get("label_selector") or {}),
                        max_replicas_per_node=config.get("max_replicas_per_node"),
                    )
                )
    return replicas


def _actor_resources(options: dict[str, Any]) -> dict[str, float]:
    resources = {"CPU": float(options.get("num_cpus") or 0.0), "GPU": float(options.get("num_gpus") or 0.0)}
    if options.get("memory"):
        resources["memory"] = float(options["memory"])
    resources.update({k: float(v) for k, v in (options.get("resources") or {}).items()})
    return {k: v for k, v in resources.items() if v}


def _resources(raw: dict[str, float]) -> dict[str, float]:
    """Schedulable resources only: drop Ray's per-node markers and the object store."""
    return {
        k: float(v)
        for k, v in raw.items()
        if k in KEPT_RESOURCES or not (k.startswith("node:") or k in ("object_store_memory",) or k.startswith("accelerator_type:"))
    }
