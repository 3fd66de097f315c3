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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runtime_dir() -> Path:
    """Jupyter's runtime directory (where kernels keep their connection files)."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def write_record(address: str, http_port: int | None, dashboard_url: str | None, embedded: bool) -> Path:
    """Write this process's record, replacing an earlier one of the same process; returns its path."""
    record = ClusterRecord(address, http_port, dashboard_url, os.getpid(), kernel_id(), time.time(), embedded)
    directory = runtime_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{PREFIX}{os.getpid()}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record.to_dict()))
    partial.replace(path)  # readers never see half a record
    atexit.register(remove_record, path)
    return path


def remove_record(path: Path | None) -> None:
    """Remove a record; idempotent."""
    if path is not None:
        path.unlink(missing_ok=True)


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
