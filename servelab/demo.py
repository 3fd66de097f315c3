"""The main job until the notebook surface lands: stream a generated checkpoint and report throughput."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from servelab.loader import stream
from servelab.testing import NginxServer, write_llm_checkpoint

DEMO_BYTES = 512 << 20


def run_demo(cache: Path, size: int = DEMO_BYTES) -> None:
    """Write (once) a seeded Llama-shaped checkpoint, then stream it from disk and, with nginx, HTTP."""
    directory = cache / f"demo-{size >> 20}MiB"
    checkpoint = directory / "model.safetensors"
    if not checkpoint.exists():
        print(f"writing a {size >> 20} MiB seeded checkpoint to {directory} ...")
        write_llm_checkpoint(directory, size)
    uris = {"local file": str(checkpoint)}
    server = NginxServer(directory) if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() else None
    try:
        if server is not None:
            uris["HTTP (nginx on 127.0.0.1)"] = server.url(checkpoint.name)
        for label, uri in uris.items():
            _report(label, uri)
    finally:
        if server is not None:
            server.stop()


def _report(label: str, uri: str) -> None:
    started = time.perf_counter()
    first = 0.0
    count = nbytes = 0
    for _name, tensor in stream(uri, progress=True):
        first = first or time.perf_counter() - started
        count += 1
        nbytes += tensor.nbytes
    elapsed = time.perf_counter() - started
    print(
        f"{label:>26}: {count} tensors, {nbytes / 1e9:.2f} GB in {elapsed:.2f} s = {nbytes / elapsed / 1e9:.2f} GB/s, "
        f"first tensor after {first * 1000:.0f} ms"
    )
