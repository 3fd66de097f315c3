"""The safetensors file format: header parsing and validation, as pure functions of bytes.

A file is an 8-byte little-endian header length N, N bytes of JSON, then the tensor data.
Every check here runs before any tensor byte is read, so bad files fail fast and whole.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

from servelab.errors import CheckpointFormatError

HEADER_LENGTH_BYTES = 8
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit safetensors itself enforces


@dataclass(frozen=True)
class DType:
    """A safetensors dtype code, the torch dtype it becomes, and its width in bits per element."""

    code: str
    torch_name: str
    bits: int


DTYPES: dict[str, DType] = {
    d.code: d
    for d in (
        DType("BOOL", "bool", 8),
        DType("U8", "uint8", 8),
        DType("I8", "int8", 8),
        DType("U16", "uint16", 16),
        DType("I16", "int16", 16),
        DType("U32", "uint32", 32),
        DType("I32", "int32", 32),
        DType("U64", "uint64", 64),
        DType("I64", "int64", 64),
        DType("F16", "float16", 16),
        DType("BF16", "bfloat16", 16),
        DType("F32", "float32", 32),
        DType("F64", "float64", 64),
        DType("C64", "complex64", 64),
        DType("F8_E4M3", "float8_e4m3fn", 8),
        DType("F8_E4M3FNUZ", "float8_e4m3fnuz", 8),
        DType("F8_E5M2", "float8_e5m2", 8),
        DType("F8_E5M2FNUZ", "float8_e5m2fnuz", 8),
        DType("F8_E8M0", "float8_e8m0fnu", 8),
        # Two 4-bit values per byte: torch's shape halves the last dimension.
        DType("F4", "float4_e2m1fn_x2", 4),
    )
}


@dataclass(frozen=True)
class TensorSpec:
    """Where one tensor lives in a file: absolute byte range [start, end), dtype code and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def torch_shape(self) -> tuple[int, ...]:
        """The shape torch uses: packed sub-byte dtypes hold several elements in one."""
        per_byte = 8 // DTYPES[self.dtype].bits if DTYPES[self.dtype].bits < 8 else 1
        if per_byte == 1 or not self.shape:
            return self.shape
        return (*self.shape[:-1], self.shape[-1] // per_byte)


@dataclass(frozen=True)
class Header:
    """A parsed, validated safetensors header."""

    uri: str
    file_size: int
    data_start: int
    tensors: tuple[TensorSpec, ...]  # sorted by start offset
    metadata: dict[str, str] = field(default_factory=dict)

    def tensor(self, name: str) -> TensorSpec:
        for spec in self.tensors:
            if spec.name == name:
                return spec
        raise KeyError(name)


def header_size(prefix: bytes, uri: str, file_size: int) -> int:
    """Bytes taken by the length field plus the JSON header, read from the file's first 8 bytes."""
    if file_size < HEADER_LENGTH_BYTES or len(prefix) < HEADER_LENGTH_BYTES:
        raise CheckpointFormatError(
            f"{uri}: file is {file_size} bytes, too short for a safetensors header "
            "(it starts with an 8-byte header length). The file is truncated or not safetensors."
        )
    (length,) = struct.unpack("<Q", prefix[:HEADER_LENGTH_BYTES])
    if length > MAX_HEADER_BYTES:
        raise CheckpointFormatError(
            f"{uri}: header length field says {length} bytes, over the {MAX_HEADER_BYTES}-byte limit. "
            "The file is corrupt or not safetensors; re-save or re-download it."
        )
    if HEADER_LENGTH_BYTES + length > file_size:
        raise CheckpointFormatError(
            f"{uri}: header length field says {length} bytes but the file has only {file_size} bytes. "
            "The file is truncated or corrupt; re-download it."
        )
    return HEADER_LENGTH_BYTES + length


def parse_header(header: bytes, uri: str, file_size: int) -> Header:
    """Parse and validate the header (the length field and JSON) of a file of ``file_size`` bytes."""
    data_start = header_size(header, uri, file_size)
    if len(header) < data_start:
        raise ValueError(f"parse_header needs the first {data_start} bytes, got {len(header)}")
    try:
        entries = json.loads(header[HEADER_LENGTH_BYTES:data_start].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointFormatError(f"{uri}: header is not valid JSON ({exc}). The file is corrupt or not safetensors.") from None
    if not isinstance(entries, dict):
        raise CheckpointFormatError(f"{uri}: header is JSON but not an object of tensors; the file is corrupt.")
    metadata = entries.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointFormatError(f"{uri}: '__metadata__' must map strings to strings; the header is corrupt.")

    data_size = file_size - data_start
    specs = sorted(
        (_tensor_spec(name, entry, uri, data_start, data_size) for name, entry in entries.items()),
        key=lambda s: (s.start, s.end),
    )
    _check_no_overlap(specs, uri)
    return Header(uri=uri, file_size=file_size, data_start=data_start, tensors=tuple(specs), metadata=metadata)


def _tensor_spec(name: str, entry: Any, uri: str, data_start: int, data_size: int) -> TensorSpec:
    # Runs once per tensor (tens of thousands in a MoE checkpoint): plain checks first, messages
    # only when one fails.
    dtype = entry.get("dtype") if type(entry) is dict else None
    shape = entry.get("shape") if type(entry) is dict else None
    offsets = entry.get("data_offsets") if type(entry) is dict else None
    if (
        dtype in DTYPES
        and type(shape) is list
        and all(type(d) is int and d >= 0 for d in shape)
        and type(offsets) is list
        and len(offsets) == 2
        and type(offsets[0]) is int
        and type(offsets[1]) is int
        and 0 <= offsets[0] <= offsets[1] <= data_size
        and math.prod(shape) * DTYPES[dtype].bits == 8 * (offsets[1] - offsets[0])
    ):
        return TensorSpec(name, dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])
    raise _spec_error(name, entry, uri, data_start, data_size)


def _spec_error(name: str, entry: Any, uri: str, data_start: int, data_size: int) -> CheckpointFormatError:
    """What is wrong with a tensor's header entry, and the fix."""
    where = f"{uri}: tensor {name!r}"
    if not isinstance(entry, dict):
        return CheckpointFormatError(f"{where}: entry is not an object; the header is corrupt.")
    dtype = entry.get("dtype")
    if dtype not in DTYPES:
        return CheckpointFormatError(
            f"{where}: unknown dtype {dtype!r}. servelab reads {', '.join(DTYPES)}; convert the checkpoint to one of these."
        )
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return CheckpointFormatError(f"{where}: shape {shape!r} is not a list of non-negative integers.")
    offsets = entry.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        return CheckpointFormatError(f"{where}: data_offsets {offsets!r} must be [begin, end] with 0 <= begin <= end.")
    bits = math.prod(shape) * DTYPES[dtype].bits
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        return CheckpointFormatError(
            f"{where}: {dtype} shape {shape} needs {bits / 8:g} bytes but data_offsets span "
            f"{offsets[1] - offsets[0]}; the header is corrupt."
        )
    return CheckpointFormatError(
        f"{where}: data ends at byte {data_start + offsets[1]}, past the end of the file "
        f"({data_start + data_size} bytes). The file is truncated or its header is corrupt; re-download it."
    )


def _check_no_overlap(specs: list[TensorSpec], uri: str) -> None:
    previous: TensorSpec | None = None
    for spec in specs:
        if spec.nbytes == 0:
            continue
        if previous is not None and spec.start < previous.end:
            raise CheckpointFormatError(
                f"{uri}: tensors {previous.name!r} and {spec.name!r} overlap in the file "
                f"(bytes {spec.start}..{previous.end}); the header is corrupt."
            )
        previous = spec
