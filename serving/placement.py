"""Placement rules: whether a replica may go on a node (room for its resources, labels that match,
the deployment's max replicas per node), and which are stuck.

GPUs are counted per instance, as the raylet allocates them: a whole-GPU replica needs entirely free
GPUs, so two half-free GPUs ("1.0 GPU free" to Ray's schedulers) cannot take it. ``Room`` is the one
answer to "may replica R go on node N, given the moves before it" for the executor and the steering;
the planner holds the same rules in arrays for speed, and tests/serving/test_placement.py checks that
every move it plans is one ``Room`` allows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from servelab.serving.snapshot import Node, Replica, Snapshot

EPSILON = 1e-6


def fits(free: dict[str, float], need: dict[str, float]) -> bool:
    """Whether ``need`` fits into ``free`` (absent resources count as zero)."""
    return all(free.get(name, 0.0) + EPSILON >= amount for name, amount in need.items() if amount > 0)


def gpu_instances(node: Node) -> list[float]:
    """Free GPU per instance: as read from the raylet, or where unknown the scalar split as evenly
    as it can be (whole GPUs first, then the fraction), which is what a scalar view assumes."""
    if node.gpu_free is not None:
        return list(node.gpu_free)
    free = node.available.get("GPU", 0.0)
    whole = math.floor(free + EPSILON)
    rest = [free - whole] if free - whole > EPSILON else []
    return [1.0] * whole + rest + [0.0] * max(int(node.total.get("GPU", 0.0)) - whole - len(rest), 0)


def take_gpu(instances: Sequence[float], demand: float) -> list[float] | None:
    """``instances`` after the raylet allocates ``demand`` GPUs there, or None where it cannot: a whole
    demand takes the first entirely free instances, a fraction the best-fitting instance
    (``NodeResourceInstanceSet::TryAllocate``)."""
    left = list(instances)
    if demand <= EPSILON:
        return left
    if demand >= 1.0 - EPSILON:
        whole = [i for i, free in enumerate(left) if free >= 1.0 - EPSILON][: round(demand)]
        if len(whole) < round(demand):
            return None
        for i in whole:
            left[i] = 0.0
        return left
    options = [i for i, free in enumerate(left) if free + EPSILON >= demand]
    if not options:
        return None
    best = min(options, key=lambda i: left[i])
    left[best] -= demand
    return left


SERVE_ORDER = ("GPU", "CPU", "memory")  # how Ray Serve compares what a node has left: GPU first


def leftover_key(free: dict[str, float], need: dict[str, float]) -> tuple[float, ...]:
    """What a node would have left after taking ``need``, as Ray Serve's pack scheduler compares it
    (``_best_fit_node``: GPU, then CPU, then memory, then other resources by name; smallest wins)."""
    names = [*SERVE_ORDER, *sorted(set(free) - set(SERVE_ORDER))]
    return tuple(free.get(name, 0.0) - need.get(name, 0.0) for name in names)


def labels_match(labels: dict[str, str], selector: dict[str, str]) -> bool:
    """Whether ``labels`` (a node's, or a node type's) hold every label of a replica's label selector."""
    return all(labels.get(key) == value for key, value in selector.items())


def label_match(node: Node, selector: dict[str, str]) -> bool:
    """Whether ``node`` carries every label of a replica's label selector."""
    return labels_match(node.labels, selector)


