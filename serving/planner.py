"""Compaction planning: which nodes to free and where their replicas go. A pure function of a Snapshot.

Only replicas on nodes being freed move (that is what draining a node does); every other replica
stays. A replica moves only onto a node that stays, never onto one being freed or drained, so
Serve can start each replacement before it stops the old replica. Small clusters are solved
exactly as a MILP (scipy's HiGHS, with a time limit); large ones by a best-fit heuristic.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from servelab.errors import CompactionError
from servelab.serving.fragmentation import lower_bound, nodes_in_use
from servelab.serving.placement import EPSILON, label_match
from servelab.serving.snapshot import Node, Replica, Snapshot, format_resources

Objective = Literal["nodes", "cost"]
RESOURCE_WEIGHTS = {"GPU": 100.0, "CPU": 10.0, "memory": 1.0}  # best-fit leftover: GPU first, as Ray


class PlanError(CompactionError):
    """A plan cannot be made for these arguments."""


@dataclass(frozen=True)
class Move:
    replica: str
    deployment: str
    app: str
    source: str
    target: str


@dataclass(frozen=True)
class Plan:
    """What compaction will do: nodes to free, replica moves, the layout after, and what it saves."""

    fingerprint: str
    objective: str
    nodes_to_free: tuple[str, ...]
    moves: tuple[Move, ...]
    layout: dict[str, str]
    idle_nodes: tuple[str, ...]
    freed_resources: dict[str, float]
    freed_cost_per_hour: float
    blocked: dict[str, str]
    nodes_before: int
    nodes_after: int
    lower_bound: int
    method: str
    optimal: bool
    planning_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The inverse of ``to_dict()``: a plan that travelled as JSON (the Jupyter server's API)."""
        fields = dict(data)
        fields["moves"] = tuple(Move(**m) for m in data["moves"])
        for name in ("nodes_to_free", "idle_nodes"):
            fields[name] = tuple(data[name])
        return cls(**fields)


@dataclass
class _Model:
    """The snapshot as arrays: nodes that can take replicas, the replicas that may move."""

    nodes: list[Node]
    resources: list[str]
    base: np.ndarray  # free capacity per node and resource, counting movable replicas as gone
    candidates: list[int]  # worker nodes hosting replicas: what may be freed
    workers: set[int]  # every freeable node, idle ones included
    movable: list[Replica]
    current: list[int]  # node index of each movable replica
    need: np.ndarray  # demand per movable replica and resource
    eligible: np.ndarray  # replica x node: labels match
    fixed_counts: dict[tuple[str, str], np.ndarray]  # replicas per deployment per node that stay put
    pinned: dict[int, str]  # candidate node -> why it cannot be freed at all
    weights: np.ndarray  # objective weight per node


def plan(
    snapshot: Snapshot,
    objective: Objective = "nodes",
    max_moves: int | None = None,
    keep: Iterable[str] = (),
    exact_limit: int = 60,
    time_limit_s: float = 10.0,
) -> Plan:
    """Plan a compaction of ``snapshot``: free as many nodes (or as much cost) as possible.

    ``keep`` names nodes never to free; ``max_moves`` bounds the replicas moved. Clusters with up to
    ``exact_limit`` freeable nodes are solved exactly (within ``time_limit_s``), larger ones heuristically.

    >>> p = plan(snapshot(), objective="cost")
    >>> p.nodes_to_free, p.freed_cost_per_hour
    """
    started = time.perf_counter()
    if objective not in ("nodes", "cost"):
        raise PlanError(f"objective={objective!r}: use 'nodes' (free the most nodes) or 'cost' (save the most per hour).")
    if max_moves is not None and (not isinstance(max_moves, int) or max_moves < 0):
        raise PlanError(f"max_moves={max_moves!r} must be a non-negative integer or None.")
    keep = list(keep)
    unknown = set(keep) - {n.id for n in snapshot.nodes}
    if unknown:
        raise PlanError(f"keep names unknown node(s) {sorted(unknown)}; pass node ids from snapshot().nodes.")
    model = _build(snapshot, keep, objective)
    layout, blocked = _heuristic(model, max_moves)
    method, optimal = "heuristic", False
    if len(model.workers) <= exact_limit and model.movable:
        exact = _exact(model, max_moves, time_limit_s)
        if exact is not None and _score(model, exact[0]) <= _score(model, layout) + EPSILON:
            layout, optimal, method = exact[0], exact[1], "exact"
    return _result(snapshot, model, layout, blocked, keep, objective, method, optimal, time.perf_counter() - started)


