"""The Jupyter server's side of a driver process: start it, send requests, await answers, on asyncio.

Nothing here blocks the event loop: the child is spawned with asyncio, its lines are read by a
task, and every call has a timeout. When the child exits (the cluster went away, or Ray gave up
on it) every waiting call fails with ClusterUnavailable and the client reports itself dead, so the
manager starts a fresh one on the next request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from servelab.jupyter_ext.driver import GREETING

LINE_LIMIT = 64 * 2**20  # a model of a large cluster is one long line


class ClusterUnavailable(Exception):
    """The cluster cannot be asked now: ``status`` says why (unreachable, ray-missing, timeout)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DriverFailed(Exception):
    """The driver answered with an error: ``kind`` is servelab's exception class name, or "internal"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class DriverClient:
    """One driver process attached to ``address``."""

    def __init__(self, address: str, argv: list[str], env: dict[str, str], log: logging.Logger) -> None:
        self.address = address
        self._argv = argv
        self._env = env
        self._log = log
        self._process: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(GREETING + 1)
        self._waiting: dict[int, tuple[asyncio.Future[Any], Callable[[dict[str, Any]], None] | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ended = False  # its answers ended: it exited, or is about to

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None and not self._ended

    @property
    def busy(self) -> bool:
        """A call is in flight (a compaction, say): not the moment to kill the driver for a slow read."""
        return bool(self._waiting)

    async def start(self, timeout_s: float) -> None:
        """Spawn the driver and wait for its greeting; ClusterUnavailable when it cannot attach."""
        self._process = await asyncio.create_subprocess_exec(
            *self._argv,
            self.address,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env,
            limit=LINE_LIMIT,
        )
        greeting: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[GREETING] = (greeting, None)
        self._tasks = [asyncio.create_task(self._read_answers()), asyncio.create_task(self._read_log())]
        try:
            await self._wait(GREETING, greeting, timeout_s)
        except DriverFailed as exc:
            await self.close()
            status = "ray-missing" if exc.kind == "ray-missing" else "unreachable"
            raise ClusterUnavailable(status, exc.message) from None
        except ClusterUnavailable:
            await self.close()
            raise

    async def call(
        self, op: str, args: dict[str, Any], timeout_s: float, on_event: Callable[[dict[str, Any]], None] | None = None
    ) -> Any:
        """Send one request and await its answer; events it emits meanwhile go to ``on_event``."""
        if not self.alive or self._process is None or self._process.stdin is None:
            raise ClusterUnavailable("unreachable", f"the driver for {self.address} is not running")
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = (future, on_event)
        self._process.stdin.write((json.dumps({"id": rid, "op": op, "args": args}) + "\n").encode())
        await self._process.stdin.drain()
        return await self._wait(rid, future, timeout_s)

    async def close(self) -> None:
        """Stop the driver: closing its stdin ends it; a kill follows when it lingers."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        for task in self._tasks:
            task.cancel()
        self._fail_all("the servelab driver was stopped")

    async def _wait(self, rid: int, future: asyncio.Future[Any], timeout_s: float) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise ClusterUnavailable(
                "timeout",
                f"the cluster at {self.address} did not answer within {timeout_s:.0f} s; it may be overloaded or gone.",
            ) from None
        finally:
            if future.done():
                self._waiting.pop(rid, None)

    async def _read_answers(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        while line := await stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                self._log.warning("servelab driver for %s wrote a line that is not JSON: %r", self.address, line[:200])
                continue
            future, on_event = self._waiting.get(message.get("id"), (None, None))
            if future is None:
                continue
            if "event" in message:
                if on_event is not None:
                    on_event(message["event"])
            elif not future.done():
                if message.get("ok"):
                    future.set_result(message.get("result"))
                else:
                    future.set_exception(DriverFailed(message.get("kind", "internal"), message.get("error", "")))
                self._waiting.pop(message["id"], None)
        self._ended = True
        self._fail_all(
            f"the connection to the cluster at {self.address} was lost (its Ray driver exited); is the cluster still up?"
        )

    async def _read_log(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        while chunk := await self._process.stderr.read(2**16):  # read it all, or a full pipe would stall the driver
            for line in chunk.decode(errors="replace").splitlines():
                self._log.debug("servelab driver %s: %s", self.address, line)

    def _fail_all(self, message: str) -> None:
        for future, _ in self._waiting.values():
            if not future.done():
                future.set_exception(ClusterUnavailable("unreachable", message))
        self._waiting.clear()
