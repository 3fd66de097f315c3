"""Weight loading into the GPU: servelab against the peers and the machine's limits, cold and warm.

    python -m bench.gpu_loader [--gib 8] [--shards 4] [--rounds 2] [--device auto] [--peers all]

Writes seeded checkpoints on this machine (a Llama-shaped bf16 set of ``--shards`` files, 20,000
tensors of 4 KiB, a 1 GiB bf16 file for ``dtype`` conversion) and times, each in a fresh process:
servelab ``load()``, safetensors ``load_file(device=)``, runai-model-streamer (to host, then
``.to()``), InstantTensor and fastsafetensors (``nogds=True``), cold (page cache dropped) and warm.
Limits: ``dd`` with and without O_DIRECT, one per shard in parallel, and pinned and pageable
host-to-device copies. Every loader's tensors are fingerprinted and compared with safetensors'.

On a machine without CUDA the target is host memory and the GPU-only peers (InstantTensor,
fastsafetensors) and copy limits are skipped, so CI exercises the same code. The last line holds
the ratios the targets refer to.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from bench.loader import Measurement, run_command
from servelab.testing import write_llm_checkpoint

DATA = Path(os.environ.get("SERVELAB_BENCH_DATA", Path(__file__).parent / "data"))
GPU_PEERS = ("instanttensor", "fastsafetensors")
SMALL_TENSORS = 20_000
SMALL_TENSOR_BYTES = 4096


@dataclass(frozen=True)
class Checkpoint:
    label: str
    entry: Path  # the file or the index servelab is given
    files: tuple[Path, ...]

    @property
    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


@dataclass
class Row:
    checkpoint: Checkpoint
    state: str  # "cold" or "warm"
    method: str
    case: dict[str, Any] | None  # a worker case, or None for a raw command
    command: list[str] | None = None
    results: list[Measurement] = field(default_factory=list)
    fingerprints: list[dict[str, int]] = field(default_factory=list)
    error: str = ""  # why a method could not run here


def build_checkpoints(gib: float, shards: int) -> dict[str, Checkpoint]:
    """Write the three checkpoints once (seeded, kept between runs)."""
    DATA.mkdir(parents=True, exist_ok=True)
    made = {}
    llm = DATA / f"gpu-llm-{gib:g}GiB-{shards}"
    if not (llm / ".complete").exists():
        print(f"writing {llm.name} ...", file=sys.stderr, flush=True)
        write_llm_checkpoint(llm, int(gib * 2**30), shards=shards)
        (llm / ".complete").touch()
    entry = llm / ("model.safetensors" if shards == 1 else "model.safetensors.index.json")
    made["llm"] = Checkpoint(f"llm {gib:g} GiB", entry, tuple(sorted(llm.glob("*.safetensors"))))
    small = DATA / "gpu-small-tensors" / "model.safetensors"
    if not small.exists():
        small.parent.mkdir(parents=True, exist_ok=True)
        generator = torch.Generator().manual_seed(1)
        numel = SMALL_TENSOR_BYTES // 4
        save_file({f"experts.{i}.weight": torch.randn(numel, generator=generator) for i in range(SMALL_TENSORS)}, small)
    made["small"] = Checkpoint(f"{SMALL_TENSORS} x 4 KiB", small, (small,))
    convert = DATA / "gpu-convert-1GiB"
    if not (convert / ".complete").exists():
        write_llm_checkpoint(convert, 1 << 30, shards=1)
        (convert / ".complete").touch()
    made["convert"] = Checkpoint("1 GiB bf16 -> fp16", convert / "model.safetensors", (convert / "model.safetensors",))
    return made


def make_rows(checkpoints: dict[str, Checkpoint], device: str, peers: set[str]) -> list[Row]:
    rows: list[Row] = []
    gpu = device.startswith("cuda")
    llm = checkpoints["llm"]
    files = [str(f) for f in llm.files]
    parallel = 'for f; do dd if="$f" of=/dev/null bs=16M {flag} status=none & done; wait'
    for state in ("cold", "warm"):
        if state == "cold":
            rows.append(Row(llm, state, "limit: dd O_DIRECT, a file each in parallel", None,
                            ["sh", "-c", parallel.format(flag="iflag=direct"), "dd", *files]))  # fmt: skip
        rows.append(Row(llm, state, f"limit: dd {'buffered' if state == 'cold' else 'page cache'}, in parallel", None,
                        ["sh", "-c", parallel.format(flag=""), "dd", *files]))  # fmt: skip
        rows.append(Row(llm, state, "servelab load()", {"method": "servelab", "uri": str(llm.entry)}))
        rows.append(Row(llm, state, "safetensors load_file(device=)", {"method": "load_file", "files": files}))
        if "runai" in peers:
            rows.append(Row(llm, state, "runai-model-streamer, then .to()", {"method": "runai", "files": files}))
        for peer in GPU_PEERS:
            if gpu and peer in peers:
                rows.append(Row(llm, state, peer, {"method": peer, "files": files}))
    small, convert = checkpoints["small"], checkpoints["convert"]
    rows.append(Row(small, "warm", "servelab load()", {"method": "servelab", "uri": str(small.entry)}))
    rows.append(Row(small, "warm", "safetensors load_file(device=)", {"method": "load_file", "files": [str(small.entry)]}))
    rows.append(
        Row(
            convert, "warm", "servelab load(dtype=float16)", {"method": "servelab", "uri": str(convert.entry), "dtype": "float16"}
        )
    )
    rows.append(Row(convert, "warm", "safetensors, then .to(float16)", {"method": "load_file", "files": [str(convert.entry)], "dtype": "float16"}))  # fmt: skip
    for row in rows:
        if row.case is not None:
            row.case.update(device=device, fingerprint=True)
    return rows


def drop_caches(paths: tuple[Path, ...]) -> None:
    """Empty the page cache: the whole machine's where allowed (root), else these files' pages."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return
    except OSError:
        pass
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def warm(paths: tuple[Path, ...]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            while f.readinto(bytearray(64 << 20)):
                pass


def run_rows(rows: list[Row], rounds: int) -> None:
    for number in range(1, rounds + 1):
        print(f"round {number}/{rounds}", file=sys.stderr, flush=True)
        for row in rows:
            if row.state == "cold":
                drop_caches(row.checkpoint.files)
            else:
                warm(row.checkpoint.files)
            nbytes = row.checkpoint.nbytes
            if row.command is not None:
                row.results.append(run_command(row.command, nbytes))
                continue
            assert row.case is not None
            if row.error:
                continue
            try:
                raw = _run_worker_raw(row.case, nbytes)
            except RuntimeError as exc:  # a peer that fails here is reported, and the others still run
                row.error = str(exc).strip().splitlines()[-1][:160]
                print(f"  {row.method} failed: {exc}", file=sys.stderr, flush=True)
                continue
            row.results.append(Measurement(raw["seconds"], raw["cpu_s"], raw["bytes"], raw["first_tensor_s"]))
            row.fingerprints.append(raw["fingerprint"])
            print(f"  {row.checkpoint.label}, {row.state}, {row.method}: {raw['seconds']:.3f} s", file=sys.stderr, flush=True)


def _run_worker_raw(case: dict[str, Any], nbytes: int) -> dict[str, Any]:
    case = {**case, "prime_bytes": nbytes + nbytes // 8 + (256 << 20)}
    out = subprocess.run(
        [sys.executable, "-m", "bench.loader_worker", json.dumps(case)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{case['method']} failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def host_to_device_limits(device: str) -> dict[str, float]:
    if not device.startswith("cuda"):
        return {}
    return _run_worker_raw({"method": "h2d", "device": device}, 0)


def median_gbps(row: Row) -> float:
    return row.checkpoint.nbytes / statistics.median(m.seconds for m in row.results) / 1e9


def report(rows: list[Row], limits: dict[str, float], machine: str) -> None:
    print(f"\nservelab GPU weight-loading benchmark on {machine}; medians over {max(len(r.results) for r in rows)} rounds")
    header = f"{'checkpoint':<19} {'state':<5} {'method':<46} {'median s':>8} {'best s':>7} {'GB/s':>6} {'CPU-s/GB':>8} {'identical':>9}"
    print(header)
    print("-" * len(header))
    reference = {id(r.checkpoint): r for r in rows if r.method.startswith("safetensors")}
    for row in rows:
        if not row.results:
            print(f"{row.checkpoint.label:<19} {row.state:<5} {row.method:<46} failed: {row.error}")
            continue
        seconds = [m.seconds for m in row.results]
        gb = row.checkpoint.nbytes / 1e9
        print(
            f"{row.checkpoint.label:<19} {row.state:<5} {row.method:<46} {statistics.median(seconds):8.3f} {min(seconds):7.3f} "
            f"{median_gbps(row):6.2f} {statistics.median(m.cpu_s for m in row.results) / gb:8.2f} {identical(row, reference):>9}"
        )
    for label, gbps in limits.items():
        print(f"{'-':<19} {'-':<5} {f'limit: {label} host-to-device copy':<46} {'':>8} {'':>7} {gbps:6.2f}")
    print("\n" + ratio_line(rows, limits))


def identical(row: Row, reference: dict[int, Row]) -> str:
    """'yes' when every round's tensors match safetensors' byte for byte (the conversion case: its converted output)."""
    if not row.fingerprints:
        return "-"
    base = reference.get(id(row.checkpoint))
    if base is None or base is row:
        return "ref"
    expected = base.fingerprints[0]
    return "yes" if all(f == expected for f in row.fingerprints) else "NO"


def ratio_line(rows: list[Row], limits: dict[str, float]) -> str:
    rows = [r for r in rows if r.results]

    def find(label_key: str, state: str, method: str) -> Row | None:
        return next((r for r in rows if label_key in r.checkpoint.label and r.state == state and r.method == method), None)

    def seconds(row: Row) -> float:
        return statistics.median(m.seconds for m in row.results)

    parts = []
    cold = find("llm", "cold", "servelab load()")
    if cold is not None:
        peers = [r for r in rows if "llm" in r.checkpoint.label and r.state == "cold" and r.case is not None and r is not cold]
        direct = find("llm", "cold", "limit: dd O_DIRECT, a file each in parallel")
        if peers:
            fastest = max(peers, key=median_gbps)
            parts.append(f"cold vs fastest peer ({fastest.method}) {median_gbps(cold) / median_gbps(fastest):.2f}x")
        if direct is not None:
            parts.append(f"cold vs dd O_DIRECT {median_gbps(cold) / median_gbps(direct):.2f}x")
    hot = find("llm", "warm", "servelab load()")
    page_cache = find("llm", "warm", "limit: dd page cache, in parallel")
    if hot is not None and page_cache is not None:
        limit = min([median_gbps(page_cache), *([limits["pinned"]] if "pinned" in limits else [])])
        parts.append(f"warm vs min(page cache, pinned copy) {median_gbps(hot) / limit:.2f}x")
    ours, theirs = find("4 KiB", "warm", "servelab load()"), find("4 KiB", "warm", "safetensors load_file(device=)")
    if ours is not None and theirs is not None:
        parts.append(f"{SMALL_TENSORS} small tensors, safetensors time / servelab time {seconds(theirs) / seconds(ours):.2f}x")
    ours, theirs = find("fp16", "warm", "servelab load(dtype=float16)"), find("fp16", "warm", "safetensors, then .to(float16)")
    if ours is not None and theirs is not None:
        parts.append(f"dtype conversion, safetensors+.to() time / servelab time {seconds(theirs) / seconds(ours):.2f}x")
    reference = {id(r.checkpoint): r for r in rows if r.method.startswith("safetensors")}
    verdicts = [identical(r, reference) for r in rows if r.fingerprints]
    parts.append("identical bytes: " + ("every loader" if "NO" not in verdicts else "NO, see the table"))
    return "ratios (servelab / baseline): " + " | ".join(parts)


def machine_description(device: str) -> str:
    cores = os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "no GPU (target: host memory)"
    return f"{cores} cores, {memory:.0f} GiB, {gpu}, torch {torch.__version__}, Python {sys.version.split()[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=8, help="size of the sharded LLM checkpoint")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto", help="cuda, cuda:N or cpu; auto picks cuda where present")
    parser.add_argument("--peers", default="all", help="comma-separated subset of runai,instanttensor,fastsafetensors")
    args = parser.parse_args()
    device = ("cuda:0" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    peers = {"runai", *GPU_PEERS} if args.peers == "all" else set(args.peers.split(","))
    started = time.perf_counter()
    checkpoints = build_checkpoints(args.gib, args.shards)
    rows = make_rows(checkpoints, device, peers)
    limits = host_to_device_limits(device)
    run_rows(rows, args.rounds)
    report(rows, limits, machine_description(device))
    print(f"(took {time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
