"""Weight-loading benchmark: servelab against the physical limit and the loaders people use today.

    python -m bench.loader [--rounds 3] [--mib 1024] [--shards 4] [--sources local-cold,local-warm,http,s3]

Builds seeded Llama-shaped bf16 checkpoints (one file, and a sharded set with its index), serves
them from nginx (HTTP) and SeaweedFS (S3) on 127.0.0.1, and times every method in a fresh process,
interleaved, for several rounds. Baselines: the raw bytes through the same source (O_DIRECT dd,
buffered dd, curl), download-then-``load_file``, ``load_file`` and runai-model-streamer (its
defaults, and tuned for two cores). The last line holds the paired ratios the targets refer to.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servelab.loader.s3presign import credentials_from, presign_get
from servelab.testing import NginxServer, SeaweedS3Server, write_llm_checkpoint

DATA = Path(__file__).parent / "data"
RUNAI_TUNED = {"RUNAI_STREAMER_CONCURRENCY": "2"}


@dataclass(frozen=True)
class Checkpoint:
    label: str
    uri_path: str  # relative to DATA: the file or the index
    files: tuple[str, ...]  # relative to DATA: every .safetensors file
    nbytes: int


@dataclass
class Measurement:
    seconds: float
    cpu_s: float
    bytes: int
    first_tensor_s: float | None = None
    rss_over_base_mb: float | None = None


@dataclass
class Case:
    source: str
    checkpoint: Checkpoint
    method: str
    run: Callable[[], Measurement]
    results: list[Measurement] = field(default_factory=list)


def build_checkpoints(mib: int, shards: int) -> list[Checkpoint]:
    """Write the checkpoints once (seeded, reused across runs); return their descriptions."""
    made = []
    for label, count in (("single", 1), (f"{shards}-shard", shards)):
        folder = DATA / f"{label}-{mib * count}MiB"
        done = folder / ".complete"
        if not done.exists():
            print(f"writing {folder.name} ...", file=sys.stderr, flush=True)
            write_llm_checkpoint(folder, mib * count << 20, shards=count)
            done.touch()
        files = tuple(sorted(p.relative_to(DATA).as_posix() for p in folder.glob("*.safetensors")))
        entry = folder / ("model.safetensors" if count == 1 else "model.safetensors.index.json")
        made.append(Checkpoint(label, entry.relative_to(DATA).as_posix(), files, sum((DATA / f).stat().st_size for f in files)))
    return made


def run_command(argv: list[str], nbytes: int) -> Measurement:
    """Time a raw-read command; its CPU comes from wait4's rusage of the child."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{argv[:3]} failed: {process.stderr.read().decode()[-500:]}")
    return Measurement(seconds, usage.ru_utime + usage.ru_stime, nbytes)


