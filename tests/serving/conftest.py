"""A real embedded Ray cluster (a head and 3 priced, labelled workers with 2 logical GPUs each)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servelab import serving
from servelab.serving import Snapshot, context
from servelab.testing import free_port
from servelab.testing.apps import Echo

WORKERS = 3
NODE_TYPE = {"count": WORKERS, "cpus": 1, "gpus": 2, "cost_per_hour": 2.5, "labels": {"zone": "a"}}


@pytest.fixture(scope="package")  # stopped before the notebooks start clusters of their own
def cluster() -> Iterator[str]:
    address = serving.up(node_types={"gpu2": NODE_TYPE}, http_port=free_port())
    try:
        yield address
    finally:
        serving.down()


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


@pytest.fixture
def fragmented(cluster: str) -> Snapshot:
    """Two fractional-GPU deployments, each packed on its own node, then scaled to half:
    two half-empty nodes whose replicas would fit on one."""
    reset(cluster)
    serving.deploy("a", Echo, replicas=4, gpus=0.5, init_args=("a",))
    serving.deploy("b", Echo, replicas=4, gpus=0.5, init_args=("b",))
    serving.scale("a", 2)
    serving.scale("b", 2)
    serving.wait_healthy()
    return serving.snapshot()
