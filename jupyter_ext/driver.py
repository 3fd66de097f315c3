"""The Jupyter server's Ray driver: a child process attached to one cluster, answering JSON lines.

The server never runs Ray itself: a Ray driver blocks on a slow cluster and exits its whole process
when the cluster's GCS goes away, so each cluster gets one of these processes instead. It reads
requests ``{"id", "op", "args"}`` on stdin and writes on its own copy of stdout (everything else
printed goes to stderr) first a greeting, then for each request any events ``{"id", "event"}``
and one answer ``{"id", "ok", "result"}`` or ``{"id", "ok": false, "kind", "error"}``. Requests
run on threads, so the cluster can be read while a compaction runs.

    python -m servelab.jupyter_ext.driver 127.0.0.1:6379
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from servelab.jupyter_ext.schema import PlanModel, ReportModel, SnapshotModel

log = logging.getLogger("servelab.jupyter_ext.driver")
GREETING = 0  # the id of the first line: attached, or why not
WATCH_INTERVAL_S = 2.0  # how often the driver checks that its cluster still listens
WATCH_MISSES = 3  # checks in a row that find nothing listening before it exits


class Driver:
    """Runs one request at a time per thread against the attached cluster, writing answers as they come."""

    def __init__(self, out: IO[str], address: str) -> None:
        self._out = out
        self._address = address
        self._lock = threading.Lock()

    def write(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, default=str)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def handle(self, request: dict[str, Any]) -> None:
        rid = request.get("id")
        try:
            op = OPS[request["op"]]
            result = op(self._address, request.get("args") or {}, lambda event: self.write({"id": rid, "event": event}))
        except Exception as exc:  # every failure becomes an answer: the server must never wait forever
            self.write({"id": rid, "ok": False, **describe(exc)})
        else:
            self.write({"id": rid, "ok": True, "result": result})


def describe(exc: BaseException) -> dict[str, str]:
    """An exception as the answer's ``kind`` (servelab's class name, or "internal") and message."""
    from servelab.errors import SIDEBAR, ServelabError

    if isinstance(exc, ServelabError):
        return {"kind": type(exc).__name__, "error": exc.in_words_of(SIDEBAR)}
    log.exception("servelab driver: unexpected failure")
    return {"kind": "internal", "error": f"{type(exc).__name__}: {exc}"}


# --- operations: each takes the address, the request's arguments and an event callback ----------


def op_model(address: str, args: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> SnapshotModel:
    from servelab import serving
    from servelab.jupyter_ext.model import cluster_model

    return cluster_model(serving.snapshot(), address, serving.autocompact_status(), group=args.get("group"))


def op_plan(address: str, args: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> PlanModel:
    from servelab import serving
    from servelab.jupyter_ext.model import plan_model
    from servelab.serving.executor import unowned_warning

    snap = serving.snapshot()
    made = serving.plan(snap, **args)
    return plan_model(made, snap, address, unowned_warning(made))


def op_compact(address: str, args: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> ReportModel:
    from servelab import serving
    from servelab.jupyter_ext.model import event_model, plan_of, report_model, run_budget

    plan = plan_of(args["plan"])  # with the budget it was planned with
    budget = run_budget(plan, args.get("budget"))  # what the sidebar chose when it ran, over the plan's own
    release = bool(args.get("release_unowned_nodes"))  # the user confirmed the sidebar's warning
    report = serving.compact(
        plan, budget=budget, release_unowned_nodes=release, on_event=lambda event: emit(dict(event_model(event)))
    )
    return report_model(report)


def op_scale(address: str, args: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    from dataclasses import asdict

    from servelab import serving

    serving.scale(args["name"], args["replicas"], app=args.get("app"))
    return asdict(serving.find(args["name"], args.get("app")))


OPS: dict[str, Callable[[str, dict[str, Any], Callable[[dict[str, Any]], None]], Any]] = {
    "model": op_model,
    "plan": op_plan,
    "compact": op_compact,
    "scale": op_scale,
}


def attach(address: str) -> dict[str, Any]:
    """The greeting: attach to the cluster, or say why not (Ray missing, nothing answering)."""
    try:
        import ray
    except ImportError as exc:
        return {
            "id": GREETING,
            "ok": False,
            "kind": "ray-missing",
            "error": f"Ray is not installed where the Jupyter server runs ({exc}); pip install 'ray[serve]' there, "
            "or point c.Servelab.driver_python at a Python that has it.",
        }
    from servelab import serving

    try:
        serving.connect(address, observe=True)
    except Exception as exc:
        return {"id": GREETING, "ok": False, **describe(exc)}
    return {"id": GREETING, "ok": True, "result": {"address": address, "ray": ray.__version__}}


def watch(address: str, interval_s: float = WATCH_INTERVAL_S, misses: int = WATCH_MISSES) -> None:
    """Exit once nothing listens at the cluster's address (it was stopped): a Ray driver whose GCS is
    gone retries at full CPU for about a minute before Ray gives up on it."""
    from servelab.serving.cluster import check_reachable

    missed = 0
    while missed < misses:
        time.sleep(interval_s)
        try:
            check_reachable(address, timeout_s=interval_s)
            missed = 0
        except OSError:
            missed += 1
    log.warning("servelab driver: nothing answers at %s any more (the cluster stopped); exiting", address)
    os._exit(0)


def main(argv: list[str]) -> int:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints (Ray's, users') never reach the protocol
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    driver = Driver(out, argv[0])
    greeting = attach(argv[0])
    driver.write(greeting)
    if not greeting["ok"]:
        return 1
    threading.Thread(target=watch, args=(argv[0],), name="servelab-driver-watch", daemon=True).start()
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="servelab-driver") as pool:
        for line in sys.stdin:  # ends when the server closes the pipe or exits
            try:
                request = json.loads(line)
            except ValueError:
                driver.write({"id": None, "ok": False, "kind": "internal", "error": f"not JSON: {line[:80]!r}"})
                continue
            pool.submit(driver.handle, request)
    os._exit(0)  # Ray's threads may not join; the server has already gone


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
