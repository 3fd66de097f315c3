"""Ray Serve 2.60's node compaction, replayed on a Snapshot until it frees nothing more.

A faithful re-implementation of ``DeploymentScheduler._find_best_node_to_compact`` and the pack
placement it relies on (``ray/serve/_private/deployment_scheduler.py``), so servelab's planner can
be compared with it on synthetic clusters of any size:

- every non-head node hosting movable replicas is a candidate;
- its replicas, largest first (GPU, then CPU, then memory), are best-fit onto the other nodes that
  host replicas (never idle ones): the node leaving the smallest remaining space, compared GPU first;
- of the candidates whose replicas all fit, the largest node wins (GPU, CPU, memory), then the one
  needing the fewest migrations;
- the winner's replicas move as simulated and the emptied node is removed (an autoscaler's job);
  one node per round, repeated until no node can be emptied.
"""

from __future__ import annotations

import numpy as np

from servelab.serving.fragmentation import nodes_in_use
from servelab.serving.placement import EPSILON, SERVE_ORDER, label_match
from servelab.serving.snapshot import Node, Replica, Snapshot

ORDER = list(SERVE_ORDER)  # Ray's priority when comparing resource amounts


def _key_columns(resources: list[str]) -> list[int]:
    ordered = [r for r in ORDER if r in resources] + sorted(r for r in resources if r not in ORDER)
    return [resources.index(r) for r in ordered]


def compact_like_ray(snapshot: Snapshot) -> Snapshot:
    """The snapshot after Ray's greedy compaction has run until it frees no further node."""
    nodes = [n for n in snapshot.nodes if n.alive and not n.draining]
    resources = snapshot.resource_names
    columns = _key_columns(resources)
    index = {n.id: i for i, n in enumerate(nodes)}
    avail = np.array([[n.available.get(k, 0.0) for k in resources] for n in nodes])
    size = [tuple(n.total.get(resources[c], 0.0) for c in columns) for n in nodes]
    placement = {i: [] for i in range(len(nodes))}
    for replica in snapshot.replicas:
        if replica.node_id in index:
            placement[index[replica.node_id]].append(replica)
    alive = np.ones(len(nodes), dtype=bool)
    limited = any(r.max_replicas_per_node is not None for r in snapshot.replicas)
    while True:
        best = None
        busy = alive & np.array([bool(placement[i]) for i in range(len(nodes))])
        counts: dict[tuple[tuple[str, str], int], int] = {}
        for i, replicas in placement.items() if limited else ():
            for r in replicas:
                counts[(r.key, i)] = counts.get((r.key, i), 0) + 1
        for target in range(len(nodes)):
            if nodes[target].head or not alive[target] or not placement[target]:
                continue
            assignment = _simulate(target, nodes, placement, avail, busy, counts, resources, columns)
            if assignment is None:
                continue
            if best is None or size[target] > size[best[0]] or (size[target] == size[best[0]] and len(assignment) < len(best[1])):
                best = (target, assignment)
        if best is None:
            break
        target, assignment = best
        for replica, node in assignment:
            avail[node] -= [replica.resources.get(k, 0.0) for k in resources]
            placement[node].append(replica)
        placement[target] = []
        alive[target] = False
    kept = [
        Node(n.id, n.type, n.total, dict(zip(resources, avail[i].tolist(), strict=True)), n.labels, head=n.head)
        for i, n in enumerate(nodes)
        if alive[i]
    ]
    moved = [Replica(r.id, r.deployment, r.app, nodes[i].id, r.resources) for i, rs in placement.items() for r in rs]
    return Snapshot(tuple(kept), tuple(moved), snapshot.taken_at)


def _simulate(
    target: int,
    nodes: list[Node],
    placement: dict[int, list[Replica]],
    avail: np.ndarray,
    busy_nodes: np.ndarray,
    placed_counts: dict[tuple[tuple[str, str], int], int],
    resources: list[str],
    columns: list[int],
) -> list[tuple[Replica, int]] | None:
    """Best-fit the target's replicas onto the other busy nodes; None if one does not fit."""
    trial = avail.copy()
    busy = busy_nodes.copy()
    busy[target] = False
    counts = dict(placed_counts)
    order = sorted(placement[target], key=lambda r: tuple(r.resources.get(resources[c], 0.0) for c in columns), reverse=True)
    assignment = []
    for replica in order:
        need = np.array([replica.resources.get(k, 0.0) for k in resources])
        ok = busy & np.all(trial + EPSILON >= need, axis=1)
        ok &= np.array([label_match(n, replica.label_selector) for n in nodes]) if replica.label_selector else True
        if replica.max_replicas_per_node is not None:
            ok &= np.array([counts.get((replica.key, i), 0) < replica.max_replicas_per_node for i in range(len(nodes))])
        candidates = np.flatnonzero(ok)
        if not len(candidates):
            return None
        remaining = trial[candidates] - need
        chosen = int(candidates[np.lexsort([remaining[:, c] for c in reversed(columns)])[0]])
        trial[chosen] -= need
        counts[(replica.key, chosen)] = counts.get((replica.key, chosen), 0) + 1
        assignment.append((replica, chosen))
    return assignment


def nodes_after_ray(snapshot: Snapshot) -> int:
    return nodes_in_use(compact_like_ray(snapshot))
