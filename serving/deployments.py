"""Deployments: a class or function served by Ray Serve, its replicas streaming weights with the loader.

Nothing about deployments is kept in this process: every call reads Serve's own state, so a
deployment made by another notebook on the same cluster can be scaled, called or deleted here.
What ``deploy()`` adds to a class (streaming its weights) travels inside the deployed class.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from servelab.errors import MAGIC, DeploymentError, DeploymentNotFoundError, LoaderError
from servelab.serving import context, ray_adapter, weight_cache
from servelab.serving.multiplex import MODELS, check_template, multiplexed_class
from servelab.serving.placement import fits, labels_match, place_new
from servelab.serving.reader import snapshot
from servelab.serving.replica_weights import REMOTE, TIMELINE, ReplicaTimeline, timelines, with_weights
from servelab.serving.snapshot import DeploymentInfo, Snapshot, format_resources, short_id
from servelab.serving.validation import check_amount, check_count, check_name, check_scaling

FAILED = ("DEPLOY_FAILED", "UNHEALTHY")


@dataclass(frozen=True)
class WeightLoad:
    """How one replica got its weights: ``seconds`` from asking to having them (a weight holder's or
    the cache's start included), ``stream_s`` of those while the bytes moved, which ``gbps`` uses."""

    replica: str
    deployment: str
    app: str
    node_id: str
    seconds: float
    nbytes: int
    source: str = REMOTE  # "remote" (the checkpoint's URI) or "peer" (the cluster's weight cache)
    stream_s: float = 0.0

    @property
    def gbps(self) -> float:
        return self.nbytes / self.stream_s / 1e9 if self.stream_s else 0.0


@dataclass(frozen=True)
class DeployProgress:
    """Where a deployment stands while it starts: for progress displays."""

    deployment: DeploymentInfo
    loads: tuple[WeightLoad, ...]
    elapsed_s: float


def deploy(
    name: str,
    target: Any,
    *,
    replicas: int = 1,
    gpus: float = 0,
    cpus: float = 0,
    memory: int | None = None,
    weights: str | None = None,
    weights_options: dict[str, Any] | None = None,
    multiplex: str | None = None,
    max_models_per_replica: int = 3,
    peer_cache: bool = True,
    autoscaling: dict[str, Any] | None = None,
    max_replicas_per_node: int | None = None,
    app: str | None = None,
    route_prefix: str | None = "auto",
    init_args: tuple[Any, ...] = (),
    init_kwargs: dict[str, Any] | None = None,
    timeout_s: float = 600.0,
    on_progress: Callable[[DeployProgress], None] | None = None,
) -> Any:
    """Serve ``target`` (a class or function) as deployment ``name``; waits until it runs, returns its handle.

    With ``weights`` (any fsspec URI of a safetensors checkpoint), each replica's constructor gets
    the state dict streamed by ``servelab.loader`` as its first argument (``weights_options`` go to
    ``load()``); each replica reports how long that took (``weight_loads()``, ``replica_timelines()``).
    With ``peer_cache`` (the default) the first replica publishes the weights to the cluster's object
    store and later replicas load them from there instead of remote storage (``weight_cache()``);
    a deploy reads the source afresh. Everything is checked
    before the cluster changes; a new deployment that fails to start is removed again, so no
    half-started model stays served. ``on_progress`` is called with a DeployProgress while it starts.

    With ``multiplex`` (a URI template with a ``{model_id}`` field) one deployment serves many
    models: each request names one (header ``serve_multiplexed_model_id``), a replica streams it on
    first use and keeps at most ``max_models_per_replica``, least recently used out first
    (``servelab.serving.multiplex``); ``snapshot()`` shows each replica's per-model counts.

    >>> deploy("classifier", Classifier, replicas=3, gpus=0.5, weights="s3://models/resnet.safetensors")
    >>> deploy("adapters", Scorer, replicas=2, multiplex="s3://models/{model_id}/model.safetensors", max_models_per_replica=4)
    """
    context.current()
    options = _validated(name, target, replicas, gpus, cpus, memory, weights, autoscaling, max_replicas_per_node)
    shape = {"CPU": float(cpus), "GPU": float(gpus), **({"memory": float(memory)} if memory else {})}
    snap = snapshot()  # one read for both checks: a full snapshot asks every raylet
    check_some_node_fits(name, shape, snap)
    app = app or name
    existed = any(d.app == app for d in ray_adapter.serve_state().deployments)
    if not existed and autoscaling is None:
        check_room_now(snap, name, app, shape, replicas, max_per_node=max_replicas_per_node)
    if multiplex is not None:
        if weights is not None or not isinstance(target, type):
            raise DeploymentError(
                f"{name!r}: multiplex= hands each model's weights to a class's constructor; give a class and no weights=."
            )
        check_template(name, multiplex, max_models_per_replica)
        target = multiplexed_class(target, multiplex, max_models_per_replica, weights_options or {})
    if weights is not None:
        _check_weights(name, weights, weights_options or {})
        if peer_cache:
            weight_cache.directory(create=True)
            weight_cache.evict_weights(weights)
        target = with_weights(target, weights, weights_options or {}, peer_cache)
    prefix = f"/{app}" if route_prefix == "auto" else route_prefix
    _forget_reports(f"{app}/{name}/")
    ray_adapter.run_app(target, name, app, prefix, options, tuple(init_args), dict(init_kwargs or {}))
    try:
        wait_running(name, app, timeout_s, on_progress)
    except DeploymentError:
        if not existed:
            ray_adapter.delete_app(app)
        raise
    return ray_adapter.deployment_handle(name, app)


def scale(name: str, replicas: int, app: str | None = None) -> None:
    """Set deployment ``name`` to ``replicas`` replicas (scaling down leaves fragmentation behind).

    >>> scale("classifier", 1)
    """
    info = find(name, app)
    check_count(name, "replicas", replicas, minimum=0)
    if info.autoscaling:
        raise DeploymentError(f"{name!r} autoscales; change its autoscaling bounds instead of scaling it by hand.")
    if replicas > info.target_replicas:
        snap = snapshot()
        mine = [r for r in snap.replicas if r.key == (info.app, info.name)]
        placed = sum(1 for r in mine if r.node_id is not None)
        rules = mine[0] if mine else None
        check_room_now(
            snap, info.name, info.app, info.resources, replicas - placed,
            rules.label_selector if rules else None, rules.max_replicas_per_node if rules else None,
        )  # fmt: skip
    ray_adapter.set_target_replicas(info.app, info.name, replicas)


def delete(name: str, app: str | None = None) -> None:
    """Remove deployment ``name`` with its application.

    >>> delete("classifier")
    """
    info = find(name, app)
    ray_adapter.delete_app(info.app)
    _forget_reports(f"{info.app}/")


def delete_all() -> None:
    """Remove every Serve application on the cluster, servelab's or not."""
    context.current()
    for app in sorted({d.app for d in ray_adapter.serve_state().deployments}):
        ray_adapter.delete_app(app)
        _forget_reports(f"{app}/")


def handle(name: str, app: str | None = None) -> Any:
    """The DeploymentHandle of ``name``, to call it from Python or pass it to another deployment.

    >>> await handle("classifier").remote(image)
    """
    info = find(name, app)
    return ray_adapter.deployment_handle(info.name, info.app)


def url(name: str, app: str | None = None) -> str:
    """The HTTP address of ``name``'s application on the cluster's proxy.

    >>> requests.get(url("classifier")).json()
    """
    info = find(name, app)
    if info.route_prefix is None:
        raise DeploymentError(f"{name!r} has no HTTP route (route_prefix=None): call it through handle({name!r}).")
    state = ray_adapter.serve_state()
    host = state.http_host if state.http_host not in (None, "0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{state.http_port}{info.route_prefix}"


def deployments() -> list[DeploymentInfo]:
    """Every Serve deployment on the cluster with its status and replica counts.

    >>> [(d.name, d.running_replicas) for d in deployments()]
    """
    context.current()
    return list(ray_adapter.serve_state().deployments)


def find(name: str, app: str | None = None) -> DeploymentInfo:
    """The deployment called ``name`` (in ``app``, when several applications have one by that name)."""
    infos = deployments()
    # An LLM is found by its model id too: Ray Serve LLM names its server deployment "LLMServer:<id>".
    matches = [d for d in infos if d.name in (name, ray_adapter.LLM_SERVER + name) and (app is None or d.app == app)]
    if not matches:
        known = ", ".join(sorted({d.name for d in infos})) or "none yet"
        where = f" in application {app!r}" if app else ""
        raise DeploymentNotFoundError(f"no deployment named {name!r}{where} on this cluster (deployments: {known}).")
    if len(matches) > 1:
        apps = ", ".join(sorted(d.app for d in matches))
        raise DeploymentError(f"{name!r} is a deployment of several applications ({apps}); pass app=... to choose one.")
    return matches[0]


def weight_loads(name: str | None = None, app: str | None = None) -> list[WeightLoad]:
    """How each replica streamed its weights (replicas deployed with ``weights=``), oldest first.

    >>> [f"{w.seconds:.2f} s" for w in weight_loads("classifier")]
    """
    context.current()
    prefix = f"{app}/" if app else ""
    return [
        WeightLoad(t.replica, t.deployment, t.app, t.node_id, t.weights_s, t.nbytes, t.source, t.stream_s)
        for t in timelines(prefix)
        if name is None or t.deployment == name
    ]


def replica_timelines(name: str | None = None, app: str | None = None) -> list[ReplicaTimeline]:
    """Each replica's start, phase by phase (deployments with ``weights=``): scheduled, weights from
    which source, constructed, first request; oldest first. ``TimelineView`` draws them.

    >>> [(t.source, round(t.weights_s, 2)) for t in replica_timelines("classifier")]
    """
    context.current()
    scheduled = {r.id: r.started_at for r in snapshot().replicas}
    registered = ray_adapter.node_start_times()
    found = []
    for t in timelines(f"{app}/" if app else ""):
        if name is None or t.deployment == name:
            created, ready = scheduled.get(t.replica), registered.get(t.node_id)
            launched = created is not None and ready is not None and ready > created
            found.append(replace(t, scheduled=created, node_ready=ready if launched else None))
    return found


def all_healthy() -> bool:
    """True when every deployment is HEALTHY, running exactly its target replicas, none in transition."""
    return all(d.healthy for d in deployments())


def wait_healthy(timeout_s: float = 120.0, poll_s: float = 0.5) -> None:
    """Wait until every deployment is healthy at its target (after scale(), say), looking every ``poll_s``."""
    deadline = time.monotonic() + timeout_s
    while not all_healthy():
        if time.monotonic() > deadline:
            unhealthy = [f"{d.name} {d.status} {d.running_replicas}/{d.target_replicas}" for d in deployments() if not d.healthy]
            raise DeploymentError(f"deployments not healthy after {timeout_s:.0f} s: {', '.join(unhealthy)}")
        time.sleep(poll_s)


def wait_running(
    name: str,
    app: str,
    timeout_s: float,
    on_progress: Callable[[DeployProgress], None] | None,
    fix: str = "Fix the class and deploy again",
) -> None:
    """Wait until deployment ``name`` of ``app`` is healthy; raise with Serve's reason (and ``fix``) when it fails."""
    started = time.monotonic()
    while True:
        info = next((d for d in deployments() if d.name == name and d.app == app), None)
        if info is not None and on_progress is not None:
            on_progress(DeployProgress(info, tuple(weight_loads(name, app)), time.monotonic() - started))
        if info is not None and info.healthy:
            return
        if info is not None and info.status in FAILED:
            detail = info.message.strip().splitlines()[-1] if info.message.strip() else info.status
            raise DeploymentError(f"{name!r} failed to start: {detail}. {fix}.")
        if time.monotonic() - started > timeout_s:
            raise DeploymentError(
                f"{name!r} was not running after {timeout_s:.0f} s "
                f"({info.running_replicas if info else 0} replica(s) up); is the cluster big enough?"
            )
        time.sleep(0.25)


def _validated(
    name: Any, target: Any, replicas: Any, gpus: Any, cpus: Any, memory: Any, weights: Any, autoscaling: Any, max_per_node: Any
) -> dict[str, Any]:
    check_name(name)
    if not callable(target):
        raise DeploymentError(f"{name!r}: target must be a class or a function, got {type(target).__name__}.")
    check_amount(name, "gpus", gpus)
    check_amount(name, "cpus", cpus)
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0):
        raise DeploymentError(f"{name!r}: memory={memory!r} must be a positive number of bytes.")
    if weights is not None and not isinstance(target, type):
        raise DeploymentError(f"{name!r}: weights are handed to a class's constructor; wrap the function in a class.")
    actor_options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus}
    if memory is not None:
        actor_options["memory"] = memory
    options: dict[str, Any] = {"ray_actor_options": actor_options}
    check_scaling(name, replicas, autoscaling)
    if autoscaling is not None:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = replicas
    if max_per_node is not None:
        check_count(name, "max_replicas_per_node", max_per_node, minimum=1)
        options["max_replicas_per_node"] = max_per_node
    return options


