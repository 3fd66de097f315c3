"""The cluster servelab works on: an embedded multi-node Ray cluster on this machine, or any Ray cluster.

``up()`` starts one raylet per node with ``ray.cluster_utils.Cluster`` (logical GPUs where the machine
has none) and Serve with pack scheduling; ``connect()`` attaches to an existing cluster; ``down()``
stops only what ``up()`` started. Adding and removing nodes of the embedded cluster stands in for an
autoscaler; on a real cluster servelab never removes nodes, it leaves idle ones to the autoscaler.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from servelab.errors import ClusterError

log = logging.getLogger("servelab.serving")
NODE_TYPE_LABEL = "servelab.io/node-type"
SERVE_PORT = 8000


@dataclass(frozen=True)
class NodeType:
    """A kind of worker node: its resources, labels and price per hour (None: priced by resources)."""

    cpus: float = 1
    gpus: float = 0
    memory: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    cost_per_hour: float | None = None

    def __post_init__(self) -> None:
        for name in ("cpus", "gpus", "memory"):
            value = getattr(self, name)
            if value is None and name == "memory":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ClusterError(f"{name}={value!r}: resources must be non-negative numbers.")
        if self.cost_per_hour is not None and (not isinstance(self.cost_per_hour, int | float) or self.cost_per_hour < 0):
            raise ClusterError(f"cost_per_hour={self.cost_per_hour!r} must be a non-negative number.")


@dataclass
class _Session:
    address: str
    embedded: Any | None  # ray.cluster_utils.Cluster when servelab started it
    node_types: dict[str, NodeType]
    nodes: dict[str, Any] = field(default_factory=dict)  # node id -> ray._private.node.Node (embedded)
    http_port: int = SERVE_PORT


_session: _Session | None = None
_lock = threading.Lock()


def up(
    nodes: int = 3,
    cpus_per_node: float = 1,
    gpus_per_node: float = 2,
    memory_per_node: int | None = None,
    node_types: dict[str, dict[str, Any]] | None = None,
    http_port: int = SERVE_PORT,
) -> str:
    """Start the embedded cluster: a head plus ``nodes`` workers (or ``node_types`` counts), and Serve.

    ``node_types`` maps a name to ``{"count": n, "cpus": .., "gpus": .., "memory": .., "labels": {..},
    "cost_per_hour": ..}``. GPUs are logical where the machine has none. Returns the cluster address.

    >>> up(nodes=3, gpus_per_node=2)
    '192.0.2.2:6379'
    """
    global _session
    types, counts = _node_plan(nodes, cpus_per_node, gpus_per_node, memory_per_node, node_types)
    with _lock:
        if _session is not None:
            raise ClusterError(
                f"a cluster is already {'up' if _session.embedded else 'connected'} at {_session.address}; "
                "call down() first, or keep using it."
            )
        os.environ["RAY_SERVE_USE_PACK_SCHEDULING_STRATEGY"] = "1"
        os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")
        import ray
        from ray.cluster_utils import Cluster

        if ray.is_initialized():
            raise ClusterError("Ray is already initialised in this process; call ray.shutdown() or use connect().")
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False},
        )
        session = _Session(cluster.address, cluster, types, http_port=http_port)
        try:
            for name, count in counts.items():
                for _ in range(count):
                    _add_worker(session, name)
            ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
            cluster.wait_for_nodes()
            _start_serve(http_port)
        except BaseException:
            ray.shutdown()
            cluster.shutdown()
            raise
        _session = session
        log.info("embedded cluster up at %s with %d workers", cluster.address, sum(counts.values()))
        return cluster.address


def connect(address: str = "auto", http_port: int = SERVE_PORT, node_types: dict[str, dict[str, Any]] | None = None) -> str:
    """Attach to a running Ray cluster (``"auto"``, ``"host:6379"`` or ``"ray://host:10001"``) and its Serve.

    >>> connect("ray://head.example:10001")
    """
    global _session
    types = _node_plan(0, 0, 0, None, node_types)[0] if node_types else {}
    with _lock:
        if _session is not None:
            raise ClusterError(f"already attached to {_session.address}; call down() first.")
        import ray

        try:
            _check_reachable(address)
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
            raise ClusterError(
                f"no Ray cluster answers at {address!r} ({exc}). Start one with 'ray start --head', "
                "check the address, or use up() for an embedded cluster."
            ) from None
        _start_serve(http_port)
        _session = _Session(address, None, types, http_port=http_port)
        return address


def down() -> None:
    """Stop what up() started (Serve, the raylets), or detach from a connected cluster; idempotent."""
    global _session
    with _lock:
        session, _session = _session, None
        if session is None:
            return
        import ray
        from ray import serve

        if session.embedded is not None:
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
                session.embedded.shutdown()
        else:
            ray.shutdown()


def current() -> _Session:
    """The session up() or connect() made; a clear error when there is none."""
    if _session is None:
        raise ClusterError("no cluster: call servelab.serving.up() (embedded) or connect(address) first.")
    return _session


def add_node(node_type: str | None = None) -> str:
    """Add a worker to the embedded cluster (the stand-in for an autoscaler); returns its node id."""
    session = current()
    if session.embedded is None:
        raise ClusterError("add_node() works on the embedded cluster only; a real cluster's autoscaler adds nodes.")
    name = node_type or next(iter(session.node_types))
    if name not in session.node_types:
        raise ClusterError(f"unknown node type {name!r}; this cluster has {sorted(session.node_types)}.")
    return _add_worker(session, name)


def remove_node(node_id: str) -> None:
    """Remove a worker of the embedded cluster (what an autoscaler does to an idle node)."""
    session = current()
    if session.embedded is None:
        raise ClusterError("servelab never removes nodes of a real cluster; its autoscaler reclaims idle nodes.")
    node = session.nodes.pop(node_id, None)
    if node is None:
        raise ClusterError(f"{node_id!r} is not a worker of the embedded cluster.")
    session.embedded.remove_node(node, allow_graceful=True)


def node_type_of(labels: dict[str, str]) -> str | None:
    return labels.get(NODE_TYPE_LABEL)


def _add_worker(session: _Session, name: str) -> str:
    spec = session.node_types[name]
    args: dict[str, Any] = {"num_cpus": spec.cpus, "num_gpus": spec.gpus, "labels": {**spec.labels, NODE_TYPE_LABEL: name}}
    if spec.memory is not None:
        args["memory"] = spec.memory
    node = session.embedded.add_node(**args)
    session.nodes[node.node_id] = node
    return node.node_id


def _node_plan(
    nodes: int, cpus: float, gpus: float, memory: int | None, node_types: dict[str, dict[str, Any]] | None
) -> tuple[dict[str, NodeType], dict[str, int]]:
    if node_types is None:
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise ClusterError(f"nodes={nodes!r} must be a positive integer.")
        return {"worker": NodeType(cpus, gpus, memory)}, {"worker": nodes}
    types, counts = {}, {}
    for name, spec in node_types.items():
        spec = dict(spec)
        count = spec.pop("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ClusterError(f"node type {name!r}: count={count!r} must be a non-negative integer.")
        try:
            types[name] = NodeType(**spec)
        except TypeError as exc:
            raise ClusterError(f"node type {name!r}: {exc}; use cpus, gpus, memory, labels, cost_per_hour, count.") from None
        counts[name] = count
    return types, counts


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast where nothing listens: ray.init waits minutes for a GCS that is not there."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("expected 'auto', 'host:port' or 'ray://host:port'")
    with socket.create_connection((host, int(port)), timeout=timeout_s):
        pass


def _start_serve(http_port: int) -> None:
    from ray import serve

    # One proxy, on the head: the proxy of a node being drained would drop its requests.
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": http_port})