def _build(snapshot: Snapshot, keep: list[str], objective: Objective) -> _Model:
    nodes = [n for n in snapshot.nodes if n.alive and not n.draining]
    index = {n.id: i for i, n in enumerate(nodes)}
    resources = snapshot.resource_names
    base = np.array([[n.available.get(k, 0.0) for k in resources] for n in nodes]).reshape(len(nodes), len(resources))
    workers = {i for i, n in enumerate(nodes) if not n.head and n.id not in keep}
    hosting = defaultdict(list)
    for replica in snapshot.replicas:
        if replica.node_id in index:
            hosting[index[replica.node_id]].append(replica)
    candidates = sorted(i for i in workers if hosting[i])
    pinned: dict[int, str] = {}
    movable: list[Replica] = []
    current: list[int] = []
    fixed_counts: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: np.zeros(len(nodes)))
    for i, replicas in hosting.items():
        unsettled = [r for r in replicas if r.state != "RUNNING"]
        if i in candidates and unsettled:
            pinned[i] = f"replica {unsettled[0].id} is {unsettled[0].state}; plan again once it is RUNNING"
        for replica in replicas:
            if i in candidates and i not in pinned:
                movable.append(replica)
                current.append(i)
                base[i] += [replica.resources.get(k, 0.0) for k in resources]
            else:
                fixed_counts[replica.key][i] += 1
    need = np.array([[r.resources.get(k, 0.0) for k in resources] for r in movable]).reshape(len(movable), len(resources))
    eligible = np.array([[label_match(n, r.label_selector) for n in nodes] for r in movable], dtype=bool).reshape(
        len(movable), len(nodes)
    )
    weights = np.array([1.0 if objective == "nodes" else n.cost for n in nodes])
    return _Model(nodes, resources, base, candidates, workers, movable, current, need, eligible, fixed_counts, pinned, weights)


def _heuristic(model: _Model, max_moves: int | None) -> tuple[list[int], dict[int, str]]:
    """Free candidates least-loaded first, best-fitting their replicas onto nodes that stay in use."""
    layout = list(model.current)
    free = model.base.copy()
    for r, node in enumerate(layout):
        free[node] -= model.need[r]
    counts = {key: c.copy() for key, c in model.fixed_counts.items()}
    for r, node in enumerate(layout):
        counts.setdefault(model.movable[r].key, np.zeros(len(model.nodes)))[node] += 1
    scale = np.maximum(np.array([max((n.total.get(k, 0.0) for n in model.nodes), default=1.0) for k in model.resources]), EPSILON)
    weight = np.array([RESOURCE_WEIGHTS.get(k, 0.1) for k in model.resources]) / scale
    in_use = np.zeros(len(model.nodes), dtype=bool)
    in_use[[i for i in range(len(model.nodes)) if i not in model.workers]] = True
    in_use[model.candidates] = True
    on_node = defaultdict(list)
    for r, node in enumerate(layout):
        on_node[node].append(r)
    load = {i: float((model.need[on_node[i]] * weight).sum()) for i in model.candidates}
    # Dearest first (all weigh 1 for objective "nodes"), then least loaded: the easiest to empty.
    order = sorted((i for i in model.candidates if i not in model.pinned), key=lambda i: (-model.weights[i], load[i]))
    blocked = dict(model.pinned)
    moves = 0
    for victim in order:
        replicas = sorted(on_node[victim], key=lambda r: -(model.need[r] * weight).sum())
        if max_moves is not None and moves + len(replicas) > max_moves:
            blocked[victim] = f"freeing it needs {len(replicas)} more moves, over max_moves={max_moves}"
            continue
        in_use[victim] = False
        trial_free, placed, reason = free.copy(), [], ""
        trial_counts = {k: v.copy() for k, v in counts.items()}
        for r in replicas:
            replica = model.movable[r]
            ok = in_use & model.eligible[r] & np.all(trial_free + EPSILON >= model.need[r], axis=1)
            if replica.max_replicas_per_node is not None:
                ok &= trial_counts[replica.key] < replica.max_replicas_per_node
            if not ok.any():
                reason = f"replica {replica.id} ({replica.app}/{replica.deployment}, needs {format_resources(replica.resources)}) fits on no node that stays"
                break
            leftover = np.where(ok, ((trial_free - model.need[r]) * weight).sum(axis=1), np.inf)
            target = int(np.argmin(leftover))
            trial_free[target] -= model.need[r]
            trial_free[victim] += model.need[r]
            trial_counts[replica.key][target] += 1
            trial_counts[replica.key][victim] -= 1
            placed.append((r, target))
        if reason:
            in_use[victim] = True
            blocked[victim] = reason
            continue
        free, counts = trial_free, trial_counts
        for r, target in placed:
            layout[r] = target
            on_node[target].append(r)
        on_node[victim] = []
        moves += len(placed)
    return layout, blocked


