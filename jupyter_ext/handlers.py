"""HTTP routes of the servelab server extension: each translates a request into a ClusterManager call.

Every route is an authenticated ``APIHandler`` under the server's ``base_url`` (XSRF-checked on
writes, as Jupyter's own API is). Answers are JSON; errors are ``{"status", "message"}`` with a 4xx
or 5xx code and a message that names the fix.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable
from typing import Any, cast

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from servelab.errors import CompactionError
from servelab.jupyter_ext.manager import ApiError, ClusterManager
from servelab.jupyter_ext.schema import API_VERSION, ClusterListing, ClusterModel, CompactionModel, PlanModel
from servelab.jupyter_ext.schema import Budget as WireBudget
from servelab.serving.budget import Budget

OBJECTIVES = ("nodes", "cost")
EXPECTED = frozenset({"no-cluster", "unreachable"})  # states the sidebar meets while it polls, not the server's errors


class RequestLog:
    """The last error each route answered, so that Jupyter's log says an error once, not on every
    poll: the sidebar asks every 2 s, and a stopped cluster gave 108 error lines with header dumps."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, str]] = {}

    def repeats(self, route: str, status: int | None = None, message: str = "") -> bool:
        """Record what ``route`` answered (``status`` None: a success); whether it is the error it gave last."""
        previous = self._last.pop(route, None)
        if status is None:
            return False
        self._last[route] = (status, message)
        return previous == (status, message)


class _AtDebug(logging.LoggerAdapter):
    """A logger whose every line goes out at debug level."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)


class BaseHandler(APIHandler):
    """Reads JSON bodies and writes ApiErrors as JSON answers."""

    manager: ClusterManager
    request_log: RequestLog
    _quiet = False

    def initialize(self, manager: ClusterManager, request_log: RequestLog) -> None:
        self.manager = manager
        self.request_log = request_log

    @property
    def log(self) -> logging.Logger:
        """What Jupyter's request log writes through: at debug level for an expected state or a repeated error."""
        logger = super().log
        # Jupyter's log_request calls debug/info/warning/error alone, which the adapter has.
        return cast(logging.Logger, _AtDebug(logger, {})) if self._quiet else logger

    async def answer(self, work: Awaitable[Any], status: int = 200) -> None:
        """Await the manager's work and write its result, or the ApiError it raised."""
        try:
            result = await work
        except ApiError as exc:
            self.fail(exc)
            return
        self.request_log.repeats(self._route())
        self.set_status(status)
        self.finish(json.dumps(result, default=str))

    def fail(self, exc: ApiError) -> None:
        repeated = self.request_log.repeats(self._route(), exc.status, exc.message)
        self._quiet = repeated or exc.kind in EXPECTED
        if exc.kind in EXPECTED and not repeated:
            super().log.info("servelab: %s", exc.message)  # once, as a state: no warning, no request headers
        self.set_status(exc.status)
        self.finish(json.dumps({"status": exc.kind, "message": exc.message}))

    def _route(self) -> str:
        return f"{self.request.method} {self.request.path} {self.get_query_argument('address', '')}"

    def body(self) -> dict[str, Any]:
        """The JSON object in the request body ({} when empty)."""
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except ValueError:
            raise ApiError(400, "bad-body", 'the body is not JSON; send a JSON object, e.g. {"objective": "nodes"}.') from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad-body", 'the body must be a JSON object, e.g. {"objective": "nodes"}.')
        return data

    def address(self, given: Any = None) -> str | None:
        address = given if given is not None else self.get_query_argument("address", None)
        if address is not None and not isinstance(address, str):
            raise ApiError(400, "bad-address", "address must be a string such as '127.0.0.1:6379'.")
        return address or None


class ClustersHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        async def listing() -> ClusterListing:
            return {
                "clusters": await self.manager.clusters(),
                "refresh_interval_s": self.manager.settings.refresh_interval_s,
                "api_version": API_VERSION,
            }

        await self.answer(listing())


class ClusterHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        async def read() -> ClusterModel:
            return await self.manager.model(self.address(), self.get_query_argument("group", None))

        await self.answer(read())


class PlansHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        async def plan() -> PlanModel:
            body = self.body()
            return await self.manager.plan(self.address(body.get("address")), planning_options(body))

        await self.answer(plan(), 201)


class CompactionsHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        async def start() -> CompactionModel:
            body = self.body()
            plan = body.get("plan")
            if plan is not None and not isinstance(plan, str):
                raise ApiError(400, "bad-plan", "plan must be the fingerprint of a plan from POST /servelab/api/plans.")
            budget = compaction_budget(body.pop("budget", None))
            release = body.pop("release_unowned_nodes", False)
            if not isinstance(release, bool):
                raise ApiError(
                    400,
                    "bad-release",
                    "release_unowned_nodes must be true or false: true confirms that freed nodes no autoscaler owns may go.",
                )
            compaction = await self.manager.start_compaction(
                self.address(body.get("address")), plan, planning_options(body), budget, release
            )
            return compaction.to_dict()

        await self.answer(start(), 202)


class CompactionHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, compaction_id: str) -> None:
        async def read() -> CompactionModel:
            return self.manager.compaction(compaction_id).to_dict()

        await self.answer(read())


class CompactionEventsHandler(BaseHandler):
    """Server-sent events: every event of a compaction (those so far first), then its end."""

    @tornado.web.authenticated
    async def get(self, compaction_id: str) -> None:
        try:
            compaction = self.manager.compaction(compaction_id)
        except ApiError as exc:
            self.fail(exc)
            return
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # proxies pass events on at once
        sent = 0
        while True:
            changed = compaction.changed
            while sent < len(compaction.events):
                self.write(f"event: event\ndata: {json.dumps(compaction.events[sent])}\n\n")
                sent += 1
            if compaction.state != "running":
                self.write(f"event: end\ndata: {json.dumps(compaction.to_dict(), default=str)}\n\n")
                break
            try:
                await self.flush()
            except tornado.iostream.StreamClosedError:
                return
            await changed.wait()
        self.finish()


class ScaleHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        async def scale() -> dict[str, Any]:
            body = self.body()
            replicas, app = body.get("replicas"), body.get("app")
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                raise ApiError(
                    400, "bad-replicas", f'replicas={replicas!r}: send a non-negative integer, e.g. {{"replicas": 2}}.'
                )
            if app is not None and not isinstance(app, str):
                raise ApiError(400, "bad-app", "app must be the name of a Serve application.")
            return await self.manager.scale(self.address(body.get("address")), name, replicas, app)

        await self.answer(scale(), 202)


def planning_options(body: dict[str, Any]) -> dict[str, Any]:
    """objective, max_moves and keep from a request body, checked."""
    options: dict[str, Any] = {}
    objective = body.get("objective", "nodes")
    if objective not in OBJECTIVES:
        raise ApiError(
            400,
            "bad-objective",
            f"objective={objective!r}: use 'nodes' (free the most nodes) or 'cost' (save the most per hour).",
        )
    options["objective"] = objective
    max_moves = body.get("max_moves")
    if max_moves is not None:
        if isinstance(max_moves, bool) or not isinstance(max_moves, int) or max_moves < 0:
            raise ApiError(
                400, "bad-max-moves", f"max_moves={max_moves!r}: send a non-negative integer, or leave it out for no limit."
            )
        options["max_moves"] = max_moves
    keep = body.get("keep", [])
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise ApiError(400, "bad-keep", "keep must be a list of node ids (from GET /servelab/api/cluster) never to free.")
    options["keep"] = keep
    unknown = set(body) - {"objective", "max_moves", "keep", "address", "plan"}
    if unknown:
        raise ApiError(
            400, "bad-body", f"unknown field(s) {sorted(unknown)}; use objective, max_moves, keep, address (and plan to compact)."
        )
    return options


def compaction_budget(given: Any) -> WireBudget:
    """A compaction's disruption budget from a request body's ``budget`` (checked here, so a bad one
    is refused before anything runs): ``{"max_draining": 2, "max_migrating": 1, "min_saving_per_move": 0.1}``."""
    if given is None:
        return {}
    names = [f.name for f in dataclasses.fields(Budget)]
    if not isinstance(given, dict) or set(given) - set(names):
        raise ApiError(400, "bad-budget", f"budget={given!r}: send an object with any of {', '.join(names)}.")
    try:
        Budget(**given)  # its own checks: whole numbers, ranges
    except (CompactionError, TypeError) as exc:  # TypeError: a number sent as a string
        raise ApiError(400, "bad-budget", f"budget: {exc}") from None
    return cast(WireBudget, given)  # Budget's fields alone, each as Budget takes it


def routes(base_url: str, manager: ClusterManager) -> list[tuple[str, type[BaseHandler], dict[str, Any]]]:
    """The extension's routes under ``base_url``."""
    api = url_path_join(base_url, "servelab", "api")
    kwargs = {"manager": manager, "request_log": RequestLog()}
    return [
        (url_path_join(api, "clusters"), ClustersHandler, kwargs),
        (url_path_join(api, "cluster"), ClusterHandler, kwargs),
        (url_path_join(api, "plans"), PlansHandler, kwargs),
        (url_path_join(api, "compactions"), CompactionsHandler, kwargs),
        (url_path_join(api, "compactions", r"(?P<compaction_id>[0-9a-f]+)"), CompactionHandler, kwargs),
        (url_path_join(api, "compactions", r"(?P<compaction_id>[0-9a-f]+)", "events"), CompactionEventsHandler, kwargs),
        (url_path_join(api, "deployments", r"(?P<name>[^/]+)", "scale"), ScaleHandler, kwargs),
    ]