def run_worker(case: dict[str, Any], nbytes: int, env: dict[str, str] | None = None) -> Measurement:
    """Run one load in a fresh Python process (bench.loader_worker) and read its measurements."""
    case = {**case, "prime_bytes": nbytes + nbytes // 8 + (256 << 20)}
    out = subprocess.run(
        [sys.executable, "-m", "bench.loader_worker", json.dumps(case)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{case['method']} failed: {out.stderr[-1500:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return Measurement(r["seconds"], r["cpu_s"], r["bytes"], r["first_tensor_s"], r["peak_rss_mb"] - r["base_rss_mb"])


def drop_cache(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def warm_cache(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            while f.readinto(bytearray(16 << 20)):
                pass


def make_cases(
    checkpoints: list[Checkpoint], sources: list[str], web: NginxServer | None, s3: SeaweedS3Server | None
) -> list[Case]:
    cases: list[Case] = []
    scratch = str(DATA)
    for ck in checkpoints:
        paths = [str(DATA / f) for f in ck.files]
        local = str(DATA / ck.uri_path)

        def add(source: str, method: str, run: Callable[..., Measurement], ck: Checkpoint = ck) -> None:
            cases.append(Case(source, ck, method, functools.partial(run, ck.nbytes)))

        if "local-cold" in sources:
            dd = ["sh", "-c", 'for f; do dd if="$f" of=/dev/null bs=16M iflag=direct status=none; done', "dd", *paths]
            add("local-cold", "raw: dd O_DIRECT", lambda n, dd=dd: run_command(dd, n))
            add("local-cold", "servelab load()", lambda n, u=local: run_worker({"method": "servelab", "uri": u}, n))
            add("local-cold", "safetensors load_file", lambda n, p=paths: run_worker({"method": "load_file", "files": p}, n))
            add("local-cold", "runai (defaults)", lambda n, p=paths: run_worker({"method": "runai", "files": p}, n))
            add(
                "local-cold",
                "runai (tuned: concurrency 2)",
                lambda n, p=paths: run_worker({"method": "runai", "files": p}, n, RUNAI_TUNED),
            )
        if "local-warm" in sources:
            dd = ["sh", "-c", 'for f; do dd if="$f" of=/dev/null bs=16M status=none; done', "dd", *paths]
            tuned = {**RUNAI_TUNED, "RUNAI_STREAMER_FS_STRATEGY": "sync_buffered"}
            add("local-warm", "raw: dd buffered", lambda n, dd=dd: run_command(dd, n))
            add("local-warm", "servelab load()", lambda n, u=local: run_worker({"method": "servelab", "uri": u}, n))
            add("local-warm", "safetensors load_file", lambda n, p=paths: run_worker({"method": "load_file", "files": p}, n))
            add("local-warm", "runai (defaults)", lambda n, p=paths: run_worker({"method": "runai", "files": p}, n))
            add(
                "local-warm",
                "runai (tuned: concurrency 2, sync_buffered)",
                lambda n, p=paths, t=tuned: run_worker({"method": "runai", "files": p}, n, t),
            )
        if "http" in sources and web is not None:
            urls = [web.url(f) for f in ck.files]
            curl = ["curl", "-sf", *[a for u in urls for a in (u, "-o", "/dev/null")]]
            add("http", "raw: curl", lambda n, c=curl: run_command(c, n))
            add("http", "servelab load()", lambda n, u=web.url(ck.uri_path): run_worker({"method": "servelab", "uri": u}, n))  # noqa: B008 - bound now, on purpose
            add(
                "http",
                "download, then load_file",
                lambda n, u=urls: run_worker({"method": "download_load", "files": u, "scratch": scratch}, n),
            )
        if "s3" in sources and s3 is not None:
            creds = credentials_from(s3.storage_options)
            assert creds is not None
            s3_uris = [f"s3://{s3.bucket}/{f}" for f in ck.files]
            signed = [presign_get(s3.bucket, f, creds, 86400) for f in ck.files]
            curl = ["curl", "-sf", *[a for u in signed for a in (u, "-o", "/dev/null")]]
            info = {"endpoint": s3.endpoint, "key": s3.ACCESS_KEY, "secret": s3.SECRET_KEY}
            env = {
                "AWS_ACCESS_KEY_ID": s3.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": s3.SECRET_KEY, "AWS_ENDPOINT_URL": s3.endpoint,
                "AWS_REGION": "us-east-1", "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0", "AWS_EC2_METADATA_DISABLED": "true",
            }  # fmt: skip
            uri = f"s3://{s3.bucket}/{ck.uri_path}"
            add("s3", "raw: curl (presigned)", lambda n, c=curl: run_command(c, n))
            add(
                "s3",
                "servelab load()",
                lambda n, u=uri: run_worker({"method": "servelab", "uri": u, "storage_options": s3.storage_options}, n),
            )
            add(
                "s3",
                "boto3 download_file, then load_file",
                lambda n, u=s3_uris, i=info: run_worker({"method": "download_load", "files": u, "s3": i, "scratch": scratch}, n),
            )
            add("s3", "runai (defaults)", lambda n, u=s3_uris, e=env: run_worker({"method": "runai", "files": u}, n, e))
            add(
                "s3",
                "runai (tuned: concurrency 2)",
                lambda n, u=s3_uris, e=env: run_worker({"method": "runai", "files": u}, n, {**e, **RUNAI_TUNED}),
            )
    return cases


def run_rounds(cases: list[Case], rounds: int) -> None:
    for number in range(1, rounds + 1):
        print(f"round {number}/{rounds}", file=sys.stderr, flush=True)
        for case in cases:
            files = [DATA / f for f in case.checkpoint.files]
            if case.source == "local-cold":
                drop_cache(files)
            else:
                warm_cache(files)
            case.results.append(case.run())


def report(cases: list[Case], machine: str) -> None:
    print(f"\nservelab weight-loading benchmark on {machine}; medians over {len(cases[0].results)} rounds")
    header = f"{'source':<11} {'checkpoint':<9} {'method':<46} {'median s':>8} {'best s':>7} {'GB/s':>6} {'CPU-s/GB':>8} {'RSS+ MB':>8} {'1st tensor s':>12}"
    print(header)
    print("-" * len(header))
    for case in cases:
        r = case.results
        gb = r[0].bytes / 1e9
        median = statistics.median(m.seconds for m in r)
        rss = max((m.rss_over_base_mb for m in r if m.rss_over_base_mb is not None), default=None)
        first = [m.first_tensor_s for m in r if m.first_tensor_s is not None]
        print(
            f"{case.source:<11} {case.checkpoint.label:<9} {case.method:<46} {median:8.2f} {min(m.seconds for m in r):7.2f} "
            f"{gb / median:6.2f} {statistics.median(m.cpu_s for m in r) / gb:8.2f} "
            f"{'' if rss is None else f'{rss:8.0f}':>8} {'' if not first else f'{statistics.median(first):12.2f}':>12}"
        )
    print("\n" + ratio_line(cases))


def ratio_line(cases: list[Case]) -> str:
    """Paired ratios (same round, same checkpoint), median over rounds, for each target."""
    by = {(c.source, c.checkpoint.label, c.method): c for c in cases}
    parts = []

    def paired(source: str, label: str, method: str, baseline: str, throughput: bool = False) -> float | None:
        a, b = by.get((source, label, method)), by.get((source, label, baseline))
        if a is None or b is None:
            return None
        ratios = [
            (y.seconds / x.seconds) if throughput else (x.seconds / y.seconds) for x, y in zip(a.results, b.results, strict=True)
        ]
        return statistics.median(ratios)

    labels = sorted({c.checkpoint.label for c in cases})
    for label in labels:
        items = []
        for name, source, baseline, throughput in (
            ("cold vs O_DIRECT (throughput)", "local-cold", "raw: dd O_DIRECT", True),
            ("cold vs load_file (time)", "local-cold", "safetensors load_file", False),
            ("warm vs dd (throughput)", "local-warm", "raw: dd buffered", True),
            ("http vs download+load (time)", "http", "download, then load_file", False),
            ("s3 vs download+load (time)", "s3", "boto3 download_file, then load_file", False),
            ("s3 vs runai tuned (time)", "s3", "runai (tuned: concurrency 2)", False),
        ):
            value = paired(source, label, "servelab load()", baseline, throughput)
            if value is not None:
                items.append(f"{name} {value:.2f}x")
        warm = by.get(("local-warm", label, "servelab load()"))
        if warm is not None:
            gb = warm.results[0].bytes / 1e9
            items.append(
                f"warm {gb / statistics.median(m.seconds for m in warm.results):.2f} GB/s at "
                f"{statistics.median(m.cpu_s for m in warm.results) / gb:.2f} CPU-s/GB"
            )
        rss = [
            m.rss_over_base_mb for c in cases if c.checkpoint.label == label and c.method == "servelab load()" for m in c.results
        ]
        ckpt = next(c.checkpoint for c in cases if c.checkpoint.label == label)
        if rss:
            items.append(f"peak RSS over checkpoint {max(rss) * 2**20 / ckpt.nbytes:.2f}x")
        parts.append(f"{label}: " + ", ".join(items))
    return "ratios (servelab / baseline): " + " | ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=1024, help="size of one file (the sharded set has --shards of them)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--sources", default="local-cold,local-warm,http,s3")
    args = parser.parse_args()
    sources = args.sources.split(",")
    checkpoints = build_checkpoints(args.mib, args.shards)
    web = NginxServer(DATA) if "http" in sources else None
    s3 = SeaweedS3Server() if "s3" in sources else None
    try:
        if s3 is not None:
            print("uploading to SeaweedFS ...", file=sys.stderr, flush=True)
            for ck in checkpoints:
                for f in (*ck.files, ck.uri_path):
                    s3.upload(DATA / f, f)
        cases = make_cases(checkpoints, sources, web, s3)
        run_rounds(cases, args.rounds)
    finally:
        for server in (web, s3):
            if server is not None:
                server.stop()
    cores = os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    report(cases, f"{cores} cores, {memory:.0f} GiB, no GPU, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
