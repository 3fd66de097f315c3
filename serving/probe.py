"""Measuring a compaction from outside: a request loop over the deployments' URLs, timed by phase
(before the first drain, during the migration), and the latency figures it reports."""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyStats:
    requests: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None


class LoadProbe:
    """A bounded HTTP request loop in a background thread, timing every request by phase.

    >>> probe = LoadProbe([url("classifier")])
    >>> report = compact(probe=probe)
    """

    def __init__(self, urls: Sequence[str], interval_s: float = 0.02, timeout_s: float = 10.0, max_requests: int = 20_000):
        self._urls = list(urls)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._max_requests = max_requests
        self._phase = "before"
        self._results: dict[str, list[tuple[bool, float]]] = {"before": [], "during": []}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="servelab-load-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def mark(self, phase: str) -> None:
        self._phase = phase
        self._results.setdefault(phase, [])

    def stop(self) -> dict[str, LatencyStats]:
        self._stop.set()
        self._thread.join()
        return {phase: _stats(results) for phase, results in self._results.items()}

    def _loop(self) -> None:
        sent = 0
        while not self._stop.is_set() and sent < self._max_requests:
            url = self._urls[sent % len(self._urls)]
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=self._timeout_s) as response:
                    response.read()
                    ok = response.status == 200
            except OSError:
                ok = False
            self._results[self._phase].append((ok, time.perf_counter() - started))
            sent += 1
            self._stop.wait(self._interval_s)


def _stats(results: list[tuple[bool, float]]) -> LatencyStats:
    latencies = sorted(seconds * 1000 for ok, seconds in results if ok)
    failed = sum(1 for ok, _ in results if not ok)
    if not latencies:
        return LatencyStats(len(results), failed, None, None)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return LatencyStats(len(results), failed, statistics.median(latencies), p99)
