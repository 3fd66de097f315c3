"""Fixtures shared by every test package: real storage servers started once per session, and the
embedded cluster that the serving and jupyter_ext packages share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from servelab.testing import NginxServer, SeaweedS3Server
from tests.serving.conftest import stop_shared_cluster

# In this order: serving's tests were written against a freshly started cluster, and the cluster
# starts in the plain environment rather than inside a pytest-jupyter test's patched one.
SHARE_A_CLUSTER = ("tests/serving/", "tests/jupyter_ext/")


def _sharing_package(item: pytest.Item) -> int | None:
    """The index in SHARE_A_CLUSTER of the package ``item`` belongs to; None for other tests."""
    return next((i for i, prefix in enumerate(SHARE_A_CLUSTER) if item.nodeid.startswith(prefix)), None)


def _uses_the_cluster(item: pytest.Item) -> bool:
    return "cluster" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the packages that share the embedded cluster back to back, where the first of their tests
    was: first their tests that need no cluster, then the others in SHARE_A_CLUSTER's order, so the
    cluster lives (and takes CPU from the tests beside it) only while it is used."""
    sharing = sorted(
        (item for item in items if _sharing_package(item) is not None),
        key=lambda item: (_uses_the_cluster(item), _sharing_package(item)),
    )  # stable
    if sharing:
        first = next(i for i, item in enumerate(items) if _sharing_package(item) is not None)
        others = [item for item in items if _sharing_package(item) is None]
        items[:] = others[:first] + sharing + others[first:]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Stop the shared cluster once the next test is not one of the packages that share it."""
    try:
        return (yield)
    finally:
        if nextitem is None or _sharing_package(nextitem) is None:
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
