"""A real embedded Ray cluster (a head and 3 priced, labelled workers with 2 logical GPUs each)."""

from __future__ import annotations

import pytest

from servelab import serving
from servelab.serving import Snapshot, context
from servelab.testing import free_port
from servelab.testing.apps import Echo

WORKERS = 3
NODE_TYPE = {"count": WORKERS, "cpus": 1, "gpus": 2, "cost_per_hour": 2.5, "labels": {"zone": "a"}}


_SHARED: list[str] = []  # the address of the cluster the serving and jupyter_ext packages share


@pytest.fixture
def cluster() -> str:
    """Started by the first test that asks, shared by the serving and jupyter_ext packages (which
    tests/conftest.py runs back to back) and stopped after the last of them, before the LLM tests and
    the notebooks start clusters of their own: starting one takes 25 s, and the scenarios built on it
    (``fragmented``) carry over."""
    if not _SHARED:
        _SHARED.append(serving.up(node_types={"gpu2": NODE_TYPE}, http_port=free_port()))
    return _SHARED[0]


def stop_shared_cluster() -> None:
    if _SHARED:
        serving.down()
        _SHARED.clear()


def reset(cluster: str) -> None:
    """No applications, an empty peer cache, and exactly three undrained workers (tests drain, remove,
    crash and add nodes)."""
    serving.delete_all()
    serving.evict_weights()
    workers = context.current().workers
    alive = {n.id for n in serving.snapshot().nodes}
    for node_id in [n for n in workers if n not in alive]:  # crashed in a test: forget its raylet
        workers.pop(node_id)
    for node in serving.snapshot().nodes:
        if node.draining:  # drained by an observer (the Jupyter server), which cannot remove nodes
            serving.remove_node(node.id)
    while sum(1 for n in serving.snapshot().nodes if not n.head) < WORKERS:
        serving.add_node()
    for extra in [n.id for n in serving.snapshot().nodes if not n.head][WORKERS:]:
        serving.remove_node(extra)


_FRAGMENTED: dict[str, tuple[object, ...]] = {}  # cluster -> the state fragmented() left it in


@pytest.fixture
def fragmented(cluster: str) -> Snapshot:
    """Two fractional-GPU deployments on nodes of their own, each half full: two half-empty nodes whose
    replicas would fit on one. ``a`` packs a node and is scaled to half (how Serve leaves nodes
    fragmented), then ``b`` starts with 2 replicas, which pack scheduling puts on an empty node.
    Built once and handed to the next test as it is while nothing changed it (same nodes, replicas,
    targets, an empty cache): building it takes 25-50 s here, and half the tests that ask for it only
    read it."""
    now = serving.snapshot()
    if _FRAGMENTED.get(cluster) == _state(now):
        return now
    reset(cluster)
    serving.deploy("a", Echo, replicas=4, gpus=0.5, init_args=("a",))
    serving.deploy("b", Echo, replicas=2, gpus=0.5, init_args=("b",))
    serving.scale("a", 2)
    serving.wait_healthy()
    built = serving.snapshot()
    _FRAGMENTED[cluster] = _state(built)
    return built


def _state(snapshot: Snapshot) -> tuple[object, ...]:
    """What a test may have changed: nodes and where each replica runs (the fingerprint), the
    deployments' targets and health, and the peer cache."""
    deployments = sorted((d.app, d.name, d.target_replicas, d.healthy) for d in snapshot.deployments)
    return (snapshot.fingerprint(), tuple(deployments), len(snapshot.weight_cache), snapshot.all_healthy())
