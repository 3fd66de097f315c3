"""Deployments: a class or function served by Ray Serve, its replicas streaming weights with the loader."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from servelab.errors import DeploymentError, LoaderError
from servelab.serving.cluster import current
from servelab.serving.fragmentation import fits
from servelab.serving.snapshot import format_resources


@dataclass
class _Spec:
    """What deploy() was given, kept so scale() can redeploy the same application."""

    name: str
    app: str
    target: Any
    route_prefix: str | None
    options: dict[str, Any]
    init_args: tuple[Any, ...] = ()
    init_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentInfo:
    name: str
    app: str
    status: str
    target_replicas: int
    running_replicas: int
    replicas: int  # in any state: starting, stopping and migrating ones too
    resources: dict[str, float]
    route_prefix: str | None


_specs: dict[str, _Spec] = {}


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
    autoscaling: dict[str, Any] | None = None,
    max_replicas_per_node: int | None = None,
    app: str | None = None,
    route_prefix: str | None = "auto",
    init_args: tuple[Any, ...] = (),
    init_kwargs: dict[str, Any] | None = None,
) -> Any:
    """Serve ``target`` (a class or function) as deployment ``name``; returns its DeploymentHandle.

    With ``weights`` (any fsspec URI of a safetensors checkpoint), each replica's constructor gets
    the state dict streamed by ``servelab.loader`` as its first argument (``weights_options`` go to
    ``load()``), and the replica records the seconds it took in ``servelab_weights_load_s``.
    Everything is checked before the cluster changes.

    >>> deploy("classifier", Classifier, replicas=3, gpus=0.5, weights="s3://models/resnet.safetensors")
    """
    current()
    options = _validated(name, target, replicas, gpus, cpus, memory, weights, autoscaling, max_replicas_per_node)
    _check_some_node_fits(name, {"CPU": float(cpus), "GPU": float(gpus), **({"memory": float(memory)} if memory else {})})
    if weights is not None:
        _check_weights(name, weights, weights_options or {})
        target = _with_weights(target, weights, weights_options or {})
    app = app or name
    spec = _Spec(name, app, target, f"/{app}" if route_prefix == "auto" else route_prefix, options, tuple(init_args), dict(init_kwargs or {}))
    handle = _run(spec)
    _specs[name] = spec
    return handle


def scale(name: str, replicas: int) -> None:
    """Set deployment ``name`` to ``replicas`` replicas (scaling down leaves fragmentation behind).

    >>> scale("classifier", 1)
    """
    spec = _spec(name)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise DeploymentError(f"replicas={replicas!r} must be a non-negative integer.")
    if "autoscaling_config" in spec.options:
        raise DeploymentError(f"{name!r} autoscales; change its autoscaling bounds instead of scaling it by hand.")
    import ray
    from ray.serve._private.common import DeploymentID
    from ray.serve.context import _get_global_client

    # Serve's external-scaling call changes the target alone; redeploying would restart every replica.
    controller = _get_global_client()._controller
    ray.get(controller.update_deployment_replicas.remote(DeploymentID(name=spec.name, app_name=spec.app), replicas))
    spec.options = {**spec.options, "num_replicas": replicas}


def delete(name: str) -> None:
    """Remove deployment ``name`` and its application."""
    from ray import serve

    spec = _spec(name)
    serve.delete(spec.app)
    del _specs[name]


def delete_all() -> None:
    """Remove every Serve application on the cluster, servelab's or not."""
    from ray import serve

    from servelab.serving.reader import serve_details

    current()
    for app in list(serve_details().get("applications", {})):
        serve.delete(app)
    _specs.clear()


def handle(name: str) -> Any:
    """The DeploymentHandle of ``name``, to call it from Python or pass it to another deployment."""
    from ray import serve

    spec = _spec(name)
    return serve.get_deployment_handle(spec.name, app_name=spec.app)


def url(name: str) -> str:
    """The HTTP address of ``name``'s application on the cluster's proxy."""
    spec = _spec(name)
    if spec.route_prefix is None:
        raise DeploymentError(f"{name!r} was deployed with route_prefix=None: call it through handle({name!r}).")
    return f"http://127.0.0.1:{current().http_port}{spec.route_prefix}"


def deployments() -> list[DeploymentInfo]:
    """Every Serve deployment with its status and replica counts."""
    from servelab.serving.reader import _actor_resources, serve_details

    infos = []
    for app, details in serve_details().get("applications", {}).items():
        for name, deployment in details.get("deployments", {}).items():
            config = deployment.get("deployment_config", {})
            running = sum(1 for r in deployment.get("replicas", []) if str(getattr(r["state"], "value", r["state"])) == "RUNNING")
            infos.append(
                DeploymentInfo(
                    name=name,
                    app=app,
                    status=str(getattr(deployment["status"], "value", deployment["status"])),
                    target_replicas=int(deployment.get("target_num_replicas", config.get("num_replicas") or 0)),
                    running_replicas=running,
                    replicas=len(deployment.get("replicas", [])),
                    resources=_actor_resources(config.get("ray_actor_options") or {}),
                    route_prefix=details.get("route_prefix"),
                )
            )
    return infos


