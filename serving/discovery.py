"""Discovery records: how other kernels and the Jupyter server find the clusters this machine runs.

``up()`` and ``connect()`` write one small JSON file into Jupyter's runtime directory (address,
Serve HTTP port, dashboard URL, owner pid, kernel id, start time); ``down()`` and process exit
remove it. Readers skip records whose owner process is gone, so a crashed kernel leaves nothing
that looks alive.

>>> [r.address for r in find_clusters()]
['10.0.0.2:6379']
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("servelab.serving")
PREFIX = "servelab-cluster-"


@dataclass(frozen=True)
class ClusterRecord:
    """One cluster a process on this machine started or attached to."""

    address: str
    http_port: int | None
    dashboard_url: str | None
    pid: int
    kernel_id: str | None
    started_at: float
    embedded: bool
    token_path: str | None = None  # the cluster's Ray auth token, in a file only this user can read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runtime_dir() -> Path:
    """Jupyter's runtime directory (where kernels keep their connection files)."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def write_record(
    address: str, http_port: int | None, dashboard_url: str | None, embedded: bool, token: str | None = None
) -> Path:
    """Write this process's record (and the cluster's token beside it), both readable by this user
    alone, replacing an earlier one of the same process; returns the record's path."""
    directory = runtime_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{PREFIX}{os.getpid()}.json"
    token_path = None
    if token is not None:
        token_path = path.with_suffix(".token")
        _write_private(token_path, token)
    record = ClusterRecord(
        address,
        http_port,
        dashboard_url,
        os.getpid(),
        kernel_id(),
        time.time(),
        embedded,
        str(token_path) if token_path else None,
    )
    _write_private(path, json.dumps(record.to_dict()))
    atexit.register(remove_record, path)
    return path


def remove_record(path: Path | None) -> None:
    """Remove a record and its token file; idempotent."""
    if path is not None:
        path.with_suffix(".token").unlink(missing_ok=True)
        path.unlink(missing_ok=True)


def token_for(address: str, directory: Path | None = None) -> str | None:
    """The auth token of the cluster at ``address``, from the newest live record that has one."""
    for record in find_clusters(directory):
        if record.address == address and record.token_path:
            try:
                return Path(record.token_path).read_text().strip()
            except OSError as exc:
                log.debug("cannot read the token of %s: %s", address, exc)
    return None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte; readers never see half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    partial.replace(path)


def find_clusters(directory: Path | None = None) -> list[ClusterRecord]:
    """Records of clusters whose owner process still runs, newest first."""
    directory = directory or runtime_dir()
    records = []
    for path in directory.glob(f"{PREFIX}*.json"):
        try:
            record = ClusterRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            log.debug("skipping unreadable discovery record %s: %s", path, exc)
            continue
        if pid_alive(record.pid):
            records.append(record)
    return sorted(records, key=lambda r: r.started_at, reverse=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def kernel_id() -> str | None:
    """The id of the Jupyter kernel this process is, from its connection file name; None outside one."""
    if "ipykernel" not in sys.modules:
        return None
    from ipykernel.kernelapp import IPKernelApp

    if not isinstance(IPKernelApp._instance, IPKernelApp):  # no kernel here; maybe a Jupyter server (a sibling singleton)
        return None
    try:
        from ipykernel import get_connection_file

        name = Path(get_connection_file()).stem
    except (RuntimeError, AttributeError):
        return None
    return name.removeprefix("kernel-")
