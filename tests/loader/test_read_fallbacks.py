"""Local reads where the fast path's pieces are missing (macOS, tmpfs, old kernels): same bytes, plainer path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from servelab.loader import load, pagecache
from servelab.loader.retry import RetryPolicy
from servelab.loader.sources import LocalFileSource

from .test_load import assert_identical
from .test_local_reads import evict, write_checkpoint

FALLBACKS = {
    "no O_DIRECT": lambda mp: mp.setattr(pagecache, "O_DIRECT", None),
    "no mincore": lambda mp: mp.setattr(pagecache, "MINCORE", False),
    "no posix_fadvise": lambda mp: mp.setattr(pagecache, "FADVISE", None),
    "no MADV_POPULATE_WRITE": lambda mp: mp.setattr(pagecache, "_madvise", None),
    "no preadv": lambda mp: mp.delattr(os, "preadv"),
}


def opened(path: Path) -> LocalFileSource:
    source = LocalFileSource(str(path), str(path), RetryPolicy())
    source.open(1 << 20)
    return source


@pytest.mark.parametrize("missing", sorted(FALLBACKS))
def test_each_fallback_reads_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    path = write_checkpoint(tmp_path / "model.safetensors")
    expected = load_file(path)
    FALLBACKS[missing](monkeypatch)
    source = opened(path)
    try:
        direct = source._probe is not None
    finally:
        source.close()
    assert direct == (missing not in ("no O_DIRECT", "no mincore", "no preadv"))  # without them, plain buffered reads
    evict(path)
    assert_identical(load(str(path), chunk_size=4999, concurrency=3), expected)  # cold
    assert_identical(load(str(path), chunk_size=1 << 20, concurrency=2), expected)  # warm


def test_a_tmpfs_file_reads_the_same_bytes() -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or "tmpfs" not in Path("/proc/mounts").read_text().split(" /dev/shm ")[-1].split(" ")[0]:
        pytest.skip("no tmpfs at /dev/shm")
    directory = shm / f"servelab-test-{os.getpid()}"
    directory.mkdir()
    try:
        path = write_checkpoint(directory / "model.safetensors")  # older kernels refuse O_DIRECT here, newer allow it
        assert_identical(load(str(path), chunk_size=4999, concurrency=3), load_file(path))
    finally:
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()
