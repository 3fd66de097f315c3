"""Fixtures shared by every test package: real storage servers started once per session, and the
embedded cluster that the serving and jupyter_ext packages share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from servelab.testing import NginxServer, SeaweedS3Server
from tests.serving.conftest import stop_shared_cluster

SHARE_A_CLUSTER = ("tests/serving/", "tests/jupyter_ext/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the packages that share the embedded cluster back to back, where the first of them was."""
    sharing = [item for item in items if item.nodeid.startswith(SHARE_A_CLUSTER)]
    if sharing:
        first = items.index(sharing[0])
        others = [item for item in items if not item.nodeid.startswith(SHARE_A_CLUSTER)]
        items[:] = others[:first] + sharing + others[first:]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Stop the shared cluster once the next test is not one of the packages that share it."""
    try:
        return (yield)
    finally:
        if nextitem is None or not nextitem.nodeid.startswith(SHARE_A_CLUSTER):
            stop_shared_cluster()


def pytest_sessionfinish() -> None:
    stop_shared_cluster()  # an interrupted run


@pytest.fixture(scope="session")
def served_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory served over HTTP by nginx and mirrored into S3 by the tests that need it."""
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="session")
def nginx(served_dir: Path) -> Iterator[NginxServer]:
    with NginxServer(served_dir) as server:
        yield server


@pytest.fixture(scope="session")
def s3() -> Iterator[SeaweedS3Server]:
    with SeaweedS3Server() as server:
        yield server
