"""The one door to Ray: every call into Ray's private or internal APIs lives here.

The GCS client (node state, draining), the embedded ``ray.cluster_utils.Cluster``, the Serve
controller (instance details, the external-scaling call), non-blocking ``serve.run`` and the
cluster's internal key-value store. Serve's instance details are parsed here, once, into the
plain dataclasses of ``servelab.serving.snapshot``. A Ray upgrade touches this file alone.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servelab.serving import autoscaler
from servelab.serving.snapshot import DeploymentInfo, Replica

log = logging.getLogger("servelab.serving")

HEAD_MARKER = "node:__internal_head__"
KEPT_RESOURCES = ("CPU", "GPU", "memory")
LLM_SERVER = "LLMServer:"  # Ray Serve LLM names a model's server deployment "LLMServer:<model id>"
KV_NAMESPACE = "servelab"
COMPACTION_DELAY = "RAY_SERVE_NODE_COMPACTION_DELAY_S"


@dataclass(frozen=True)
class RawNode:
    """A node as the GCS reports it, schedulable resources only."""

    id: str
    alive: bool
    head: bool
    total: dict[str, float]
    labels: dict[str, str]
    address: str = ""
    port: int = 0  # the raylet's node manager port


@dataclass(frozen=True)
class ServeState:
    """Serve's view of the cluster: every deployment and replica, and where its proxy listens."""

    deployments: tuple[DeploymentInfo, ...]
    replicas: tuple[Replica, ...]
    http_host: str | None
    http_port: int | None


# --- the driver ---------------------------------------------------------------------------------


def init(address: str) -> str | None:
    """Attach this process to the cluster as a driver; returns the dashboard URL, if it has one."""
    import ray

    if address.rpartition(":")[0].strip("[]") in LOOPBACK_HOSTS:
        dial_loopback()
    context = ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    url = getattr(context, "dashboard_url", None)
    return (url if "://" in url else f"http://{url}") if url else None


def is_initialized() -> bool:
    import ray

    return bool(ray.is_initialized())


def shutdown() -> None:
    import ray

    ray.shutdown()