def _exact(model: _Model, max_moves: int | None, time_limit_s: float) -> tuple[list[int], bool] | None:
    """The MILP: choose nodes to keep in use and an assignment, minimising the objective."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import lil_matrix

    workers = sorted(model.workers)
    y_of = {n: k for k, n in enumerate(workers)}
    pairs = [(r, int(n)) for r in range(len(model.movable)) for n in np.flatnonzero(model.eligible[r])]
    x_of = {pair: len(workers) + k for k, pair in enumerate(pairs)}
    size = len(workers) + len(pairs)
    moves_weight = float(model.weights[workers].min() if workers else 1.0) / (len(model.movable) + 1)
    cost = np.zeros(size)
    cost[: len(workers)] = model.weights[workers]
    for (r, n), k in x_of.items():
        cost[k] = moves_weight if n != model.current[r] else 0.0
    rows, lower, upper = [], [], []

    def row(coefficients: dict[int, float], lo: float, hi: float) -> None:
        rows.append(coefficients)
        lower.append(lo)
        upper.append(hi)

    by_replica: dict[int, dict[int, float]] = defaultdict(dict)
    by_node: dict[int, dict[int, int]] = defaultdict(dict)
    for (r, n), k in x_of.items():
        by_replica[r][k] = 1.0
        by_node[n][k] = r
    for r in range(len(model.movable)):
        row(by_replica[r], 1.0, 1.0)  # every replica somewhere
    for n, members in by_node.items():
        for j in range(len(model.resources)):
            coefficients = {k: model.need[r][j] for k, r in members.items() if model.need[r][j] > 0}
            if coefficients:
                if n in y_of:
                    coefficients[y_of[n]] = -model.base[n][j]
                    row(coefficients, -np.inf, 0.0)
                else:
                    row(coefficients, -np.inf, model.base[n][j])
        if n in y_of:  # replicas only on nodes in use
            row({**dict.fromkeys(members, 1.0), y_of[n]: -float(len(members))}, -np.inf, 0.0)
        groups: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        limits: dict[tuple[str, str], int] = {}
        for k, r in members.items():
            replica = model.movable[r]
            if replica.max_replicas_per_node is not None:
                groups[replica.key][k] = 1.0
                limits[replica.key] = replica.max_replicas_per_node
        for key, coefficients in groups.items():
            fixed = model.fixed_counts[key][n] if key in model.fixed_counts else 0.0
            row(coefficients, -np.inf, limits[key] - fixed)
    for r, n in enumerate(model.current):  # a node that stays in use keeps its replicas
        if (r, n) in x_of:
            row({x_of[(r, n)]: -1.0, y_of[n]: 1.0}, -np.inf, 0.0)
    if max_moves is not None:
        row({k: 1.0 for (r, n), k in x_of.items() if n != model.current[r]}, -np.inf, float(max_moves))
    matrix = lil_matrix((len(rows), size))
    for i, coefficients in enumerate(rows):
        for k, value in coefficients.items():
            matrix[i, k] = value
    result = milp(
        cost,
        constraints=LinearConstraint(matrix.tocsr(), lower, upper),
        integrality=np.ones(size),
        bounds=Bounds(0, 1),
        options={"time_limit": time_limit_s, "disp": False},
    )
    if result.x is None:
        return None
    layout = list(model.current)
    for (r, n), k in x_of.items():
        if result.x[k] > 0.5:
            layout[r] = n
    return layout, result.status == 0


def _score(model: _Model, layout: list[int]) -> float:
    used = set(layout) | {i for i in model.candidates if i in model.pinned}
    return float(sum(model.weights[i] for i in used if i in model.workers))


def _result(
    snapshot: Snapshot,
    model: _Model,
    layout: list[int],
    blocked: dict[int, str],
    keep: list[str],
    objective: str,
    method: str,
    optimal: bool,
    planning_s: float,
) -> Plan:
    used_after = set(layout) | set(model.pinned)
    freed = [i for i in model.candidates if i not in used_after]
    idle = [i for i in sorted(model.workers) if i not in model.candidates and i not in used_after]
    moves = tuple(
        Move(r.id, r.deployment, r.app, model.nodes[model.current[k]].id, model.nodes[layout[k]].id)
        for k, r in enumerate(model.movable)
        if layout[k] != model.current[k]
    )
    freed_resources: dict[str, float] = defaultdict(float)
    for i in freed:
        for name, amount in model.nodes[i].total.items():
            freed_resources[name] += amount
    placement = {r.id: r.node_id for r in snapshot.replicas if r.node_id is not None}
    placement.update({r.id: model.nodes[layout[k]].id for k, r in enumerate(model.movable)})
    reasons = {
        model.nodes[i].id: blocked.get(i, "kept in the best layout found: its replicas do not fit elsewhere alongside the rest")
        for i in model.candidates
        if i in used_after
    }
    before = nodes_in_use(snapshot, keep)
    bound = min(lower_bound(snapshot, keep), before)
    after = len(used_after & model.workers)  # idle nodes that receive replicas count too
    return Plan(
        fingerprint=snapshot.fingerprint(),
        objective=objective,
        nodes_to_free=tuple(model.nodes[i].id for i in freed),
        moves=moves,
        layout=placement,
        idle_nodes=tuple(model.nodes[i].id for i in idle),
        freed_resources=dict(freed_resources),
        freed_cost_per_hour=round(sum(model.nodes[i].cost for i in freed), 6),
        blocked=reasons,
        nodes_before=before,
        nodes_after=after,
        lower_bound=bound,
        method=method,
        optimal=optimal or (objective == "nodes" and after == bound),  # reaching the bound proves it
        planning_s=planning_s,
    )


def projected(snapshot: Snapshot, plan: Plan) -> Snapshot:
    """The cluster as ``plan`` would leave it: replicas moved to their targets, freed nodes gone.

    >>> after = projected(snap, plan(snap))
    """
    moved_out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    moved_in: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    target = {m.replica: m.target for m in plan.moves}
    replicas = []
    for replica in snapshot.replicas:
        if replica.id in target and replica.node_id is not None:
            for name, amount in replica.resources.items():
                moved_out[replica.node_id][name] += amount
                moved_in[target[replica.id]][name] += amount
            replica = replace(replica, node_id=target[replica.id])
        replicas.append(replica)
    freed = set(plan.nodes_to_free)
    nodes = tuple(
        replace(
            node,
            available={
                name: free + moved_out[node.id].get(name, 0.0) - moved_in[node.id].get(name, 0.0)
                for name, free in node.available.items()
            },
        )
        for node in snapshot.nodes
        if node.id not in freed
    )
    return replace(snapshot, nodes=nodes, replicas=tuple(replicas))
