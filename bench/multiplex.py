"""Many models on few replicas: ``python -m bench.multiplex [--models 12] [--requests 400] [--mib 16]``.

``--models`` checkpoints of ``--mib`` MiB each, served by loopback nginx; a seeded Zipf trace (s = 1.1)
of ``--requests`` requests over them, sent by 4 client threads, to two replicas that each keep at
most 3 models (fewer than the trace asks for). Three ways:

- ``servelab``: ``deploy(..., multiplex=URI_TEMPLATE, max_models_per_replica=3)`` (Serve's
  multiplexing, each miss streamed by servelab.loader);
- ``every request``: the replica streams the model named by each request, keeping none;
- ``serve + load_file``: Ray Serve's ``@serve.multiplexed`` with the plain loader its docs show (the
  checkpoint downloaded to local disk, then ``safetensors.torch.load_file``).

Prints hit rate (requests answered without a load), throughput and p50/p99 latency per way, and
the ratios against the other two.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch
from ray import serve
from safetensors.torch import save_file

from servelab import serving
from servelab.serving.multiplex import HEADER
from servelab.testing import NginxServer, free_port

REPLICAS, KEEP, CLIENTS = 2, 3, 4


class Scorer:
    """A model: its weights' sum, and whether this request had to load it."""

    def __init__(self, weights: dict[str, Any]) -> None:
        self.score = float(weights["w"][:16].sum())

    async def __call__(self, request: Any = None) -> dict[str, float]:
        return {"score": self.score}


class EveryRequest:
    """Streams the model a request names, for that request alone."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.loads = 0

    async def __call__(self, request: Any = None) -> dict[str, Any]:
        import asyncio

        from servelab.loader import load

        uri = self.template.format(model_id=serve.get_multiplexed_model_id())
        self.loads += 1
        weights = await asyncio.to_thread(load, uri, device="cpu", progress=False)
        return {
            "score": float(weights["w"][:16].sum()),
            "replica": serve.get_replica_context().replica_id.unique_id,
            "loads": self.loads,
        }


class ServeLoadFile:
    """Ray Serve's multiplexing as its docs show it: download the checkpoint, then ``load_file``."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.loads = 0

    async def __call__(self, request: Any = None) -> dict[str, Any]:
        score = await self.model(serve.get_multiplexed_model_id())
        return {"score": score, "replica": serve.get_replica_context().replica_id.unique_id, "loads": self.loads}

    @serve.multiplexed(max_num_models_per_replica=KEEP)
    async def model(self, model_id: str) -> float:
        import asyncio

        from safetensors.torch import load_file

        def fetch() -> float:
            with tempfile.NamedTemporaryFile(suffix=".safetensors") as local:
                urllib.request.urlretrieve(self.template.format(model_id=model_id), local.name)
                return float(load_file(local.name)["w"][:16].sum())

        self.loads += 1
        return await asyncio.to_thread(fetch)


def zipf_trace(models: int, requests: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(models)]
    return rng.choices([f"m{i}" for i in range(models)], weights=weights, k=requests)


def run(url: str, trace: list[str], expected: dict[str, float]) -> tuple[list[float], int, float]:
    """Latencies (ms), loads the replicas counted in their answers, and wall seconds for ``trace`` sent by CLIENTS threads."""
    latencies: list[float] = []
    loads: dict[str, int] = {}
    lock = threading.Lock()
    work = iter(enumerate(trace))

    def client() -> None:
        while True:
            with lock:
                item = next(work, None)
            if item is None:
                return
            request = urllib.request.Request(url, headers={HEADER: item[1]})
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=120) as response:
                answer = json.loads(response.read())
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)
                if "replica" in answer:
                    loads[answer["replica"]] = max(loads.get(answer["replica"], 0), answer["loads"])
            assert abs(answer["score"] - expected[item[1]]) < 1e-3, f"{item[1]} answered by the wrong model"

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, sum(loads.values()), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--mib", type=float, default=16)
    args = parser.parse_args()
    trace = zipf_trace(args.models, args.requests)
    with tempfile.TemporaryDirectory(prefix="servelab-multiplex-") as root:
        expected = {}
        for i in range(args.models):
            weights = torch.randn(int(args.mib * 2**18), generator=torch.Generator().manual_seed(i))
            (Path(root) / f"m{i}").mkdir()
            save_file({"w": weights}, Path(root) / f"m{i}" / "model.safetensors")
            expected[f"m{i}"] = float(weights[:16].sum())
        results = {}
        with NginxServer(root) as nginx:
            template = nginx.url("{model_id}/model.safetensors")
            serving.up(node_types={"gpu": {"count": REPLICAS, "cpus": 1, "gpus": 1}}, http_port=free_port())
            try:
                ways: list[tuple[str, Any, dict[str, Any]]] = [
                    ("servelab", Scorer, {"multiplex": template, "max_models_per_replica": KEEP}),
                    ("every request", EveryRequest, {"init_args": (template,)}),
                    ("serve + load_file", ServeLoadFile, {"init_args": (template,)}),
                ]
                for way, target, options in ways:
                    serving.deploy("mux", target, replicas=REPLICAS, gpus=1, **options)
                    latencies, loads, seconds = run(serving.url("mux"), trace, expected)
                    if way == "servelab":
                        time.sleep(1.5)  # replicas report hits at most once a second
                        loads = sum(c.misses for r in serving.snapshot().replicas for c in r.models)
                    results[way] = (latencies, loads, seconds)
                    serving.delete("mux")
            finally:
                serving.down()
    print(f"{args.models} models of {args.mib:g} MiB over HTTP, Zipf trace of {len(trace)} requests, {CLIENTS} clients,")
    print(f"{REPLICAS} replicas keeping at most {KEEP} models each\n")
    print(f"{'way':>18} {'hit rate':>9} {'loads':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    figures = {}
    for way, (latencies, loads, seconds) in results.items():
        ordered = sorted(latencies)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        figures[way] = (len(trace) / seconds, p99)
        hit = 1 - loads / len(trace)
        print(f"{way:>18} {hit:9.1%} {loads:6d} {len(trace) / seconds:8.1f} {statistics.median(ordered):8.1f} {p99:8.1f}")
    ours = figures["servelab"]
    for other in ("every request", "serve + load_file"):
        theirs = figures[other]
        print(f"servelab vs {other}: throughput {ours[0] / theirs[0]:.2f}x, p99 {theirs[1] / ours[1]:.2f}x lower")


if __name__ == "__main__":
    main()
