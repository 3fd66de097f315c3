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

from dataclasses import replace

from servelab.serving.placement import Room, leftover_key
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
    room = Room.of(snapshot)
    remaining, order, moves = list(plan.nodes_to_free), [], []
    while remaining:
        for first in remaining:
            wave = [first, *[n for n in remaining if n != first][: max_draining - 1]]
            landed = _replay(room, wave, remaining, stays)
            if landed is not None:
                break
        else:
            return plan
        for node in wave:
            room.close(node)
        for replica, target in landed:
            moves.append(Move(replica.id, replica.deployment, replica.app, str(replica.node_id), target))
            room.place(replica, target)
        order += wave
        remaining = [n for n in remaining if n not in wave]
    layout = {**plan.layout, **{m.replica: m.target for m in moves}}
    return replace(plan, nodes_to_free=tuple(order), moves=tuple(moves), layout=layout)


def _replay(room: Room, wave: list[str], remaining: list[str], stays: set[str]) -> list[tuple[Replica, str]] | None:
    """Where Serve starts the wave's replacements, largest first; None if one lands off the nodes that
    stay or where its GPUs are not free as whole instances."""
    trial = room.copy()
    pending = sorted(
        (r for node in wave for r in trial.close(node)),
        key=lambda r: tuple(r.resources.get(k, 0.0) for k in ("GPU", "CPU", "memory")),
        reverse=True,
    )
    landed = []
    for replica in pending:
        options = [n for n in trial.nodes if trial.serve_would_consider(replica, n)]
        preferred = [n for n in options if trial.hosting[n]] or options
        if not preferred:
            return None
        target = min(preferred, key=lambda n: leftover_key(trial.free[n], replica.resources))
        if target not in stays or target in remaining or trial.why_not(replica, target):
            return None
        trial.place(replica, target)
        landed.append((replica, target))
    return landed
