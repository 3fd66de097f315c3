"""Disruption budgets and the worth-it rule (pure logic, no Ray): waves, when the next may start, saving per move, landing as planned."""

from __future__ import annotations

from dataclasses import replace

import pytest

from servelab.errors import CompactionError
from servelab.serving.budget import Budget, as_planned, not_worth_it, saving_per_move, waves
from servelab.serving.planner import Move, Plan
from servelab.serving.snapshot import DeploymentInfo, Replica, Snapshot


def make_plan(nodes: tuple[str, ...], moves: tuple[Move, ...], cost: float) -> Plan:
    return Plan("f", "nodes", nodes, moves, {}, (), {}, cost, {}, 4, 4 - len(nodes), 1, "exact", True, 0.0)


def replica(name: str, deployment: str, node: str | None) -> Replica:
    return Replica(name, deployment, "app", node, {"GPU": 1.0})


def move(name: str, deployment: str, source: str, target: str) -> Move:
    return Move(name, deployment, "app", source, target)


PLAN = make_plan(
    ("n1", "n2", "n3"),
    (move("a1", "a", "n1", "k"), move("a2", "a", "n2", "k"), move("b1", "b", "n3", "k"), move("b2", "b", "n3", "j")),
    cost=6.0,
)
PLACEMENT = {
    "n1": [replica("a1", "a", "n1")],
    "n2": [replica("a2", "a", "n2")],
    "n3": [replica("b1", "b", "n3"), replica("b2", "b", "n3")],
}


def test_waves_drain_up_to_max_draining_nodes_at_once_in_plan_order() -> None:
    assert waves(PLAN.nodes_to_free, PLACEMENT, Budget(max_draining=1)) == [["n1"], ["n2"], ["n3"]]
    assert waves(PLAN.nodes_to_free, PLACEMENT, Budget(max_draining=2)) == [["n1", "n2"], ["n3"]]
    assert waves(PLAN.nodes_to_free, PLACEMENT, Budget(max_draining=5)) == [["n1", "n2", "n3"]]
    assert waves(["n2", "n3"], PLACEMENT, Budget(max_draining=1)) == [["n2"], ["n3"]]  # what remains after a wave


def test_waves_keep_each_deployments_migrating_replicas_within_the_budget() -> None:
    # a has one replica on n1 and one on n2: with max_migrating=1 they never migrate together;
    # n3 holds two of b, over the budget on its own, so it drains alone (Serve moves a node's replicas together).
    assert waves(PLAN.nodes_to_free, PLACEMENT, Budget(max_draining=5, max_migrating=1)) == [["n1"], ["n2"], ["n3"]]
    assert waves(PLAN.nodes_to_free, PLACEMENT, Budget(max_draining=5, max_migrating=2)) == [["n1", "n2", "n3"]]


def test_the_next_wave_may_start_once_the_last_ones_replicas_run_elsewhere() -> None:
    def state(old: str, new: str | None, running: int) -> Snapshot:
        replicas = [replace(replica("old", "a", "n1"), state=old)]
        if new is not None:
            replicas.append(replace(replica("new", "a", "k" if new == "RUNNING" else None), state=new))
        deployment = DeploymentInfo("a", "app", "HEALTHY", 1, running, len(replicas), {"GPU": 1.0}, None)
        return Snapshot((), tuple(replicas), deployments=(deployment,))

    assert not state("RUNNING", None, 1).replaced(["n1"])  # not migrating yet
    assert not state("PENDING_MIGRATION", "STARTING", 0).replaced(["n1"])  # its replacement is starting
    assert state("STOPPING", "RUNNING", 1).replaced(["n1"])  # the old one only finishes its requests
    assert not state("STOPPING", "RUNNING", 1).replaced(["k"])  # where the replacement runs is not emptied
    assert state("STOPPING", "RUNNING", 1).replaced([]) and not state("PENDING_MIGRATION", "STARTING", 0).replaced([])


def test_a_plan_saving_too_little_per_move_is_not_worth_running() -> None:
    assert saving_per_move(PLAN) == 1.5
    assert not_worth_it(PLAN, Budget(min_saving_per_move=1.5)) == ""
    reason = not_worth_it(PLAN, Budget(min_saving_per_move=2.0))
    assert "$1.500/h per move" in reason and "min_saving_per_move=$2.000/h" in reason


def test_replacements_are_matched_to_the_plan_by_deployment_and_target() -> None:
    before = [r for rs in PLACEMENT.values() for r in rs]
    after = [replica("x1", "b", "k"), replica("x2", "b", "k"), replica("x3", "a", "j")]  # one b went to k instead of j
    assert as_planned(PLAN, ["n3"], before, after) == 1
    assert as_planned(PLAN, ["n1", "n2"], before, after) == 0  # a's replacement landed on j, not k


@pytest.mark.parametrize(("options", "message"), [
    ({"max_draining": 0}, "max_draining=0"),
    ({"max_migrating": 0}, "max_migrating=0"),
    ({"min_saving_per_move": -1.0}, "min_saving_per_move=-1.0"),
])  # fmt: skip
def test_bad_budgets_are_refused_with_the_fix(options: dict, message: str) -> None:
    with pytest.raises(CompactionError, match=message):
        Budget(**options)