# Ray turns a loopback bootstrap address into the machine's network address before dialling it
# (services.resolve_ip_for_localhost), so a cluster bound to 127.0.0.1 cannot be reached by its own
# address, except where Ray considers multi-node clusters disabled (its macOS and Windows default),
# in which case it keeps 127.0.0.1. That switch is read nowhere else but `ray start`.
LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def dial_loopback() -> None:
    """Let this process, and every process it starts, reach a cluster bound to 127.0.0.1 as such.

    Why a patch: on Linux, ``services.get_node_ip_address`` (Ray 2.60) names this machine by the
    address it would reach the network from, where a cluster bound to 127.0.0.1 has no raylet; it
    answers 127.0.0.1 only where multi-node clusters are "not enabled", a constant Ray reads once at
    import. The variable covers the processes started later, the constant this one."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


# --- authentication -----------------------------------------------------------------------------

AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def use_token(token: str) -> dict[str, str | None]:
    """Authenticate this process, and every process it starts, with Ray token ``token``.

    Returns the variables it replaced, for ``restore_auth()``. Ray reads the mode and the token once
    per process and caches them, so its caches are reset (what Ray's own tests do between clusters).
    """
    previous = {name: os.environ.get(name) for name in AUTH_VARIABLES}
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    _reload_auth()
    return previous


def restore_auth(previous: dict[str, str | None]) -> None:
    """Put back the variables ``use_token()`` replaced."""
    _restore_environment(previous)
    _reload_auth()


def _restore_environment(previous: dict[str, str | None]) -> None:
    """Put back environment variables as they were (None: unset)."""
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _reload_auth() -> None:
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


# --- the embedded cluster -----------------------------------------------------------------------


WORKER_OBJECT_STORE = 2 * 2**30
WORKER_NICENESS = "RAY_worker_niceness"


USAGE_STATS = "RAY_USAGE_STATS_ENABLED"


def start_embedded(
    compaction_delay_s: float | None = None,
    autoscaling: dict[str, Any] | None = None,
    gcs_port: int = 0,
    monitor_environment: dict[str, str] | None = None,
) -> Any:
    """A head raylet (no GPUs, no dashboard) on this machine, bound to 127.0.0.1, with Serve's pack scheduling on.

    Its GCS, raylets, object managers and agents listen on 127.0.0.1 alone. Serve replicas still
    listen on every interface: their inter-deployment gRPC server binds ``[::]:0`` unconditionally
    (ray/serve/_private/replica.py, Ray 2.60); token authentication is what guards the rest.
    With ``autoscaling`` (a config from ``serving.autoscaler.config``, whose provider dials
    ``gcs_port``), the head's monitor runs Ray's autoscaler, which launches and terminates the
    workers; ``monitor_environment`` is added to what the GCS and the monitor start with, and so
    to every raylet the monitor launches.
    """
    os.environ["RAY_SERVE_USE_PACK_SCHEDULING_STRATEGY"] = "1"
    # Pack scheduling turns on Serve's own node compaction, after deployments are stable for this
    # long (read once by the controller, in a process the head raylet starts with this environment).
    os.environ[COMPACTION_DELAY] = "inf" if compaction_delay_s is None else str(compaction_delay_s)
    os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")  # several raylets on 2 cores
    # Ray's usage statistics are on by default; a cluster servelab starts sends none unless the
    # user asks (RAY_USAGE_STATS_ENABLED=1 before up()). Every process the cluster starts inherits it.
    os.environ.setdefault(USAGE_STATS, "0")
    # Ray renices every worker to 15 once its core worker starts, proxy and serving replicas included,
    # but a starting worker imports Ray at 0: each replica a migration starts outranked the proxy
    # ~28:1 for CPU (p99 during compaction 6-9x the p99 before; 1.6-2x with every worker at 0).
    os.environ.setdefault(WORKER_NICENESS, "0")
    dial_loopback()
    head: dict[str, Any] = {"num_cpus": 1, "num_gpus": 0, "include_dashboard": False, "node_ip_address": LOOPBACK}
    if autoscaling is None:
        return _start_head(head)
    folder = Path(tempfile.mkdtemp(prefix="servelab-autoscaler-"))
    (folder / "autoscaling.json").write_text(json.dumps(autoscaling))
    head.update(
        gcs_server_port=gcs_port,
        autoscaling_config=str(folder / "autoscaling.json"),
        env_vars=dict(autoscaler.HEAD_ENVIRONMENT),
    )
    # The GCS and the monitor read these as they start; this process keeps its own environment.
    saved = {name: os.environ.get(name) for name in monitor_environment or {}}
    os.environ.update(monitor_environment or {})
    try:
        return _start_head(head)
    finally:
        _restore_environment(saved)


HEAD_ATTEMPTS = 3
STARTUP_TIMED_OUT = "timed out during startup"  # Ray's words when a raylet did not register in its fixed 30 s


def _start_head(head: dict[str, Any]) -> Any:
    """``Cluster(initialize_head=True)``, tried again where Ray's head timed out during startup: Ray
    waits a fixed 30 s for the raylet to register (``node.py``), which a loaded machine can miss (the
    raylet waited on its metrics agent), and a later try starts. A failed try's processes are stopped."""
    from ray.cluster_utils import Cluster

    for attempt in range(1, HEAD_ATTEMPTS + 1):
        try:
            with stopping_strays():
                return Cluster(initialize_head=True, head_node_args=head)
        except Exception as exc:
            if STARTUP_TIMED_OUT not in str(exc) or attempt == HEAD_ATTEMPTS:
                raise
            log.info("Ray's head timed out during startup (try %d of %d): trying again", attempt, HEAD_ATTEMPTS)
    raise AssertionError("unreachable")


@contextmanager
def stopping_strays() -> Iterator[None]:
    """Stop, by pid, the processes this process started within the block, where the block fails.

    A raylet that times out inside Ray's ``Node()`` is never handed to its ``Cluster``, so
    ``shutdown()`` cannot stop it: a half-started head (GCS, monitor, dashboard, log monitor) ran
    on until the kernel restarted. Processes that were running before the block are left alone.
    """
    import psutil

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    try:
        yield
    except BaseException:
        _stop([p for p in me.children(recursive=True) if p.pid not in before])
        raise


def _stop(processes: list[Any], grace_s: float = 10.0) -> None:
    """SIGTERM ``processes``, then SIGKILL those still alive after ``grace_s``; waiting on each
    reaps this process's own children (one killed and not waited on stays a zombie)."""
    import psutil

    for process in processes:
        with suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        with suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=grace_s)


