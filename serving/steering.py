"""Plans that happen as planned: order a plan's nodes and name each move's target as Ray Serve will.

Draining a node makes Serve's pack scheduler start each replacement on the best-fitting node that is
not draining and already runs replicas (``_find_best_fit_node_for_pack``), which may be another node
the plan means to free later, or another node that stays than the planner chose. Pure: it replays
that rule on the snapshot, wave by wave, and orders the waves so that every replacement lands on a
node that stays; the plan's targets then say where the replicas will go. Where no order does, the
plan is returned as it was and the executor re-plans once Serve has chosen. Serve chooses by the
scalar GPU count, the raylet places per GPU instance: an order in which Serve would send a
whole-GPU replica to a node whose free GPU is split across instances is one that fails.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from servelab.serving.placement import fits, gpu_instances, label_match, leftover_key, take_gpu
from servelab.serving.planner import Move, Plan
from servelab.serving.snapshot import Replica, Snapshot


def as_serve_places(snapshot: Snapshot, plan: Plan, max_draining: int = 1) -> Plan:
    """``plan`` with its nodes in an order, waves of ``max_draining``, where Serve keeps every replacement
    on a node that stays, and each move's target where Serve will put it; unchanged where none exists.

    >>> steered = as_serve_places(snap, plan(snap), max_draining=2)
    """
    if not plan.nodes_to_free:
        return plan
    stays = set(plan.layout.values()) - set(plan.nodes_to_free)
    free = {n.id: dict(n.available) for n in snapshot.nodes if n.alive and not n.draining}
    gpus = {n.id: gpu_instances(n) for n in snapshot.nodes if n.id in free}
    hosting: dict[str, list[Replica]] = defaultdict(list)
    for replica in snapshot.replicas:
        if replica.node_id in free:
            hosting[replica.node_id].append(replica)
    remaining, order, moves = list(plan.nodes_to_free), [], []
    while remaining:
        for first in remaining:
            wave = [first, *[n for n in remaining if n != first][: max_draining - 1]]
            landed = _replay(snapshot, wave, remaining, free, gpus, hosting, stays)
            if landed is not None:
                break
        else:
            return plan
        for replica, target in landed:
            moves.append(Move(replica.id, replica.deployment, replica.app, str(replica.node_id), target))
            free[target] = {k: v - replica.resources.get(k, 0.0) for k, v in free[target].items()}
            gpus[target] = take_gpu(gpus[target], replica.resources.get("GPU", 0.0)) or []
            hosting[target].append(replica)
        for node in wave:
            hosting.pop(node, None)
            free.pop(node, None)
        order += wave
        remaining = [n for n in remaining if n not in wave]
    layout = {**plan.layout, **{m.replica: m.target for m in moves}}
    return replace(plan, nodes_to_free=tuple(order), moves=tuple(moves), layout=layout)


def _replay(
    snapshot: Snapshot,
    wave: list[str],
    remaining: list[str],
    free: dict[str, dict[str, float]],
    gpus: dict[str, list[float]],
    hosting: dict[str, list[Replica]],
    stays: set[str],
) -> list[tuple[Replica, str]] | None:
    """Where Serve starts the wave's replacements, largest first; None if one lands off the nodes that
    stay or where its GPUs are not free as whole instances."""
    room = {n: dict(r) for n, r in free.items() if n not in wave}
    instances = {n: list(gpus[n]) for n in room}
    busy = {n for n in room if hosting.get(n)}
    counts: dict[tuple[tuple[str, str], str], int] = defaultdict(int)
    for node, replicas in hosting.items():
        for replica in replicas:
            counts[(replica.key, node)] += 1
    pending = sorted(
        (r for node in wave for r in hosting.get(node, [])),
        key=lambda r: tuple(r.resources.get(k, 0.0) for k in ("GPU", "CPU", "memory")),
        reverse=True,
    )
    landed = []
    for replica in pending:
        options = [
            n
            for n in room
            if fits(room[n], replica.resources)
            and label_match(snapshot.node(n), replica.label_selector)
            and (replica.max_replicas_per_node is None or counts[(replica.key, n)] < replica.max_replicas_per_node)
        ]
        preferred = [n for n in options if n in busy] or options
        if not preferred:
            return None
        target = min(preferred, key=lambda n: leftover_key(room[n], replica.resources))
        left = take_gpu(instances[target], replica.resources.get("GPU", 0.0))
        if target not in stays or target in remaining or left is None:
            return None
        instances[target] = left
        room[target] = {k: v - replica.resources.get(k, 0.0) for k, v in room[target].items()}
        counts[(replica.key, target)] += 1
        busy.add(target)
        landed.append((replica, target))
    return landed
