"""The server extension's one piece of state: the clusters it knows, their drivers, plans and compactions.

Handlers only translate HTTP to calls on the ClusterManager and its answers back. Ray never runs in
the server process: each cluster is asked through its own driver process (``driver.py``), started
on first use and replaced when it exits, and every call has a timeout, so a slow or vanished cluster
costs an error answer, never a stalled event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from traitlets import Float, Unicode
from traitlets.config import Configurable

from servelab.jupyter_ext.client import ClusterUnavailable, DriverClient, DriverFailed
from servelab.jupyter_ext.schema import (
    Budget,
    ClusterEntry,
    ClusterModel,
    ClusterRecord,
    CompactionEvent,
    CompactionModel,
    PlanModel,
    ReportModel,
    SnapshotModel,
)

ADDRESS = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$|^auto$")
PLANS_KEPT = 32
NO_CLUSTER = "No cluster yet: start one in a notebook with %servelab up, set RAY_ADDRESS, or c.Servelab.address."


class ApiError(Exception):
    """An answer other than success: HTTP status, a machine-readable kind and a message naming the fix."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


class Servelab(Configurable):
    """Settings of the servelab server extension (``c.Servelab.address = "10.0.0.2:6379"``)."""

    address = Unicode(
        "", help="A Ray cluster to list first, besides RAY_ADDRESS and the clusters kernels on this machine started."
    ).tag(config=True)
    refresh_interval_s = Float(2.0, help="How often the sidebar reads the cluster again, in seconds.").tag(config=True)
    request_timeout_s = Float(
        30.0, help="How long a read, plan or scale may take before the answer says the cluster is not answering."
    ).tag(config=True)
    connect_timeout_s = Float(60.0, help="How long attaching to a cluster may take.").tag(config=True)
    compaction_timeout_s = Float(1800.0, help="How long one compaction may run.").tag(config=True)
    driver_python = Unicode(
        sys.executable, help="The Python that runs the Ray driver processes: one with ray[serve] and servelab."
    ).tag(config=True)
    auth_token = Unicode(
        "",
        help="The Ray auth token of a configured cluster. Clusters started on this machine need none: their "
        "discovery record holds theirs. Else RAY_AUTH_TOKEN is passed on.",
    ).tag(config=True)


@dataclass
class Compaction:
    """One compaction started through the API: its events as they come, then its report."""

    id: str
    address: str
    plan: PlanModel
    budget: Budget = field(default_factory=Budget)  # what is left out keeps Budget's default
    release_unowned_nodes: bool = False  # the user confirmed that nodes no autoscaler owns may be freed
    state: str = "running"  # running | done | stopped | failed
    events: list[CompactionEvent] = field(default_factory=list)
    report: ReportModel | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def to_dict(self) -> CompactionModel:
        return {
            "id": self.id,
            "address": self.address,
            "state": self.state,
            "events": self.events,
            "report": self.report,
            "error": self.error,
            "started_at": self.started_at,
            "nodes_to_free": self.plan["nodes_to_free"],
            "budget": self.budget,
        }

    def add_event(self, event: CompactionEvent) -> None:
        self.events.append(event)
        self._wake()

    def finish(self, state: str, report: ReportModel | None = None, error: str | None = None) -> None:
        self.state, self.report, self.error = state, report, error
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()  # waiters of the next change wait on a fresh one


