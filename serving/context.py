"""The one piece of process state: the Session that ``up()`` or ``connect()`` made, dropped by ``down()``.

Like Ray Serve's ``context.py`` keeps its global client, this module keeps the Session; every other
module asks for it through ``current()``. What deployments exist is never kept here: it is read
from Serve, so two processes on one cluster see the same thing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servelab.errors import ClusterError
from servelab.serving.autoscaler import NodeLimits
from servelab.serving.gpus import GpuPlan


@dataclass(frozen=True)
class NodeType:
    """A kind of worker node: its resources, labels and price per hour (None: priced by resources)."""

    cpus: float = 1
    gpus: float = 0
    memory: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    cost_per_hour: float | None = None

    def __post_init__(self) -> None:
        for name in ("cpus", "gpus", "memory"):
            value = getattr(self, name)
            if value is None and name == "memory":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ClusterError(f"{name}={value!r}: resources must be non-negative numbers.")
        price = self.cost_per_hour
        if price is not None and (isinstance(price, bool) or not isinstance(price, int | float) or price < 0):
            raise ClusterError(f"cost_per_hour={price!r} must be a non-negative number.")

    @property
    def resources(self) -> dict[str, float]:
        """A node of this type's resources as Ray names them."""
        return {"CPU": self.cpus, "GPU": self.gpus, **({"memory": float(self.memory)} if self.memory is not None else {})}


@dataclass
class Session:
    """What this process knows about the cluster it works on.

    ``embedded`` is the ``ray.cluster_utils.Cluster`` when this process started the cluster (it owns
    it and ``down()`` stops it), None when it attached to one. ``workers`` maps node ids to the
    raylets this process started, so it can remove them again.
    """

    address: str
    embedded: Any | None
    node_types: dict[str, NodeType]
    workers: dict[str, Any] = field(default_factory=dict)
    record: Path | None = None
    started_at: float = field(default_factory=time.time)
    auth_env: dict[str, str | None] | None = None  # what use_token() replaced: put back by down()
    gpu_plan: GpuPlan | None = None  # how up() gave the machine's GPUs to raylets; None for a cluster it did not start
    machine_gpus: tuple[int, ...] = ()  # the physical GPUs up() could hand out
    gpu_devices: dict[str, tuple[int, ...]] = field(default_factory=dict)  # worker node id -> its physical GPUs
    autoscaling: dict[str, NodeLimits] | None = None  # node type -> its limits, where Ray's autoscaler owns the workers

    @property
    def owner(self) -> bool:
        return self.embedded is not None

    @property
    def removes_nodes(self) -> bool:
        """Whether servelab itself removes a freed node (the fixed embedded cluster, standing in for an
        autoscaler); elsewhere an autoscaler terminates it once idle."""
        return self.embedded is not None and self.autoscaling is None


_session: Session | None = None
lock = threading.RLock()  # held while a session is made or dropped


def current() -> Session:
    """The session up() or connect() made; a clear error when there is none."""
    if _session is None:
        raise ClusterError("no cluster yet: start one with up() (%servelab up) or attach with connect() (%servelab connect).")
    return _session


def get() -> Session | None:
    """The session, or None: for callers that work with or without a cluster (status, widgets)."""
    return _session


def set_session(session: Session | None) -> Session | None:
    """Install ``session`` (None drops it); returns the one it replaced."""
    global _session
    previous, _session = _session, session
    return previous
