"""Fragmentation of a cluster, as pure functions of a Snapshot.

Definitions (all over alive nodes; the head node and draining nodes are never counted as freeable):

- ``nodes_in_use``: worker nodes hosting at least one replica.
- ``lower_bound``: the fewest worker nodes whose capacity could hold every replica now on workers,
  per resource (largest nodes first, after what kept nodes can take), the maximum over resources.
  No placement can use fewer nodes, so ``nodes_in_use - lower_bound`` is an upper bound on what
  compaction can free.
- ``stranded``: per resource, free capacity that the replica shapes running in the cluster cannot use,
  weighted by how common each shape is (in the spirit of FGD's fragmentation measure): for each node
  and shape, the node's free amount counts as stranded when that shape does not fit there. Never on
  the head: its capacity is Serve's (controller, proxy), not paid for replicas, and no compaction frees it.
- ``score``: ``(nodes_in_use - lower_bound) / nodes_in_use``, from 0 (packed as tightly as the lower
  bound allows) towards 1 (almost every node in use is surplus); 0 for an empty cluster.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from servelab.serving.placement import EPSILON, fits
from servelab.serving.snapshot import Node, Replica, Snapshot


@dataclass(frozen=True)
class Fragmentation:
    nodes_in_use: int
    lower_bound: int
    stranded: dict[str, float]
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worker_nodes(snapshot: Snapshot, keep: Iterable[str] = ()) -> list[Node]:
    """Alive, non-draining nodes that compaction may free: not the head, not in ``keep``."""
    kept = set(keep)
    return [n for n in snapshot.nodes if n.alive and not n.draining and not n.head and n.id not in kept]


def nodes_in_use(snapshot: Snapshot, keep: Iterable[str] = ()) -> int:
    hosting = {r.node_id for r in snapshot.replicas}
    return sum(1 for node in worker_nodes(snapshot, keep) if node.id in hosting)


def lower_bound(snapshot: Snapshot, keep: Iterable[str] = ()) -> int:
    """Fewest worker nodes that could hold every replica now on workers (see module docstring)."""
    workers = worker_nodes(snapshot, keep)
    worker_ids = {n.id for n in workers}
    placed = [r for r in snapshot.replicas if r.node_id in worker_ids]
    if not placed:
        return 0
    fixed = [n for n in snapshot.nodes if n.alive and not n.draining and n.id not in worker_ids]
    bound = 0
    for name in snapshot.resource_names:
        demand = sum(r.resources.get(name, 0.0) for r in placed)
        demand -= sum(n.available.get(name, 0.0) for n in fixed)  # what kept nodes can still take
        count, capacities = 0, sorted((n.total.get(name, 0.0) for n in workers), reverse=True)
        while demand > EPSILON and count < len(capacities):
            demand -= capacities[count]
            count += 1
        bound = max(bound, count)
    return bound


def stranded_by_node(snapshot: Snapshot) -> dict[str, dict[str, float]]:
    """Per alive, non-draining worker: free capacity the running replica shapes cannot use (module
    docstring); computed once per snapshot, and not to be changed by the caller."""
    if "stranded_by_node" not in snapshot.derived:
        snapshot.derived["stranded_by_node"] = _stranded_by_node(snapshot)
    result: dict[str, dict[str, float]] = snapshot.derived["stranded_by_node"]
    return result


def _stranded_by_node(snapshot: Snapshot) -> dict[str, dict[str, float]]:
    shapes = Counter(_shape(r) for r in snapshot.replicas)
    total = sum(shapes.values())
    names = snapshot.resource_names
    result = {}
    for node in snapshot.nodes:
        if not node.alive or node.draining or node.head:
            continue
        amounts = dict.fromkeys(names, 0.0)
        for shape, count in shapes.items():
            if not fits(node.available, dict(shape)):
                for name, free in node.available.items():
                    if name in amounts:
                        amounts[name] += free * count / total
        result[node.id] = amounts
    return result


def stranded(snapshot: Snapshot) -> dict[str, float]:
    """Free capacity per resource that the running replica shapes cannot use, summed over nodes."""
    result = dict.fromkeys(snapshot.resource_names, 0.0)
    for amounts in stranded_by_node(snapshot).values():
        for name, amount in amounts.items():
            result[name] += amount
    return result


def stranded_note(snapshot: Snapshot, resource: str = "GPU") -> str:
    """The stranded figure in words, for a hover beside it: how much is free on workers, and the
    running shapes that cannot use it, with their share of the replicas (the figure's weights).

    >>> stranded_note(snap)
    'GPU 0.5 is free on worker nodes; 0.25 of it counts as stranded: each node's free GPU is weighted by the share of running replicas whose shape does not fit there (GPU 1: 1 of 2 replicas)'
    """
    workers = [n for n in snapshot.nodes if n.alive and not n.draining and not n.head]
    free = sum(n.available.get(resource, 0.0) for n in workers)
    if free <= EPSILON:
        return f"no {resource} is free on worker nodes: none is stranded"
    shapes = Counter(_shape(r) for r in snapshot.replicas)
    total = sum(shapes.values())
    holding = [n for n in workers if n.available.get(resource, 0.0) > EPSILON]
    misfits = [(shape, count) for shape, count in shapes.items() if any(not fits(n.available, dict(shape)) for n in holding)]
    amount = stranded(snapshot).get(resource, 0.0)
    if not misfits or amount <= EPSILON:
        return f"{resource} {free:g} is free on worker nodes, and every running replica shape fits where it is: none is stranded"
    listed = "; ".join(
        f"{', '.join(f'{k} {v:g}' for k, v in shape) or 'no resources'}: {count} of {total} replicas"
        for shape, count in sorted(misfits, key=lambda item: -item[1])
    )
    return (
        f"{resource} {free:g} is free on worker nodes; {amount:.3g} of it counts as stranded: each node's free "
        f"{resource} is weighted by the share of running replicas whose shape does not fit there ({listed})"
    )


def fragmentation(snapshot: Snapshot, keep: Iterable[str] = ()) -> Fragmentation:
    """All fragmentation measures of ``snapshot``.

    >>> fragmentation(servelab.serving.snapshot()).score
    0.4
    """
    keep = list(keep)
    in_use = nodes_in_use(snapshot, keep)
    bound = min(lower_bound(snapshot, keep), in_use)
    return Fragmentation(
        nodes_in_use=in_use,
        lower_bound=bound,
        stranded={k: round(v, 6) for k, v in stranded(snapshot).items()},
        score=0.0 if in_use == 0 else (in_use - bound) / in_use,
    )


def _shape(replica: Replica) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, v) for k, v in replica.resources.items() if v > 0 and not math.isclose(v, 0.0)))
