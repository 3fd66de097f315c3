"""Failure scenarios on the embedded cluster this process owns, shared by the tests and the benchmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass

from servelab import serving
from servelab.serving import context, ray_adapter
from servelab.testing.apps import Echo

DEPLOYMENTS = ("a", "b", "c")


@dataclass(frozen=True)
class NodeDeathRun:
    """One compaction whose migration target crashed: what the executor said and whether the cluster healed."""

    report: serving.CompactionReport
    killed: str
    recovered_s: float | None  # from the kill until every deployment was healthy at its target; None: not in time
    unhealthy: tuple[str, ...]


def fragment_for_one_move() -> None:
    """Three deployments packed on their own 2-GPU nodes, scaled down so that a plan moves one replica:
    ``a`` fills a node with two 1-GPU replicas, ``b`` keeps two 0.5-GPU replicas, ``c`` one."""
    serving.deploy("a", Echo, replicas=2, gpus=1, init_args=("a",))
    serving.deploy("b", Echo, replicas=4, gpus=0.5, init_args=("b",))
    serving.deploy("c", Echo, replicas=4, gpus=0.5, init_args=("c",))
    serving.scale("b", 2)
    serving.scale("c", 1)
    serving.wait_healthy()


def kill_migration_target(limit_s: float = 180.0) -> NodeDeathRun:
    """Compact under a request loop and SIGKILL the raylet of the node the replica moves to, at the drain."""
    snap = serving.snapshot()
    plan = serving.plan(snap)
    if not plan.moves:
        raise AssertionError(f"the scenario needs a plan that moves a replica; got {plan}")
    target = plan.moves[0].target
    node = context.current().workers[target]
    killed_at: list[float] = []

    def crash(event: serving.CompactionEvent) -> None:
        if event.kind == "draining" and not killed_at:
            ray_adapter.kill_raylet(node)
            killed_at.append(time.monotonic())

    probe = serving.LoadProbe([serving.url(name) for name in DEPLOYMENTS])
    report = serving.compact(plan, probe=probe, on_event=crash)
    recovered = None
    while time.monotonic() < killed_at[0] + limit_s:
        if serving.all_healthy():
            recovered = time.monotonic() - killed_at[0]
            break
        time.sleep(0.5)
    unhealthy = tuple(
        f"{d.name} {d.status} {d.running_replicas}/{d.target_replicas}" for d in serving.deployments() if not d.healthy
    )
    return NodeDeathRun(report, target, recovered, unhealthy)