def add_worker(
    cluster: Any, cpus: float, gpus: float, memory: int | None, labels: dict[str, str], environment: dict[str, str]
) -> tuple[str, Any]:
    """Start one worker raylet; returns its node id and the handle remove_worker() takes.

    Its object store is sized for checkpoints (``cluster_utils`` gives 150 MiB: a larger object goes
    to fallback files on disk, which made peer-cache reads 2.5x slower); shared memory is only
    taken as objects arrive. ``environment`` is added to the raylet's, which its workers inherit:
    its ``CUDA_VISIBLE_DEVICES`` is how Ray maps a worker's GPU slots to physical GPUs."""
    args: dict[str, Any] = {
        "num_cpus": cpus,
        "num_gpus": gpus,
        "labels": labels,
        "node_ip_address": LOOPBACK,
        "object_store_memory": WORKER_OBJECT_STORE,
        "env_vars": environment,
    }
    if memory is not None:
        args["memory"] = memory
    # Not waiting here lets up() start its raylets side by side; wait_for_workers() waits for them.
    node = cluster.add_node(wait=False, **args)
    return node.node_id, node


def remove_worker(cluster: Any, node: Any) -> None:
    # Graceful: the GCS marks the node dead at once (an ungraceful kill stays "alive" for tens of seconds).
    cluster.remove_node(node, allow_graceful=True)


def kill_raylet(node: Any) -> None:
    """SIGKILL a worker's raylet, as a crashed machine would lose it (tests and benchmarks)."""
    for info in node.all_processes.get("raylet", []):
        info.process.kill()


def wait_for_workers(cluster: Any, nodes: list[Any], timeout_s: float) -> None:
    """Until each of ``nodes`` is registered with the GCS; TimeoutError after ``timeout_s`` in all.

    Per node, as ``Cluster.add_node`` waits (with 30 s each): ``Cluster.wait_for_nodes`` counts every
    node ever added, so it never returns once a raylet was killed rather than removed.
    """
    deadline = time.monotonic() + timeout_s
    for node in nodes:
        cluster._wait_for_node(node, timeout=max(deadline - time.monotonic(), 1.0))


def stop_embedded(cluster: Any) -> None:
    """Stop the embedded cluster: the raylets an autoscaler launched first (they are the monitor's
    children and would outlive it), then the head and the workers this process started."""
    import psutil

    for info in cluster.head_node.all_processes.get("monitor", []):
        try:
            monitor = psutil.Process(info.process.pid)
            launched = monitor.children(recursive=True)
            monitor.kill()  # so that it launches nothing more
        except psutil.NoSuchProcess:
            continue
        _stop(launched)
    cluster.shutdown()


def autoscaler_status() -> Any | None:
    """Ray's autoscaler state (``ray.autoscaler.v2.sdk.get_cluster_status``), or None where the
    cluster's GCS does not answer it (a Ray Client connection)."""
    from ray.autoscaler.v2.sdk import get_cluster_status

    try:
        return get_cluster_status(_gcs().address)
    except Exception:  # no autoscaler state is no autoscaler view, not an error
        return None


# --- nodes --------------------------------------------------------------------------------------


