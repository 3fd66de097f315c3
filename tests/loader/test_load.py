"""stream() and load() against real sources: results are bit-identical to safetensors' own loader."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from servelab.loader import LoadProgress, load, stream

from .conftest import SOURCES, UriFor, write_misaligned_checkpoint


def raw_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().reshape(-1).view(torch.uint8) if tensor.numel() else torch.empty(0, dtype=torch.uint8)


def assert_identical(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype, name
        assert got[name].shape == tensor.shape, name
        assert torch.equal(raw_bytes(got[name]), raw_bytes(tensor)), name


def load_shards(index: Path) -> dict[str, torch.Tensor]:
    merged: dict[str, torch.Tensor] = {}
    for shard in sorted(index.parent.glob("*.safetensors")):
        merged.update(load_file(shard))
    return merged


@pytest.mark.parametrize("source", SOURCES)
def test_every_dtype_bit_identical_to_load_file(source: str, uri_for: UriFor, checkpoints: Path) -> None:
    uri, options = uri_for(source, "dtypes/model.safetensors")
    got = load(uri, storage_options=options)
    assert_identical(got, load_file(checkpoints / "dtypes" / "model.safetensors"))


@pytest.mark.parametrize("source", SOURCES)
def test_sharded_save_pretrained_checkpoint_through_its_index(source: str, uri_for: UriFor, checkpoints: Path) -> None:
    uri, options = uri_for(source, "llama/model.safetensors.index.json")
    got = load(uri, storage_options=options, chunk_size=16 << 10, concurrency=3)
    expected = load_shards(checkpoints / "llama" / "model.safetensors.index.json")
    assert len(expected) > 10
    assert_identical(got, expected)


@pytest.mark.parametrize(("chunk_size", "concurrency"), [(1, 1), (1000, 2), (64 << 10, 8)])
def test_any_chunking_gives_the_same_tensors(chunk_size: int, concurrency: int, uri_for: UriFor, checkpoints: Path) -> None:
    uri, _ = uri_for("http", "dtypes/model.safetensors")
    got = load(uri, chunk_size=chunk_size, concurrency=concurrency)
    assert_identical(got, load_file(checkpoints / "dtypes" / "model.safetensors"))


def test_loaded_tensors_can_be_saved_again(tmp_path: Path, uri_for: UriFor, checkpoints: Path) -> None:
    from safetensors.torch import save_file

    uri, _ = uri_for("file", "dtypes/model.safetensors")
    save_file(load(uri), tmp_path / "again.safetensors")  # views of one slab must not count as shared
    assert_identical(load_file(tmp_path / "again.safetensors"), load_file(checkpoints / "dtypes" / "model.safetensors"))


def test_stream_yields_tensors_while_later_bytes_are_still_in_flight(uri_for: UriFor) -> None:
    uri, _ = uri_for("http", "llama/model.safetensors.index.json")
    events: list[LoadProgress] = []
    seen_at: list[int] = []
    sizes: list[int] = []
    chunk_size, concurrency = 8 << 10, 2
    for _name, tensor in stream(uri, chunk_size=chunk_size, concurrency=concurrency, progress=events.append):
        seen_at.append(events[-1].bytes_done if events else 0)
        sizes.append(tensor.nbytes)
    total = events[-1].bytes_total
    # The first tensor came once its own bytes (plus at most the read-ahead window) had arrived.
    assert seen_at[0] <= sizes[0] + 2 * concurrency * chunk_size < total / 2
    assert events[-1].bytes_done == total
    assert events[-1].tensors_done == events[-1].tensors_total == len(seen_at)
    assert all(a.bytes_done <= b.bytes_done for a, b in itertools.pairwise(events))


def test_include_by_names_reads_only_their_shards(uri_for: UriFor, checkpoints: Path, scratch: Path) -> None:
    expected = load_shards(checkpoints / "llama" / "model.safetensors.index.json")
    wanted = ["model.embed_tokens.weight", "model.norm.weight"]
    events: list[LoadProgress] = []
    uri, _ = uri_for("file", "llama/model.safetensors.index.json")
    got = load(uri, include=wanted, progress=events.append)
    assert_identical(got, {name: expected[name] for name in wanted})
    assert events[-1].bytes_total == sum(expected[name].nbytes for name in wanted)


def test_s3_through_s3fs_when_options_need_it(uri_for: UriFor, checkpoints: Path) -> None:
    uri, options = uri_for("s3", "dtypes/model.safetensors")
    got = load(uri, storage_options={**options, "use_ssl": False})  # an s3fs option: s3fs signs
    assert_identical(got, load_file(checkpoints / "dtypes" / "model.safetensors"))


def test_include_by_predicate(uri_for: UriFor, checkpoints: Path) -> None:
    expected = load_shards(checkpoints / "llama" / "model.safetensors.index.json")
    uri, options = uri_for("s3", "llama/model.safetensors.index.json")
    got = load(uri, storage_options=options, include=lambda name: ".layers.1." in name)
    assert_identical(got, {n: t for n, t in expected.items() if ".layers.1." in n})


def test_dtype_converts_plain_float_tensors_and_keeps_quantised_and_integer_ones(uri_for: UriFor, checkpoints: Path) -> None:
    expected = load_file(checkpoints / "dtypes" / "model.safetensors")
    uri, _ = uri_for("file", "dtypes/model.safetensors")
    kept = ["I32.matrix", "F8_E4M3.matrix", "F8_E8M0.matrix", "F4.matrix"]
    got = load(uri, dtype=torch.float32, include=["BF16.matrix", "F16.matrix", "F32.scalar", *kept])
    for name in ("BF16.matrix", "F16.matrix"):
        assert got[name].dtype == torch.float32
        assert torch.equal(raw_bytes(got[name]), raw_bytes(expected[name].to(torch.float32)))  # NaNs too
    for name in kept:  # quantised weights need their scales: converting them alone would change the model
        assert got[name].dtype == expected[name].dtype
        assert torch.equal(raw_bytes(got[name]), raw_bytes(expected[name]))


def test_tensors_at_odd_offsets_load_exactly(tmp_path: Path) -> None:
    """Float tensors a file stores where their type cannot be viewed in place come back copied, exact."""
    path = tmp_path / "misaligned.safetensors"
    expected = write_misaligned_checkpoint(path)
    got = load(str(path))
    assert_identical(got, expected)
    assert got["x"].data_ptr() % 4 == 0 and got["y"].data_ptr() % 8 == 0


@pytest.mark.parametrize(("chunk_size", "concurrency"), [(1, 1), (3, 2), (4999, 3), (32 << 20, 2)])
def test_dtype_conversion_is_the_same_at_any_chunking(
    chunk_size: int, concurrency: int, checkpoints: Path, tmp_path: Path
) -> None:
    """Reads that split elements (odd sizes, and tensors the file stores at odd offsets) convert whole."""
    plain = (torch.float16, torch.float32, torch.float64)
    misaligned = tmp_path / "misaligned.safetensors"
    files = {checkpoints / "dtypes" / "model.safetensors": load_file(checkpoints / "dtypes" / "model.safetensors")}
    files[misaligned] = write_misaligned_checkpoint(misaligned)
    for path, expected in files.items():
        got = load(str(path), dtype=torch.bfloat16, chunk_size=chunk_size, concurrency=concurrency)
        assert_identical(got, {name: t.to(torch.bfloat16) if t.dtype in plain else t for name, t in expected.items()})


def test_progress_bar_when_asked(uri_for: UriFor, capsys: pytest.CaptureFixture[str]) -> None:
    uri, _ = uri_for("file", "dtypes/model.safetensors")
    load(uri, progress=True)
    assert "model.safetensors" in capsys.readouterr().err
    load(uri)  # outside a notebook the default shows nothing
    assert capsys.readouterr().err == ""


def test_device_auto_falls_back_to_cpu_without_cuda(uri_for: UriFor) -> None:
    uri, _ = uri_for("file", "dtypes/model.safetensors")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert {t.device.type for t in load(uri, device="auto").values()} == {expected}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("source", ["file", "http"])
def test_cuda_stream_matches_host_load(source: str, uri_for: UriFor, checkpoints: Path) -> None:
    uri, _ = uri_for(source, "llama/model.safetensors.index.json")
    got = load(uri, device="cuda", chunk_size=16 << 10, concurrency=3)
    assert {t.device.type for t in got.values()} == {"cuda"}
    assert_identical({n: t.cpu() for n, t in got.items()}, load_shards(checkpoints / "llama" / "model.safetensors.index.json"))
