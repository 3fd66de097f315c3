"""Scale-up that needs new nodes, phase by phase: ``python -m bench.scaleup_nodes [--new 2] [--runs 2] [--mib 256]``.

An autoscaling embedded cluster (Ray's autoscaler v2 with its local node provider; one node type of
1 CPU and 2 logical GPUs, 0 to ``--new`` + 1 workers, idle timeout 10 s). A deployment of 2-GPU
replicas holding a seeded ``--mib`` MiB checkpoint (a local file) runs one replica, then is scaled
to 1 + ``--new``: every new replica needs a node the autoscaler has to launch. For each new replica,
the seconds from the scale request until:

- ``pending``:   the autoscaler asked its provider for a node (the replica waited for a node),
- ``launching``: that node's raylet registered with the GCS (the node launched),
- ``process``:   the replica's constructor started on it (Ray worker start, actor placement),
- ``weights``:   its weights were loaded (from the peer cache: the first replica published them),
- ``answered``:  it answered its first request (a request loop runs meanwhile).

Each phase is printed as its own seconds (not cumulative), per replica and as the median. On this
machine a "node" is a raylet started in a second; on a cloud the launching phase is the VM's boot and
image pull (minutes), which this cannot measure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from servelab import serving
from servelab.serving import ray_adapter
from servelab.testing import free_port
from servelab.testing.checkpoints import write_llm_checkpoint

from .scaleup import Holds, keep_asking

PHASES = ("pending", "launching", "process", "weights", "answered")


def one_run(uri: str, new: int) -> list[dict[str, float]]:
    """Scale from 1 to 1 + ``new`` replicas; each new replica's phases in seconds."""
    serving.deploy("bench", Holds, replicas=1, gpus=2, weights=uri, timeout_s=900)
    first = {t.replica for t in serving.replica_timelines("bench")}
    known = {raw.id for raw in ray_adapter.nodes() if raw.alive}
    stop = threading.Event()
    asking = threading.Thread(target=keep_asking, args=(serving.url("bench"), stop), daemon=True)
    asking.start()
    started = time.time()
    launch_seen: float | None = None
    node_up: dict[str, float] = {}
    serving.scale("bench", 1 + new)
    try:
        while True:
            now = time.time()
            state = serving.snapshot().autoscaler
            if launch_seen is None and state is not None and state.launching:
                launch_seen = now
            for raw in ray_adapter.nodes():
                if raw.alive and raw.id not in known and raw.id not in node_up:
                    node_up[raw.id] = now
            fresh = [t for t in serving.replica_timelines("bench") if t.replica not in first]
            if len(fresh) == new and all(t.first_request is not None for t in fresh):
                break
            time.sleep(0.2)
    finally:
        stop.set()
        asking.join()
    requested = launch_seen if launch_seen is not None else started
    rows = []
    for timeline in fresh:
        registered = node_up.get(timeline.node_id, requested)
        assert timeline.first_request is not None
        rows.append(
            {
                "pending": requested - started,
                "launching": registered - requested,
                "process": timeline.constructing - registered,
                "weights": timeline.weights_s,
                "answered": timeline.first_request - timeline.weights_done,
                "total": timeline.first_request - started,
            }
        )
    serving.delete("bench")
    serving.evict_weights()  # the peer cache's holders would keep their nodes from ever being idle
    return rows


def wait_for_no_workers(timeout_s: float = 120.0) -> None:
    """Until the autoscaler has terminated every idle worker, so that the next run launches again."""
    deadline = time.monotonic() + timeout_s
    while any(raw.alive and not raw.head for raw in ray_adapter.nodes()):
        if time.monotonic() > deadline:
            raise SystemExit("the autoscaler kept idle workers past its idle timeout")
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=2, help="new replicas, each needing a new node")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="servelab-scaleup-nodes-") as root:
        path = write_llm_checkpoint(Path(root), args.mib * 2**20)
        worker = {"min": 0, "max": args.new + 1, "cpus": 1, "gpus": 2}
        serving.up(autoscale=True, node_types={"gpu2": worker}, idle_timeout_s=10, http_port=free_port())
        try:
            rows: list[dict[str, float]] = []
            print(f"checkpoint {path.stat().st_size / 2**20:.0f} MiB; scale 1 -> {1 + args.new}, each new replica on a new node")
            print(f"{'run':>3} " + " ".join(f"{name:>9}" for name in (*PHASES, "total")) + "  (seconds per phase)")
            for run in range(args.runs):
                wait_for_no_workers()
                for row in one_run(str(path), args.new):
                    rows.append(row)
                    print(f"{run:>3} " + " ".join(f"{row[name]:9.2f}" for name in (*PHASES, "total")), flush=True)
            print("med " + " ".join(f"{statistics.median(r[name] for r in rows):9.2f}" for name in (*PHASES, "total")))
        finally:
            serving.down()


if __name__ == "__main__":
    main()
