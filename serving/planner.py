"""Compaction planning: which nodes to free and where their replicas go. A pure function of a Snapshot.

Only replicas on nodes being freed move (that is what draining a node does); every other replica
stays. A replica moves only onto a node that stays, never onto one being freed or drained, so
Serve can start each replacement before it stops the old replica.

A best-fit heuristic gives a first layout; small clusters are then solved exactly as a MILP
(scipy's HiGHS, with a time limit), and whatever time is left goes to a large-neighbourhood
search: a few dozen nodes at a time are re-packed exactly with everything else held fixed, and
the layout improves until it reaches the lower bound or the time is spent.

GPUs are placed per instance, as the raylet does: a node that stays keeps its replicas on the GPUs
they hold, so a whole-GPU replica moves only onto a node with an entirely free GPU, never onto two
half-free ones.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from servelab.errors import CompactionError
from servelab.serving.budget import Budget
from servelab.serving.fragmentation import lower_bound, nodes_in_use
from servelab.serving.placement import EPSILON, gpu_instances, label_match
from servelab.serving.snapshot import Node, Replica, Snapshot, format_resources, short_id

Objective = Literal["nodes", "cost"]
# Why a node that could be freed stays in use, one rule each (Plan.kept_by): a replica there is not
# RUNNING; freeing it would pass max_moves; one of its replicas has no other node that stays with
# room, labels matching, under the deployment's max replicas per node, or a whole free GPU; or the
# best layout found keeps it.
KEPT_BY = ("unsettled", "max-moves", "room", "labels", "max-per-node", "whole-gpus", "layout")
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
    blocked: dict[str, str]  # node id -> why it stays, in words
    nodes_before: int
    nodes_after: int
    lower_bound: int
    method: str
    optimal: bool
    planning_s: float
    # Replica id -> why its real GPU memory (NVML) may not fit where it moves: planning counts Ray's
    # reservations, which say nothing of memory; empty where no readings exist.
    memory_warnings: dict[str, str] = field(default_factory=dict)
    # How it is to be run: compact(plan) drains within it, so a dry run's button runs what it showed.
    budget: Budget = field(default_factory=Budget)
    kept_by: dict[str, str] = field(default_factory=dict)  # node id -> the rule in KEPT_BY that keeps it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass
class _Gpus:
    """Free GPU instances per node with its own replicas in place: entirely free ones counted, partly
    free ones listed. Replicas arriving take whole instances, or a fraction of the best-fitting one."""

    whole: np.ndarray
    parts: list[list[float]]
    biggest: np.ndarray  # the most any partly free GPU of a node has free

    @classmethod
    def of(cls, nodes: list[Node]) -> _Gpus:
        instances = [gpu_instances(n) for n in nodes]
        whole = np.array([sum(1 for f in free if f >= 1.0 - EPSILON) for free in instances], dtype=float)
        parts = [[f for f in free if EPSILON < f < 1.0 - EPSILON] for free in instances]
        return cls(whole, parts, np.array([max(p, default=0.0) for p in parts]))

    def copy(self) -> _Gpus:
        return _Gpus(self.whole.copy(), [list(p) for p in self.parts], self.biggest.copy())

    def fit(self, demand: float) -> np.ndarray:
        """Per node: whether ``demand`` GPUs fit on its instances."""
        if demand <= EPSILON:
            return np.ones(len(self.whole), dtype=bool)
        if demand >= 1.0 - EPSILON:
            return self.whole >= round(demand)
        return (self.biggest + EPSILON >= demand) | (self.whole >= 1)

    def take(self, node: int, demand: float) -> None:
        """Place ``demand`` GPUs on ``node`` as the raylet would (``fit`` said it fits)."""
        if demand >= 1.0 - EPSILON:
            self.whole[node] -= round(demand)
        elif demand > EPSILON:
            parts = self.parts[node]
            options = [i for i, free in enumerate(parts) if free + EPSILON >= demand]
            if options:  # a partly free GPU always fits tighter than an entirely free one
                best = min(options, key=parts.__getitem__)
                parts[best] -= demand
                if parts[best] <= EPSILON:
                    parts.pop(best)
            else:
                self.whole[node] -= 1
                parts.append(1.0 - demand)
            self.biggest[node] = max(parts, default=0.0)

    def valid(self, arrivals: dict[int, list[float]]) -> bool:
        """Whether every node takes the GPUs arriving there (whole ones first, then the largest fractions)."""
        gpus = self.copy()
        for node, demands in arrivals.items():
            for demand in sorted(demands, reverse=True):
                if not gpus.fit(demand)[node]:
                    return False
                gpus.take(node, demand)
        return True


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
    pinned: dict[int, str]  # candidate node -> why it cannot be freed at all (rule "unsettled")
    weights: np.ndarray  # objective weight per node
    gpus: _Gpus  # free GPU instances per node, its own replicas in place
    gpu: np.ndarray  # GPUs per movable replica
    forced_off: set[int] = field(default_factory=set)  # workers that must end empty (search only)


def plan(
    snapshot: Snapshot,
    objective: Objective = "nodes",
    max_moves: int | None = None,
    keep: Iterable[str] = (),
    exact_limit: int = 60,
    time_limit_s: float = 4.0,
    seed: int = 0,
    budget: Budget | None = None,
) -> Plan:
    """Plan a compaction of ``snapshot``: free as many nodes (or as much cost) as possible.

    ``keep`` names nodes never to free; ``max_moves`` bounds the replicas moved; ``budget`` is how
    ``compact(plan)`` will run it (it travels with the plan; the layout does not depend on it). Within
    ``time_limit_s``: clusters with up to ``exact_limit`` freeable nodes are solved exactly, and any
    time left improves the layout by re-packing subsets of nodes exactly (seeded by ``seed``).

    >>> p = plan(snapshot(), objective="cost", budget=Budget(max_draining=2))
    >>> p.nodes_to_free, p.freed_cost_per_hour
    """
    started = time.perf_counter()
    deadline = started + time_limit_s
    if objective not in ("nodes", "cost"):
        raise PlanError(f"objective={objective!r}: use 'nodes' (free the most nodes) or 'cost' (save the most per hour).")
    if max_moves is not None and (not isinstance(max_moves, int) or max_moves < 0):
        raise PlanError(f"max_moves={max_moves!r} must be a non-negative integer or None.")
    keep = list(keep)
    unknown = set(keep) - {n.id for n in snapshot.nodes}
    if unknown:
        raise PlanError(f"keep names unknown node(s) {sorted(unknown)}; pass node ids from snapshot().nodes.")
    budget = budget or Budget()
    model = _build(snapshot, keep, objective)
    layout, blocked = _heuristic(model, max_moves)
    method, optimal = "heuristic", False
    # Reaching the lower bound on nodes proves a layout optimal; the cost objective has no such bound.
    bound = min(lower_bound(snapshot, keep), nodes_in_use(snapshot, keep))
    target = float(bound) if objective == "nodes" else 0.0
    if max_moves is None and model.movable:
        for priority in _priorities(model):
            packed = _keep_and_pack(model, priority, max(bound - len(model.pinned), 0))
            if _rank(model, packed) < _rank(model, layout):
                layout, method = packed, "pack"
    if model.movable and _score(model, layout) > target + EPSILON:
        if len(model.workers) <= exact_limit:
            exact = _exact(model, max_moves, max(deadline - time.perf_counter(), 0.1))
            if exact is not None and _score(model, exact[0]) <= _score(model, layout) + EPSILON and _gpus_fit(model, exact[0]):
                layout, optimal, method = exact[0], exact[1], "exact"
        if not optimal and max_moves is None and time.perf_counter() < deadline:
            searched = _search(model, layout, target, deadline, random.Random(seed))
            if _score(model, searched) < _score(model, layout) - EPSILON:
                layout, method = searched, "search"
    result = _result(snapshot, model, layout, blocked, keep, objective, method, optimal, time.perf_counter() - started)
    return replace(result, budget=budget)


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
    eligible[np.arange(len(movable)), current] = True  # it may stay where it is, labels or not
    weights = np.array([1.0 if objective == "nodes" else n.cost for n in nodes])
    gpu = np.array([r.resources.get("GPU", 0.0) for r in movable])
    return _Model(
        nodes,
        resources,
        base,
        candidates,
        workers,
        movable,
        current,
        need,
        eligible,
        fixed_counts,
        pinned,
        weights,
        _Gpus.of(nodes),
        gpu,
    )


def _heuristic(model: _Model, max_moves: int | None) -> tuple[list[int], dict[int, tuple[str, str]]]:
    """Free candidates least-loaded first, best-fitting their replicas onto nodes that stay in use."""
    layout = list(model.current)
    free = model.base.copy()
    for r, node in enumerate(layout):
        free[node] -= model.need[r]
    counts = {key: c.copy() for key, c in model.fixed_counts.items()}
    for r, node in enumerate(layout):
        counts.setdefault(model.movable[r].key, np.zeros(len(model.nodes)))[node] += 1
    gpus = model.gpus.copy()
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
    blocked = {i: ("unsettled", why) for i, why in model.pinned.items()}
    moves = 0
    for victim in order:
        replicas = sorted(on_node[victim], key=lambda r: -(model.need[r] * weight).sum())
        if max_moves is not None and moves + len(replicas) > max_moves:
            blocked[victim] = ("max-moves", f"freeing it needs {len(replicas)} more moves, over max_moves={max_moves}")
            continue
        in_use[victim] = False
        trial_free, placed, reason = free.copy(), [], None
        trial_counts = {k: v.copy() for k, v in counts.items()}
        trial_gpus = gpus.copy()
        for r in replicas:
            replica = model.movable[r]
            target = _best_fit(model, r, in_use, trial_free, trial_counts, trial_gpus, weight)
            if target is None:
                reason = _why_nowhere(model, r, in_use, trial_free, trial_counts, trial_gpus)
                break
            trial_free[target] -= model.need[r]
            trial_free[victim] += model.need[r]
            trial_gpus.take(target, model.gpu[r])
            trial_counts[replica.key][target] += 1
            trial_counts[replica.key][victim] -= 1
            placed.append((r, target))
        if reason is not None:
            in_use[victim] = True
            blocked[victim] = reason
            continue
        free, counts, gpus = trial_free, trial_counts, trial_gpus
        for r, target in placed:
            layout[r] = target
            on_node[target].append(r)
        on_node[victim] = []
        moves += len(placed)
    return layout, blocked


def _best_fit(
    model: _Model,
    r: int,
    allowed: np.ndarray,
    free: np.ndarray,
    counts: dict[tuple[str, str], np.ndarray],
    gpus: _Gpus,
    weight: np.ndarray,
) -> int | None:
    """The allowed node where replica ``r`` fits with the least weighted room left over, or None."""
    replica = model.movable[r]
    ok = allowed & model.eligible[r] & np.all(free + EPSILON >= model.need[r], axis=1) & gpus.fit(model.gpu[r])
    if replica.max_replicas_per_node is not None:
        ok &= counts.setdefault(replica.key, np.zeros(len(model.nodes))) < replica.max_replicas_per_node
    if not ok.any():
        return None
    return int(np.argmin(np.where(ok, ((free - model.need[r]) * weight).sum(axis=1), np.inf)))


def _why_nowhere(
    model: _Model, r: int, allowed: np.ndarray, free: np.ndarray, counts: dict[tuple[str, str], np.ndarray], gpus: _Gpus
) -> tuple[str, str]:
    """Why replica ``r`` fits on no allowed node, as (rule, words): the rule that turns away the
    nodes with room for it, or "room" where none has room. The checks are ``_best_fit``'s."""
    replica = model.movable[r]
    what = f"its replica {short_id(replica.id)} ({replica.app}/{replica.deployment}, needs {format_resources(replica.resources)})"
    roomy = allowed & np.all(free + EPSILON >= model.need[r], axis=1)
    if not roomy.any():
        return "room", f"{what} fits on no other node that stays: none has that much free"
    names = ", ".join(short_id(model.nodes[i].id) for i in np.flatnonzero(roomy)[:3])
    if not (roomy & model.eligible[r]).any():
        selector = ", ".join(f"{k}={v}" for k, v in sorted(replica.label_selector.items()))
        return "labels", f"{what} needs nodes labelled {selector}; the nodes that stay with room for it ({names}) are not"
    roomy &= model.eligible[r]
    limit = replica.max_replicas_per_node
    if limit is not None and not (roomy & (counts.setdefault(replica.key, np.zeros(len(model.nodes))) < limit)).any():
        return "max-per-node", (
            f"{what} may not go on the nodes that stay with room for it ({names}): "
            f"each already runs max_replicas_per_node={limit} of {replica.app}/{replica.deployment}"
        )
    return "whole-gpus", (
        f"{what} needs a whole free GPU; the nodes that stay with room for it ({names}) have theirs split across GPUs"
    )


