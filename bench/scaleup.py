"""Scale-up from remote storage against the peer weight cache: ``python -m bench.scaleup [--gib 1] [--runs 3]``.

A seeded checkpoint of about ``--gib`` GiB (bf16) served by loopback nginx (HTTP). For each way of
loading and each N in (1, 3), on an embedded cluster of four 1-GPU workers: a deployment with one
replica is deployed (it streams the weights from the source and, with the peer cache, publishes
them), then scaled to 1 + N; the time from that request until each of the N new replicas has
answered its first request is measured (a request loop runs meanwhile), and the deployment is
deleted. Ways: ``remote`` (``peer_cache=False``: each new replica streams from nginx) and ``peer``
(new replicas load from the object store). Prints each run, medians, and the ratio remote / peer.
Target: the peer cache at least 2x faster for N = 3.

Loopback nginx is faster than any remote storage (1.7 GB/s from the page cache, over no network).
``--remote-gbps 1 2.5`` repeats the whole measurement with nginx's traffic shaped to that many
Gbit/s in all (Linux ``tc`` on the loopback, matching nginx's port: needs root), as a bucket behind a
shared link would be; 0 means unshaped. The cluster's own traffic is never shaped.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
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


def scale_up(url: str, way: str, new: int) -> tuple[float, float, float]:
    """Seconds from asking for ``new`` more replicas until each has answered a request; of that,
    the slowest new replica's wait until its process was up and its weights phase."""
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
                return max(answered) - started, max(t.constructing - started for t in fresh), max(t.weights_s for t in fresh)
            time.sleep(0.2)
    finally:
        stop.set()
        asking.join()
        serving.delete("bench")


@contextlib.contextmanager
def shaped(port: int, gbps: float) -> Iterator[None]:
    """What 127.0.0.1:``port`` sends, limited to ``gbps`` Gbit/s in all (an HTB class on the
    loopback; other traffic is unclassified and passes unshaped). 0: nothing is shaped."""
    if not gbps:
        yield
        return

    def tc(command: str) -> None:
        done = subprocess.run(["tc", *command.split()], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"tc {command}: {done.stderr.strip()}; --remote-gbps needs root and iproute2 (or leave it out).")

    tc("qdisc add dev lo root handle 1: htb default 99")
    try:
        tc(f"class add dev lo parent 1: classid 1:1 htb rate {gbps}gbit ceil {gbps}gbit burst 1m quantum 65536")
        tc(f"filter add dev lo protocol ip parent 1: prio 1 u32 match ip sport {port} 0xffff flowid 1:1")
        yield
    finally:
        tc("qdisc del dev lo root")


def measure(url: str, runs: int) -> dict[tuple[str, int], list[float]]:
    """Every run of both ways at N = 1 and 3, printed as it ends."""
    results: dict[tuple[str, int], list[float]] = {}
    print(f"{'way':>7} {'N':>2} {'run':>3} {'seconds':>8} {'process up':>10} {'weights':>8}  (slowest replica)")
    for run in range(runs):
        for new in (1, 3):
            for way in ("remote", "peer"):
                seconds, process, weights = scale_up(url, way, new)
                results.setdefault((way, new), []).append(seconds)
                print(f"{way:>7} {new:>2} {run:>3} {seconds:8.2f} {process:10.2f} {weights:8.2f}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--remote-gbps", type=float, nargs="+", default=[0.0], help="shape nginx to these Gbit/s (0: unshaped)")
    args = parser.parse_args()
    summary = []
    with tempfile.TemporaryDirectory(prefix="servelab-scaleup-") as root:
        path = write_llm_checkpoint(Path(root), int(args.gib * 2**30))
        size = path.stat().st_size
        with NginxServer(root) as nginx:
            serving.up(node_types={"gpu": {"count": WORKERS, "cpus": 1, "gpus": 1}}, http_port=free_port())
            try:
                for gbps in args.remote_gbps:
                    link = f"shaped to {gbps:g} Gbit/s" if gbps else "unshaped"
                    print(f"\ncheckpoint {size / 2**30:.2f} GiB over HTTP (nginx on 127.0.0.1, {link}), {WORKERS} workers")
                    with shaped(nginx.port, gbps):
                        results = measure(nginx.url(path.name), args.runs)
                    summary += [
                        (link, new, *(statistics.median(results[(way, new)]) for way in ("remote", "peer"))) for new in (1, 3)
                    ]
            finally:
                serving.down()
    print()
    for link, new, remote, peer in summary:
        target = f" (target >= 2x: {'met' if remote / peer >= 2 else 'not met'})" if new == 3 else ""
        print(
            f"{link:>22} N={new}: median remote {remote:.2f} s, peer {peer:.2f} s: peer cache {remote / peer:.2f}x faster{target}"
        )


if __name__ == "__main__":
    main()
