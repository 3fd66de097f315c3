"""Seeded synthetic clusters, fragmented the way real ones get: spread at peak, then scaled down."""

from __future__ import annotations

import random
from dataclasses import replace

from servelab.serving.placement import fits
from servelab.serving.snapshot import DeploymentInfo, Node, Replica, Snapshot

GiB = 2**30
NODE_TYPES = {
    "gpu8": {"GPU": 8.0, "CPU": 96.0, "memory": 768.0 * GiB},
    "gpu4": {"GPU": 4.0, "CPU": 48.0, "memory": 384.0 * GiB},
    "cpu32": {"CPU": 32.0, "memory": 128.0 * GiB},
}
NODE_MIX = {"gpu8": 0.4, "gpu4": 0.3, "cpu32": 0.3}
# (deployment, resources): whole, fractional and multi-GPU replicas, and CPU-only ones.
SHAPES = [
    ("llm-70b", {"GPU": 4.0, "CPU": 16.0, "memory": 192.0 * GiB}),
    ("llm-8b", {"GPU": 1.0, "CPU": 8.0, "memory": 48.0 * GiB}),
    ("embedder", {"GPU": 0.5, "CPU": 4.0, "memory": 16.0 * GiB}),
    ("reranker", {"GPU": 0.25, "CPU": 2.0, "memory": 8.0 * GiB}),
    ("tokenizer", {"CPU": 4.0, "memory": 8.0 * GiB}),
    ("router", {"CPU": 2.0, "memory": 4.0 * GiB}),
]
SHAPE_WEIGHTS = [1, 4, 4, 3, 3, 3]
# A harder mix: 2-GPU replicas too, every shape as likely, node types in equal parts.
WIDE_SHAPES = [*SHAPES[:1], ("llm-13b", {"GPU": 2.0, "CPU": 12.0, "memory": 96.0 * GiB}), *SHAPES[1:]]
WIDE_MIX = dict.fromkeys(NODE_TYPES, 1 / 3)


def fragmented_cluster(
    nodes: int,
    seed: int = 0,
    fill: float = 0.85,
    keep_fraction: float = 0.5,
    shapes: list[tuple[str, dict[str, float]]] = SHAPES,
    shape_weights: list[float] | None = None,
    node_mix: dict[str, float] = NODE_MIX,
) -> Snapshot:
    """A cluster of ``nodes`` mixed workers (plus a head): filled to ``fill`` with replicas spread
    onto the emptiest fitting node (as at peak), then with all but ``keep_fraction`` removed at random."""
    rng = random.Random(seed)
    weights = shape_weights or (SHAPE_WEIGHTS if shapes is SHAPES else [1.0] * len(shapes))
    types = rng.choices(list(node_mix), weights=list(node_mix.values()), k=nodes)
    cluster = [Node("head", "head", {"CPU": 8.0, "memory": 32.0 * GiB}, {"CPU": 8.0, "memory": 32.0 * GiB}, head=True)]
    cluster += [Node(f"node-{i:04d}", t, dict(NODE_TYPES[t]), dict(NODE_TYPES[t])) for i, t in enumerate(types)]
    free = {n.id: dict(n.total) for n in cluster[1:]}
    capacity = {k: sum(n.total.get(k, 0.0) for n in cluster[1:]) for k in ("GPU", "CPU")}
    used = dict.fromkeys(capacity, 0.0)
    placed: list[tuple[str, str, dict[str, float]]] = []
    failures = 0
    while failures < 50 and all(used[k] < fill * capacity[k] for k in used):
        name, shape = rng.choices(shapes, weights=weights)[0]
        fitting = [n for n in free if fits(free[n], shape)]
        if not fitting:
            failures += 1
            continue
        target = max(fitting, key=lambda n: (sum(free[n].get(k, 0.0) / max(capacity[k], 1) for k in used), n))
        for k, v in shape.items():
            free[target][k] -= v
            if k in used:
                used[k] += v
        placed.append((name, target, shape))
    survivors = [p for p in placed if rng.random() < keep_fraction]
    free = {n.id: dict(n.total) for n in cluster[1:]}
    replicas = []
    for i, (name, node_id, shape) in enumerate(survivors):
        for k, v in shape.items():
            free[node_id][k] -= v
        replicas.append(Replica(f"{name}#{i:05d}", name, "app", node_id, dict(shape)))
    nodes = [cluster[0]] + [Node(n.id, n.type, n.total, {k: round(v, 9) for k, v in free[n.id].items()}) for n in cluster[1:]]
    return Snapshot(tuple(nodes), tuple(replicas), taken_at=0.0)


