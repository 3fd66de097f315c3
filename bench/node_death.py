"""Recovery when a compaction's migration target crashes: ``python -m bench.node_death [--runs 5]``.

Each run starts a fresh embedded cluster (a head and 4 workers with 2 logical GPUs), fragments it
so that a plan moves one replica, compacts under a request loop, and SIGKILLs the raylet of the
node the replica moves to at the drain; then waits up to 180 s for every deployment to be healthy
at its target. Prints a row per run and a last line: runs recovered, slowest recovery, failed requests.
"""

from __future__ import annotations

import argparse
import time

from servelab import serving
from servelab.testing import free_port
from servelab.testing.scenarios import fragment_for_one_move, kill_migration_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--limit-s", type=float, default=180.0)
    args = parser.parse_args()
    print(f"{'run':>3} {'recovered s':>11} {'stopped':>7} {'requests':>8} {'failed':>6}  reason / still unhealthy")
    recovered, failed, slowest = 0, 0, 0.0
    for run in range(1, args.runs + 1):
        serving.up(nodes=4, cpus_per_node=1, gpus_per_node=2, http_port=free_port())
        try:
            fragment_for_one_move()
            result = kill_migration_target(args.limit_s)
        finally:
            serving.down()
        during = result.report.during
        requests, lost = (during.requests, during.failed) if during else (0, 0)
        failed += lost
        if result.recovered_s is not None:
            recovered += 1
            slowest = max(slowest, result.recovered_s)
        shown = f"{result.recovered_s:.1f}" if result.recovered_s is not None else "no"
        restarted = "restarted a stuck replica; " if "Restarted replica" in result.report.reason else ""
        detail = ", ".join(result.unhealthy) or restarted + result.report.reason[:90]
        print(f"{run:>3} {shown:>11} {result.report.stopped!s:>7} {requests:>8} {lost:>6}  {detail}", flush=True)
        time.sleep(2)
    print(
        f"recovered {recovered}/{args.runs} runs within {args.limit_s:.0f} s, slowest {slowest:.1f} s, {failed} failed requests in all"
    )


if __name__ == "__main__":
    main()