class ClusterManager:
    """Clusters, their drivers, recent plans and compactions, for one Jupyter server."""

    def __init__(self, settings: Servelab, log: Any) -> None:
        self.settings = settings
        self.log = log
        self._drivers: dict[str, DriverClient] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._plans: OrderedDict[str, PlanModel] = OrderedDict()
        self.compactions: dict[str, Compaction] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- clusters -------------------------------------------------------------------------------

    async def clusters(self) -> list[ClusterEntry]:
        """Every cluster known: configured, RAY_ADDRESS, discovery records; each with whether it answers."""
        found: OrderedDict[str, tuple[str, ClusterRecord | None]] = OrderedDict()  # address -> source, record
        if self.settings.address:
            found[self.settings.address] = ("configured", None)
        if os.environ.get("RAY_ADDRESS"):
            found.setdefault(os.environ["RAY_ADDRESS"], ("RAY_ADDRESS", None))
        for record in await asyncio.to_thread(_discovered):
            found.setdefault(record["address"], ("discovered", record))
        reachable = await asyncio.gather(*(asyncio.to_thread(_answers, address) for address in found))
        answering = {address for address, ok in zip(found, reachable, strict=True) if ok}
        for address in [a for a in self._drivers if a not in answering]:  # its cluster stopped: the driver goes too
            await self._drop_if_idle(address)
        return [
            {
                "address": address,
                "source": source,
                "record": record,
                "reachable": ok,
                "attached": address in self._drivers and self._drivers[address].alive,
            }
            for (address, (source, record)), ok in zip(found.items(), reachable, strict=True)
        ]

    async def default_address(self) -> str:
        """The cluster to show when none is named: the first reachable one found."""
        clusters = await self.clusters()
        for entry in clusters:
            if entry["reachable"]:
                return entry["address"]
        if clusters:
            raise ApiError(503, "unreachable", f"no known cluster answers (tried {', '.join(c['address'] for c in clusters)}).")
        raise ApiError(
            404,
            "no-cluster",
            NO_CLUSTER,
        )

    async def model(self, address: str | None, group: str | None = None) -> ClusterModel:
        """The JSON model of the cluster at ``address`` (default: the first one that answers); of a
        large cluster, with the nodes of type ``group`` as cards."""
        address = await self._address(address)
        model: SnapshotModel = await self._call(
            address, "model", {"group": group} if group else {}, self.settings.request_timeout_s
        )
        running = [c.id for c in self.compactions.values() if c.address == address and c.state == "running"]
        return {**model, "compaction": running[0] if running else None, "refresh_interval_s": self.settings.refresh_interval_s}

    # --- plans, compactions, scaling ----------------------------------------------------------------

    async def plan(self, address: str | None, options: dict[str, Any]) -> PlanModel:
        """Plan a compaction; the plan is kept (by fingerprint) so a compaction can run exactly it."""
        address = await self._address(address)
        plan: PlanModel = await self._call(address, "plan", options, self.settings.request_timeout_s)
        self._plans[plan["fingerprint"]] = plan
        while len(self._plans) > PLANS_KEPT:
            self._plans.popitem(last=False)
        return plan

    async def start_compaction(
        self,
        address: str | None,
        fingerprint: str | None,
        options: dict[str, Any],
        budget: Budget,
        release_unowned_nodes: bool = False,
    ) -> Compaction:
        """Start running a kept plan (by fingerprint) or a fresh one within ``budget``; returns at once.
        ``release_unowned_nodes``: the user confirmed the plan's warning that no autoscaler owns its nodes."""
        if fingerprint is not None:
            plan = self._plans.get(fingerprint)
            if plan is None:
                raise ApiError(404, "unknown-plan", f"no plan {fingerprint!r} was made here; POST /servelab/api/plans first.")
        else:
            plan = await self.plan(address, options)
        address = plan["address"]
        running = [c for c in self.compactions.values() if c.address == address and c.state == "running"]
        if running:
            raise ApiError(409, "busy", f"compaction {running[0].id} is already running on {address}; wait for it to end.")
        compaction = Compaction(uuid.uuid4().hex[:12], address, plan, budget, release_unowned_nodes)
        self.compactions[compaction.id] = compaction
        task = asyncio.create_task(self._run(compaction))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return compaction

    def compaction(self, compaction_id: str) -> Compaction:
        if compaction_id not in self.compactions:
            raise ApiError(
                404, "unknown-compaction", f"no compaction {compaction_id!r}; GET /servelab/api/cluster lists the running one."
            )
        return self.compactions[compaction_id]

    async def scale(self, address: str | None, name: str, replicas: int, app: str | None) -> dict[str, Any]:
        address = await self._address(address)
        args = {"name": name, "replicas": replicas, "app": app}
        result: dict[str, Any] = await self._call(address, "scale", args, self.settings.request_timeout_s)
        return result

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(driver.close() for driver in self._drivers.values()), return_exceptions=True)
        self._drivers.clear()

    # --- internals ------------------------------------------------------------------------------

    async def _run(self, compaction: Compaction) -> None:
        args = {"plan": compaction.plan, "budget": compaction.budget, "release_unowned_nodes": compaction.release_unowned_nodes}
        try:
            report = await self._call(
                compaction.address, "compact", args, self.settings.compaction_timeout_s, compaction.add_event
            )
        except ApiError as exc:
            compaction.finish("failed", error=exc.message)
        else:
            compaction.finish("stopped" if report["stopped"] else "done", report=report)

    async def _address(self, address: str | None) -> str:
        if address is None or address == "":
            return await self.default_address()
        if not ADDRESS.match(address):
            raise ApiError(
                400, "bad-address", f"address={address!r}: use 'host:port' (the GCS, e.g. 127.0.0.1:6379) or 'ray://host:10001'."
            )
        return address

    async def _call(self, address: str, op: str, args: dict[str, Any], timeout_s: float, on_event: Any = None) -> Any:
        """One request to the cluster's driver, errors turned into ApiErrors."""
        if not await asyncio.to_thread(_answers, address):
            # Nothing listens any more: say so at once, rather than wait on a driver that waits on Ray.
            await self._drop_if_idle(address)
            raise ApiError(
                503,
                "unreachable",
                f"no Ray cluster answers at {address}: it stopped, or the address is wrong. Start one with %servelab up.",
            )
        try:
            driver = await self._driver(address)
            return await driver.call(op, args, timeout_s, on_event)
        except ClusterUnavailable as exc:
            if exc.status == "timeout":
                await self._drop_if_idle(address)
            raise ApiError(504 if exc.status == "timeout" else 503, exc.status, exc.message) from None
        except DriverFailed as exc:
            raise ApiError(_status_of(exc.kind), exc.kind, exc.message) from None

    async def _driver(self, address: str) -> DriverClient:
        lock = self._starting.setdefault(address, asyncio.Lock())
        async with lock:
            driver = self._drivers.get(address)
            if driver is not None and driver.alive:
                return driver
            driver = DriverClient(
                address, [self.settings.driver_python, "-m", "servelab.jupyter_ext.driver"], self._env(), self.log
            )
            await driver.start(self.settings.connect_timeout_s)
            self._drivers[address] = driver
            return driver

    async def _drop_if_idle(self, address: str) -> None:
        """A driver that timed out with nothing else in flight is likely stuck on a vanished cluster: stop it."""
        driver = self._drivers.get(address)
        if driver is not None and not driver.busy:
            self._drivers.pop(address, None)
            await driver.close()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.settings.auth_token:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.settings.auth_token)
        return env


def _status_of(kind: str) -> int:
    """The HTTP status for an error the driver reported (servelab's exception class names)."""
    return {
        "DeploymentNotFoundError": 404,
        "StalePlanError": 409,
        "PlanError": 400,
        "DeploymentError": 400,
        "CompactionError": 409,
        "ClusterError": 503,
    }.get(kind, 500)


def _discovered() -> list[ClusterRecord]:
    from servelab.serving.discovery import find_clusters

    return [
        {
            "address": r.address,
            "http_port": r.http_port,
            "dashboard_url": r.dashboard_url,
            "pid": r.pid,
            "kernel_id": r.kernel_id,
            "started_at": r.started_at,
            "embedded": r.embedded,
            "token_path": r.token_path,
        }
        for r in find_clusters()
    ]


def _answers(address: str, timeout_s: float = 1.0) -> bool:
    """Whether something listens at the address's host and port."""
    from servelab.serving.cluster import check_reachable

    try:
        check_reachable(address, timeout_s)
    except (OSError, ValueError):
        return False
    return True