def _keep_and_pack(model: _Model, priority: np.ndarray, start: int) -> list[int]:
    """Keep the ``start`` highest-priority nodes, best-fit every other node's replicas into them;
    when a replica fits nowhere, keep its node too and pack again. Strong where freeing nodes one
    at a time gets stuck: it chooses the whole set of nodes to keep first."""
    order = sorted(model.candidates, key=lambda n: -priority[n])
    kept = set(model.pinned) | set(order[:start])
    scale = np.maximum(model.base.max(axis=0), EPSILON)
    weight = np.array([RESOURCE_WEIGHTS.get(k, 0.1) for k in model.resources]) / scale
    by_size = sorted(range(len(model.movable)), key=lambda r: -float((model.need[r] * weight).sum()))
    while True:
        layout = list(model.current)
        open_ = np.array([n in kept or n not in model.workers for n in range(len(model.nodes))])
        free = model.base.copy()
        counts = {key: c.copy() for key, c in model.fixed_counts.items()}
        gpus = model.gpus.copy()
        for r, n in enumerate(model.current):
            if n in kept:
                free[n] -= model.need[r]
                counts.setdefault(model.movable[r].key, np.zeros(len(model.nodes)))[n] += 1
        failed = None
        for r in by_size:
            if model.current[r] in kept:
                continue
            target = _best_fit(model, r, open_, free, counts, gpus, weight)
            if target is None:
                failed = r
                break
            free[target] -= model.need[r]
            gpus.take(target, model.gpu[r])
            counts.setdefault(model.movable[r].key, np.zeros(len(model.nodes)))[target] += 1
            layout[r] = target
        if failed is None:
            return layout
        kept.add(model.current[failed])