@dataclass
class Room:
    """What the nodes that may take replicas have left, updated as replicas are placed one by one.

    Open nodes are the alive, undrained ones not ``leaving``; each keeps its free resources, free GPU
    instances and the replicas it hosts (for max replicas per node).

    >>> room = Room.of(snap, leaving=["node-3"])
    >>> room.why_not(replica, "node-1") or room.place(replica, "node-1")
    """

    nodes: dict[str, Node]
    free: dict[str, dict[str, float]]
    gpus: dict[str, list[float]]
    hosting: dict[str, list[Replica]] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshot: Snapshot, leaving: Iterable[str] = ()) -> Room:
        gone = set(leaving)
        open_ = {n.id: n for n in snapshot.nodes if n.alive and not n.draining and n.id not in gone}
        hosting: dict[str, list[Replica]] = {n: [] for n in open_}
        for replica in snapshot.replicas:
            if replica.node_id in hosting:
                hosting[replica.node_id].append(replica)
        return cls(
            open_,
            {n: dict(node.available) for n, node in open_.items()},
            {n: gpu_instances(node) for n, node in open_.items()},
            hosting,
        )

    def copy(self) -> Room:
        return Room(
            dict(self.nodes),
            {n: dict(f) for n, f in self.free.items()},
            {n: list(g) for n, g in self.gpus.items()},
            {n: list(h) for n, h in self.hosting.items()},
        )

    def close(self, node_id: str) -> list[Replica]:
        """Take ``node_id`` out (it drains): it takes nothing more; returns the replicas it hosted."""
        self.nodes.pop(node_id, None)
        self.free.pop(node_id, None)
        self.gpus.pop(node_id, None)
        return self.hosting.pop(node_id, [])

    def serve_would_consider(self, replica: Replica, node_id: str) -> bool:
        """Whether Ray Serve's scheduler counts ``node_id`` as a place for ``replica``: its scalar
        resources, labels and max replicas per node (not GPU instances, which only the raylet sees)."""
        return not self._scalar_reason(replica, node_id)

    def why_not(self, replica: Replica, node_id: str) -> str:
        """Why ``replica`` may not start on ``node_id`` now, or '' where it may."""
        return self._scalar_reason(replica, node_id) or (
            ""
            if take_gpu(self.gpus[node_id], replica.resources.get("GPU", 0.0)) is not None
            else "its free GPU is split across GPU instances"
        )

    def place(self, replica: Replica, node_id: str) -> None:
        """Count ``replica`` as started on ``node_id``."""
        self.free[node_id] = {k: v - replica.resources.get(k, 0.0) for k, v in self.free[node_id].items()}
        self.gpus[node_id] = take_gpu(self.gpus[node_id], replica.resources.get("GPU", 0.0)) or []
        self.hosting[node_id].append(replica)

    def _scalar_reason(self, replica: Replica, node_id: str) -> str:
        if node_id not in self.nodes:
            return "the node is draining, gone or leaving"
        if not fits(self.free[node_id], replica.resources):
            return "not enough free resources"
        if not label_match(self.nodes[node_id], replica.label_selector):
            return "its labels do not match the replica's label selector"
        limit = replica.max_replicas_per_node
        if limit is not None and sum(1 for r in self.hosting[node_id] if r.key == replica.key) >= limit:
            return f"it already runs max_replicas_per_node={limit} of the deployment"
        return ""


@dataclass(frozen=True)
class NoRoom:
    """New replicas that no open node has room for now: how many of those asked, and the largest
    free room any open node has (Serve's order: GPU, then CPU, then memory), in the resources the
    replica asks for, with that node's id."""

    unplaced: int
    asked: int
    largest_free: dict[str, float]
    node_id: str | None


def place_new(
    snapshot: Snapshot,
    shape: dict[str, float],
    count: int,
    key: tuple[str, str] = ("", ""),
    label_selector: dict[str, str] | None = None,
    max_replicas_per_node: int | None = None,
) -> NoRoom | None:
    """Start ``count`` new replicas of ``shape`` (deployment ``key``) one by one where Serve's pack
    scheduler would, on the nodes open now; None when every one finds room, else what is missing.

    >>> place_new(snap, {"GPU": 1.0}, 2)
    NoRoom(unplaced=1, asked=2, largest_free={'GPU': 0.5}, node_id='node-2')
    """
    room = Room.of(snapshot)
    largest = max(room.nodes, key=lambda n: tuple(room.free[n].get(r, 0.0) for r in SERVE_ORDER), default=None)
    # In the resources the replica asks for: a node's free memory or CPU says nothing of a GPU that does not fit.
    asked = {k for k, v in shape.items() if v > EPSILON}
    largest_free = {k: v for k, v in room.free[largest].items() if k in asked and v > EPSILON} if largest else {}
    unplaced = 0
    for i in range(count):
        replica = Replica(
            f"new-{i}", key[1], key[0], None, shape, state="STARTING",
            label_selector=label_selector or {}, max_replicas_per_node=max_replicas_per_node,
        )  # fmt: skip
        options = [n for n in room.nodes if not room.why_not(replica, n)]
        if not options:
            unplaced += 1
            continue
        room.place(replica, min(options, key=lambda n: leftover_key(room.free[n], shape)))
    return NoRoom(unplaced, count, largest_free, largest) if unplaced else None


def stuck(snapshot: Snapshot, after_s: float) -> list[Replica]:
    """Replicas on no node for over ``after_s`` seconds although an alive, undrained node has room now.

    A replica merely waiting for capacity is not stuck; one Ray keeps pending while a node could
    take it is (seen after a node's raylet was killed: the replacement stayed STARTING for minutes).
    """
    room = [n for n in snapshot.nodes if n.alive and not n.draining]
    return [
        r
        for r in snapshot.unplaced
        if r.started_at is not None
        and snapshot.taken_at - r.started_at > after_s
        and any(fits(n.available, r.resources) and label_match(n, r.label_selector) for n in room)
    ]
