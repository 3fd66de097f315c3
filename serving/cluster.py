"""The cluster servelab works on: an embedded multi-node Ray cluster on this machine, or any Ray cluster.

``up()`` starts one raylet per node and Serve with pack scheduling, in this process, which owns the
cluster; each raylet gets GPUs of its own where the machine has them, else the GPUs are logical
and say so (``serving.gpus``). ``connect()`` attaches to a running one (by
address, ``RAY_ADDRESS`` or a discovery record); ``down()`` stops only what ``up()`` started.
Both write a discovery record so other kernels and the Jupyter server can find the cluster.
Adding and removing nodes of the embedded cluster stands in for an autoscaler; on a real cluster
servelab never removes nodes, it leaves idle ones to the autoscaler.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from typing import Any

from servelab.errors import MAGIC, ClusterError
from servelab.ports import free_port, port_is_free
from servelab.serving import autoscaler, context, discovery, gpus, ray_adapter
from servelab.serving.autoscaler import NodeLimits
from servelab.serving.context import NodeType, Session

log = logging.getLogger("servelab.serving")
NODE_TYPE_LABEL = "servelab.io/node-type"
# Each worker's GPU mode, so a process that attaches (the Jupyter server's sidebar) reads it too.
GPU_MODE_LABEL = "servelab.io/gpus"
# Its price, so a process that attaches (the sidebar) prices the node as the one that started it does.
COST_LABEL = "servelab.io/cost-per-hour"
# The physical GPUs up() gave it ("0_1": Ray's label values allow no comma), so any process on this
# machine, not just the one that started the cluster, reads what those GPUs are doing.
GPU_DEVICES_LABEL = "servelab.io/gpu-devices"
SERVE_PORT = 8000
# cluster_utils waits 30 s for a raylet to register: on 2 loaded cores a worker once took longer.
NODE_START_TIMEOUT_S = 120.0


def up(
    nodes: int = 3,
    cpus_per_node: float = 1,
    gpus_per_node: float | None = None,
    memory_per_node: int | None = None,
    node_types: dict[str, dict[str, Any]] | None = None,
    http_port: int | None = None,
    ray_compaction_delay_s: float | None = None,
    autoscale: bool = False,
    idle_timeout_s: float = 60.0,
) -> str:
    """Start the embedded cluster: a head plus ``nodes`` workers (or ``node_types`` counts), and Serve.

    ``node_types`` maps a name to ``{"count": n, "cpus": .., "gpus": .., "memory": .., "labels": {..},
    "cost_per_hour": ..}``. ``gpus_per_node`` defaults to this machine's GPUs split evenly over the
    nodes (2 logical ones where it has none). Each raylet gets physical GPUs of its own; where the
    machine has none, or fewer than asked for, the GPUs are logical: replicas get no CUDA device, and
    ``gpu_mode()`` and every view say so. Serve's HTTP proxy listens
    on 127.0.0.1:``http_port`` (default 8000, or a free port when 8000 is taken). Ray Serve's own
    node compaction is off, so that one compactor (servelab's) moves replicas, unless
    ``ray_compaction_delay_s`` turns it on with that delay. Returns the address.

    ``autoscale=True`` hands the workers to Ray's own autoscaler (its local node provider): each
    node type gives ``"min"`` and ``"max"`` instead of ``"count"`` (without ``node_types``, one type
    with at most ``nodes`` workers), the autoscaler launches nodes for replicas that do not fit and
    terminates nodes idle for ``idle_timeout_s``. Its GPUs are logical (``serving.autoscaler`` says why).

    >>> up(nodes=3, gpus_per_node=2)
    '127.0.0.1:6379'
    >>> up(autoscale=True, node_types={"gpu2": {"min": 0, "max": 4, "cpus": 1, "gpus": 2}}, idle_timeout_s=30)
    '127.0.0.1:28113'
    """
    machine = gpus.visible_gpus()
    if gpus_per_node is None:
        gpus_per_node = gpus.default_gpus_per_node(nodes if isinstance(nodes, int) else 1, len(machine))
    limits: dict[str, NodeLimits] | None = None
    if autoscale:
        types, limits = _autoscaling_plan(nodes, cpus_per_node, gpus_per_node, memory_per_node, node_types)
        order: list[str] = []
        gpu_plan = gpus.GpuPlan(gpus.LOGICAL, (), len(machine), AUTOSCALED_GPUS)
    else:
        types, counts = _node_plan(nodes, cpus_per_node, gpus_per_node, memory_per_node, node_types)
        order = [name for name, count in counts.items() for _ in range(count)]
        gpu_plan = gpus.plan_gpus([types[name].gpus for name in order], machine)
    if gpu_plan.logical and any(spec.gpus for spec in types.values()):
        log.info("%s", gpu_plan.describe())  # gpu_mode() and every view say it; a warning printed it twice, in red
    http_port = _serve_port(http_port)
    with context.lock:
        refuse_second_session()
        if ray_adapter.is_initialized():
            raise ClusterError("Ray is already initialised in this process; call ray.shutdown() or use connect().")
        # Ray's authentication is off by default and its processes listen on every interface: the
        # embedded cluster binds to 127.0.0.1 and gets a token of its own, which every process
        # started from here inherits.
        token = secrets.token_urlsafe(32)
        auth_env = ray_adapter.use_token(token)
        try:
            if limits is None:
                cluster = ray_adapter.start_embedded(ray_compaction_delay_s)
            else:
                cluster = _start_autoscaling(types, limits, idle_timeout_s, gpu_plan, ray_compaction_delay_s)
        except BaseException as exc:
            ray_adapter.restore_auth(auth_env)
            if ray_adapter.STARTUP_TIMED_OUT in str(exc):
                said = _busy_machine()
                raise ClusterError(said + " run up() again.", said_in={MAGIC: said + " run %servelab up again."}) from None
            raise
        session = Session(
            cluster.address,
            cluster,
            types,
            auth_env=auth_env,
            gpu_plan=gpu_plan,
            machine_gpus=tuple(machine),
            autoscaling=limits,
        )
        try:
            with ray_adapter.stopping_strays():  # what stop_embedded() cannot reach, such as a half-started raylet
                try:
                    started = [_add_worker(session, name, gpu_plan.devices[i]) for i, name in enumerate(order)]
                    _wait_for_workers(session, started)
                    ray_adapter.init(cluster.address)
                    if limits is not None:
                        _wait_for_minimum(limits)
                    ray_adapter.start_serve(http_port)
                except BaseException:
                    ray_adapter.shutdown()
                    ray_adapter.stop_embedded(cluster)
                    raise
        except BaseException:
            ray_adapter.restore_auth(auth_env)
            raise
        session.record = discovery.write_record(cluster.address, http_port, None, embedded=True, token=token)
        context.set_session(session)
        log.info("embedded cluster up at %s", cluster.address)
        return str(cluster.address)


def _busy_machine() -> str:
    load, tries = os.getloadavg()[0], ray_adapter.HEAD_ATTEMPTS
    return (
        f"the embedded cluster did not start: Ray's head did not register within Ray's fixed 30 s in {tries} "
        f"{'try' if tries == 1 else 'tries'} (load average {load:.1f} on {os.cpu_count()} cores), and everything it started "
        "was stopped. Stop other work on this machine (another cluster, a model loading), then"
    )


AUTOSCALED_GPUS = "Ray's local node provider starts every raylet it launches alike, so none can have GPUs of its own"


def _start_autoscaling(
    types: dict[str, NodeType],
    limits: dict[str, NodeLimits],
    idle_timeout_s: float,
    gpu_plan: gpus.GpuPlan,
    compaction_delay_s: float | None,
) -> Any:
    gcs_port = free_port()
    launched = {
        name: {
            "resources": {**spec.resources, "object_store_memory": ray_adapter.WORKER_OBJECT_STORE},
            "labels": worker_labels(name, spec, gpu_plan.mode),
        }
        for name, spec in types.items()
    }
    settings = autoscaler.config(launched, limits, idle_timeout_s, f"{ray_adapter.LOOPBACK}:{gcs_port}", head_cpus=1)
    # Not the logical plan's empty CUDA_VISIBLE_DEVICES: the provider refuses a GPU node started with it.
    environment = {**autoscaler.ENVIRONMENT, **gpu_plan.environment_for(())}
    environment.pop("CUDA_VISIBLE_DEVICES")
    return ray_adapter.start_embedded(compaction_delay_s, settings, gcs_port, environment)


def _wait_for_minimum(limits: dict[str, NodeLimits]) -> None:
    """Until the autoscaler has launched each type's ``min`` workers."""
    wanted = {name: limit.min for name, limit in limits.items() if limit.min}
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while wanted:
        alive = [node_type_of(raw.labels) for raw in ray_adapter.nodes() if raw.alive and not raw.head]
        if all(alive.count(name) >= count for name, count in wanted.items()):
            return
        if time.monotonic() > deadline:
            raise ClusterError(
                f"the autoscaler had not launched the minimum workers ({wanted}) within {NODE_START_TIMEOUT_S:.0f} s: "
                "this machine may be short of CPU or memory: stop other work, or lower min."
            )
        time.sleep(0.5)


def connect(
    address: str | None = None,
    http_port: int = SERVE_PORT,
    node_types: dict[str, dict[str, Any]] | None = None,
    observe: bool = False,
    token: str | None = None,
) -> str:
    """Attach to a running Ray cluster and its Serve; returns the address attached to.

    ``address`` is ``"host:6379"``, ``"ray://host:10001"`` or ``"auto"``; with None, ``RAY_ADDRESS``
    or else the newest cluster another kernel on this machine started (its discovery record).
    ``token`` is the cluster's Ray auth token; by default the one its discovery record names (a
    cluster that ``up()`` started on this machine), else ``RAY_AUTH_TOKEN`` or Ray's token file.
    ``observe=True`` attaches as an observer (the Jupyter server does): it starts no Serve where
    none runs and writes no discovery record, since it watches a cluster rather than announces one.

    >>> connect("ray://head.example:10001")
    >>> connect()  # the cluster a notebook on this machine started with up()
    """
    types = _node_plan(0, 0, 0, None, node_types)[0] if node_types else {}
    with context.lock:
        refuse_second_session()
        address, http_port = _resolve(address, http_port)
        token = token or discovery.token_for(address)
        auth_env = ray_adapter.use_token(token) if token else None
        try:
            check_reachable(address)
            dashboard = ray_adapter.init(address)
        except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
            if auth_env is not None:
                ray_adapter.restore_auth(auth_env)
            raise ClusterError(
                f"no Ray cluster answers at {address!r}, or it refused this process's auth token ({exc}). Check the "
                "address; for a cluster with token authentication pass token=... or set RAY_AUTH_TOKEN; or use up()."
            ) from None
        try:
            if not observe:
                ray_adapter.start_serve(http_port)
        except BaseException:
            ray_adapter.shutdown()
            if auth_env is not None:
                ray_adapter.restore_auth(auth_env)
            raise
        session = Session(address, None, types, auth_env=auth_env)
        if not observe:
            http = ray_adapter.serve_state().http_port
            session.record = discovery.write_record(address, http, dashboard, embedded=False, token=token)
        context.set_session(session)
        return address


def down() -> None:
    """Stop what up() started (Serve, the raylets), or detach from a connected cluster; idempotent.

    >>> down()
    """
    with context.lock:
        session = context.set_session(None)
        if session is None:
            return
        discovery.remove_record(session.record)
        try:
            ray_adapter.shutdown()  # Serve goes with the raylets: shutting it down first only races them
            if session.embedded is not None:
                ray_adapter.stop_embedded(session.embedded)
        finally:
            if session.auth_env is not None:
                ray_adapter.restore_auth(session.auth_env)


def add_node(node_type: str | None = None) -> str:
    """Add a worker to the embedded cluster (the stand-in for an autoscaler); returns its node id.

    >>> add_node("gpu4")
    """
    session = context.current()
    if not session.removes_nodes:
        raise ClusterError(
            "add_node() works on the fixed embedded cluster only; on this cluster the autoscaler launches nodes "
            "when replicas do not fit: scale a deployment up instead."
        )
    name = node_type or next(iter(session.node_types))
    if name not in session.node_types:
        raise ClusterError(f"unknown node type {name!r}; this cluster has {sorted(session.node_types)}.")
    node_id = _add_worker(session, name, _free_gpus(session, session.node_types[name].gpus))
    _wait_for_workers(session, [node_id])
    return node_id


def remove_node(node_id: str) -> None:
    """Remove a worker of the embedded cluster (what an autoscaler does to an idle node)."""
    session = context.current()
    if not session.removes_nodes:
        raise ClusterError("servelab never removes nodes of an autoscaling cluster; its autoscaler terminates idle nodes.")
    node = session.workers.pop(node_id, None)
    if node is None:
        raise ClusterError(f"{node_id!r} is not a worker of the embedded cluster.")
    ray_adapter.remove_worker(session.embedded, node)
    session.gpu_devices.pop(node_id, None)


def gpu_mode() -> str:
    """How this cluster's GPUs map to the machine's, in one line: physical (which GPUs each raylet
    has) or logical (replicas get no CUDA device, and why). Empty for a cluster servelab did not start.

    >>> gpu_mode()
    'physical GPUs: 2 of 2 given to 2 raylet(s)'
    """
    plan = context.current().gpu_plan
    return "" if plan is None else plan.describe()


def node_type_of(labels: dict[str, str]) -> str | None:
    return labels.get(NODE_TYPE_LABEL)


def worker_labels(name: str, spec: NodeType, gpu_mode: str, devices: tuple[int, ...] = ()) -> dict[str, str]:
    """The labels every worker of type ``name`` carries: the user's, its type, GPU mode, price and
    physical GPUs; what a snapshot knows of a node beyond Ray's own figures comes from them."""
    labels = {**spec.labels, NODE_TYPE_LABEL: name, GPU_MODE_LABEL: gpu_mode}
    if spec.cost_per_hour is not None:
        labels[COST_LABEL] = repr(float(spec.cost_per_hour))
    if devices:
        labels[GPU_DEVICES_LABEL] = "_".join(str(index) for index in devices)
    return labels


def cost_from_labels(labels: dict[str, str]) -> float | None:
    """The price ``worker_labels`` gave a node, or None (priced by its resources)."""
    try:
        return float(labels[COST_LABEL])
    except (KeyError, ValueError):
        return None


def devices_from_labels(labels: dict[str, str]) -> tuple[int, ...]:
    """The physical GPUs ``worker_labels`` gave a node; none for a node up() did not start or gave none."""
    value = labels.get(GPU_DEVICES_LABEL, "")
    return tuple(int(index) for index in value.split("_") if index.isdigit())


def _add_worker(session: Session, name: str, devices: tuple[int, ...]) -> str:
    spec = session.node_types[name]
    plan = session.gpu_plan
    assert plan is not None, "only up() starts workers, and it plans their GPUs"
    environment = plan.environment_for(devices)
    node_id, node = ray_adapter.add_worker(
        session.embedded,
        spec.cpus,
        spec.gpus,
        spec.memory,
        worker_labels(name, spec, plan.mode, devices),
        environment,
    )
    session.workers[node_id] = node
    if devices:
        session.gpu_devices[str(node_id)] = devices
    return str(node_id)


def _free_gpus(session: Session, wanted: float) -> tuple[int, ...]:
    """Physical GPUs no raylet holds, enough for a node of ``wanted`` GPUs (none in logical mode)."""
    plan = session.gpu_plan
    if plan is None or plan.logical:
        return ()
    held = {index for devices in session.gpu_devices.values() for index in devices}
    free = [index for index in session.machine_gpus if index not in held]
    extra = gpus.plan_gpus([wanted], free)
    if extra.logical:
        raise ClusterError(
            f"a node of {wanted:g} GPU(s) does not fit: {len(free)} of this machine's {len(session.machine_gpus)} GPUs "
            "are free. Remove a node first, or add one with fewer GPUs."
        )
    return extra.devices[0]


def _wait_for_workers(session: Session, node_ids: list[str]) -> None:
    try:
        ray_adapter.wait_for_workers(session.embedded, [session.workers[n] for n in node_ids], NODE_START_TIMEOUT_S)
    except TimeoutError:
        raise ClusterError(
            f"the embedded cluster's raylets did not all register within {NODE_START_TIMEOUT_S:.0f} s: this machine "
            "may be short of CPU or memory: stop other work, or ask for fewer nodes."
        ) from None


def refuse_second_session() -> None:
    """Raise ClusterError when this process already has a cluster (up() or connect() would refuse)."""
    session = context.get()
    if session is not None:
        already = f"a cluster is already {'up' if session.owner else 'connected'} at {session.address}; "
        raise ClusterError(
            already + "call down() first, or keep using it.",
            said_in={MAGIC: already + "%servelab down first, or keep using it (%servelab status shows it)."},
        )


def _resolve(address: str | None, http_port: int) -> tuple[str, int]:
    """The address to attach to: the argument, RAY_ADDRESS, or the newest discovery record."""
    if address:
        return address, http_port
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], http_port
    records = discovery.find_clusters()
    if not records:
        raise ClusterError(
            "no cluster to attach to: none is recorded on this machine and RAY_ADDRESS is unset. "
            "Give an address (connect('host:6379')), or start one with up()."
        )
    return records[0].address, records[0].http_port or http_port