def _forget_reports(prefix: str) -> None:
    """Drop what replicas of a replaced or deleted application reported (weight loads, model counts)."""
    for kind in (TIMELINE, MODELS):
        ray_adapter.forget(kind, prefix)


def check_some_node_fits(name: str, shape: dict[str, float], snap: Snapshot | None = None) -> None:
    """Refuse, before anything is deployed, a replica shape that no node could ever hold (on an
    autoscaling cluster: no running node, and no node type the autoscaler may launch)."""
    nodes = [n.total for n in (snap or snapshot()).nodes if not n.draining]
    session = context.current()
    if session.autoscaling is not None:
        nodes += [spec.resources for name, spec in session.node_types.items() if session.autoscaling[name].max]
    if not any(fits(total, shape) for total in nodes):
        offered = sorted({format_resources({k: v for k, v in total.items() if k != "memory"}) for total in nodes})
        raise DeploymentError(
            f"{name!r}: a replica needs {format_resources(shape)}, which no node of "
            f"this cluster can ever hold (nodes offer: {'; '.join(offered)}). Ask for less, or add a bigger node."
        )


def check_room_now(
    snap: Snapshot,
    name: str,
    app: str,
    shape: dict[str, float],
    count: int,
    label_selector: dict[str, str] | None = None,
    max_per_node: int | None = None,
) -> None:
    """Refuse, before the cluster changes, ``count`` new replicas that cannot start now where nothing
    will make room: a fixed cluster servelab started, or one whose autoscaler may launch no node that
    holds one. On a cluster servelab attached to, its owner's autoscaler may still bring a node: they wait."""
    session = context.current()
    if count <= 0 or not session.owner:
        return
    if any(r.state == "STOPPING" for r in snap.replicas):
        return  # room is being made
    missing = place_new(snap, shape, count, (app, name), label_selector, max_per_node)
    if missing is None:
        return
    if session.autoscaling is None:
        cause, bigger = "this fixed cluster gets no new nodes", "up(nodes=N)"
    else:
        alive = [n.type for n in snap.nodes if n.alive and not n.head]
        launchable = [
            kind
            for kind, spec in session.node_types.items()
            if alive.count(kind) < session.autoscaling[kind].max
            and fits(spec.resources, shape)
            and labels_match(spec.labels, label_selector or {})
        ]
        if launchable:
            return  # the autoscaler launches a node for them
        cause, bigger = "the autoscaler is at its maximum for every node type that holds one", "a higher max"
    free = format_resources(missing.largest_free) if missing.largest_free else "nothing"
    where = f" (node {short_id(missing.node_id)})" if missing.node_id else ""
    said = (
        f"{name!r}: {missing.unplaced} of {missing.asked} new replica(s) of {format_resources(shape)} cannot be placed now, "
        f"and {cause}: the largest free room on a node is {free}{where}. Make room (scale another deployment down or "
        "delete one), ask for less, or start a bigger cluster"
    )
    in_magic = "%servelab up --nodes N" if session.autoscaling is None else "%servelab up --autoscale --nodes MAX"
    raise DeploymentError(
        f"{said} ({bigger}). Nothing was changed.", said_in={MAGIC: f"{said} ({in_magic}). Nothing was changed."}
    )


def _check_weights(name: str, uri: str, options: dict[str, Any]) -> None:
    """Read the checkpoint's headers now, so a bad URI fails here and not in every replica."""
    from servelab.loader import inspect

    try:
        inspect(uri, options.get("storage_options"), options.get("include"))
    except LoaderError as exc:
        raise DeploymentError(f"{name!r}: weights cannot be loaded: {exc}") from exc