def _exact(model: _Model, max_moves: int | None, time_limit_s: float) -> tuple[list[int], bool] | None:
    """The MILP: choose nodes to keep in use and an assignment, minimising the objective."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    workers = sorted(model.workers)
    y_of = {n: k for k, n in enumerate(workers)}
    pairs = [(r, int(n)) for r in range(len(model.movable)) for n in np.flatnonzero(model.eligible[r])]
    x_of = {pair: len(workers) + k for k, pair in enumerate(pairs)}
    # Per node, the entirely free GPUs that arriving fractions open (an integer): GPUs are placed per instance.
    opened = sorted({n for r, n in pairs if n != model.current[r] and EPSILON < model.gpu[r] < 1.0 - EPSILON})
    h_of = {n: len(workers) + len(pairs) + k for k, n in enumerate(opened)}
    size = len(workers) + len(pairs) + len(opened)
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
        arriving = {k: float(model.gpu[r]) for k, r in members.items() if model.current[r] != n and model.gpu[r] > EPSILON}
        if arriving:  # whole GPUs on entirely free instances; fractions on partly free ones or on instances they open
            whole = {k: g for k, g in arriving.items() if g >= 1.0 - EPSILON}
            if n in h_of:
                whole[h_of[n]] = 1.0
                fractions = {k: g for k, g in arriving.items() if g < 1.0 - EPSILON}
                row({**fractions, h_of[n]: -1.0}, -np.inf, float(sum(model.gpus.parts[n])))
            if whole:
                row(whole, -np.inf, float(model.gpus.whole[n]))
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
    entries = [(i, k, value) for i, coefficients in enumerate(rows) for k, value in coefficients.items()]
    at_row, at_column, values = zip(*entries, strict=True) if entries else ((), (), ())
    matrix = coo_matrix((values, (at_row, at_column)), shape=(len(rows), size))
    # A node holding a replica that cannot move (not RUNNING) stays in use whatever the plan does,
    # so it costs the same in every layout and may well receive replicas.
    low, high = np.zeros(size), np.ones(size)
    for n, k in y_of.items():
        low[k] = 1.0 if n in model.pinned else 0.0
        high[k] = 0.0 if n in model.forced_off else 1.0
    for n, k in h_of.items():
        high[k] = float(model.gpus.whole[n])
    result = milp(
        cost,
        constraints=LinearConstraint(matrix.tocsr(), lower, upper),
        integrality=np.ones(size),
        bounds=Bounds(low, high),
        options={"time_limit": time_limit_s, "disp": False},
    )
    if result.x is None:
        return None
    layout = list(model.current)
    for (r, n), k in x_of.items():
        if result.x[k] > 0.5:
            layout[r] = n
    return layout, result.status == 0


def _priorities(model: _Model) -> list[np.ndarray]:
    """Orders in which to keep nodes: the most loaded, the fullest, the largest (cheapest per capacity for cost)."""
    scale = np.maximum(model.base.max(axis=0), EPSILON)
    load = np.zeros(len(model.nodes))
    for r, n in enumerate(model.current):
        load[n] += float((model.need[r] / scale).sum())
    size = (model.base / scale).sum(axis=1)
    return [load / model.weights.clip(EPSILON), load / size.clip(EPSILON), (size + load) / model.weights.clip(EPSILON)]


NEIGHBOURHOOD = 24  # nodes re-packed exactly per step: small enough to solve in well under a second
STEP_LIMIT_S = 1.0


def _search(model: _Model, layout: list[int], target: float, deadline: float, rng: random.Random) -> list[int]:
    """Large-neighbourhood search: re-pack a few dozen nodes at a time exactly, keep what improves."""
    best, score = list(layout), _score(model, layout)
    scale = np.maximum(model.base.max(axis=0), EPSILON)
    while score > target + EPSILON and time.perf_counter() < deadline:
        subset = _neighbourhood(model, best, scale, rng)
        repacked = _repack(model, best, subset, min(STEP_LIMIT_S, deadline - time.perf_counter()))
        if repacked is not None and _score(model, repacked) < score - EPSILON and _gpus_fit(model, repacked):
            best, score = repacked, _score(model, repacked)
    return best


def _neighbourhood(model: _Model, layout: list[int], scale: np.ndarray, rng: random.Random) -> list[int]:
    """Nodes to re-pack: some of the emptiest in use (to free), a node or two not in use (often a
    large one that packs better than those kept), and nodes in use with their replicas around them."""
    used = sorted({n for n in layout if n in model.workers} - set(model.pinned))
    if not used:
        return []
    size = np.array([float((model.base[n] / scale).sum()) for n in range(len(model.nodes))])
    load = np.zeros(len(model.nodes))
    for r, n in enumerate(layout):
        load[n] += float((model.need[r] / scale).sum())
    emptiest = sorted(used, key=lambda n: float(load[n]) / max(float(size[n]), EPSILON))
    pool = emptiest[: max(4, len(emptiest) // 4)]
    chosen = rng.sample(pool, min(len(pool), rng.randint(2, 6)))
    unused = [n for n in sorted(model.workers - set(layout)) if n not in model.forced_off]
    if unused:
        chosen += list(dict.fromkeys(rng.choices(unused, weights=[size[n] for n in unused], k=rng.randint(1, 4))))
    others = [
        n for n in range(len(model.nodes)) if n not in chosen and (n in used or n in model.pinned or n not in model.workers)
    ]
    return chosen + rng.sample(others, min(len(others), max(NEIGHBOURHOOD - len(chosen), 0)))


def _repack(model: _Model, layout: list[int], subset: list[int], time_limit_s: float) -> list[int] | None:
    """``layout`` with the replicas on ``subset`` re-placed exactly among ``subset``, the rest fixed."""
    chosen = set(subset)
    moving = [r for r, n in enumerate(layout) if n in chosen]
    if not moving or time_limit_s <= 0:
        return None
    base = model.base.copy()
    counts = {key: c.copy() for key, c in model.fixed_counts.items()}
    for r, n in enumerate(layout):
        if n not in chosen:
            base[n] -= model.need[r]
            counts.setdefault(model.movable[r].key, np.zeros(len(model.nodes)))[n] += 1
    # A freed node whose replicas went outside the subset must stay empty: a node in use keeps its replicas.
    gone = {model.current[r] for r, n in enumerate(layout) if n not in chosen and model.current[r] != n}
    mask = np.zeros(len(model.nodes), dtype=bool)
    mask[subset] = True
    sub = replace(
        model,
        base=base,
        movable=[model.movable[r] for r in moving],
        current=[model.current[r] for r in moving],
        need=model.need[moving],
        eligible=model.eligible[moving] & mask,
        fixed_counts=defaultdict(lambda: np.zeros(len(model.nodes)), counts),
        pinned={n: why for n, why in model.pinned.items() if n in chosen},
        workers=model.workers & chosen,
        forced_off=gone & chosen,
    )
    solved = _exact(sub, None, time_limit_s)
    if solved is None:
        return None
    result = list(layout)
    for k, r in enumerate(moving):
        result[r] = solved[0][k]
    return result


def _gpus_fit(model: _Model, layout: list[int]) -> bool:
    """Whether every GPU instance holds what ``layout`` sends there (the MILP counts partly free GPUs
    as one sum, which can be more than fractions fit into)."""
    arrivals: dict[int, list[float]] = defaultdict(list)
    for r, n in enumerate(layout):
        if n != model.current[r] and model.gpu[r] > EPSILON:
            arrivals[n].append(float(model.gpu[r]))
    return model.gpus.valid(arrivals)


def _rank(model: _Model, layout: list[int]) -> tuple[float, int]:
    """Better layouts first: a lower objective, then fewer replicas moved."""
    return round(_score(model, layout), 6), sum(1 for r, n in enumerate(layout) if n != model.current[r])


def _score(model: _Model, layout: list[int]) -> float:
    used = set(layout) | {i for i in model.candidates if i in model.pinned}
    return float(sum(model.weights[i] for i in used if i in model.workers))


def _result(
    snapshot: Snapshot,
    model: _Model,
    layout: list[int],
    blocked: dict[int, tuple[str, str]],
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
    kept_in_layout = ("layout", "kept in the best layout found: its replicas do not fit elsewhere alongside the rest")
    reasons = {model.nodes[i].id: blocked.get(i, kept_in_layout) for i in model.candidates if i in used_after}
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
        blocked={node: words for node, (_, words) in reasons.items()},
        kept_by={node: rule for node, (rule, _) in reasons.items()},
        nodes_before=before,
        nodes_after=after,
        lower_bound=bound,
        method=method,
        optimal=optimal or (objective == "nodes" and after == bound),  # reaching the bound proves it
        planning_s=planning_s,
        memory_warnings=gpu_memory_warnings(snapshot, moves),
    )


def gpu_memory_warnings(snapshot: Snapshot, moves: Iterable[Move]) -> dict[str, str]:
    """Moves whose replica holds more GPU memory (NVML) than its target node's GPUs have free.

    A replica needs its memory on one GPU, and replicas moving to one node share what is free
    there. Where memory cannot be read (logical GPUs, remote clusters) nothing is flagged.

    >>> gpu_memory_warnings(snap, plan(snap).moves)
    {'r7': 'holds 30 GB of GPU memory; the GPUs of worker 3f2a1c9e have 12 GB free (largest 12 GB)'}
    """
    from servelab.loader.progress import format_bytes

    by_id = {r.id: r for r in snapshot.replicas}
    arriving: dict[str, int] = defaultdict(int)
    warnings = {}
    for move in moves:
        replica = by_id.get(move.replica)
        held = snapshot.gpu_memory_of(replica) if replica is not None else None
        gpus = snapshot.gpus_on(move.target)
        if not held or not gpus:
            continue
        arriving[move.target] += held
        free = [g.memory_total - g.memory_used for g in gpus]
        if held > max(free) or arriving[move.target] > sum(free):
            node = snapshot.node(move.target)
            warnings[move.replica] = (
                f"holds {format_bytes(held)} of GPU memory; the GPUs of {node.type} {short_id(node.id)} have "
                f"{format_bytes(sum(free))} free (largest {format_bytes(max(free))}), {format_bytes(arriving[move.target])} "
                "arriving: it may not fit (Ray reserves GPUs, not their memory)"
            )
    return warnings


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
