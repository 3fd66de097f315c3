"""Bad input and unreliable storage: clear servelab errors, bounded retries, never a partial state dict."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from servelab.errors import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    DeviceError,
    LoaderError,
    ServelabError,
    SourceReadError,
)
from servelab.loader import load, stream
from servelab.testing import NginxServer, free_port

from .conftest import UriFor, write_raw
from .flaky_server import FlakyServer
from .test_load import assert_identical


def small_checkpoint(path: Path, elements: int = 1000) -> Path:
    save_file({"a": torch.arange(elements, dtype=torch.float32), "b": torch.ones(elements, dtype=torch.int64)}, path)
    return path


@pytest.mark.parametrize("source", ["file", "http"])
def test_truncated_file(source: str, scratch: Path, nginx: NginxServer) -> None:
    path = small_checkpoint(scratch / "model.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    uri = str(path) if source == "file" else nginx.url(str(path.relative_to(scratch.parent.parent)))
    with pytest.raises(CheckpointFormatError, match=r"model\.safetensors: tensor '[ab]': .*past the end .*truncated"):
        load(uri)


@pytest.mark.parametrize(
    ("entries", "data", "message"),
    [
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, 24, "overlap"),
        ({"a": {"dtype": "F32", "shape": [64], "data_offsets": [0, 256]}}, 16, "past the end of the file"),
        ({"a": {"dtype": "F2", "shape": [4], "data_offsets": [0, 1]}}, 1, "unknown dtype 'F2'"),
    ],
)  # fmt: skip
def test_bad_offsets_and_dtypes(scratch: Path, entries: dict, data: int, message: str) -> None:
    path = write_raw(scratch / "bad.safetensors", entries, bytes(data))
    with pytest.raises(CheckpointFormatError, match=f"bad.safetensors: .*{message}"):
        load(str(path))


def test_corrupt_and_oversized_headers(scratch: Path) -> None:
    garbage = scratch / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 12) + b"\xff\xfe not json at all")
    with pytest.raises(CheckpointFormatError, match=r"garbage\.safetensors: header is not valid JSON"):
        load(str(garbage))
    oversized = scratch / "oversized.safetensors"
    oversized.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(CheckpointFormatError, match=r"oversized\.safetensors: header length field says"):
        load(str(oversized))
    tiny = scratch / "tiny.safetensors"
    tiny.write_bytes(b"abc")
    with pytest.raises(CheckpointFormatError, match="too short"):
        load(str(tiny))


def copy_llama(checkpoints: Path, scratch: Path) -> Path:
    target = scratch / "llama"
    shutil.copytree(checkpoints / "llama", target)
    return target / "model.safetensors.index.json"


def test_missing_shard_names_shard_and_index(checkpoints: Path, scratch: Path) -> None:
    index = copy_llama(checkpoints, scratch)
    (index.parent / "model-00002-of-00006.safetensors").unlink()
    with pytest.raises(CheckpointNotFoundError, match=r"model-00002-of-00006.safetensors: shard named by .*index.json"):
        load(str(index))
    # Tensors that live in the other shards still load: only needed shards are opened.
    weight_map = json.loads(index.read_text())["weight_map"]
    elsewhere = [n for n, shard in weight_map.items() if shard != "model-00002-of-00006.safetensors"]
    assert sorted(load(str(index), include=elsewhere)) == sorted(elsewhere)


def test_index_and_shard_disagree(checkpoints: Path, scratch: Path) -> None:
    index = copy_llama(checkpoints, scratch)
    content = json.loads(index.read_text())
    content["weight_map"]["model.ghost.weight"] = "model-00001-of-00006.safetensors"
    index.write_text(json.dumps(content))
    with pytest.raises(CheckpointFormatError, match=r"says this shard holds \['model.ghost.weight'\]"):
        load(str(index))


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ("not json", "index is not valid JSON"),
        ('{"metadata": {}}', "not a safetensors index"),
        ('{"weight_map": {"a": "../../etc/passwd"}}', "shards must be file names relative to the index"),
    ],
)
def test_bad_index(scratch: Path, index: str, message: str) -> None:
    path = scratch / "model.safetensors.index.json"
    path.write_text(index)
    with pytest.raises(CheckpointFormatError, match=message):
        load(str(path))


def test_not_found_everywhere(uri_for: UriFor, scratch: Path) -> None:
    for source in ("file", "http", "s3", "memory"):
        uri, options = uri_for(source, "dtypes/absent.safetensors")
        with pytest.raises(CheckpointNotFoundError, match=r"absent\.safetensors"):
            load(uri, storage_options=options)
    with pytest.raises(CheckpointNotFoundError, match="is a directory"):
        load(str(scratch))


def test_unreachable_uri_gives_up_after_bounded_retries() -> None:
    uri = f"http://127.0.0.1:{free_port()}/model.safetensors"
    with pytest.raises(SourceReadError, match=r"model.safetensors: request failed .*gave up after 2 attempts"):
        load(uri, retries=1)


def test_transient_errors_are_retried(scratch: Path) -> None:
    path = small_checkpoint(scratch / "model.safetensors", elements=300_000)  # larger than the 1 MiB head
    with FlakyServer(scratch, fail_first=2, reset_on=frozenset({4})) as server:
        got = load(server.url(path.name), chunk_size=256 << 10, concurrency=1)
        assert server.requests > 4
    assert_identical(got, load_file(scratch / "model.safetensors"))


def test_persistent_5xx_fails_after_exactly_the_allowed_attempts(scratch: Path) -> None:
    small_checkpoint(scratch / "model.safetensors")
    with FlakyServer(scratch, fail_first=100) as server:
        with pytest.raises(SourceReadError, match=r"HTTP 503 .*gave up after 3 attempts"):
            load(server.url("model.safetensors"), retries=2)
        assert server.requests == 3


def test_failure_mid_stream_returns_no_state_dict(scratch: Path) -> None:
    path = small_checkpoint(scratch / "model.safetensors", elements=100_000)  # larger than the 1 MiB head
    with FlakyServer(scratch, reset_on=frozenset(range(3, 100))) as server:
        result = None
        with pytest.raises(SourceReadError, match="connection broke mid-read"):
            result = load(server.url(path.name), chunk_size=64 << 10, retries=1)
        assert result is None


def test_server_without_range_support(scratch: Path) -> None:
    small = small_checkpoint(scratch / "small.safetensors")
    large = small_checkpoint(scratch / "large.safetensors", elements=200_000)
    with FlakyServer(scratch, ignore_range=True) as server:
        assert_identical(load(server.url(small.name)), load_file(small))  # fits in the first read
        with pytest.raises(SourceReadError, match="ignored the HTTP Range header"):
            load(server.url(large.name))


def test_include_names_that_do_not_exist(uri_for: UriFor) -> None:
    for relative in ("dtypes/model.safetensors", "llama/model.safetensors.index.json"):
        uri, _ = uri_for("file", relative)
        with pytest.raises(LoaderError, match=r"include names 1 tensor\(s\) not in the checkpoint: 'nope'"):
            load(uri, include=["nope", *([] if "llama" in relative else ["F32.scalar"])])
    with pytest.raises(LoaderError, match="is a string; pass a list"):
        load(uri, include="model.norm.weight")


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"chunk_size": 0}, LoaderError, "chunk_size=0 must be an integer >= 1"),
        ({"concurrency": "4"}, LoaderError, "concurrency='4' must be an integer"),
        ({"retries": -1}, LoaderError, "retries=-1 must be an integer >= 0"),
        ({"dtype": "bf16"}, LoaderError, "dtype='bf16': servelab converts float tensors to torch.float16, bfloat16"),
        ({"dtype": torch.int8}, LoaderError, r"dtype=torch.int8: .* pass one of these, or None"),
        ({"device": "tpu"}, DeviceError, "device='tpu'"),
    ],
)
def test_bad_arguments_fail_before_any_read(options: dict, error: type[ServelabError], message: str) -> None:
    with pytest.raises(error, match=message):
        stream(f"http://127.0.0.1:{free_port()}/never-contacted.safetensors", **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_requested_without_cuda() -> None:
    with pytest.raises(DeviceError, match="CUDA is not available on this machine; use device='cpu' or device='auto'"):
        stream("model.safetensors", device="cuda")


def test_bad_uri_type() -> None:
    with pytest.raises(LoaderError, match="give the checkpoint's URI as a string"):
        stream(Path("model.safetensors"))  # type: ignore[arg-type]