def _node_plan(
    nodes: int, cpus: float, gpus: float, memory: int | None, node_types: dict[str, dict[str, Any]] | None
) -> tuple[dict[str, NodeType], dict[str, int]]:
    if node_types is None:
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise ClusterError(f"nodes={nodes!r} must be a positive integer.")
        return {"worker": NodeType(cpus, gpus, memory)}, {"worker": nodes}
    types, counts = {}, {}
    for name, given in node_types.items():
        spec = dict(given)
        count = spec.pop("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ClusterError(f"node type {name!r}: count={count!r} must be a non-negative integer.")
        types[name] = _node_type(name, spec, "count")
        counts[name] = count
    return types, counts


def _autoscaling_plan(
    nodes: int, cpus: float, gpus: float, memory: int | None, node_types: dict[str, dict[str, Any]] | None
) -> tuple[dict[str, NodeType], dict[str, NodeLimits]]:
    """Node types and how many of each the autoscaler may run: ``nodes`` is the one type's max."""
    if node_types is None:
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise ClusterError(f"nodes={nodes!r} must be a positive integer (the most workers the autoscaler runs).")
        return {"worker": NodeType(cpus, gpus, memory)}, {"worker": NodeLimits(0, nodes)}
    types, limits = {}, {}
    for name, given in node_types.items():
        spec = dict(given)
        try:
            limits[name] = NodeLimits(spec.pop("min", 0), spec.pop("max", 4))
        except ClusterError as exc:
            raise ClusterError(f"node type {name!r}: {exc}") from None
        types[name] = _node_type(name, spec, "min, max")
    return types, limits


def _node_type(name: str, spec: dict[str, Any], counts: str) -> NodeType:
    try:
        return NodeType(**spec)
    except TypeError as exc:
        raise ClusterError(f"node type {name!r}: {exc}; use cpus, gpus, memory, labels, cost_per_hour, {counts}.") from None


def _serve_port(port: int | None) -> int:
    """The port Serve's proxy will take: the one asked for if free, else 8000 or a quiet free one."""
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise ClusterError(f"http_port={port!r} must be a TCP port number (1-65535).")
    if port is not None:
        if port_is_free(port):
            return port
        raise ClusterError(f"port {port} on 127.0.0.1 is taken; pass another http_port, or none to pick a free one.")
    return SERVE_PORT if port_is_free(SERVE_PORT) else free_port()


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast where nothing listens (a TCP connect, not a Ray handshake): ray.init waits minutes
    for a GCS that is not there. OSError when nothing answers, ValueError for a malformed address."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("expected 'auto', 'host:port' or 'ray://host:port'")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
        pass