def wide_cluster(nodes: int, seed: int = 0) -> Snapshot:
    """The harder generator: shapes of 4, 2, 1, 0.5 and 0.25 GPU and CPU-only, spread at 90% at peak, then 55% removed.

    >>> wide_cluster(100, seed=1)
    """
    return fragmented_cluster(nodes, seed, fill=0.9, keep_fraction=0.45, shapes=WIDE_SHAPES, node_mix=WIDE_MIX)


TEAMS = ("search", "ads", "chat", "vision", "speech", "risk", "maps", "docs")


def many_deployments_cluster(nodes: int, seed: int = 0, teams: int = 6) -> Snapshot:
    """``wide_cluster`` as a platform team sees it: each shape deployed by ``teams`` teams (an app
    each, so 7 x ``teams`` deployments), nodes with hex ids like Ray's, and Serve's deployment list.

    >>> len(many_deployments_cluster(1000).deployments)
    42
    """
    rng = random.Random(seed)
    base = _off_gpu_nodes(wide_cluster(nodes, seed))
    ids = {n.id: n.id if n.head else f"{rng.getrandbits(128):032x}" for n in base.nodes}
    apps = TEAMS[:teams]
    replicas = [
        Replica(f"{rng.getrandbits(32):08x}", f"{app}-{r.deployment}", app, ids[r.node_id or ""], r.resources)
        for r in base.replicas
        for app in [rng.choice(apps)]
    ]
    deployments = []
    for app in apps:
        for name, shape in WIDE_SHAPES:
            count = sum(1 for r in replicas if r.app == app and r.deployment == f"{app}-{name}")
            deployments.append(
                DeploymentInfo(f"{app}-{name}", app, "HEALTHY", count, count, count, dict(shape), f"/{app}/{name}")
            )
    moved = tuple(replace(n, id=ids[n.id]) for n in base.nodes)
    return Snapshot(moved, tuple(replicas), taken_at=0.0, deployments=tuple(deployments))


def _off_gpu_nodes(snapshot: Snapshot) -> Snapshot:
    """CPU-only replicas moved from GPU nodes onto CPU nodes where they fit, as Ray's scheduler
    places them (it keeps work that needs no GPU off GPU nodes while others have room)."""
    free = {n.id: dict(n.available) for n in snapshot.nodes}
    cpu_nodes = [n.id for n in snapshot.nodes if not n.head and not n.total.get("GPU")]
    gpu_nodes = {n.id for n in snapshot.nodes if n.total.get("GPU")}
    replicas = []
    for replica in snapshot.replicas:
        if replica.node_id in gpu_nodes and not replica.resources.get("GPU"):
            target = next((n for n in cpu_nodes if fits(free[n], replica.resources)), None)
            if target is not None:
                for name, amount in replica.resources.items():
                    free[replica.node_id][name] += amount
                    free[target][name] -= amount
                replica = replace(replica, node_id=target)
        replicas.append(replica)
    nodes = tuple(replace(n, available={k: round(v, 9) for k, v in free[n.id].items()}) for n in snapshot.nodes)
    return replace(snapshot, nodes=nodes, replicas=tuple(replicas))
