"""deploy_llm() on the embedded cluster: vLLM behind Ray Serve LLM, weights streamed from HTTP and S3."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from servelab import serving
from servelab.errors import DeploymentError
from servelab.loader import fetch_model
from servelab.testing import NginxServer, SeaweedS3Server
from servelab.testing.llm import greedy_tokens

from .conftest import ENGINE, model_url, needs_vllm

pytestmark = needs_vllm

PROMPT = "The quick brown fox"
CHAT = [{"role": "user", "content": "Hello, how are you today?"}]


def ask(base: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}/{route}", data=json.dumps({**body, "temperature": 0, "return_token_ids": True}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_a_model_streamed_over_http_answers_completions_and_chat_like_transformers(
    llm_cluster: str, tiny_models: Path, nginx: NginxServer
) -> None:
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    base = serving.deploy_llm("tiny", model_url(nginx, "tiny"), engine_kwargs=ENGINE)
    try:
        assert (root.level, root.handlers) == before, "importing Ray Serve LLM must not reconfigure the notebook's logging"
        completion = ask(base, "completions", {"model": "tiny", "prompt": PROMPT, "max_tokens": 12})
        chat = ask(base, "chat/completions", {"model": "tiny", "messages": CHAT, "max_tokens": 8})

        assert completion["choices"][0]["token_ids"] == greedy_tokens(tiny_models / "tiny", PROMPT, 12)
        assert chat["choices"][0]["token_ids"] == greedy_tokens(tiny_models / "tiny", CHAT, 8)
        server = serving.find("tiny")  # the model id finds Serve LLM's server deployment
        assert server.name == "LLMServer:tiny" and server.healthy
        replicas = [r for r in serving.snapshot().replicas if r.deployment == server.name]
        # its placement group: the replica actor's CPU and the engine's bundle, as the planner must count it
        assert len(replicas) == 1 and replicas[0].node_id and replicas[0].resources == {"CPU": 2.0}
        fetched = fetch_model(model_url(nginx, "tiny")).directory  # where deploy_llm fetched this model's files
        assert not list(fetched.glob("*.safetensors")), "the weights must stream, never land on disk"
    finally:
        serving.delete("tiny")


def test_a_sharded_model_streamed_from_s3_answers_like_transformers(
    llm_cluster: str, tiny_models: Path, s3: SeaweedS3Server
) -> None:
    uri = f"s3://{s3.bucket}/tiny-sharded/"
    base = serving.deploy_llm("sharded", uri, storage_options=s3.storage_options, engine_kwargs=ENGINE)
    try:
        completion = ask(base, "completions", {"model": "sharded", "prompt": PROMPT, "max_tokens": 12})

        assert completion["choices"][0]["token_ids"] == greedy_tokens(tiny_models / "tiny-sharded", PROMPT, 12)
    finally:
        serving.delete("sharded")


def test_a_corrupt_weight_file_fails_the_deploy_call_and_nothing_is_served(
    llm_cluster: str, broken_model: Path, nginx: NginxServer
) -> None:
    shard = broken_model / "model-00001-of-00003.safetensors"
    shard.write_bytes(b"\xff" * 64 + shard.read_bytes()[64:])  # a header length no file could have

    with pytest.raises(DeploymentError, match=r"'broken': the model cannot be loaded: .*model-00001-of-00003\.safetensors"):
        serving.deploy_llm("broken", model_url(nginx, "broken"), engine_kwargs=ENGINE)
    assert not [d for d in serving.deployments() if d.app == "broken"]


def test_a_missing_weight_file_fails_the_deploy_call_naming_it(llm_cluster: str, broken_model: Path, nginx: NginxServer) -> None:
    (broken_model / "model-00003-of-00003.safetensors").unlink()

    with pytest.raises(DeploymentError, match=r"model-00003-of-00003\.safetensors: shard named by .* is missing"):
        serving.deploy_llm("broken", model_url(nginx, "broken"), engine_kwargs=ENGINE)
    assert not [d for d in serving.deployments() if d.app == "broken"]


def test_bad_arguments_are_refused_before_the_cluster_changes(llm_cluster: str, tiny_models: Path, nginx: NginxServer) -> None:
    with pytest.raises(DeploymentError, match="vLLM here is the CPU build"):
        serving.deploy_llm("tiny", model_url(nginx, "tiny"), gpus_per_replica=1)
    with pytest.raises(DeploymentError, match="tensor_parallel=0 must be a positive integer"):
        serving.deploy_llm("tiny", model_url(nginx, "tiny"), tensor_parallel=0)
    assert serving.deployments() == []