def nodes() -> list[RawNode]:
    """Every node the GCS knows, alive or not."""
    import ray

    return [
        RawNode(
            id=info["NodeID"],
            alive=bool(info["Alive"]),
            head=HEAD_MARKER in info["Resources"],
            total=schedulable(info["Resources"]),
            labels={k: v for k, v in (info.get("Labels") or {}).items() if not k.startswith("ray.io/")},
            address=str(info.get("NodeManagerAddress") or ""),
            port=int(info.get("NodeManagerPort") or 0),
        )
        for info in ray.nodes()
    ]


def node_start_times() -> dict[str, float]:
    """When each node's raylet registered with the GCS (epoch seconds), alive or not."""
    return {node_id.hex(): info.start_time_ms / 1000 for node_id, info in _gcs().get_all_node_info().items()}


def available_per_node() -> dict[str, dict[str, float]]:
    from ray._private.state import available_resources_per_node

    return {node: schedulable(free) for node, free in available_resources_per_node().items()}


RAYLET_QUESTIONS = 16  # raylets asked at once for their per-GPU view: each answer waits on the raylet's workers


def gpu_free_many(asked: list[tuple[RawNode, float]]) -> dict[str, tuple[float, ...] | None]:
    """``gpu_free`` of several raylets at once, by node id: the question is answered by each raylet
    after all of its workers reply, so asked one after another it grew with every node (16 raylets:
    16 ms; see docs/performance.md), asked together it costs about the slowest raylet."""
    if len(asked) <= 1:
        return {node.id: gpu_free(node, free) for node, free in asked}
    with ThreadPoolExecutor(min(RAYLET_QUESTIONS, len(asked)), thread_name_prefix="servelab-gpu-view") as pool:
        answers = pool.map(lambda item: gpu_free(*item), asked)
        return {node.id: answer for (node, _), answer in zip(asked, answers, strict=True)}


def gpu_free(node: RawNode, available: float) -> tuple[float, ...] | None:
    """Free GPU per instance on ``node``, from what each of its workers holds (the raylet's
    ``GetNodeStats``); None where the raylet does not answer or disagrees with ``available``."""
    from ray._private.internal_api import node_stats

    try:
        stats = node_stats(node.address, node.port, include_memory_info=False)
    except Exception:  # an unreachable or older raylet: the scalar view stays
        return None
    held = [
        (slot.slot, slot.allocation)
        for worker in stats.core_workers_stats
        if (gpu := worker.used_resources.get("GPU")) is not None
        for slot in gpu.resource_slots
    ]
    return instances_free(int(node.total.get("GPU", 0.0)), held, available)


def instances_free(count: int, held: list[tuple[int, float]], available: float) -> tuple[float, ...] | None:
    """Free GPU per instance from the (instance, amount) its workers hold, reconciled with the GCS's
    ``available`` (pure).

    GPUs reserved by a placement group show in no worker's slots: the GPUs missing from the sum are
    counted as taken, entirely free instances first (bundles usually hold whole GPUs). Workers
    holding more than the GCS counts as used means the raylet's list is behind (a replica just
    stopped, its worker still exiting): None then, and the scalar view stays for this look.
    """
    free = [1.0] * count
    for slot, amount in held:
        if 0 <= slot < count:
            free[slot] -= amount
    missing = sum(free) - available
    if missing < -1e-6:
        return None
    for i in sorted(range(count), key=lambda i: -free[i]):
        taken = min(free[i], max(missing, 0.0))
        free[i] -= taken
        missing -= taken
    return tuple(round(max(f, 0.0), 6) for f in free)


def session_logs() -> Path:
    """The log folder of the cluster this process is attached to (every raylet on this machine writes there)."""
    import ray

    return Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"


def draining_nodes() -> set[str]:
    return set(_gcs().get_draining_nodes())


def drain_node(node_id: str, message: str) -> tuple[bool, str]:
    """Drain with reason PREEMPTION and no deadline: Serve starts replacements before stopping replicas."""
    from ray.core.generated.autoscaler_pb2 import DrainNodeReason

    accepted, rejection = _gcs().drain_node(node_id, DrainNodeReason.DRAIN_NODE_REASON_PREEMPTION, message, 0)
    return bool(accepted), str(rejection)


