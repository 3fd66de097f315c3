"""Disruption budgets and the worth-it rule: how a plan is run, not what it is. Pure functions.

In the spirit of Kubernetes disruption budgets and Karpenter's consolidation: nodes drain in waves
of at most ``max_draining`` (several at once is faster; each wave's replicas still only go to nodes
that stay; a node whose replicas already run elsewhere and only finish their last requests no longer
counts, as a terminating pod with a ready replacement does not count against a disruption budget), no deployment has more than ``max_migrating`` replicas migrating at once, and a plan
that saves less than ``min_saving_per_move`` per hour for each replica it moves is not run at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from servelab.errors import CompactionError
from servelab.serving.snapshot import Replica

if TYPE_CHECKING:  # a Plan carries its Budget, so the planner imports this module
    from servelab.serving.planner import Plan


@dataclass(frozen=True)
class Budget:
    """How much disruption a compaction may cause at once, and what it must save to be worth it.

    >>> compact(budget=Budget(max_draining=2, min_saving_per_move=0.1))
    """

    max_draining: int = 1  # nodes whose replicas migrate at once
    max_migrating: int | None = None  # replicas of one deployment migrating at once (None: no limit)
    min_saving_per_move: float = 0.01  # $/h the plan must save per replica it moves

    def __post_init__(self) -> None:
        if not isinstance(self.max_draining, int) or self.max_draining < 1:
            raise CompactionError(f"max_draining={self.max_draining!r} must be a positive integer (nodes draining at once).")
        if self.max_migrating is not None and (not isinstance(self.max_migrating, int) or self.max_migrating < 1):
            raise CompactionError(f"max_migrating={self.max_migrating!r} must be a positive integer or None (no limit).")
        if self.min_saving_per_move < 0:
            raise CompactionError(f"min_saving_per_move={self.min_saving_per_move!r} must be 0 or more ($/h per replica moved).")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def saving_per_move(plan: Plan) -> float:
    """Dollars per hour the plan saves for each replica it moves (all of it when nothing moves)."""
    return plan.freed_cost_per_hour / len(plan.moves) if plan.moves else plan.freed_cost_per_hour


def not_worth_it(plan: Plan, budget: Budget) -> str:
    """Why ``plan`` should not run under ``budget``, or '' when it should."""
    if not plan.nodes_to_free:
        return ""
    saving = saving_per_move(plan)
    if saving + 1e-9 >= budget.min_saving_per_move:
        return ""
    return (
        f"not worth it: the plan saves ${plan.freed_cost_per_hour:.2f}/h for {len(plan.moves)} replica move(s), "
        f"${saving:.3f}/h per move, below min_saving_per_move=${budget.min_saving_per_move:.3f}/h; "
        "lower it to run this plan anyway."
    )


def waves(nodes: Sequence[str], placement: dict[str, list[Replica]], budget: Budget) -> list[list[str]]:
    """``nodes`` (to free, in order) grouped into waves that drain together, within the budget.

    ``placement`` maps each node to the replicas on it now. A node whose own replicas of one
    deployment exceed ``max_migrating`` drains alone (Serve migrates a node's replicas together).
    """
    result: list[list[str]] = []
    wave: list[str] = []
    migrating: Counter[tuple[str, str]] = Counter()
    for node in nodes:
        mine = Counter(r.key for r in placement.get(node, []))
        over = budget.max_migrating is not None and any(
            migrating[key] + count > budget.max_migrating for key, count in mine.items()
        )
        if wave and (len(wave) >= budget.max_draining or over):
            result.append(wave)
            wave, migrating = [], Counter()
        wave.append(node)
        migrating.update(mine)
    if wave:
        result.append(wave)
    return result


def as_planned(plan: Plan, wave: list[str], before: list[Replica], after: list[Replica]) -> int:
    """How many of the wave's replicas came up where the plan said.

    Replacements are new replicas (new ids), so they are matched to the plan's moves by deployment
    and target node.
    """
    planned = Counter((m.app, m.deployment, m.target) for m in plan.moves if m.source in wave)
    known = {r.id for r in before}
    arrived = Counter((r.app, r.deployment, r.node_id) for r in after if r.id not in known and r.node_id is not None)
    return sum(min(count, arrived[key]) for key, count in planned.items())
