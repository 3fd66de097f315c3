"""load_format="servelab" in a real vLLM engine (offline, its own process): streamed weights, exact answers, clear failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from servelab.loader import fetch_model
from servelab.testing import NginxServer
from servelab.testing.llm import greedy_tokens

from .conftest import needs_vllm

pytestmark = needs_vllm

PROMPTS = ["The quick brown fox", "Ray Serve scales"]
ENGINE_PROGRAM = """
import json, sys
from vllm import LLM, SamplingParams
model, extra, prompts = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
llm = LLM(
    model=model, load_format="servelab", model_loader_extra_config=extra, dtype="float32", max_model_len=256,
    enforce_eager=True,  # no torch.compile warm-up for a tiny model
)
outputs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=12))
print("TOKENS", json.dumps([list(o.outputs[0].token_ids) for o in outputs]))
"""


def run_engine(model_dir: Path, extra: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    return subprocess.run(
        [sys.executable, "-c", ENGINE_PROGRAM, str(model_dir), json.dumps(extra), json.dumps(PROMPTS)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip


def test_the_engine_streams_a_sharded_model_over_http_and_answers_like_transformers(
    tiny_models: Path, nginx: NginxServer, tmp_path: Path
) -> None:
    files = fetch_model(nginx.url("tiny-sharded") + "/", cache=tmp_path)

    done = run_engine(files.directory, files.loader_config(), tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    answered = json.loads(done.stdout.split("TOKENS", 1)[1])
    assert answered == [greedy_tokens(tiny_models / "tiny-sharded", prompt, 12) for prompt in PROMPTS]


def test_a_missing_shard_fails_the_engine_with_the_loaders_message(
    broken_model: Path, nginx: NginxServer, tmp_path: Path
) -> None:
    files = fetch_model(nginx.url("broken") + "/", cache=tmp_path)
    (broken_model / "model-00002-of-00003.safetensors").unlink()

    done = run_engine(files.directory, files.loader_config(), tmp_path)

    assert done.returncode != 0
    assert "model-00002-of-00003.safetensors: shard named by" in done.stderr
    assert "is missing" in done.stderr
    assert "TOKENS" not in done.stdout
