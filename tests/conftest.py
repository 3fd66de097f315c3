"""Fixtures shared by every test package: real storage servers started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from servelab.testing import NginxServer, SeaweedS3Server


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
