"""A cluster read once into plain data: nodes, replicas and their resources. JSON both ways.

Every decision servelab makes about a cluster (fragmentation, compaction plans) is a pure function
of a Snapshot, so it can be tested and benchmarked on synthetic clusters of any size without Ray.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from servelab.serving.gpu_metrics import GpuProcess, GpuReading

SHORT_ID = 8  # characters of a node or replica id that every view shows: unique in practice, short to read


def short_id(identifier: str) -> str:
    """The id as every view and message shows it: ``3f2a1c9e``."""
    return identifier[:SHORT_ID]


# Default price list for nodes without an explicit cost: roughly on-demand cloud prices per hour.
DEFAULT_PRICES = {"GPU": 2.0, "CPU": 0.04, "memory": 0.005 / 2**30}


def default_cost(total: dict[str, float]) -> float:
    """Cost per hour of a node priced by its resources (DEFAULT_PRICES)."""
    return sum(price * total.get(resource, 0.0) for resource, price in DEFAULT_PRICES.items())


def format_resources(resources: dict[str, float]) -> str:
    """``{"GPU": 0.5, "CPU": 2, "memory": 2**31}`` as ``"CPU 2, GPU 0.5, memory 2 GiB"`` for messages
    and views: sorted, zeros left out, memory (bytes to Ray) in GiB as people read it."""
    return ", ".join(
        f"memory {round(v / 2**30, 1):g} GiB" if k == "memory" else f"{k} {v:g}" for k, v in sorted(resources.items()) if v
    )


@dataclass(frozen=True)
class Node:
    """One node: its totals, what is free now, labels, state and price."""

    id: str
    type: str
    total: dict[str, float]
    available: dict[str, float]
    labels: dict[str, str] = field(default_factory=dict)
    alive: bool = True
    draining: bool = False
    head: bool = False
    cost_per_hour: float | None = None
    drained_by: str | None = None  # "servelab", "ray" (Serve's own node compaction) or "other" (an operator, an autoscaler)
    gpu_free: tuple[float, ...] | None = None  # free GPU per instance as the raylet holds it; None: not read

    @property
    def cost(self) -> float:
        return default_cost(self.total) if self.cost_per_hour is None else self.cost_per_hour


@dataclass(frozen=True)
class ModelCount:
    """One model on one multiplexed replica: requests it served, how often it was loaded and evicted."""

    model_id: str
    requests: int = 0
    misses: int = 0  # loads: the model was not on the replica
    evictions: int = 0
    errors: int = 0  # loads that failed (no such model, a bad checkpoint)
    load_s: float = 0.0
    nbytes: int = 0
    loaded: bool = False  # on the replica now

    @property
    def hits(self) -> int:
        """Requests answered with the model already loaded."""
        return self.requests - self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.requests if self.requests else None

    @property
    def mean_load_s(self) -> float | None:
        return self.load_s / self.misses if self.misses else None

    def __add__(self, other: ModelCount) -> ModelCount:
        """Both counts summed (one model on two replicas, or a count and its change); loaded if either is."""
        return ModelCount(
            self.model_id,
            self.requests + other.requests,
            self.misses + other.misses,
            self.evictions + other.evictions,
            self.errors + other.errors,
            self.load_s + other.load_s,
            self.nbytes + other.nbytes,
            self.loaded or other.loaded,
        )


@dataclass(frozen=True)
class Replica:
    """One Serve replica: where it runs and what it holds there."""

    id: str
    deployment: str
    app: str
    node_id: str | None
    resources: dict[str, float]
    state: str = "RUNNING"
    label_selector: dict[str, str] = field(default_factory=dict)
    max_replicas_per_node: int | None = None
    started_at: float | None = None  # when Serve created it (epoch seconds)
    actor_name: str | None = None
    models: tuple[ModelCount, ...] = ()  # multiplexed deployments: per-model counts, as the replica last reported them
    pid: int | None = None  # its process: matched against NVML's per-process GPU memory

    @property
    def key(self) -> tuple[str, str]:
        """(app, deployment): replicas of one deployment share a shape and placement rules."""
        return (self.app, self.deployment)


@dataclass(frozen=True)
class DeploymentInfo:
    """One Serve deployment: its status, target and replica counts, and what each replica holds."""

    name: str
    app: str
    status: str
    target_replicas: int
    running_replicas: int
    replicas: int  # in any state: starting, stopping and migrating ones too
    resources: dict[str, float]
    route_prefix: str | None
    autoscaling: bool = False
    message: str = ""

    @property
    def at_target(self) -> bool:
        """HEALTHY with exactly its target running (replicas may still be stopping)."""
        return self.status == "HEALTHY" and self.running_replicas == self.target_replicas

    @property
    def healthy(self) -> bool:
        """At its target with no replica in transition."""
        return self.at_target and self.running_replicas == self.replicas


@dataclass(frozen=True)
class CacheEntry:
    """One checkpoint in the peer weight cache."""

    uri: str
    nbytes: int
    reads: int  # replicas that loaded it from the cache
    published_by: str
    published_at: float
    last_used: float
    node: str = ""  # where its bytes are held (by that node's holder)


@dataclass(frozen=True)
class NodeState:
    """A live node as the autoscaler sees it: ``running`` (hosts work) or ``idle`` since ``idle_s``."""

    node_id: str
    type: str
    status: str  # "running" | "idle"
    idle_s: float = 0.0


@dataclass(frozen=True)
class Demand:
    """Resources the cluster cannot place now: ``count`` bundles of ``bundle``."""

    bundle: dict[str, float]
    count: int


@dataclass(frozen=True)
class AutoscalerState:
    """What Ray's autoscaler is doing: live nodes, nodes it is launching, demand it cannot place yet."""

    nodes: tuple[NodeState, ...] = ()
    launching: tuple[tuple[str, int], ...] = ()  # (node type, count) requested or starting
    demand: tuple[Demand, ...] = ()
    dead: tuple[str, ...] = ()  # node ids of nodes gone (terminated, or lost)

    @property
    def busy(self) -> bool:
        """Whether the autoscaler is launching nodes, or has demand it has not met."""
        return bool(self.launching or self.demand)

    def node(self, node_id: str) -> NodeState | None:
        return next((n for n in self.nodes if n.node_id == node_id), None)

    def terminated(self, node_id: str) -> bool:
        """Whether the node is gone from the autoscaler's live nodes (terminated, or lost)."""
        return self.node(node_id) is None and node_id in self.dead

    def describe(self) -> str:
        """One line on what the autoscaler does, or '' when it is at rest.

        >>> AutoscalerState(launching=(("cpu2", 1),), demand=(Demand({"CPU": 1.0}, 3),)).describe()
        '3 request(s) of 1 CPU wait for a node: launching 1 node(s) of type cpu2'
        """
        waiting = ", ".join(f"{d.count} request(s) of {format_resources(d.bundle)}" for d in self.demand)
        launching = ", ".join(f"{count} node(s) of type {name}" for name, count in self.launching)
        if waiting and launching:
            return f"{waiting} wait for a node: launching {launching}"
        if waiting:
            return f"{waiting} wait for a node; none is launching for them yet (or every type that fits is at its max)"
        if launching:
            return f"launching {launching}"
        return ""


