"""Compaction benchmark: servelab's planner against Ray 2.60's greedy node compaction.

    python -m bench.compaction [--seeds 3] [--time-limit 30]

On seeded synthetic fragmented clusters of 10, 100 and 1000 nodes from two generators
(servelab.testing.clusters: ``fragmented``, spread at peak then half the replicas removed, and the
harder ``wide``, with 2-GPU shapes, equal node mix, 55% removed), prints the worker nodes in use
before, after servelab's plan, after Ray's greedy compaction repeated until it frees nothing more
(bench.ray_greedy), the lower bound and, where a MILP proves it, the optimum; plus planning time.
Targets: within 1 node of the optimum (or the lower bound) at 10 and 100 nodes, at most 1.05x the
lower bound at 1000, every plan under 5 s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench.ray_greedy import nodes_after_ray
from servelab.serving.fragmentation import fragmentation
from servelab.serving.planner import plan
from servelab.serving.snapshot import Snapshot
from servelab.testing.clusters import fragmented_cluster, wide_cluster

SIZES = (10, 100, 1000)
GENERATORS: dict[str, Callable[[int, int], Snapshot]] = {"fragmented": fragmented_cluster, "wide": wide_cluster}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds for the MILP that seeks the proven optimum")
    args = parser.parse_args()
    header = (
        f"{'generator':>10} {'nodes':>5} {'seed':>4} {'replicas':>8} {'before':>6} {'servelab':>8} {'ray greedy':>10} "
        f"{'lower bound':>11} {'optimum':>7} {'method':>9} {'plan s':>7} {'ray s':>6}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for generator, make in GENERATORS.items():
        for size in SIZES:
            for seed in range(args.seeds):
                snapshot = make(size, seed)
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
                rows.append((generator, size, result.nodes_after, ray_after, bound, optimum, plan_s))
                print(
                    f"{generator:>10} {size:>5} {seed:>4} {len(snapshot.replicas):>8} {result.nodes_before:>6} "
                    f"{result.nodes_after:>8} {ray_after:>10} {bound:>11} {optimum if optimum is not None else '-':>7} "
                    f"{result.method:>9} {plan_s:>7.2f} {ray_s:>6.1f}",
                    flush=True,
                )
    print()
    for generator in GENERATORS:
        parts = []
        for size in SIZES:
            mine = [r for r in rows if r[:2] == (generator, size)]
            gap = max(r[2] - (r[5] if r[5] is not None else r[4]) for r in mine)
            ratio = max(r[2] / max(r[4], 1) for r in mine)
            ray = sum(r[3] / r[2] for r in mine) / len(mine)
            slowest = max(r[6] for r in mine)
            met = (gap <= 1 if size < 1000 else ratio <= 1.05) and slowest < 5.0
            parts.append(
                f"{size} nodes: ray greedy / servelab {ray:.2f}x, worst gap to optimum-or-bound {gap}, "
                f"worst / lower bound {ratio:.3f}, slowest plan {slowest:.2f} s, target {'met' if met else 'MISSED'}"
            )
        print(f"{generator}: " + " | ".join(parts))


if __name__ == "__main__":
    main()
