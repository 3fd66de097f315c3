"""Automatic compaction: a policy that runs in a detached actor on the cluster, so it outlives the notebook.

It waits until the cluster has been stable (every deployment healthy, nothing draining, every
replica where it was; idle nodes may come and go) for ``delay_s`` (on its first look, counted from
its newest replica's start, as Ray's own compaction counts from the last change), plans, and
compacts within the budget when the plan is worth it, as Anyscale's platform does by default. The
actor lives on the head node, which compaction never drains. Freed nodes are released where
servelab owns them: on the embedded cluster a drained, idle raylet leaves by itself; on a real
cluster the autoscaler reclaims them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from servelab.errors import MAGIC, CompactionError
from servelab.serving import context, ray_adapter
from servelab.serving.budget import Budget, not_worth_it
from servelab.serving.executor import AUTOSCALER, NOBODY, CompactionEvent, compact, freed_by, unowned_nodes_warning
from servelab.serving.planner import plan
from servelab.serving.reader import quick_snapshot, snapshot
from servelab.serving.snapshot import Snapshot

ACTOR_NAME = "servelab-autocompact"
KEPT_EVENTS = 200


@dataclass(frozen=True)
class AutoPolicy:
    """When automatic compaction acts, and how much it may disrupt."""

    delay_s: float = 300.0  # the cluster must be stable this long before a plan is made
    interval_s: float = 5.0  # how often the cluster is looked at
    objective: str = "nodes"
    budget: Budget = field(default_factory=Budget)
    release_unowned_nodes: bool = False  # the freed nodes of a cluster no autoscaler serves may go (confirmed when turned on)

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.interval_s <= 0:
            raise CompactionError(f"delay_s={self.delay_s!r} must be >= 0 and interval_s={self.interval_s!r} > 0 (seconds).")
        if self.objective not in ("nodes", "cost"):
            raise CompactionError(f"objective={self.objective!r}: use 'nodes' or 'cost'.")


@dataclass(frozen=True)
class AutoStatus:
    """What the automatic compactor is doing: its policy, state, the compactions it ran and their events."""

    policy: dict[str, Any]
    state: str  # waiting | compacting | stopped
    stable_for_s: float
    compactions: int
    nodes_freed: int
    replicas_moved: int
    replicas_as_planned: int
    last_reason: str
    events: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AutoCompactor:
    """The actor's body: a loop on a thread, so ``status()`` answers while a compaction runs."""

    def __init__(self, policy: AutoPolicy) -> None:
        self._policy = policy
        self._state = "waiting"
        self._quiet = QuietClock()
        self._compactions = 0
        self._freed = self._moved = self._as_planned = 0
        self._last_reason = ""
        self._events: deque[dict[str, Any]] = deque(maxlen=KEPT_EVENTS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="servelab-autocompact", daemon=True)
        self._thread.start()

    def status(self) -> AutoStatus:
        stable = 0.0 if self._quiet.since is None else time.time() - self._quiet.since
        return AutoStatus(
            asdict(self._policy),
            self._state,
            stable,
            self._compactions,
            self._freed,
            self._moved,
            self._as_planned,
            self._last_reason,
            tuple(self._events),
        )

    def stop(self, timeout_s: float = 600.0) -> AutoStatus:
        """Stop after the compaction under way (a drain cannot be undone half-way); returns the last status."""
        self._stop.set()
        self._thread.join(timeout_s)
        self._state = "stopped"
        return self.status()

    def _loop(self) -> None:
        wait = self._policy.interval_s
        while not self._stop.wait(wait):
            wait = self._policy.interval_s
            try:
                snap = quick_snapshot()  # a look every interval must not disturb what serves requests
                since = self._quiet.observe(snap, time.time())
                if since is None:
                    continue
                left = since + self._policy.delay_s - time.time()
                if left > 0:
                    wait = min(wait, left)  # look again when the delay ends, not up to an interval later
                    continue
                proposal = plan(
                    snapshot(), objective="cost" if self._policy.objective == "cost" else "nodes", budget=self._policy.budget
                )
                self._quiet.since = time.time()  # look again only after another quiet delay
                if not proposal.nodes_to_free or not_worth_it(proposal, self._policy.budget):
                    self._last_reason = not_worth_it(proposal, self._policy.budget) or "nothing to free"
                    continue
                self._state = "compacting"
                report = compact(proposal, on_event=self._record, release_unowned_nodes=self._policy.release_unowned_nodes)
                self._compactions += 1
                self._freed += len(report.nodes_freed)
                self._moved += report.replicas_moved
                self._as_planned += report.replicas_as_planned
                self._last_reason = report.reason
            except Exception as exc:  # one bad look must not end the policy; it says why and tries again
                self._last_reason = f"{type(exc).__name__}: {exc}"
                self._quiet.since = None
            finally:
                self._state = "stopped" if self._stop.is_set() else "waiting"

    def _record(self, event: CompactionEvent) -> None:
        self._events.append({**event.to_dict(), "at": time.time()})


