"""A migration target crashes (SIGKILL of its raylet) mid-compaction, under load: the cluster heals."""

from __future__ import annotations

import pytest

from servelab import serving
from servelab.serving.snapshot import short_id
from servelab.testing.scenarios import fragment_for_one_move, kill_migration_target

from .conftest import reset

pytestmark = pytest.mark.slow


def test_a_crashed_migration_target_stops_compaction_and_every_deployment_recovers(cluster: str) -> None:
    reset(cluster)
    serving.add_node()  # a spare node for the crashed one's replicas
    try:
        fragment_for_one_move()
        run = kill_migration_target(limit_s=180)
    finally:
        serving.delete_all()
    report = run.report
    assert report.stopped and short_id(run.killed) in report.reason and "left the cluster" in report.reason
    # A node emptied and released before the crash was noticed (missed heartbeats take tens of seconds)
    # may count as freed; the crashed node never does.
    assert run.killed not in report.nodes_freed
    assert run.recovered_s is not None, f"not healthy 180 s after the crash: {run.unhealthy}; report: {report.reason}"
    assert report.during is not None and report.during.requests > 0
    print(
        f"recovered {run.recovered_s:.1f} s after the crash; {report.during.failed} of {report.during.requests} requests failed"
    )
    after = serving.snapshot()
    alive = {n.id for n in after.nodes}
    assert run.killed not in alive and all(r.node_id in alive for r in after.replicas)  # the drained node may have left too
