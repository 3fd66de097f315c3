"""The server extension on a real Jupyter server (pytest-jupyter), over a real embedded cluster.

The cluster is the one the serving tests use (this package runs right after them): this process owns
it, and the server's driver processes attach to it as any other process on the machine would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

# pytest-jupyter's fixtures and hooks (jp_fetch, coroutine tests, an event loop per test), for this
# package alone: its per-test loop would close the loop Playwright runs in elsewhere.
from pytest_jupyter.jupyter_core import *  # noqa: F403
from pytest_jupyter.jupyter_server import *  # noqa: F403

from servelab.jupyter_ext import ClusterManager
from tests.serving.conftest import cluster, fragmented, reset  # noqa: F401 - fixtures

SLOW = 180  # seconds: a driver attaching and a cluster read on two loaded cores


@pytest.fixture
def jp_server_config(cluster: str) -> dict[str, Any]:  # noqa: F811
    return {"ServerApp": {"jpserver_extensions": {"servelab": True}}, "Servelab": {"address": cluster}}


@pytest.fixture
def api(jp_fetch: Any, jp_serverapp: Any, jp_asyncio_loop: Any) -> Iterator[Any]:
    """``await api("GET", "cluster")`` -> (status, JSON); the manager's drivers are stopped afterwards."""

    async def call(method: str, *path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        if body is not None:
            kwargs["body"] = body if isinstance(body, str) else json.dumps(body)
        elif method == "POST":
            kwargs["body"] = ""
        response = await jp_fetch("servelab", "api", *path, method=method, raise_error=False, request_timeout=SLOW, **kwargs)
        text = response.body.decode()
        return response.code, json.loads(text) if text.startswith("{") else text

    yield call
    manager: ClusterManager = jp_serverapp.web_app.settings["servelab_manager"]
    jp_asyncio_loop.run_until_complete(manager.close())
