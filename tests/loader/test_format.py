"""Header parsing and validation, on bytes built by hand (no I/O)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from servelab.errors import CheckpointFormatError
from servelab.loader import inspect
from servelab.loader.format import DTYPES, MAX_HEADER_BYTES, TensorSpec, header_size, parse_header


def encode(entries: object, data: int = 0, length: int | None = None) -> tuple[bytes, int]:
    body = json.dumps(entries).encode()
    raw = struct.pack("<Q", len(body) if length is None else length) + body
    return raw, len(raw) + data


def test_parses_tensors_sorted_with_absolute_offsets_and_metadata() -> None:
    raw, size = encode(
        {
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            "a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
            "__metadata__": {"format": "pt"},
        },
        data=12,
    )
    header = parse_header(raw, "mem://x", size)
    assert [t.name for t in header.tensors] == ["a", "b"]
    assert header.tensor("b") == TensorSpec("b", "F32", (2,), len(raw) + 4, len(raw) + 12)
    assert header.metadata == {"format": "pt"}
    assert header.data_start == len(raw)


def test_packed_fp4_halves_the_last_dimension_for_torch() -> None:
    raw, size = encode({"q": {"dtype": "F4", "shape": [2, 6], "data_offsets": [0, 6]}}, data=6)
    assert parse_header(raw, "x", size).tensor("q").torch_shape == (2, 3)


@pytest.mark.parametrize(
    ("entries", "data", "message"),
    [
        ({"t": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, 1, "unknown dtype 'Q7'"),
        ({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, 8, "needs 12 bytes but data_offsets span 8"),
        ({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, 4, "not a list of non-negative integers"),
        ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, 4, "0 <= begin <= end"),
        ({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8, "past the end of the file"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            12,
            "'a' and 'b' overlap",
        ),
        ({"__metadata__": {"n": 3}}, 0, "'__metadata__' must map strings to strings"),
        ([1, 2], 0, "not an object of tensors"),
        ({"t": "nope"}, 0, "entry is not an object"),
    ],
)
def test_rejects_bad_headers_naming_file_and_problem(entries: object, data: int, message: str) -> None:
    raw, size = encode(entries, data)
    with pytest.raises(CheckpointFormatError, match="^mem://bad: .*" + message.replace("(", r"\(")):
        parse_header(raw, "mem://bad", size)


def test_rejects_invalid_json() -> None:
    raw = struct.pack("<Q", 5) + b"{nope"
    with pytest.raises(CheckpointFormatError, match="not valid JSON"):
        parse_header(raw, "x", len(raw))


def test_rejects_header_length_beyond_file_or_limit() -> None:
    with pytest.raises(CheckpointFormatError, match="only 100 bytes"):
        header_size(struct.pack("<Q", 500), "x", 100)
    with pytest.raises(CheckpointFormatError, match=r"over the .*-byte limit"):
        header_size(struct.pack("<Q", MAX_HEADER_BYTES + 1), "x", 1 << 40)
    with pytest.raises(CheckpointFormatError, match="too short"):
        header_size(b"\x01\x02", "x", 2)


def test_every_dtype_maps_to_a_torch_dtype() -> None:
    torch = pytest.importorskip("torch")
    for dtype in DTYPES.values():
        assert isinstance(getattr(torch, dtype.torch_name), torch.dtype)


def test_a_small_checkpoints_size_is_shown_in_a_unit_that_suits_it(tmp_path: Path) -> None:
    path = tmp_path / "mlp.safetensors"
    save_file({"fc.weight": torch.zeros(34_000)}, str(path))  # 136 kB of float32: "0.000 GB" before

    info = inspect(str(path))

    assert repr(info) == f"CheckpointInfo({str(path)!r}: 1 tensors, 136 kB in 1 file(s))"
    assert "136 kB in 1 file(s) (F32 136 kB)" in info._repr_html_()
