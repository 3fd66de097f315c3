"""The main job: ``python -m servelab demo`` streams a generated checkpoint from disk and nginx."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_streams_from_disk_and_http_and_prints_throughput(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "servelab", "demo", "--cache", str(tmp_path), "--mib", "16"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    lines = [line for line in out.stdout.splitlines() if "GB/s" in line]
    assert len(lines) == 2, out.stdout
    assert "local file" in lines[0] and "HTTP (nginx" in lines[1]
    for line in lines:
        match = re.search(r"(\d+) tensors, ([\d.]+) GB in [\d.]+ s = ([\d.]+) GB/s", line)
        assert match and int(match[1]) > 9 and float(match[2]) > 0.01 and float(match[3]) > 0, line
