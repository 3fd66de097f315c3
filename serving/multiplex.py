"""Many models on few replicas: Ray Serve's model multiplexing, each model streamed by the loader on a miss.

A multiplexed deployment serves one class per model id: a request names its model the Ray Serve way
(the ``serve_multiplexed_model_id`` header, or ``handle.options(multiplexed_model_id=...)``), the
replica streams that model's checkpoint from ``template.format(model_id=...)`` the first time,
builds the class with the state dict, keeps at most ``max_models`` per replica (least recently used
out first) and Serve routes later requests for the model to the replicas that hold it. Each replica
counts, per model, requests, hits, misses, evictions, load seconds and bytes, and reports them to
the cluster's key-value store, from where ``snapshot()`` reads them. A GET that names no model
answers what the deployment serves (so health probes and ``%compact``'s request loop see 200s).
"""

from __future__ import annotations

import asyncio
import inspect
import re
import string
import time
from dataclasses import asdict, replace
from typing import Any

from servelab.errors import DeploymentError, LoaderError, ModelNotFoundError
from servelab.serving import ray_adapter
from servelab.serving.snapshot import ModelCount
from servelab.serving.validation import check_count

MODELS = "models"  # the kind of the replicas' per-model reports in the cluster's key-value store
HEADER = "serve_multiplexed_model_id"
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
REPORT_EVERY_S = 1.0  # hits are reported at most this often; misses and evictions at once


def check_template(name: str, template: Any, max_models: Any) -> None:
    """Refuse a URI template without exactly one ``{model_id}`` field, and a non-positive model limit."""
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None] if isinstance(template, str) else None
    if fields != ["model_id"]:
        raise DeploymentError(
            f"{name!r}: multiplex={template!r} must be a URI with one {{model_id}} field, "
            "like 's3://bucket/models/{model_id}/model.safetensors'."
        )
    check_count(name, "max_models_per_replica", max_models, minimum=1)


def model_uri(template: str, model_id: str) -> str:
    """Where model ``model_id``'s checkpoint is; ids are plain names, never paths.

    >>> model_uri("s3://bucket/models/{model_id}/model.safetensors", "m7")
    's3://bucket/models/m7/model.safetensors'
    """
    if not MODEL_ID.fullmatch(model_id or ""):
        raise ModelNotFoundError(
            f"model id {model_id!r} is not a plain name (letters, digits, '.', '_', '-'; no '/'): "
            f"send the header {HEADER!r} with the id of a model under the deployment's template."
        )
    return template.format(model_id=model_id)