@dataclass(frozen=True)
class Snapshot:
    """Nodes, replicas and deployments at one moment (and, read in full, what the peer weight cache holds)."""

    nodes: tuple[Node, ...]
    replicas: tuple[Replica, ...]
    taken_at: float = field(default_factory=time.time)
    deployments: tuple[DeploymentInfo, ...] = ()
    weight_cache: tuple[CacheEntry, ...] = ()
    gpu_mode: str = ""  # "physical" or "logical" for a cluster up() started; "" where unknown
    gpus: tuple[GpuReading, ...] = ()  # NVML's readings of the physical GPUs the raylets hold (physical mode)
    autoscaler: AutoscalerState | None = None  # what Ray's autoscaler does, where it reports (read in full only)

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def replicas_on(self, node_id: str) -> list[Replica]:
        return list(self._by_node.get(node_id, ()))

    @cached_property
    def derived(self) -> dict[str, Any]:
        """Figures computed from this snapshot (it never changes), kept by the functions that compute
        them: the header, the bars and the cells of one refresh each ask for stranded capacity."""
        return {}

    @cached_property
    def _by_node(self) -> dict[str | None, list[Replica]]:
        """Replicas by node, built once: views ask every node of a 1000-node cluster for its replicas."""
        index: dict[str | None, list[Replica]] = defaultdict(list)
        for replica in self.replicas:
            index[replica.node_id].append(replica)
        return dict(index)

    def cached_on(self, node_id: str) -> int:
        """Bytes of checkpoints the peer weight cache holds in ``node_id``'s object store."""
        return sum(e.nbytes for e in self.weight_cache if e.node == node_id)

    def gpus_on(self, node_id: str) -> list[GpuReading]:
        """The physical GPUs ``node_id``'s raylet was given, as NVML last read them."""
        return [g for g in self.gpus if g.node_id == node_id]

    def gpu_memory_of(self, replica: Replica) -> int | None:
        """Bytes of GPU memory the replica's process holds (NVML); None where that cannot be read."""
        if replica.pid is None or not self.gpus:
            return None
        held = [p.memory for g in self.gpus for p in g.processes if p.pid == replica.pid]
        return sum(held) if held or any(g.processes for g in self.gpus) else None

    @property
    def unplaced(self) -> list[Replica]:
        """Replicas Serve has placed on no node yet: starting, or stuck where nothing can take them."""
        return [r for r in self.replicas if r.node_id is None]

    @property
    def foreign_drains(self) -> list[Node]:
        """Nodes being emptied by something other than servelab: Ray's own compaction, an operator, an autoscaler."""
        return [n for n in self.nodes if n.draining and n.drained_by != "servelab"]

    @property
    def workers(self) -> list[Node]:
        """Alive nodes other than the head."""
        return [n for n in self.nodes if n.alive and not n.head]

    def all_healthy(self) -> bool:
        """True when every deployment is HEALTHY at its target with no replica in transition."""
        return all(d.healthy for d in self.deployments)

    def replaced(self, node_ids: list[str]) -> bool:
        """Every replica these nodes held runs elsewhere now: all that is left on them is STOPPING
        (finishing its last requests, out of routing), and every deployment is back at its target."""
        leaving = [r for r in self.replicas if r.node_id in node_ids]
        return (
            all(r.state == "STOPPING" for r in leaving)
            and all(r.state in ("RUNNING", "STOPPING") for r in self.replicas)
            and all(d.at_target for d in self.deployments)
        )

    def settled(self) -> bool:
        """Nothing in motion: every deployment healthy at its target and no node draining."""
        return self.all_healthy() and not any(n.draining for n in self.nodes)

    @property
    def resource_names(self) -> list[str]:
        names = {name for node in self.nodes for name in node.total}
        names |= {name for replica in self.replicas for name in replica.resources}
        return sorted(names)

    def fingerprint(self) -> str:
        """Identifies the placement a plan was made for: alive nodes, draining flags, replica placement."""
        nodes = sorted((n.id, n.alive, n.draining) for n in self.nodes)
        return _digest([nodes, self._placement()])

    def placement(self) -> str:
        """Identifies where the replicas run and in what state, whatever idle nodes come and go: the
        change that restarts automatic compaction's quiet delay (an autoscaler's idle nodes do not)."""
        return _digest(self._placement())

    def _placement(self) -> list[tuple[str, str, str]]:
        return sorted((r.id, r.node_id or "", r.state) for r in self.replicas)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            nodes=tuple(Node(**{**n, "gpu_free": _tuple(n.get("gpu_free"))}) for n in data["nodes"]),
            replicas=tuple(
                Replica(**{**r, "models": tuple(ModelCount(**m) for m in r.get("models", ()))}) for r in data["replicas"]
            ),
            taken_at=data.get("taken_at", 0.0),
            deployments=tuple(DeploymentInfo(**d) for d in data.get("deployments", ())),
            weight_cache=tuple(CacheEntry(**e) for e in data.get("weight_cache", ())),
            gpu_mode=data.get("gpu_mode", ""),
            gpus=tuple(
                GpuReading(**{**g, "processes": tuple(GpuProcess(**p) for p in g.get("processes", ()))})
                for g in data.get("gpus", ())
            ),
            autoscaler=_autoscaler_from(data.get("autoscaler")),
        )

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        return cls.from_dict(json.loads(text))


def _autoscaler_from(data: dict[str, Any] | None) -> AutoscalerState | None:
    if data is None:
        return None
    return AutoscalerState(
        nodes=tuple(NodeState(**n) for n in data.get("nodes", ())),
        launching=tuple((name, count) for name, count in data.get("launching", ())),
        demand=tuple(Demand(**d) for d in data.get("demand", ())),
        dead=tuple(data.get("dead", ())),
    )


def _tuple(values: list[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(values)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]
