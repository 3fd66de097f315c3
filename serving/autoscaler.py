"""Ray's own autoscaler, for servelab: the config an autoscaling embedded cluster starts it with,
and what it is doing now (node lifecycle, launches, unmet demand), read from its state API.

The embedded autoscaling cluster runs Ray's real autoscaler (v2) with Ray's fake multi-node provider,
which launches and terminates raylets on this machine as the autoscaler decides: what Ray's own
autoscaler tests use (``serving.local_provider`` only gives its nodes random ids). It is loaded as an
``external`` provider because the ``fake_multinode`` type reads an ``example.yaml`` the Ray 2.60
wheel lacks. Its raylets get logical GPUs only: the provider
starts them with a fixed environment, so no raylet can be given a GPU of its own.

Everything here is pure: ``serving.reader.autoscaler_state`` reads the state through the Ray adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servelab.errors import ClusterError
from servelab.serving.snapshot import AutoscalerState, Demand, NodeState, short_id

HEAD_TYPE = "ray.head.default"
# The provider names its nodes by these ids (RAY_OVERRIDE_NODE_ID_FOR_TESTING); the head's is fixed.
HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"
PROVIDER = "servelab.serving.local_provider.LocalNodeProvider"
# The monitor process reads these; it passes its environment to every raylet it launches.
ENVIRONMENT = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_enable_autoscaler_v2": "1"}
HEAD_ENVIRONMENT = {
    "RAY_OVERRIDE_NODE_ID_FOR_TESTING": HEAD_NODE_ID,
    "RAY_CLOUD_INSTANCE_ID": HEAD_NODE_ID,
    "RAY_NODE_TYPE_NAME": HEAD_TYPE,
}


@dataclass(frozen=True)
class NodeLimits:
    """How many nodes of a type the autoscaler keeps: at least ``min``, at most ``max``."""

    min: int = 0
    max: int = 4

    def __post_init__(self) -> None:
        for name in ("min", "max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ClusterError(f"{name}={value!r} must be a non-negative integer (a number of nodes).")
        if self.min > self.max:
            raise ClusterError(f"min={self.min} is more than max={self.max}: the autoscaler could never satisfy both.")


def config(
    types: dict[str, dict[str, Any]],
    limits: dict[str, NodeLimits],
    idle_timeout_s: float,
    gcs_address: str,
    head_cpus: float,
) -> dict[str, Any]:
    """The autoscaling config (the cluster launcher's YAML, as a dict) for ``types``: a node type name
    to its Ray resources and labels, as ``{"resources": {"CPU": 2, "GPU": 2}, "labels": {...}}``."""
    if isinstance(idle_timeout_s, bool) or not isinstance(idle_timeout_s, int | float) or idle_timeout_s < 0:
        raise ClusterError(f"idle_timeout_s={idle_timeout_s!r} must be a non-negative number of seconds.")
    node_types: dict[str, Any] = {HEAD_TYPE: {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0}}
    for name, spec in types.items():
        node_types[name] = {
            "resources": spec["resources"],
            "labels": spec["labels"],
            "node_config": {},
            "min_workers": limits[name].min,
            "max_workers": limits[name].max,
        }
    return {
        "cluster_name": "servelab",
        "max_workers": sum(limit.max for limit in limits.values()),
        "idle_timeout_minutes": idle_timeout_s / 60,
        "upscaling_speed": 1.0,
        "provider": {
            "type": "external",
            "module": PROVIDER,
            "gcs_address": gcs_address,
            "launch_multiple": True,
            "head_node_id": HEAD_NODE_ID,
        },
        "auth": {},
        "head_node_type": HEAD_TYPE,
        "available_node_types": node_types,
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def parse_status(status: Any) -> AutoscalerState:
    """An ``AutoscalerState`` from Ray's ``ray.autoscaler.v2.sdk.get_cluster_status()`` answer."""
    nodes = [
        NodeState(
            info.node_id,
            info.ray_node_type_name,
            "idle" if info.node_status == "IDLE" else "running",
            (info.resource_usage.idle_time_ms / 1000) if info.resource_usage and info.node_status == "IDLE" else 0.0,
        )
        for info in [*status.active_nodes, *status.idle_nodes]
        if info.node_id and info.ray_node_type_name != HEAD_TYPE
    ]
    launching: dict[str, int] = {}
    for request in status.pending_launches:
        launching[request.ray_node_type_name] = launching.get(request.ray_node_type_name, 0) + request.count
    for info in status.pending_nodes:
        launching[info.ray_node_type_name] = launching.get(info.ray_node_type_name, 0) + 1
    demand = [
        Demand(dict(ask.bundle), ask.count)
        for group in status.resource_demands.ray_task_actor_demand
        for ask in group.bundles_by_count
        if ask.count
    ]
    dead = tuple(info.node_id for info in status.failed_nodes if info.node_id)
    return AutoscalerState(tuple(nodes), tuple(launching.items()), tuple(demand), dead)


def termination_line(node_id: str, after_s: float, drained_s: float) -> str:
    """What a view says of a node compaction freed once the autoscaler terminated it: ``after_s``
    after its drain, which came ``drained_s`` into the compaction (the events' clock)."""
    return f"{short_id(node_id)} terminated by the autoscaler {after_s:.1f} s after its drain at {drained_s:.1f} s"
