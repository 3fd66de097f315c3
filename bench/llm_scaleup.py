"""LLM scale-up, phase by phase: ``python -m bench.llm_scaleup [--runs 1] [--layers 16]``.

A Llama of a few hundred MB (bf16, made offline) served from loopback nginx (HTTP) and SeaweedFS
(S3). For each way of loading, an LLM application is deployed on an embedded cluster of two 2-CPU
workers and scaled to no replica (Serve LLM refuses to start with none), then scaled to one; the time from that request to the replica's first
answered request is split into phases:

- scheduling: until Serve has placed the replica on a node;
- weights: what vLLM's loader logs as "Loading weights took", plus, for the default path, the
  download of the checkpoint to the node's disk before it;
- engine start: the rest until the replica is RUNNING (imports, engine build, KV cache, warm-up);
- first token: until the first completion is answered.

Ways of loading: servelab (``load_format="servelab"``, streaming), vLLM's default (the whole model
downloaded to local disk, then ``load_format="safetensors"``) and runai_streamer (from S3) where it
runs. Prints one row per run, medians, and the ratios against the default path.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.llm._internal.common.callbacks.base import CallbackBase  # Ray Serve LLM's hook; no public path

from servelab import serving
from servelab.loader import fetch_model
from servelab.loader.checkpoint import parse_index
from servelab.loader.model_files import INDEX, OPTIONAL, REQUIRED, SINGLE
from servelab.serving import ray_adapter
from servelab.serving.deployments import wait_running
from servelab.testing import NginxServer, SeaweedS3Server, free_port
from servelab.testing.llm import TIMING, write_tiny_llama

WEIGHTS_LOG = re.compile(r"Loading weights took ([0-9.]+) seconds")
DOWNLOAD_LOG = re.compile(r"servelab-bench downloaded ([0-9]+) bytes in ([0-9.]+) s")
ENGINE = {"dtype": "bfloat16", "max_model_len": 256}


@dataclass
class Phases:
    way: str
    source: str
    scheduling: float
    weights: float | None
    engine: float | None
    first_token: float
    total: float


class DownloadModel(CallbackBase):
    """vLLM's default path on a node without the model: download every file to local disk, then load it."""

    async def on_before_node_init(self) -> None:
        import fsspec

        started = time.perf_counter()
        base = self.kwargs["uri"].rstrip("/")
        fs, root = fsspec.core.url_to_fs(base, **(self.kwargs.get("storage_options") or {}))
        target = Path(self.kwargs["directory"])
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        names = [*REQUIRED, *OPTIONAL, INDEX]  # what a download tool fetches; no listing (nginx refuses one)
        for name in names:
            try:
                fs.get(f"{root}/{name}", str(target / name))
            except FileNotFoundError:
                pass
        index = target / INDEX
        shards = sorted(set(parse_index(index.read_bytes(), str(index)).values())) if index.exists() else [SINGLE]
        for shard in shards:
            fs.get(f"{root}/{shard}", str(target / shard))
        nbytes = sum(p.stat().st_size for p in target.iterdir())
        print(f"servelab-bench downloaded {nbytes} bytes in {time.perf_counter() - started:.3f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--layers", type=int, default=TIMING["layers"])
    parser.add_argument("--ways", default="servelab,default,runai_streamer")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="servelab-llm-bench-"))
    model_dir = work / "served" / "llama"
    write_tiny_llama(
        model_dir, hidden=TIMING["hidden"], heads=TIMING["heads"], layers=args.layers, vocab=TIMING["vocab"], dtype="bfloat16"
    )
    size = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    print(f"model: {size / 1e6:.0f} MB of bf16 safetensors ({args.layers} layers)")
    rows: list[Phases] = []
    with NginxServer(work / "served") as web, SeaweedS3Server() as s3:
        for path in model_dir.iterdir():
            s3.upload(path, f"llama/{path.name}")
        sources = {"http": (web.url("llama") + "/", None), "s3": (f"s3://{s3.bucket}/llama/", s3.storage_options)}
        plans = [
            (way, source)
            for way in args.ways.split(",")
            for source in sources
            if not (way == "runai_streamer" and source != "s3")
        ]
        print(f"{'way':>15} {'source':>6} {'sched s':>8} {'weights s':>9} {'engine s':>8} {'1st tok s':>9} {'total s':>8}")
        serving.up(nodes=2, cpus_per_node=2, gpus_per_node=0, http_port=free_port())
        try:
            for _ in range(args.runs):
                for way, source in plans:
                    uri, options = sources[source]
                    try:
                        row = scale_up(way, source, uri, options, s3, work / "downloads")
                    except Exception as exc:  # report the way that does not run here, keep measuring the others
                        print(f"{way:>15} {source:>6}  did not run: {type(exc).__name__}: {str(exc)[:200]}")
                        continue
                    rows.append(row)
                    print(
                        f"{row.way:>15} {row.source:>6} {row.scheduling:8.1f} {_fmt(row.weights):>9} {_fmt(row.engine):>8} "
                        f"{row.first_token:9.1f} {row.total:8.1f}",
                        flush=True,
                    )
        finally:
            serving.down()
    shutil.rmtree(work, ignore_errors=True)
    summarize(rows)


