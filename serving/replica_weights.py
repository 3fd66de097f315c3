"""What ``deploy(weights=...)`` adds to a class: each replica gets its state dict (from the peer cache
or streamed from the source) and records its timeline, phase by phase.

A replica's timeline: Serve created it (``scheduled``), its constructor began (the process is up),
weights were first asked for (the imports done) and arrived (with their source, bytes and GB/s),
the user's constructor returned, the first request was answered. Replicas report it to the
cluster's key-value store.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from servelab.errors import LoaderError
from servelab.loader.packing import unpack
from servelab.serving import gpus, ray_adapter, weight_cache

TIMELINE = "weights"  # the kind of the replicas' timeline reports in the cluster's key-value store
PEER_TIMEOUT_S = 120.0
REMOTE, PEER = "remote", "peer"


@dataclass(frozen=True)
class ReplicaTimeline:
    """When each phase of one replica's start happened (epoch seconds)."""

    replica: str
    deployment: str
    app: str
    node_id: str
    constructing: float
    weights_started: float
    weights_done: float
    source: str  # "remote" (streamed from the checkpoint's URI) or "peer" (the cluster's weight cache)
    nbytes: int
    constructed: float | None = None
    first_request: float | None = None
    scheduled: float | None = None  # when Serve created the replica (from the snapshot; None once it is gone)
    stream_s: float = 0.0  # of weights_s, the seconds the bytes moved (the loader's read, or the peer copy's mapping)
    node_ready: float | None = None  # when its node registered, where that was after Serve created the replica (a launch)

    @property
    def weights_s(self) -> float:
        return self.weights_done - self.weights_started

    @property
    def gbps(self) -> float:
        """The weights' own rate: bytes over the seconds they moved, not counting the holder's or cache's start."""
        return self.nbytes / self.stream_s / 1e9 if self.stream_s else 0.0


def replica_load_options(options: dict[str, Any], device: Any = None) -> dict[str, Any]:
    """What a replica passes to ``load()``: the deployment's weights options, on ``device`` (default:
    the replica's own GPU where Ray gave it one, read from the options' device, else the CPU), and
    never a progress bar (no notebook runs there). The one place these are merged (a replica's
    weights, the peer cache's holder, a multiplexed model).

    >>> replica_load_options({"dtype": torch.bfloat16, "device": "cuda"})["device"]   # cuda:N, N the replica's GPU
    """
    if device is None:
        from servelab.loader.sinks import resolve_device

        device = resolve_device(gpus.replica_device(options.get("device", "auto"), ray_adapter.reserved_gpus()))
    return {**options, "device": device, "progress": False}


def with_weights(cls: type, uri: str, options: dict[str, Any], peer_cache: bool) -> type:
    """A subclass of ``cls`` whose constructor gets the weights first, and that records its timeline."""
    answers = any("__call__" in vars(k) for k in cls.__mro__[:-1])

    class WithWeights(cls):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            constructing = time.time()
            state, source, started, stream_s = _weights(uri, options, peer_cache)
            done = time.time()
            self.servelab_weights_load_s = done - started
            nbytes = sum(t.nbytes for t in state.values())
            self._servelab_timeline = _timeline(constructing, started, done, source, nbytes, stream_s)
            super().__init__(state, *args, **kwargs)
            self._servelab_timeline = _reported(self._servelab_timeline, constructed=time.time())

        if answers:

            async def __call__(self, *args: Any, **kwargs: Any) -> Any:
                answer = super().__call__(*args, **kwargs)
                answer = await answer if inspect.isawaitable(answer) else answer
                if self._servelab_timeline is not None and self._servelab_timeline.first_request is None:
                    self._servelab_timeline = _reported(self._servelab_timeline, first_request=time.time())
                return answer

    WithWeights.__name__ = cls.__name__
    WithWeights.__qualname__ = cls.__qualname__
    return WithWeights


def _weights(uri: str, options: dict[str, Any], peer_cache: bool) -> tuple[dict[str, Any], str, float, float]:
    """The state dict, where it came from, when it was first asked for (after the imports, which
    take a fresh replica a second or more) and the seconds its bytes moved: the peer cache when it holds the checkpoint, else the
    source, streamed by this node's holder into the object store and published for the replicas after
    this one (this replica then maps it from its own node's store)."""
    import torch  # noqa: F401 - before the clock: importing it took 1.5 s of a first load's 1.6 here

    from servelab.loader import load

    load_options = replica_load_options(options)
    device = load_options["device"]
    started = time.time()
    directory = weight_cache.directory() if peer_cache else None
    if directory is None:
        state = load(uri, **load_options)
        return state, REMOTE, started, time.time() - started
    key = json.dumps([uri, options.get("include"), str(options.get("dtype"))])
    while (refs := ray_adapter.call(directory, "acquire", key)) is not None:
        copying = time.time()
        tensors = ray_adapter.get_object(refs[0], PEER_TIMEOUT_S)
        if tensors is not None:
            return unpack(tensors, device), PEER, started, time.time() - copying
        ray_adapter.call(directory, "forget", key)  # the cached copy is gone (its node left): read the source
    try:
        holder = weight_cache.holder_here()
        refs, nbytes, stream_s = ray_adapter.call(holder, "fetch", key, uri, options)
        tensors = ray_adapter.get_object(refs[0], PEER_TIMEOUT_S)
        if tensors is None:
            raise LoaderError(f"{uri}: the copy this node's weight holder streamed is gone")
    except BaseException:
        ray_adapter.call(directory, "abandon", key)
        raise
    identity = ray_adapter.replica_identity()
    replica = identity[2] if identity else ""
    ray_adapter.call(directory, "publish", key, uri, refs, nbytes, replica, holder, ray_adapter.current_node_id())
    return unpack(tensors, device), REMOTE, started, stream_s


def _timeline(
    constructing: float, started: float, done: float, source: str, nbytes: int, stream_s: float
) -> ReplicaTimeline | None:
    identity = ray_adapter.replica_identity()
    if identity is None:
        return None
    app, deployment, replica = identity
    node = ray_adapter.current_node_id()
    record = ReplicaTimeline(replica, deployment, app, node, constructing, started, done, source, nbytes, stream_s=stream_s)
    return _reported(record)


def _reported(record: ReplicaTimeline | None, **change: Any) -> ReplicaTimeline | None:
    if record is None:
        return None
    record = replace(record, **change)
    ray_adapter.report(TIMELINE, f"{record.app}/{record.deployment}/{record.replica}", asdict(record))
    return record


def timelines(prefix: str = "") -> list[ReplicaTimeline]:
    """Every reported timeline under ``prefix`` ("app/" or "app/deployment/"), oldest first."""
    records = [ReplicaTimeline(**value) for value in ray_adapter.reports(TIMELINE, prefix).values()]
    return sorted(records, key=lambda r: r.constructing)
