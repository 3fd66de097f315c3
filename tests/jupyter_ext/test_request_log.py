"""Jupyter's log while the sidebar polls: the states a user expects (no cluster yet, a cluster that
stopped) add no warning and no request headers, and an error is said once, not on every poll."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from servelab.jupyter_ext.handlers import RequestLog
from servelab.testing import free_port

POLLS = 5  # the sidebar's requests over 10 s


@pytest.fixture
def jp_server_config() -> dict[str, Any]:  # no cluster configured, none on the machine needed
    return {"ServerApp": {"jpserver_extensions": {"servelab": True}}, "Servelab": {"address": ""}}


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def server_log(jp_serverapp: Any) -> Iterator[Kept]:
    """What the server's log receives (Jupyter's request log writes there through each handler)."""
    kept = Kept()
    logger = jp_serverapp.log
    level = logger.level
    logger.addHandler(kept)
    logger.setLevel(logging.DEBUG)
    yield kept
    logger.removeHandler(kept)
    logger.setLevel(level)


async def test_polling_without_a_cluster_logs_one_line_and_no_warning(
    api: Any, server_log: Kept, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for _ in range(POLLS):
        code, answer = await api("GET", "cluster")
        assert code == 404 and answer["status"] == "no-cluster"

    assert server_log.at(logging.WARNING) == [] and server_log.at(logging.ERROR) == []
    assert [line for line in server_log.at(logging.INFO) if "No cluster yet" in line] == [f"servelab: {answer['message']}"]
    assert sum("404 GET" in line for line in server_log.at(logging.DEBUG)) == POLLS  # each request still at debug


async def test_polling_a_cluster_that_stopped_logs_one_line_and_no_header_dump(api: Any, server_log: Kept) -> None:
    stopped = f"127.0.0.1:{free_port()}"  # nothing listens there any more
    for _ in range(POLLS):
        code, answer = await api("GET", "cluster", params={"address": stopped})
        assert code == 503 and answer["status"] == "unreachable"

    assert server_log.at(logging.WARNING) == [] and server_log.at(logging.ERROR) == []
    assert [line for line in server_log.at(logging.INFO) if stopped in line] == [f"servelab: {answer['message']}"]
    assert not any('"User-Agent"' in r.getMessage() for r in server_log.records if r.levelno > logging.DEBUG)


async def test_a_repeated_error_is_logged_once(api: Any, server_log: Kept) -> None:
    for _ in range(POLLS):
        code, answer = await api("GET", "cluster", params={"address": "not an address"})
        assert code == 400 and answer["status"] == "bad-address"

    assert len([line for line in server_log.at(logging.WARNING) if "400 GET" in line]) == 1


def test_the_request_log_says_an_error_again_once_the_route_answered_otherwise() -> None:
    log = RequestLog()
    route = "GET /servelab/api/cluster "
    assert [log.repeats(route, 503, "down"), log.repeats(route, 503, "down")] == [False, True]
    assert log.repeats(route, 504, "slow") is False  # another error
    log.repeats(route)  # a success between them
    assert log.repeats(route, 504, "slow") is False
    assert log.repeats("GET /servelab/api/cluster 10.0.0.2:6379", 504, "slow") is False  # another address
