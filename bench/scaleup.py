"""Scale-up from remote storage against the peer weight cache: ``python -m bench.scaleup [--gib 1] [--runs 3]``.

A seeded checkpoint of about ``--gib`` GiB (bf16) served by loopback nginx (HTTP). For each way of
loading and each N in (1, 3), on an embedded cluster of four 1-GPU workers: a deployment with one
replica is deployed (it streams the weights from the source and, with the peer cache, publishes
them), then scaled to 1 + N; the time from that request until each of the N new replicas has
answered its first request is measured (a request loop runs meanwhile), and the deployment is
deleted. Ways: ``remote`` (``peer_cache=False``: each new replica streams from nginx) and ``peer``
(new replicas load from the object store). Prints each run, medians, and the ratio remote / peer.
Target: the peer cache at least 2x faster for N = 3.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from servelab import serving
from servelab.testing import NginxServer, free_port
from servelab.testing.checkpoints import write_llm_checkpoint

WORKERS = 4


class Holds:
    """Keeps its weights (as a model would) and answers that it is up."""

    def __init__(self, weights: dict[str, Any]) -> None:
        self.weights = weights

    async def __call__(self, request: Any = None) -> str:
        return "ok"


def keep_asking(url: str, stop: threading.Event) -> None:
    """A request loop, so every new replica gets its first request as soon as it can answer."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
        except OSError:
            time.sleep(0.05)


def scale_up(url: str, way: str, new: int) -> float:
    """Seconds from asking for ``new`` more replicas until each has answered a request."""
    serving.deploy("bench", Holds, replicas=1, gpus=1, weights=url, peer_cache=way == "peer", timeout_s=900)
    first = {t.replica for t in serving.replica_timelines("bench")}
    stop = threading.Event()
    asking = threading.Thread(target=keep_asking, args=(serving.url("bench"), stop), daemon=True)
    asking.start()
    started = time.time()
    serving.scale("bench", 1 + new)
    try:
        while True:
            fresh = [t for t in serving.replica_timelines("bench") if t.replica not in first]
            answered = [t.first_request for t in fresh if t.first_request is not None]
            if len(answered) == new:
                sources = {t.source for t in fresh}
                assert sources == {way}, f"{way}: new replicas loaded from {sources}"
                return max(answered) - started
            time.sleep(0.2)
    finally:
        stop.set()
        asking.join()
        serving.delete("bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="servelab-scaleup-") as root:
        path = write_llm_checkpoint(Path(root), int(args.gib * 2**30))
        size = path.stat().st_size
        with NginxServer(root) as nginx:
            serving.up(node_types={"gpu": {"count": WORKERS, "cpus": 1, "gpus": 1}}, http_port=free_port())
            try:
                results: dict[tuple[str, int], list[float]] = {}
                print(f"checkpoint {size / 2**30:.2f} GiB over HTTP (nginx on 127.0.0.1), {WORKERS} workers")
                print(f"{'way':>7} {'N':>2} {'run':>3} {'seconds':>8}")
                for run in range(args.runs):
                    for new in (1, 3):
                        for way in ("remote", "peer"):
                            seconds = scale_up(nginx.url(path.name), way, new)
                            results.setdefault((way, new), []).append(seconds)
                            print(f"{way:>7} {new:>2} {run:>3} {seconds:8.2f}", flush=True)
            finally:
                serving.down()
    print()
    for new in (1, 3):
        remote = statistics.median(results[("remote", new)])
        peer = statistics.median(results[("peer", new)])
        print(
            f"N={new}: median remote {remote:.2f} s, peer {peer:.2f} s: peer cache {remote / peer:.2f}x faster"
            + (f" (target >= 2x: {'met' if remote / peer >= 2 else 'not met'})" if new == 3 else "")
        )


if __name__ == "__main__":
    main()