@dataclass
class QuietClock:
    """Since when the cluster has been settled, look by look: every deployment healthy, nothing
    draining, every replica where it was (idle nodes may come and go)."""

    since: float | None = None
    placement: str = ""
    looked: bool = False  # the cluster was seen at all: later changes are seen as they happen

    def observe(self, snapshot: Snapshot, now: float) -> float | None:
        """Take one look; returns when the cluster settled, or None while it is changing."""
        if not snapshot.settled():
            self.placement, self.since, self.looked = "", None, True
            return None
        placement = snapshot.placement()
        if placement != self.placement or self.since is None:
            # Settled in a new placement: the delay starts now, or, when the very first look finds it
            # settled, when its newest replica started (as Ray's own compaction counts from the last change).
            self.placement, self.since = placement, now if self.looked else quiet_since(snapshot, now)
        self.looked = True
        return self.since


def quiet_since(snapshot: Snapshot, now: float) -> float:
    """When a settled cluster last changed, as far as a first look can tell: its newest replica's start
    (``now`` when a replica's start is unknown, and never later than ``now``)."""
    starts = [r.started_at for r in snapshot.replicas if r.started_at is not None]
    if len(starts) < len(snapshot.replicas):
        return now
    return min(max(starts, default=0.0), now)


def autocompact(
    on: bool = True,
    *,
    delay_s: float = 300.0,
    interval_s: float = 5.0,
    objective: str = "nodes",
    budget: Budget | None = None,
    release_unowned_nodes: bool = False,
) -> AutoStatus | None:
    """Turn automatic compaction on (or, with ``on=False``, off) for the cluster this process works on.

    The policy runs in a detached actor on the cluster's head node, so it keeps running after this
    notebook closes; calling again replaces the policy. Returns its status: the new policy's, or with
    ``on=False`` the last one of the policy it stopped (None when none ran). Where no autoscaler serves
    the cluster and this process did not start it, turning it on asks the question ``compact()`` asks:
    ``release_unowned_nodes=True`` confirms that freed nodes' Ray processes may exit.

    >>> autocompact(delay_s=120, budget=Budget(max_draining=2))
    >>> autocompact(False)
    """
    context.current()
    frees = freed_by() if on else AUTOSCALER
    if frees == NOBODY and not release_unowned_nodes:
        said = "automatic compaction: " + unowned_nodes_warning()
        raise CompactionError(
            said + " To turn it on anyway, call autocompact(..., release_unowned_nodes=True).",
            said_in={MAGIC: said + " To turn it on anyway, run %compact --auto on --release-unowned."},
        )
    # Where servelab removes nodes (its own fixed cluster) the actor, which has no session, may free them too.
    release = frees != AUTOSCALER
    policy = AutoPolicy(delay_s, interval_s, objective, budget or Budget(), release)  # refused before anything changes
    previous = ray_adapter.named_actor(ACTOR_NAME)
    last = None
    if previous is not None:
        last = ray_adapter.call(previous, "stop")
        ray_adapter.kill_actor(previous)
    if not on:
        return last
    actor = ray_adapter.start_on_head(AutoCompactor, ACTOR_NAME, policy)
    return ray_adapter.call(actor, "status")


def autocompact_status() -> AutoStatus | None:
    """The automatic compactor's status, or None when it is off.

    >>> autocompact_status().events[-1]["message"]
    """
    context.current()
    actor = ray_adapter.named_actor(ACTOR_NAME)
    return None if actor is None else ray_adapter.call(actor, "status")
