"""Compaction benchmark: servelab's planner against Ray 2.60's greedy node compaction.

    python -m bench.compaction [--seeds 3] [--time-limit 30]

On seeded synthetic fragmented clusters (servelab.testing.clusters: 10, 100 and 1000 mixed nodes,
spread at peak then half the replicas removed), prints the worker nodes in use before, after
servelab's plan, after Ray's greedy compaction repeated until it frees nothing more
(bench.ray_greedy), the lower bound and, where the MILP proves it, the optimum; plus planning time.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.ray_greedy import nodes_after_ray
from servelab.serving.fragmentation import fragmentation
from servelab.serving.planner import plan
from servelab.testing.clusters import fragmented_cluster

SIZES = (10, 100, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds for the MILP that seeks the proven optimum")
    args = parser.parse_args()
    header = f"{'nodes':>5} {'seed':>4} {'replicas':>8} {'before':>6} {'servelab':>8} {'ray greedy':>10} {'lower bound':>11} {'optimum':>7} {'method':>9} {'plan s':>7} {'ray s':>6}"
    print(header)
    print("-" * len(header))
    rows = []
    for size in SIZES:
        for seed in range(args.seeds):
            snapshot = fragmented_cluster(size, seed=seed)
            started = time.perf_counter()
            result = plan(snapshot)
            plan_s = time.perf_counter() - started
            started = time.perf_counter()
            ray_after = nodes_after_ray(snapshot)
            ray_s = time.perf_counter() - started
            optimum = None
            if result.optimal:
                optimum = result.nodes_after
            elif size <= 100:
                exact = plan(snapshot, exact_limit=size + 1, time_limit_s=args.time_limit)
                optimum = exact.nodes_after if exact.optimal else None
            bound = fragmentation(snapshot).lower_bound
            rows.append((size, result.nodes_before, result.nodes_after, ray_after, bound, optimum, plan_s))
            print(
                f"{size:>5} {seed:>4} {len(snapshot.replicas):>8} {result.nodes_before:>6} {result.nodes_after:>8} {ray_after:>10} "
                f"{bound:>11} {optimum if optimum is not None else '-':>7} {result.method:>9} {plan_s:>7.2f} {ray_s:>6.1f}"
            )
    print()
    parts = []
    for size in SIZES:
        mine = [r for r in rows if r[0] == size]
        ratio = statistics.mean(r[3] / r[2] for r in mine)
        gap = max(r[2] - (r[5] if r[5] is not None else r[4]) for r in mine)
        parts.append(
            f"{size} nodes: ray greedy / servelab nodes after {ratio:.2f}x, servelab frees {sum(r[3] - r[2] for r in mine)} more, "
            f"worst gap to optimum-or-bound {gap}, slowest plan {max(r[6] for r in mine):.2f} s"
        )
    print("ratios: " + " | ".join(parts))


if __name__ == "__main__":
    main()
