"""Placement rules: whether a replica may go on a node (room for its resources, labels that match), and which are stuck.

GPUs are counted per instance, as the raylet allocates them: a whole-GPU replica needs entirely free
GPUs, so two half-free GPUs ("1.0 GPU free" to Ray's schedulers) cannot take it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def label_match(node: Node, selector: dict[str, str]) -> bool:
    """Whether ``node`` carries every label of a replica's label selector."""
    return all(node.labels.get(key) == value for key, value in selector.items())


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
