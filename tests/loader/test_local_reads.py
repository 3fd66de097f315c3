"""Local files: page-cache hits are read in place, misses with O_DIRECT, and both give the same bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from servelab.loader import load
from servelab.loader.pagecache import PageCacheProbe

from .conftest import every_dtype_tensors
from .test_load import assert_identical


def write_checkpoint(path: Path) -> Path:
    tensors = every_dtype_tensors()
    tensors["big"] = torch.randn(2_000_000, generator=torch.Generator().manual_seed(3))  # 8 MB: past the head read
    save_file(tensors, path)
    return path


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def cached(path: Path, offset: int = 0) -> bool:
    fd = os.open(path, os.O_RDONLY)
    probe = PageCacheProbe(fd, path.stat().st_size)
    try:
        return probe.cached(offset, path.stat().st_size - offset)
    finally:
        probe.close()
        os.close(fd)


@pytest.mark.parametrize("chunk_size", [4999, 1 << 20])
def test_uncached_file_is_read_with_o_direct_and_stays_uncached(tmp_path: Path, chunk_size: int) -> None:
    path = write_checkpoint(tmp_path / "model.safetensors")
    expected = load_file(path)
    evict(path)
    if cached(path):
        pytest.skip("this filesystem keeps the file cached (no eviction)")
    got = load(str(path), chunk_size=chunk_size, concurrency=3)
    # Past the (buffered) 1 MiB header read, O_DIRECT bypassed the page cache. (Checked before the
    # comparison: load_file's tensors map the file, and reading them caches it.)
    assert not cached(path, offset=2 << 20)
    assert_identical(got, expected)


def test_partly_cached_file(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "model.safetensors")
    expected = load_file(path)
    evict(path)
    with open(path, "rb") as f:
        f.read(path.stat().st_size // 2)
    assert_identical(load(str(path), chunk_size=64 << 10), expected)


def test_probe_sees_cached_pages(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "model.safetensors")
    path.read_bytes()
    assert cached(path)


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a tmpfs at /dev/shm")
def test_filesystems_without_o_direct_fall_back_to_buffered_reads(tmp_path: Path) -> None:
    source = write_checkpoint(tmp_path / "model.safetensors")
    path = Path("/dev/shm") / f"servelab-test-{os.getpid()}.safetensors"
    path.write_bytes(source.read_bytes())
    try:
        assert_identical(load(str(path), chunk_size=4999), load_file(source))
    finally:
        path.unlink()


@pytest.mark.parametrize("cold", [False, True])
def test_prefaulted_slabs_hold_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cold: bool) -> None:
    from servelab.loader import sinks

    monkeypatch.setattr(sinks, "PREFAULT_MIN_BYTES", 1)  # take the prefault path for this small file
    path = write_checkpoint(tmp_path / "model.safetensors")
    expected = {name: tensor.clone() for name, tensor in load_file(path).items()}
    if cold:
        evict(path)
    assert_identical(load(str(path), chunk_size=1 << 20), expected)