def scale_up(way: str, source: str, uri: str, options: dict[str, Any] | None, s3: SeaweedS3Server, downloads: Path) -> Phases:
    """Deploy ``way`` with no replica, scale to one, and time each phase until its first answer.

    The default path downloads into ``downloads`` (removed with the rest of the bench's files)."""
    name = f"{way.replace('_', '-')}-{source}"
    files = fetch_model(uri, options)
    engine: dict[str, Any] = dict(ENGINE)
    callback: tuple[str, dict[str, Any]] = (
        "servelab.serving.llm_callback.FetchModelFiles",
        {"uri": uri, "storage_options": files.storage_options},
    )
    model_dir = str(files.directory)
    env = {"VLLM_CPU_KVCACHE_SPACE": "1"}
    if way == "servelab":
        engine.update(load_format="servelab", model_loader_extra_config=files.loader_config())
    elif way == "default":
        model_dir = str(downloads / name)
        shutil.copytree(files.directory, model_dir, dirs_exist_ok=True)  # config for the driver; replicas re-download
        engine["load_format"] = "safetensors"
        callback = ("bench.llm_scaleup.DownloadModel", {"uri": uri, "storage_options": options, "directory": model_dir})
    else:
        engine["load_format"] = "runai_streamer"
        model_dir = uri
        env.update(
            AWS_ACCESS_KEY_ID=s3.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=s3.SECRET_KEY, AWS_ENDPOINT_URL=s3.endpoint,
            AWS_DEFAULT_REGION="us-east-1", RUNAI_STREAMER_S3_ENDPOINT=s3.endpoint, RUNAI_STREAMER_CONCURRENCY="2",
            AWS_EC2_METADATA_DISABLED="true",
        )  # fmt: skip
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])  # replicas import this module's DownloadModel
    app = ray_adapter.llm_application(
        model_id=name, model_dir=model_dir, engine_kwargs=engine, bundles=[{"CPU": 1.0}], accelerator="cpu",
        deployment_config={"num_replicas": 1}, callback=callback, env_vars=env,
    )  # fmt: skip
    ray_adapter.run_application(app, name, f"/{name}")  # Serve LLM refuses 0 replicas: start one, then scale to 0
    wait_running(ray_adapter.LLM_SERVER + name, name, 900, None, fix="See the replica's log")
    serving.scale(name, 0)
    while [r for r in serving.snapshot().replicas if r.app == name and r.deployment.startswith("LLMServer")]:
        time.sleep(0.5)
    logs_before = _log_sizes()
    started = time.monotonic()
    serving.scale(name, 1)
    scheduled = running = None
    while running is None:
        now = time.monotonic()
        if now - started > 900:
            raise TimeoutError(f"{name}: no running replica after 900 s")
        replicas = [r for r in serving.snapshot().replicas if r.app == name and r.deployment.startswith("LLMServer")]
        if scheduled is None and any(r.node_id for r in replicas):
            scheduled = now
        if any(r.state == "RUNNING" for r in replicas):
            running = now
        time.sleep(0.1)
    answered = _first_answer(f"{serving.url(name)}/v1/completions", name)
    text = _new_log_text(logs_before)
    weights = sum(float(m) for m in WEIGHTS_LOG.findall(text)) or None
    download = DOWNLOAD_LOG.search(text)
    if weights is not None and download:
        weights += float(download.group(2))
    scheduled = scheduled or running
    engine_s = (running - scheduled - weights) if weights is not None else None
    serving.delete(name)
    return Phases(way, source, scheduled - started, weights, engine_s, answered - running, answered - started)


def _first_answer(url: str, model: str) -> float:
    body = json.dumps({"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}).encode()
    while True:
        try:
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
            return time.monotonic()
        except OSError:
            time.sleep(0.05)


def _log_sizes() -> dict[Path, int]:
    return {p: p.stat().st_size for p in ray_adapter.session_logs().glob("worker-*") if p.is_file()}


def _new_log_text(before: dict[Path, int]) -> str:
    """What the cluster's workers logged since ``before`` (vLLM's engine logs go to its replica's worker files)."""
    parts = []
    for path in ray_adapter.session_logs().glob("worker-*"):
        with path.open("rb") as file:
            file.seek(before.get(path, 0))
            parts.append(file.read().decode(errors="replace"))
    return "\n".join(parts)


def summarize(rows: list[Phases]) -> None:
    def median(way: str, source: str, field: str) -> float | None:
        values = [getattr(r, field) for r in rows if r.way == way and r.source == source and getattr(r, field) is not None]
        return statistics.median(values) if values else None

    print("medians, and ratios against vLLM's default path (download, then load):")
    for way, source in sorted({(r.way, r.source) for r in rows}):
        weights, total = median(way, source, "weights"), median(way, source, "total")
        base_w, base_t = median("default", source, "weights"), median("default", source, "total")
        ratio_w = f"{weights / base_w:.2f}x" if weights and base_w else "n/a"
        ratio_t = f"{total / base_t:.2f}x" if total and base_t else "n/a"
        print(
            f"  {way:>15} {source:>5}: weights {_fmt(weights)} s ({ratio_w}), scale-up to first answer {_fmt(total)} s ({ratio_t})"
        )
    print("targets: weights phase at most 0.5x the default path from HTTP and S3; end-to-end faster by what that buys")


def _fmt(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "n/a"


if __name__ == "__main__":
    main()