def schedulable(raw: dict[str, float]) -> dict[str, float]:
    """Schedulable resources only: drop Ray's per-node markers, accelerator types, the object store and
    the per-placement-group resources Ray derives from reserved bundles (``CPU_group_<id>``)."""
    return {
        k: float(v)
        for k, v in raw.items()
        if k in KEPT_RESOURCES
        or not (k.startswith(("node:", "accelerator_type:")) or k == "object_store_memory" or "_group_" in k)
    }


def _gcs() -> Any:
    import ray

    return ray._private.worker.global_worker.gcs_client


# --- Serve --------------------------------------------------------------------------------------


def start_serve(http_port: int) -> None:
    """Start Serve, or attach to the one running: one proxy on the head, on 127.0.0.1."""
    from ray import serve

    # Serve logs at INFO ("Started Serve in namespace ...", a line per deploy): noise in a notebook.
    # It sets the level when it starts, so the level is set before (for that line) and after.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    # A proxy on a node being drained would drop its requests, hence HeadOnly.
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": http_port})
    logging.getLogger("ray.serve").setLevel(logging.WARNING)


def serve_state() -> ServeState:
    """Read the Serve controller's instance details (the dashboard's data) and parse them once.

    A cluster where Serve does not run has no deployments (an observer never starts Serve).
    """
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return parse_serve_details({})
    return parse_serve_details(client.get_serve_details(), placement_groups())


def placement_groups() -> dict[str, dict[str, float]]:
    """What each named placement group holds, summed over its bundles (Serve names a replica's group after its actor)."""
    from ray.util import placement_group_table

    held: dict[str, dict[str, float]] = {}
    for group in placement_group_table().values():
        if group.get("name") and group.get("state") != "REMOVED":
            total = held.setdefault(group["name"], {})
            for bundle in (group.get("bundles") or {}).values():
                for resource, amount in bundle.items():
                    total[resource] = total.get(resource, 0.0) + float(amount)
    return held


def parse_serve_details(details: dict[str, Any], groups: dict[str, dict[str, float]] | None = None) -> ServeState:
    """Serve's instance details (``get_serve_details()``, ``GET /api/serve/applications/``) as plain data.

    A replica that runs in a placement group of its own (``groups``, by actor name: LLM servers) holds
    what its bundles hold, which can be more than its actor options say.
    """
    groups = groups or {}
    deployments, replicas = [], []
    for app, app_details in (details.get("applications") or {}).items():
        for name, raw in (app_details.get("deployments") or {}).items():
            config = raw.get("deployment_config") or {}
            options = config.get("ray_actor_options") or {}
            selector = {str(k): str(v) for k, v in (options.get("label_selector") or {}).items()}
            mine = [
                Replica(
                    id=replica["replica_id"],
                    deployment=name,
                    app=app,
                    node_id=replica.get("node_id") or None,
                    resources=groups.get(replica.get("actor_name") or "", actor_resources(options)),
                    state=_enum(replica.get("state")),
                    label_selector=selector,
                    max_replicas_per_node=config.get("max_replicas_per_node"),
                    started_at=replica.get("start_time_s"),
                    actor_name=replica.get("actor_name"),
                    pid=replica.get("pid"),
                )
                for replica in raw.get("replicas") or []
            ]
            replicas += mine
            deployments.append(
                DeploymentInfo(
                    name=name,
                    app=app,
                    status=_enum(raw.get("status")),
                    message=str(raw.get("message") or ""),
                    target_replicas=int(raw.get("target_num_replicas", config.get("num_replicas") or 0)),
                    running_replicas=sum(1 for r in mine if r.state == "RUNNING"),
                    replicas=len(mine),
                    resources=mine[0].resources if mine else actor_resources(options),
                    route_prefix=app_details.get("route_prefix"),
                    autoscaling=bool(config.get("autoscaling_config")),
                )
            )
    http = details.get("http_options") or {}
    port = http.get("port")
    return ServeState(tuple(deployments), tuple(replicas), http.get("host"), int(port) if port else None)


