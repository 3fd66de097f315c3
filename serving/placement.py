"""Placement rules: whether a replica may go on a node (room for its resources, labels that match), and which are stuck."""

from __future__ import annotations

from servelab.serving.snapshot import Node, Replica, Snapshot

EPSILON = 1e-6


def fits(free: dict[str, float], need: dict[str, float]) -> bool:
    """Whether ``need`` fits into ``free`` (absent resources count as zero)."""
    return all(free.get(name, 0.0) + EPSILON >= amount for name, amount in need.items() if amount > 0)


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
