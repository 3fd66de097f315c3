"""Compaction on a live cluster, side by side: Ray Serve's own against servelab's.

    python -m bench.compaction_live [--seeds 2] [--delay 11] [--autoscaler]

Each seeded scenario is a fresh embedded cluster (a head and 6 workers with 2 logical GPUs): four
deployments (1-GPU and 0.5-GPU replicas) fill it, then scale down at random, leaving replicas
scattered over more nodes than they need. A request loop in a separate process calls every
deployment throughout. With ``--autoscaler`` the cluster is an autoscaling one (0 to 6 workers,
idle timeout ``--idle-timeout``): Ray's own autoscaler launches the nodes the deployments need and
terminates every node left idle, and nothing is removed by the benchmark; the end state is then
the last freed node terminated by the autoscaler. Each scenario is compacted by:

- ``ray``: Ray Serve's own node compaction (``RAY_SERVE_NODE_COMPACTION_DELAY_S`` = ``--delay``),
  with idle nodes removed at once, as an autoscaler would (with ``--autoscaler``: terminated by it);
- ``compact 1`` / ``compact 2``: ``compact()`` with 1 and 2 nodes migrating at once (the next wave
  starts when the last one's replacements run);
- ``auto``: servelab's automatic compaction with the same delay as ``ray``, turned on when the cluster
  starts, as Ray's own is (it looks every 0.5 s; Ray's controller every 0.1 s).

Every mode's clock starts ``--delay`` seconds after the deployments settled (the request load runs
from about 1 s after they settled; its first 3 s are warm-up, the rest is "before"): then both
automatic compactors may act, so neither is charged for its delay nor acts before the clock starts,
and ``compact()`` is called at that moment.

Prints, per run: worker nodes in use before and at the end against the lower bound, seconds until
the end state (the last change in nodes in use, seen by polling every 0.2 s, as ``compact()`` polls:
for ``compact`` its last node seen empty and released; removing an emptied node takes under 10 ms),
requests failed, p50/p99 before and during, and replicas that landed as planned.
Targets: 0 failed requests; servelab ends at no more nodes than Ray's own and in under half its
time; p99 during at most 2x before; at least 90% placed as planned.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from servelab import serving
from servelab.serving import context
from servelab.serving.reader import quick_snapshot  # polled: no per-GPU query reaching every worker
from servelab.testing import free_port
from servelab.testing.apps import Echo

WORKERS = 6
NODE_TYPE = {"count": WORKERS, "cpus": 2, "gpus": 2, "cost_per_hour": 2.5}
DEPLOYMENTS = {"d1": (1.0, 3), "d2": (1.0, 3), "d3": (0.5, 4), "d4": (0.5, 4)}  # GPUs per replica, replicas at peak
MODES = ("ray", "compact 1", "compact 2", "auto")
SETTLE_S = 60.0  # the end state: no change in nodes in use for this long (or the lower bound reached)
LIMIT_S = 300.0
POLL_S = 0.2  # as compact() polls: every mode's end is seen with the same lag
WARMUP_S, MIN_BEFORE_S = 3.0, 2.0


@dataclass(frozen=True)
class Run:
    mode: str
    seed: int
    before: int
    after: int
    bound: int
    seconds: float
    requests: int
    failed: int
    p50_before: float
    p99_before: float
    p50_during: float
    p99_during: float
    moved: int | None
    as_planned: int | None


def scatter(seed: int) -> None:
    """Fill the cluster, then scale every deployment down to a seeded count."""
    rng = random.Random(seed)
    for name, (gpus, peak) in DEPLOYMENTS.items():
        serving.deploy(name, Echo, replicas=peak, gpus=gpus, init_args=(name,))
    for name, (_, peak) in DEPLOYMENTS.items():
        serving.scale(name, rng.randint(1, peak // 2))
    serving.wait_healthy(poll_s=0.1)  # when they settled, to the tenth of a second Ray's controller sees it


def in_use(snap: serving.Snapshot) -> int:
    return sum(1 for n in snap.workers if snap.replicas_on(n.id))


def idle_nodes(snap: serving.Snapshot) -> int:
    """Worker nodes alive with no replica: what an autoscaler has yet to take away."""
    return sum(1 for n in snap.workers if not snap.replicas_on(n.id))


def remove_idle_nodes() -> None:
    """What an autoscaler does: remove worker nodes that host no replica (on the autoscaling
    cluster the autoscaler does it, after its idle timeout)."""
    if context.current().autoscaling is not None:
        return
    snap = quick_snapshot()
    for node in snap.workers:
        if not snap.replicas_on(node.id) and node.id in context.current().workers:
            try:
                serving.remove_node(node.id)
            except Exception:  # it left by itself in between
                context.current().workers.pop(node.id, None)


def wait_for_end(bound: int, started: float) -> float:
    """Remove idle nodes as they appear until nodes in use reach the bound or stop changing, and no
    idle node is left (terminated by the autoscaler, where it owns them); seconds taken."""
    last, changed = (in_use(quick_snapshot()), 0), time.monotonic()
    while time.monotonic() - started < LIMIT_S:
        remove_idle_nodes()
        snap = quick_snapshot()
        now = (in_use(snap), idle_nodes(snap))
        if now != last:
            last, changed = now, time.monotonic()
        quiet = time.monotonic() - changed > SETTLE_S
        if snap.settled() and not now[1] and (now[0] <= bound or quiet):
            return changed - started
        time.sleep(POLL_S)
    return changed - started


def wait_for_no_idle_nodes() -> None:
    """Until the autoscaler has terminated the nodes the scale-down emptied (every mode starts so)."""
    deadline = time.monotonic() + LIMIT_S
    while idle_nodes(quick_snapshot()) and time.monotonic() < deadline:
        time.sleep(POLL_S)


def measure(mode: str, seed: int, delay_s: float, idle_timeout_s: float | None) -> Run:
    ray_delay = delay_s if mode == "ray" else None
    if idle_timeout_s is None:
        serving.up(node_types={"gpu2": NODE_TYPE}, http_port=free_port(), ray_compaction_delay_s=ray_delay)
    else:
        limits = {**{k: v for k, v in NODE_TYPE.items() if k != "count"}, "min": 0, "max": WORKERS}
        serving.up(
            node_types={"gpu2": limits},
            autoscale=True,
            idle_timeout_s=idle_timeout_s,
            http_port=free_port(),
            ray_compaction_delay_s=ray_delay,
        )
    log = Path(tempfile.mkstemp(suffix=".load")[1])
    client = None
    try:
        if mode == "auto":  # on from the start, as Ray's own is: its actor's start is not charged to the clock
            serving.autocompact(delay_s=delay_s, interval_s=0.5)  # the default budget: one node at a time
        scatter(seed)
        quiet = time.monotonic()  # the deployments settled: Ray's and servelab's stability delays count from here
        remove_idle_nodes()  # nodes the scale-down emptied go first, in every mode
        wait_for_no_idle_nodes()
        snap = serving.snapshot()
        before, bound = in_use(snap), serving.fragmentation(snap).lower_bound
        urls = [serving.url(name) for name in DEPLOYMENTS]
        client = subprocess.Popen([sys.executable, "-m", "bench.load_client", str(log), *urls])
        warm = time.time() + WARMUP_S  # the first requests open connections and warm the proxy: not "before"
        # The clock starts when both automatic compactors may act: their delay has passed (so neither
        # acts inside the "before" window nor is charged for waiting); compact() is called then too.
        time.sleep(max(quiet + delay_s - time.monotonic(), WARMUP_S + MIN_BEFORE_S))
        started, wall_start = time.monotonic(), time.time()
        moved = as_planned = None
        if mode.startswith("compact"):
            report = serving.compact(budget=serving.Budget(max_draining=int(mode.split()[1])))
            # Until its last node emptied, as for Ray's: seen empty and released (removing it takes under
            # 10 ms), or on the autoscaling cluster terminated by the autoscaler.
            last = "terminated" if idle_timeout_s is not None else "released"
            seconds = max((e.elapsed_s for e in report.events if e.kind == last), default=time.monotonic() - started)
            moved, as_planned = report.replicas_moved, report.replicas_as_planned
            if report.stopped:
                print(f"     {mode}, seed {seed}: stopped: {report.reason}", flush=True)
            remove_idle_nodes()
        else:
            seconds = wait_for_end(bound, started)
            if mode == "auto":
                status = serving.autocompact(False)  # after the compaction under way: its counts are final
                if status is not None:
                    moved, as_planned = status.replicas_moved, status.replicas_as_planned
        wall_end = wall_start + seconds
        time.sleep(2)
        after = in_use(serving.snapshot())
    finally:
        if client is not None:
            client.terminate()
            client.wait()
        serving.down()
    rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
    log.unlink()
    requests = [(float(t), ok == "1", float(ms)) for t, ok, ms in rows]
    early = [r for r in requests if warm <= r[0] < wall_start]
    during = [r for r in requests if wall_start <= r[0] <= wall_end + 2]
    return Run(
        mode, seed, before, after, bound, seconds, len(during), sum(1 for r in during if not r[1]),
        *percentiles(early), *percentiles(during), moved, as_planned,
    )  # fmt: skip


def percentiles(requests: list[tuple[float, bool, float]]) -> tuple[float, float]:
    latencies = sorted(ms for _, ok, ms in requests if ok)
    if not latencies:
        return float("nan"), float("nan")
    return statistics.median(latencies), latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--delay", type=float, default=11.0, help="stability delay of Ray's compaction and of auto mode")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), metavar="MODE", help=f"of {MODES}")
    parser.add_argument("--autoscaler", action="store_true", help="Ray's autoscaler launches and terminates the nodes")
    parser.add_argument("--idle-timeout", type=float, default=10.0, metavar="S", help="with --autoscaler: its idle timeout")
    args = parser.parse_args()
    idle_timeout_s = args.idle_timeout if args.autoscaler else None
    modes = [m for m in MODES if m == "ray" or m in args.modes]  # Ray's own always runs: the ratios are to it
    header = (
        f"{'seed':>4} {'mode':>9} {'before':>6} {'after':>5} {'bound':>5} {'seconds':>7} {'requests':>8} {'failed':>6} "
        f"{'p50/p99 before ms':>17} {'p50/p99 during ms':>17} {'as planned':>10}"
    )
    print(header)
    print("-" * len(header))
    runs = []
    for seed in range(args.seeds):
        for mode in modes:
            run = measure(mode, seed, args.delay, idle_timeout_s)
            runs.append(run)
            planned = f"{run.as_planned}/{run.moved}" if run.moved is not None else "-"
            print(
                f"{seed:>4} {mode:>9} {run.before:>6} {run.after:>5} {run.bound:>5} {run.seconds:>7.1f} {run.requests:>8} "
                f"{run.failed:>6} {run.p50_before:>8.1f}/{run.p99_before:<8.1f} {run.p50_during:>8.1f}/{run.p99_during:<8.1f} "
                f"{planned:>10}",
                flush=True,
            )
    print()
    for mode in modes[1:]:
        pairs = [(r, next(x for x in runs if x.seed == r.seed and x.mode == "ray")) for r in runs if r.mode == mode]
        nodes_ok = all(r.after <= ray.after for r, ray in pairs)
        speed = statistics.mean(r.seconds / max(ray.seconds, 0.1) for r, ray in pairs)
        failed = sum(r.failed for r, _ in pairs)
        p99 = max(r.p99_during / r.p99_before for r, _ in pairs)
        moved = sum(r.moved or 0 for r, _ in pairs)
        planned = sum(r.as_planned or 0 for r, _ in pairs) / moved if moved else 1.0
        print(
            f"{mode}: nodes at end <= ray's on every scenario: {nodes_ok}; time / ray's {speed:.2f}x; "
            f"failed requests {failed}; worst p99 during / before {p99:.2f}x; placed as planned {planned:.0%}"
        )
    ray_failed = sum(r.failed for r in runs if r.mode == "ray")
    print(f"ray: failed requests {ray_failed}")


if __name__ == "__main__":
    main()