def actor_resources(options: dict[str, Any]) -> dict[str, float]:
    resources = {"CPU": float(options.get("num_cpus") or 0.0), "GPU": float(options.get("num_gpus") or 0.0)}
    if options.get("memory"):
        resources["memory"] = float(options["memory"])
    resources.update({k: float(v) for k, v in (options.get("resources") or {}).items()})
    return {k: v for k, v in resources.items() if v}


def set_target_replicas(app: str, name: str, replicas: int) -> None:
    """Serve's external-scaling call: changes the target alone (redeploying would restart every replica)."""
    import ray
    from ray.serve._private.common import DeploymentID
    from ray.serve.context import _get_global_client

    controller = _get_global_client()._controller
    ray.get(controller.update_deployment_replicas.remote(DeploymentID(name=name, app_name=app), replicas))


def run_app(
    target: Any, name: str, app: str, route_prefix: str | None, options: dict[str, Any], args: tuple, kwargs: dict
) -> None:
    """Deploy ``target`` as application ``app`` and return at once; replicas start in the background."""
    from ray import serve

    run_application(serve.deployment(target, name=name, **options).bind(*args, **kwargs), app, route_prefix)


def run_application(application: Any, app: str, route_prefix: str | None) -> None:
    """Deploy a built Serve application, scalable by ``set_target_replicas``; return at once."""
    from ray import serve

    serve._run(application, name=app, route_prefix=route_prefix, _blocking=False, external_scaler_enabled=True)


def llm_application(
    *,
    model_id: str,
    model_dir: str,
    engine_kwargs: dict[str, Any],
    bundles: list[dict[str, float]],
    accelerator: str,
    deployment_config: dict[str, Any],
    callback: tuple[str, dict[str, Any]],
    env_vars: dict[str, str],
) -> Any:
    """Ray Serve LLM's OpenAI-compatible application for one model (``/v1/completions``, ``/v1/chat/completions``).

    The router takes no CPU: on a small cluster a CPU-holding router would keep the server from scheduling.
    """
    with _root_logging_kept():
        from ray.serve.llm import LLMConfig, build_openai_app

        config = LLMConfig(
            model_loading_config={"model_id": model_id, "model_source": model_dir},
            accelerator_config={"kind": accelerator},
            placement_group_config={"bundles": bundles},
            deployment_config=deployment_config,
            engine_kwargs=engine_kwargs,
            runtime_env={"env_vars": env_vars} if env_vars else None,
            callback_config={"callback_class": callback[0], "callback_kwargs": callback[1]},
        )
        ingress = {"ray_actor_options": {"num_cpus": 0}}
        return build_openai_app({"llm_configs": [config], "ingress_deployment_config": ingress})


@contextmanager
def _root_logging_kept() -> Iterator[None]:
    """Undo what importing Ray Serve LLM does to this process's logging: it puts a JSON handler at INFO
    on the root logger (every library's INFO lines then show in the notebook), and vLLM's import warns
    about Triton on CPU machines."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        root.setLevel(level)
        root.handlers[:] = handlers


def delete_app(app: str) -> None:
    from ray import serve

    serve.delete(app)


def kill_replica(actor_name: str) -> None:
    """End a replica's actor; Serve's controller sees it die and starts a replacement."""
    import ray
    from ray.serve._private.constants import SERVE_NAMESPACE

    try:
        ray.kill(ray.get_actor(actor_name, namespace=SERVE_NAMESPACE), no_restart=True)
    except ValueError:  # gone already
        pass


def deployment_handle(name: str, app: str) -> Any:
    from ray import serve

    return serve.get_deployment_handle(name, app_name=app)


# --- servelab's own actors -----------------------------------------------------------------------


def start_on_head(cls: type, name: str, *args: Any, max_concurrency: int = 2) -> Any:
    """Start ``cls`` as a detached actor named ``name`` on the head node (compaction never drains it)."""
    head = next(n.id for n in nodes() if n.head and n.alive)
    return start_on_node(cls, name, head, *args, max_concurrency=max_concurrency)


def start_on_node(cls: type, name: str, node_id: str, *args: Any, max_concurrency: int = 2) -> Any:
    """Start ``cls`` as a detached actor named ``name`` on node ``node_id``, or get the one running.

    It needs no CPU, so it never keeps a replica from a node, and it outlives the process that started it.
    Two processes starting it at once get the same actor.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return (
        ray.remote(cls)
        .options(
            name=name,
            namespace=KV_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_concurrency=max_concurrency,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        )
        .remote(*args)
    )