def all_healthy() -> bool:
    """True when every deployment is HEALTHY, running exactly its target replicas, none in transition."""
    infos = deployments()
    return all(i.status == "HEALTHY" and i.running_replicas == i.replicas == i.target_replicas for i in infos)


def wait_healthy(timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all_healthy():
        if time.monotonic() > deadline:
            raise DeploymentError(f"deployments not healthy after {timeout_s:.0f} s: {deployments()}")
        time.sleep(0.5)


def _run(spec: _Spec) -> Any:
    from ray import serve

    deployment = serve.deployment(spec.target, name=spec.name, **spec.options)
    application = deployment.bind(*spec.init_args, **spec.init_kwargs)
    return serve.run(application, name=spec.app, route_prefix=spec.route_prefix, external_scaler_enabled=True)



def _spec(name: str) -> _Spec:
    current()
    if name not in _specs:
        known = ", ".join(sorted(_specs)) or "none yet"
        raise DeploymentError(f"no deployment named {name!r} (deployed here: {known}).")
    return _specs[name]


def _validated(
    name: Any, target: Any, replicas: Any, gpus: Any, cpus: Any, memory: Any, weights: Any, autoscaling: Any, max_per_node: Any
) -> dict[str, Any]:
    if not isinstance(name, str) or not name or "/" in name:
        raise DeploymentError(f"name={name!r}: give a non-empty name without '/'.")
    if not callable(target):
        raise DeploymentError(f"{name!r}: target must be a class or a function, got {type(target).__name__}.")
    for label, value in (("gpus", gpus), ("cpus", cpus)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise DeploymentError(f"{name!r}: {label}={value!r} must be a non-negative number.")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0):
        raise DeploymentError(f"{name!r}: memory={memory!r} must be a positive number of bytes.")
    if weights is not None and not isinstance(target, type):
        raise DeploymentError(f"{name!r}: weights are handed to a class's constructor; wrap the function in a class.")
    actor_options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus}
    if memory is not None:
        actor_options["memory"] = memory
    options: dict[str, Any] = {"ray_actor_options": actor_options}
    if autoscaling is not None:
        if not isinstance(autoscaling, dict):
            raise DeploymentError(f"{name!r}: autoscaling must be a dict like {{'min_replicas': 1, 'max_replicas': 4}}.")
        options["autoscaling_config"] = autoscaling
    else:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise DeploymentError(f"{name!r}: replicas={replicas!r} must be a non-negative integer.")
        options["num_replicas"] = replicas
    if max_per_node is not None:
        if isinstance(max_per_node, bool) or not isinstance(max_per_node, int) or max_per_node < 1:
            raise DeploymentError(f"{name!r}: max_replicas_per_node={max_per_node!r} must be a positive integer.")
        options["max_replicas_per_node"] = max_per_node
    return options


def _check_some_node_fits(name: str, shape: dict[str, float]) -> None:
    from servelab.serving.reader import snapshot

    nodes = [n for n in snapshot().nodes if not n.draining]
    if not any(fits(n.total, shape) for n in nodes):
        offered = sorted({format_resources({k: v for k, v in n.total.items() if k != "memory"}) for n in nodes})
        raise DeploymentError(
            f"{name!r}: a replica needs {format_resources(shape)}, which no node of "
            f"this cluster can ever hold (nodes offer: {'; '.join(offered)}). Ask for less, or add a bigger node."
        )


def _check_weights(name: str, uri: str, options: dict[str, Any]) -> None:
    """Read the checkpoint's headers now, so a bad URI fails here and not in every replica."""
    from servelab.loader.checkpoint import open_checkpoint
    from servelab.loader.retry import RetryPolicy

    with ThreadPoolExecutor(4) as pool:
        try:
            files = open_checkpoint(uri, options.get("storage_options"), options.get("include"), RetryPolicy(attempts=2), pool)
        except LoaderError as exc:
            raise DeploymentError(f"{name!r}: weights cannot be loaded: {exc}") from exc
    for file in files:
        file.source.close()


def _with_weights(cls: type, uri: str, options: dict[str, Any]) -> type:
    """A subclass of ``cls`` whose constructor streams the weights and passes them first."""

    class WithWeights(cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            from servelab.loader import load

            started = time.perf_counter()
            state = load(uri, device="auto", progress=False, **options)
            self.servelab_weights_load_s = time.perf_counter() - started
            super().__init__(state, *args, **kwargs)

    WithWeights.__name__ = cls.__name__
    WithWeights.__qualname__ = cls.__qualname__
    return WithWeights