def multiplexed_class(cls: type, template: str, max_models: int, load_options: dict[str, Any]) -> type:
    """The class Serve runs: model ids to instances of ``cls`` built from streamed weights, at most ``max_models``."""
    from ray import serve

    class Multiplexed:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._args, self._kwargs = args, kwargs
            self._counts: dict[str, ModelCount] = {}
            self._known: set[str] = set()  # ids whose checkpoint headers were read
            self._reported = 0.0
            self._flusher: asyncio.Task[None] | None = None

        @serve.multiplexed(max_num_models_per_replica=max_models)
        async def model(self, model_id: str) -> _Held:
            from servelab.loader import load
            from servelab.serving.replica_weights import replica_load_options

            uri = model_uri(template, model_id)
            started = time.perf_counter()
            try:
                state = await asyncio.to_thread(lambda: load(uri, **replica_load_options(load_options)))
            except LoaderError as exc:
                raise self._unloadable(model_id, uri, exc) from exc
            seconds = time.perf_counter() - started
            self._count(model_id, misses=1, load_s=seconds, nbytes=sum(t.nbytes for t in state.values()), loaded=True)
            return _Held(cls(state, *self._args, **self._kwargs), lambda: self._count(model_id, evictions=1, loaded=False))

        async def __call__(self, request: Any = None) -> Any:
            model_id = serve.get_multiplexed_model_id()
            if not model_id and getattr(request, "method", None) == "GET":
                return self._describe()
            try:
                if not model_id:
                    raise ModelNotFoundError(
                        f"the request names no model: send the header {HEADER!r} (or a handle's multiplexed_model_id)."
                    )
                if model_id not in self._known:
                    await self._check(model_id)
                held = await self.model(model_id)
            except ModelNotFoundError as exc:
                return _refusal(request, str(exc))
            self._count(model_id, requests=1)
            answer = held.model(request)
            return await answer if inspect.isawaitable(answer) else answer

        def _describe(self) -> dict[str, Any]:
            """A GET naming no model (a browser, a health probe): what this deployment serves and how to ask."""
            return {
                "template": template,
                "loaded_here": sorted(m for m, c in self._counts.items() if c.loaded),
                "ask": f"send the header {HEADER!r} with a model id (or a handle's multiplexed_model_id)",
            }

        async def _check(self, model_id: str) -> None:
            """Read a new id's checkpoint headers before Serve loads it: Serve evicts a model before it
            loads the next, so a request for a model that does not exist would evict a good one."""
            from servelab.loader import inspect as inspect_checkpoint

            uri = model_uri(template, model_id)
            try:
                await asyncio.to_thread(inspect_checkpoint, uri, load_options.get("storage_options"), load_options.get("include"))
            except LoaderError as exc:
                raise self._unloadable(model_id, uri, exc) from exc
            self._known.add(model_id)

        def _unloadable(self, model_id: str, uri: str, exc: LoaderError) -> ModelNotFoundError:
            """Count the failed load; the error the request gets (its headers are read again next time)."""
            self._count(model_id, errors=1)
            self._known.discard(model_id)
            return ModelNotFoundError(f"model {model_id!r} cannot be loaded from {uri}: {exc}")

        def _count(self, model_id: str, **change: Any) -> None:
            count = self._counts.get(model_id) or ModelCount(model_id)
            counters = {k: v for k, v in change.items() if k != "loaded"}
            self._counts[model_id] = replace(count + ModelCount(model_id, **counters), loaded=change.get("loaded", count.loaded))
            urgent = set(change) - {"requests"}
            if urgent or time.monotonic() - self._reported > REPORT_EVERY_S:
                self._report()
            elif self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._report_later())

        async def _report_later(self) -> None:
            await asyncio.sleep(REPORT_EVERY_S)
            self._report()

        def _report(self) -> None:
            identity = ray_adapter.replica_identity()
            self._reported = time.monotonic()
            if identity is not None:
                app, deployment, replica = identity
                counts = [asdict(c) for c in self._counts.values()]
                ray_adapter.report(MODELS, f"{app}/{deployment}/{replica}", {"models": counts})

    Multiplexed.__name__ = cls.__name__
    Multiplexed.__qualname__ = cls.__qualname__
    return Multiplexed


class _Held:
    """One loaded model; Serve calls ``__del__`` when it evicts it (and it counts the eviction once)."""

    def __init__(self, model: Any, on_evict: Any) -> None:
        self.model = model
        self._on_evict = on_evict

    def __del__(self) -> None:
        on_evict, self._on_evict = self._on_evict, None
        if on_evict is not None:
            on_evict()


def _refusal(request: Any, message: str) -> Any:
    """A clear answer, not a crashed replica: 404 with the message over HTTP, an exception through a handle."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    if isinstance(request, Request):
        return JSONResponse({"error": message}, status_code=404)
    raise ModelNotFoundError(message)


def counts_by_replica() -> dict[str, tuple[ModelCount, ...]]:
    """Every multiplexed replica's per-model counts, by replica id (read by ``snapshot()``)."""
    return {
        key.rsplit("/", 1)[-1]: tuple(ModelCount(**c) for c in value.get("models", ()))
        for key, value in ray_adapter.reports(MODELS).items()
    }