def named_actor(name: str) -> Any | None:
    """servelab's actor called ``name``, or None when none runs."""
    import ray

    try:
        return ray.get_actor(name, namespace=KV_NAMESPACE)
    except ValueError:
        return None


def call(actor: Any, method: str, *args: Any) -> Any:
    import ray

    return ray.get(getattr(actor, method).remote(*args))


def submit(actor: Any, method: str, *args: Any) -> Any:
    """Call ``method`` without waiting; the answer's reference, for ``settled``."""
    return getattr(actor, method).remote(*args)


def settled(ref: Any, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for a submitted call; whether it ended without an error."""
    import ray
    from ray.exceptions import RayError

    try:
        ray.get(ref, timeout=timeout_s)
    except RayError:  # GetTimeoutError is one too
        return False
    return True


def object_nodes(ref: Any) -> set[str]:
    """The nodes whose object stores hold a copy of ``ref`` now (empty when Ray cannot say within a second)."""
    import ray.experimental

    found = ray.experimental.get_object_locations([ref], timeout_ms=1000)
    return set(found.get(ref, {}).get("node_ids") or ())


def put(value: Any) -> Any:
    """Put ``value`` in this node's object store, owned by this process."""
    import ray

    return ray.put(value)


def get_object(ref: Any, timeout_s: float) -> Any | None:
    """The object behind ``ref``, or None where it is lost (its owner or every copy gone)."""
    import ray
    from ray.exceptions import GetTimeoutError, ObjectLostError, OwnerDiedError

    try:
        return ray.get(ref, timeout=timeout_s)
    except (ObjectLostError, OwnerDiedError, GetTimeoutError):
        return None


def kill_actor(actor: Any) -> None:
    import ray

    ray.kill(actor, no_restart=True)


# --- what replicas report about themselves ------------------------------------------------------


def replica_identity() -> tuple[str, str, str] | None:
    """(app, deployment, replica id) inside a Serve replica; None elsewhere."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        context = serve.get_replica_context()
    except RayServeException:
        return None
    replica_id = context.replica_id
    return context.app_name, replica_id.deployment_id.name, replica_id.unique_id


def reserved_gpus() -> float:
    """GPUs Ray reserved for the calling task or actor (a fraction for a fractional request); 0 outside Ray."""
    import ray

    if not ray.is_initialized():
        return 0.0
    return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))


def current_node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


def report(kind: str, key: str, value: dict[str, Any]) -> None:
    """Record ``value`` in the cluster's key-value store under ``kind/key`` (any process may read it)."""
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(f"{kind}/{key}", json.dumps(value), overwrite=True, namespace=KV_NAMESPACE)


def forget(kind: str, prefix: str) -> None:
    """Remove every record of ``kind`` whose key starts with ``prefix``."""
    from ray.experimental.internal_kv import _internal_kv_del

    _internal_kv_del(f"{kind}/{prefix}", del_by_prefix=True, namespace=KV_NAMESPACE)


def reports(kind: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every record of ``kind`` whose key starts with ``prefix``, by key."""
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_list

    found = {}
    for raw in _internal_kv_list(f"{kind}/{prefix}", namespace=KV_NAMESPACE):
        key = raw.decode() if isinstance(raw, bytes) else raw
        value = _internal_kv_get(key, namespace=KV_NAMESPACE)
        if value is not None:
            found[key.removeprefix(f"{kind}/")] = json.loads(value)
    return found


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value))
