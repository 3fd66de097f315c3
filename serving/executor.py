"""Zero-downtime compaction: drain planned nodes in waves through Ray, then release them.

A node drained through the GCS with reason PREEMPTION and no deadline makes Serve start each
replacement replica elsewhere before it stops the old one, so requests keep being served. The
executor checks before each wave that its nodes' replicas fit elsewhere and starts the next wave
as soon as the replacements run (the old replicas' graceful stop overlaps it); each node is released
once it hosts nothing and the peer cache's copies held there moved to a node that stays (fixed
embedded cluster: removed; elsewhere Ray ends a drained, idle raylet and the autoscaler terminates
the node, which the report follows on a cluster whose autoscaler reports its state). It never starts
while the autoscaler launches nodes for unmet demand, nor moves replicas onto a node it would
terminate, and stops safely, with a report, when a node dies midway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from servelab.errors import MAGIC, SIDEBAR, CompactionError, StalePlanError
from servelab.serving import context, ray_adapter, reader
from servelab.serving.autoscaler import termination_line
from servelab.serving.budget import Budget, as_planned, not_worth_it, waves
from servelab.serving.cluster import remove_node
from servelab.serving.context import Session
from servelab.serving.placement import Room, stuck
from servelab.serving.planner import Plan
from servelab.serving.planner import plan as make_plan
from servelab.serving.probe import LatencyStats, LoadProbe
from servelab.serving.reader import DRAIN_RECORD, quick_snapshot, snapshot
from servelab.serving.snapshot import Replica, Snapshot, short_id
from servelab.serving.steering import as_serve_places
from servelab.serving.weight_cache import hand_over as hand_over_cached_weights
from servelab.serving.weight_cache import release_node as release_cached_weights

POLL_S = 0.2  # quick_snapshot() is cheap: a replacement noticed sooner is a node freed sooner
STUCK_AFTER_S = 30.0


@dataclass(frozen=True)
class CompactionEvent:
    """One step of a compaction, for widgets and websockets."""

    kind: str  # planned | draining | migrated | released | replanned | terminated | stopped | done
    node: str | None
    message: str
    elapsed_s: float
    nodes_done: int
    nodes_total: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CompactionReport:
    """What a compaction did: nodes freed, replicas moved, time, and how requests fared."""

    plan: Plan
    dry_run: bool
    nodes_freed: tuple[str, ...]
    replicas_moved: int
    seconds: float
    stopped: bool
    reason: str
    events: tuple[CompactionEvent, ...]
    before: LatencyStats | None = None
    during: LatencyStats | None = None
    replicas_as_planned: int = 0
    budget: Budget | None = None
    terminated: tuple[tuple[str, float], ...] = ()  # freed node, seconds from its drain until the autoscaler terminated it

    @property
    def failed_requests(self) -> int | None:
        return None if self.during is None else self.during.failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compact(
    plan: Plan | None = None,
    *,
    budget: Budget | None = None,
    dry_run: bool = False,
    probe: LoadProbe | None = None,
    on_event: Callable[[CompactionEvent], None] | None = None,
    warmup_s: float = 2.0,
    node_timeout_s: float = 180.0,
    release_unowned_nodes: bool = False,
    **plan_options: Any,
) -> CompactionReport:
    """Run ``plan`` (or a fresh ``plan(snapshot(), budget=budget, **plan_options)``) with zero downtime,
    within its budget (``budget`` given here replaces the plan's).

    Refuses a plan made for a cluster that has changed since (StalePlanError) and one not worth its
    moves (the report says why). Nodes drain in waves of ``budget.max_draining``, the next as soon
    as the last one's replicas run elsewhere; after each wave the rest of the plan is checked against
    the live cluster and planned again where it no longer holds. ``dry_run`` returns the plan as a
    report and changes nothing. ``probe`` measures request latency before and during.

    Where no autoscaler serves the cluster and this process did not start it (``freed_by()`` is
    ``"nobody"``), the freed nodes' Ray processes exit while their machines keep running: it refuses
    (CompactionError, saying so) unless ``release_unowned_nodes=True`` confirms that this is wanted.

    >>> compact(dry_run=True).plan.nodes_to_free
    >>> report = compact(plan(snapshot(), budget=Budget(max_draining=2)))   # or compact(budget=...)
    >>> report.nodes_freed, report.replicas_moved, report.replicas_as_planned
    """
    started = time.monotonic()
    snap = snapshot()
    if plan is None:
        plan = make_plan(snap, budget=budget, **plan_options)
    elif plan_options:
        raise CompactionError(f"pass either a plan or planning options {sorted(plan_options)}, not both.")
    elif plan.fingerprint != snap.fingerprint():
        changed = "the cluster changed since this plan was made (nodes or replicas moved); "
        raise StalePlanError(
            changed + "make a new one with plan(snapshot()) or call compact() without a plan.",
            said_in={
                MAGIC: changed + "run %compact --dry-run again for a new plan, or %compact to plan and run at once.",
                SIDEBAR: changed + "press Plan again for a new one.",
            },
        )
    budget = budget or plan.budget
    busy = "" if dry_run else _busy_elsewhere(snap) or _autoscaler_busy(snap, plan)
    if busy:
        raise CompactionError(busy)
    plan = as_serve_places(snap, plan, budget.max_draining)  # the order and targets Serve will keep to
    frees = who_frees(context.get(), snap.autoscaler is not None)
    skip = not_worth_it(plan, budget)
    if frees == NOBODY and plan.nodes_to_free and not (dry_run or skip or release_unowned_nodes):
        raise unowned_nodes_error(plan.nodes_to_free)
    run = _Run(plan, budget, started, on_event, frees, node_timeout_s)
    run.emit("planned", None, f"{run.total} node(s) to free, {len(plan.moves)} replica move(s)")
    if dry_run or run.total == 0 or skip:
        run.emit("done", None, "dry run: nothing changed" if dry_run else skip or "nothing to free")
        return run.report(skip, {}, dry_run=dry_run)
    if probe is not None:
        probe.start()
        time.sleep(warmup_s)
        probe.mark("during")
    try:
        reason = run.in_waves(snap)
    finally:
        stats = probe.stop() if probe is not None else {}
    if run.freed and run.frees == AUTOSCALER:
        run.follow_terminations()
    if reason:
        run.emit("stopped", None, reason)
    else:
        run.emit("done", None, f"freed {len(run.freed)} node(s), moved {run.moved} replica(s), {run.placed} landed as planned")
    return run.report(reason, stats, stopped=bool(reason))


@dataclass
class _Run:
    """One compaction under way: the plan it follows (replanned when Serve places replicas elsewhere),
    the nodes drained, stopping and freed so far, and its events."""

    plan: Plan
    budget: Budget
    started: float
    on_event: Callable[[CompactionEvent], None] | None
    frees: str  # who takes a freed node away (who_frees)
    node_timeout_s: float
    first_plan: Plan = field(init=False)  # what the report says was planned
    total: int = field(init=False)  # nodes to free: the plan's, then what replanning leaves
    events: list[CompactionEvent] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)
    draining: list[str] = field(default_factory=list)  # drained, not yet released
    stopping: list[str] = field(default_factory=list)  # of those, the ones whose replicas run elsewhere now
    drained_at: dict[str, float] = field(default_factory=dict)  # seconds into the run, as its events count
    handovers: dict[str, Any] = field(default_factory=dict)  # migrated node: its cached weights moving to a node that stays
    terminated: list[tuple[str, float]] = field(default_factory=list)
    moved: int = 0
    placed: int = 0

    def __post_init__(self) -> None:
        self.total = len(self.plan.nodes_to_free)
        self.first_plan = self.plan

    def emit(self, kind: str, node: str | None, message: str, at_s: float | None = None) -> CompactionEvent:
        """Send an event, at ``at_s`` seconds into the run (default: now)."""
        elapsed = self.elapsed() if at_s is None else at_s
        event = CompactionEvent(kind, node, message, elapsed, len(self.freed), self.total)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def elapsed(self) -> float:
        """Seconds since the run started: the one clock of its events, drains and terminations."""
        return time.monotonic() - self.started

    def in_waves(self, snap: Snapshot) -> str:
        """Drain the plan's nodes wave by wave until each is released; why it stopped, or ''."""
        expected = {n.id for n in snap.nodes}  # nodes that must stay: a drained one may leave by itself once empty
        reason = ""
        remaining = list(self.plan.nodes_to_free)
        while remaining and not reason:
            wave = waves(remaining, {n: snap.replicas_on(n) for n in remaining}, self.budget)[0]
            reason = _lost_nodes(expected, snap) or _busy_elsewhere(snap) or _cannot_move(wave, snap, self.plan.layout)
            if reason:
                break
            before = snap.replicas
            self.drain(wave, snap)
            expected.difference_update(wave)  # Ray ends a drained raylet once it is idle
            # The next wave starts once this one's replicas run elsewhere: the old ones' graceful stop
            # (Serve's shutdown wait loop, 2 s even when idle) overlaps the next replacements' start.
            reason = _wait_replaced(wave, self.stopping, expected, self.node_timeout_s, self.release)
            if reason:
                break
            snap = snapshot()
            self.migrated(wave, before, snap)
            remaining = [n for n in remaining if n not in wave]
            if remaining and _cannot_move(remaining, snap, self.plan.layout):
                remaining = self.replan(snap)
        if self.stopping and not reason:
            reason = _wait_replaced([], self.stopping, expected, self.node_timeout_s, self.release, until_empty=True)
        if reason and self.draining:
            # A drain cannot be undone: Serve goes on moving the nodes' replicas. Report once they settled,
            # and release the nodes they have left.
            reason += _settle(self.draining, self.node_timeout_s)
            left = quick_snapshot()
            self.release([n for n in self.stopping if not left.replicas_on(n)])
        return reason

    def drain(self, wave: list[str], snap: Snapshot) -> None:
        for node_id in wave:
            _drain(node_id)
            self.draining.append(node_id)
            event = self.emit(
                "draining", node_id, f"draining {short_id(node_id)}: {len(snap.replicas_on(node_id))} replica(s) to migrate"
            )
            self.drained_at[node_id] = event.elapsed_s

    def migrated(self, wave: list[str], before: tuple[Replica, ...], snap: Snapshot) -> None:
        """The wave's replicas run elsewhere: count them, and move the nodes' cached weights to nodes that stay."""
        replicas = sum(1 for r in before if r.node_id in wave)
        landed = as_planned(self.plan, wave, list(before), list(snap.replicas))
        self.moved += replicas
        self.placed += landed
        keepers = _keepers(snap, self.plan)
        for node_id in wave:
            # Its cached weights move once its replicas have (not to compete with their start).
            self.handovers[node_id] = hand_over_cached_weights(node_id, keepers)
            self.emit(
                "migrated",
                node_id,
                f"replicas run elsewhere, leaving {short_id(node_id)}; {landed}/{replicas} of the wave landed as planned",
            )
        self.stopping += wave

    def replan(self, snap: Snapshot) -> list[str]:
        """Serve chose other targets than planned and the rest no longer fits: plan what remains again;
        the nodes still to free."""
        fresh = make_plan(snap, objective="cost" if self.first_plan.objective == "cost" else "nodes", budget=self.budget)
        self.plan = as_serve_places(snap, fresh, self.budget.max_draining)
        remaining = [n for n in self.plan.nodes_to_free if n not in self.stopping]
        self.total = len(self.freed) + len(self.stopping) + len(remaining)
        self.emit(
            "replanned",
            None,
            f"replicas landed elsewhere than planned; the rest re-planned: {len(remaining)} node(s) still to free",
        )
        return remaining

    def release(self, nodes: list[str]) -> None:
        """Let go of nodes that host nothing any more: their cached weights first (held there, they
        would keep it busy), then the node itself where this process removes nodes."""
        for node_id in nodes:
            release_cached_weights(node_id, self.handovers.pop(node_id, None))
            if self.frees == SERVELAB:
                remove_node(node_id)
                ray_adapter.forget(DRAIN_RECORD, node_id)
            self.draining.remove(node_id)
            self.stopping.remove(node_id)
            self.freed.append(node_id)
            self.emit("released", node_id, released_line(node_id, self.frees))

    def follow_terminations(self) -> None:
        """Wait until the autoscaler has terminated each freed node, and say when."""
        for node_id, at_s in _await_terminations(self.freed, self.elapsed, self.node_timeout_s):
            drained_s = self.drained_at[node_id]
            self.terminated.append((node_id, at_s - drained_s))
            self.emit("terminated", node_id, termination_line(node_id, at_s - drained_s, drained_s), at_s=at_s)

    def report(
        self, reason: str, stats: dict[str, LatencyStats], *, dry_run: bool = False, stopped: bool = False
    ) -> CompactionReport:
        return CompactionReport(
            plan=self.first_plan,
            dry_run=dry_run,
            nodes_freed=tuple(self.freed),
            replicas_moved=self.moved,
            seconds=time.monotonic() - self.started,
            stopped=stopped,
            reason=reason,
            events=tuple(self.events),
            before=stats.get("before"),
            during=stats.get("during"),
            replicas_as_planned=self.placed,
            budget=self.budget,
            terminated=tuple(self.terminated),
        )


SERVELAB, AUTOSCALER, NOBODY = "servelab", "autoscaler", "nobody"


def who_frees(session: Session | None, autoscaled: bool) -> str:
    """Who takes a freed node away: ``"servelab"`` where this process started the fixed embedded
    cluster (it removes the raylet, standing in for an autoscaler), ``"autoscaler"`` where Ray's
    autoscaler reports state, else ``"nobody"``: Ray ends the drained, idle raylet and the machine
    keeps running (a process that attached to a cluster no autoscaler serves)."""
    if session is not None and session.removes_nodes:
        return SERVELAB
    return AUTOSCALER if autoscaled else NOBODY


def freed_by() -> str:
    """Who takes the nodes a compaction frees away on this process's cluster: ``"servelab"``,
    ``"autoscaler"`` or ``"nobody"`` (see ``who_frees``); what ``compact()`` asks to confirm.

    >>> freed_by()
    'nobody'
    """
    return who_frees(context.current(), reader.autoscaler_state() is not None)


def unowned_nodes_warning(nodes: Iterable[str] = ()) -> str:
    """What freeing ``nodes`` (or, none named, whatever a compaction frees) does on a cluster that no
    autoscaler serves: said before it runs."""
    named = [short_id(n) for n in nodes]
    which = f"{len(named)} node(s) ({', '.join(named)})" if named else "the nodes it frees"
    return (
        f"no autoscaler serves this cluster: compacting drains {which}, whose Ray processes then exit "
        "while their machines keep running until their owner stops or reuses them."
    )


def unowned_warning(plan: Plan) -> str:
    """What the faces say before running ``plan`` where nobody would take its freed nodes away, or ''.

    >>> unowned_warning(plan(snapshot()))
    'no autoscaler serves this cluster: compacting drains 1 node(s) (3f2a1c9e), whose Ray processes ...'
    """
    return unowned_nodes_warning(plan.nodes_to_free) if plan.nodes_to_free and freed_by() == NOBODY else ""


def unowned_nodes_error(nodes: Iterable[str]) -> CompactionError:
    said = unowned_nodes_warning(nodes) + " Nothing was changed. To go ahead, "
    return CompactionError(
        said + "call compact(plan, release_unowned_nodes=True).",
        said_in={MAGIC: said + "run %compact --release-unowned.", SIDEBAR: said + "press Compact and confirm."},
    )


def released_line(node_id: str, frees: str) -> str:
    """What the views say of a node once its replicas left, in the words of who takes it away."""
    node = short_id(node_id)
    return {
        SERVELAB: f"{node} released: servelab removed its raylet (this fixed cluster has no autoscaler; "
        "on a real cluster the node's machine would be given back)",
        AUTOSCALER: f"{node} is idle and drained: Ray ends its raylet, and the autoscaler terminates the node "
        "once its idle timeout passes",
        NOBODY: f"{node} is idle and drained: Ray ends its raylet; no autoscaler serves this cluster, so its "
        "machine keeps running until its owner stops or reuses it",
    }[frees]


def _drain(node_id: str) -> None:
    ray_adapter.report(DRAIN_RECORD, node_id, {"started": time.time()})  # so snapshots tell our drains from others'
    accepted, rejection = ray_adapter.drain_node(node_id, "servelab compaction")
    if not accepted:
        ray_adapter.forget(DRAIN_RECORD, node_id)
        raise CompactionError(f"Ray refused to drain {node_id}: {rejection}")


def _keepers(snap: Snapshot, plan: Plan) -> list[str]:
    """Worker nodes that host replicas once ``plan`` is done: where a leaving node's cached weights go."""
    leaving = set(plan.nodes_to_free)
    targets = {m.target for m in plan.moves}
    return [
        n.id
        for n in snap.nodes
        if not n.head and not n.draining and n.id not in leaving and (n.id in targets or snap.replicas_on(n.id))
    ]


def _busy_elsewhere(snap: Snapshot) -> str:
    """One compactor at a time: why not to drain beside Ray's own compaction or a drain servelab did not start, or ''."""
    foreign = snap.foreign_drains
    if not foreign:
        return ""
    who = {"ray": "Ray Serve's own node compaction", "other": "a drain servelab did not start (an operator or autoscaler)"}
    busy = "; ".join(f"{short_id(n.id)} by {who.get(n.drained_by or 'other', n.drained_by)}" for n in foreign)
    return (
        f"node(s) are being emptied already: {busy}. Two compactions at once would fight over the same "
        "replicas; compact again once that has finished (snapshot().foreign_drains is empty)."
    )


def _autoscaler_busy(snap: Snapshot, plan: Plan) -> str:
    """Why not to compact beside Ray's autoscaler now, or '': it is launching nodes for unmet demand
    (the replicas it launches for would land wherever compaction makes room), or the plan moves
    replicas onto a node that hosts none, which the autoscaler terminates once idle."""
    state = snap.autoscaler
    if state is None:
        return ""
    if state.busy:
        return (
            f"the autoscaler is busy: {state.describe()}. Compacting now would race its launches; compact again "
            "once it is at rest (snapshot().autoscaler.describe() is empty)."
        )
    idle = sorted({m.target for m in plan.moves if not snap.replicas_on(m.target) and state.node(m.target)})
    if idle:
        return (
            f"the plan moves replicas onto {', '.join(short_id(n) for n in idle)}, idle node(s) the autoscaler "
            "terminates once their idle timeout passes; plan again (plan(snapshot())) once it has."
        )
    return ""


def _await_terminations(freed: list[str], clock: Callable[[], float], timeout_s: float) -> list[tuple[str, float]]:
    """Wait (at most ``timeout_s``) until the autoscaler has terminated each freed node; each node
    with the time on ``clock`` it was seen terminated."""
    deadline = time.monotonic() + timeout_s
    waiting = list(freed)
    done: list[tuple[str, float]] = []
    while waiting and time.monotonic() < deadline:
        state = reader.autoscaler_state()
        if state is None:
            break
        for node_id in [n for n in waiting if state.terminated(n)]:
            waiting.remove(node_id)
            done.append((node_id, clock()))
        time.sleep(POLL_S * 5)
    return done


def _wait_replaced(
    wave: list[str],
    stopping: list[str],
    expected: set[str],
    timeout_s: float,
    release: Callable[[list[str]], None],
    until_empty: bool = False,
) -> str:
    """Wait until the wave's replicas run elsewhere (``until_empty``: until ``stopping`` is empty too),
    releasing each stopping node once it hosts nothing; a reason to stop, or ''."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snap = quick_snapshot()
        lost = _lost_nodes(expected, snap)
        if lost:
            return lost
        empty = [n for n in stopping if not snap.replicas_on(n)]
        if empty:
            release(empty)
        if snap.replaced(wave) and not (until_empty and stopping):
            return ""
        time.sleep(POLL_S)
    left = ", ".join(short_id(n) for n in _still_hosting(wave + stopping, snap))
    return f"replicas had not left {left} after {timeout_s:.0f} s; they stay drained, their replicas keep serving"


def _still_hosting(wave: list[str], snap: Snapshot) -> list[str]:
    return [n for n in wave if snap.replicas_on(n)]


def _settle(wave: list[str], timeout_s: float) -> str:
    """After a stop: wait until the drained node is empty and every deployment healthy; '' or what is not.

    A replica left on no node for STUCK_AFTER_S while a live node has room is restarted once: after
    a raylet is killed, Ray can keep a replacement pending (STARTING, no node) for minutes while
    Serve's pack scheduler still sees the dead node alive and soft-targets it
    (NodeAffinitySchedulingStrategy(soft=True) in ray/serve/_private/deployment_scheduler.py).
    """
    deadline = time.monotonic() + timeout_s
    restarted: list[str] = []
    while time.monotonic() < deadline:
        snap = snapshot()
        if not _still_hosting(wave, snap) and snap.all_healthy():
            break
        for replica in stuck(snap, STUCK_AFTER_S):
            if replica.actor_name and replica.id not in restarted:
                ray_adapter.kill_replica(replica.actor_name)
                restarted.append(replica.id)
        time.sleep(POLL_S)
    else:
        unhealthy = [
            f"{d.app}/{d.name} {d.status} {d.running_replicas}/{d.target_replicas}" for d in snap.deployments if not d.healthy
        ]
        waiting = [f"{r.id} of {r.deployment} ({r.state})" for r in snap.unplaced]
        why = f"; replicas Serve has placed on no node: {', '.join(waiting)}" if waiting else ""
        return f" Not settled after {timeout_s:.0f} s: {', '.join(unhealthy) or 'replicas still on ' + ', '.join(short_id(n) for n in _still_hosting(wave, snap))}{why}."
    if restarted:
        return (
            f" Restarted replica(s) {', '.join(restarted)}: on no node for over {STUCK_AFTER_S:.0f} s while a live node had room."
        )
    return ""


def _lost_nodes(expected: set[str], snap: Snapshot) -> str:
    lost = sorted(expected - {n.id for n in snap.nodes})
    if not lost:
        return ""
    return (
        f"node(s) {', '.join(short_id(n) for n in lost)} left the cluster during compaction; stopped so that "
        "Serve can restore their replicas. Plan again once every deployment is healthy."
    )


def _cannot_move(nodes: list[str], snap: Snapshot, layout: dict[str, str]) -> str:
    """Why these nodes' replicas would not all fit on the nodes that stay right now, or ''.

    Where the plan's own targets (``layout``) still take them, they fit; else a best fit decides,
    so a wave that Serve steered elsewhere than planned is judged on what is free now."""
    gone = [n for n in nodes if n not in {node.id for node in snap.nodes}]
    if gone:
        return f"node {gone[0]} is gone"
    leaving = sorted((r for node_id in nodes for r in snap.replicas_on(node_id)), key=lambda r: -sum(r.resources.values()))
    room = Room.of(snap, leaving=nodes)
    if _fits_as_planned(room.copy(), leaving, layout):
        return ""
    for replica in leaving:
        options = [n for n in room.nodes if not room.why_not(replica, n)]
        if not options:
            return f"replica {replica.id} of {replica.deployment} no longer fits on the nodes that stay; plan again"
        # Best fit by what is left of the replica's own resources: it packs tighter than Serve's GPU-first
        # order, and the question here is whether they fit at all.
        room.place(replica, min(options, key=lambda n: sum(room.free[n].get(k, 0.0) - v for k, v in replica.resources.items())))
    return ""


def _fits_as_planned(room: Room, replicas: list[Replica], layout: dict[str, str]) -> bool:
    for replica in replicas:
        target = layout.get(replica.id)
        if target is None or room.why_not(replica, target):
            return False
        room.place(replica, target)
    return True
