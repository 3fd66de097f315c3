"""What a checkpoint holds, from its headers alone: files, tensor names, shapes, dtypes, bytes."""

from __future__ import annotations

import html
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from servelab.loader.checkpoint import Include, open_checkpoint
from servelab.loader.progress import format_bytes
from servelab.loader.retry import RetryPolicy


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a checkpoint: where it lives and what it is."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    file: str


@dataclass(frozen=True)
class CheckpointInfo:
    """The selected tensors of a checkpoint and the files that hold them; nothing but headers was read."""

    uri: str
    files: tuple[str, ...]
    tensors: tuple[TensorInfo, ...]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def shards(self) -> int:
        return len(self.files)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    @property
    def dtypes(self) -> dict[str, int]:
        """Bytes per dtype."""
        totals: dict[str, int] = {}
        for tensor in self.tensors:
            totals[tensor.dtype] = totals.get(tensor.dtype, 0) + tensor.nbytes
        return totals

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        return f"CheckpointInfo({self.uri!r}: {len(self.tensors)} tensors, {format_bytes(self.nbytes)} in {self.shards} file(s))"

    def _repr_html_(self) -> str:
        dtypes = ", ".join(f"{name} {format_bytes(size)}" for name, size in sorted(self.dtypes.items()))
        return (
            f"<b>{html.escape(self.uri)}</b>: {len(self.tensors)} tensors, {format_bytes(self.nbytes)} "
            f"in {self.shards} file(s) ({html.escape(dtypes)})"
        )


def inspect(uri: str, storage_options: dict[str, Any] | None = None, include: Include = None, retries: int = 2) -> CheckpointInfo:
    """Read only the headers (and index) of the checkpoint at ``uri``: what ``load()`` would return.

    Raises the loader's errors (not found, bad format, unknown tensor names) without reading any data.

    >>> info = inspect("s3://models/llama/model.safetensors.index.json")
    >>> info.nbytes, info.shards, info.tensors[0].shape
    """
    with ThreadPoolExecutor(4, thread_name_prefix="servelab-inspect") as pool:
        files = open_checkpoint(uri, storage_options, include, RetryPolicy(attempts=retries + 1), pool)
    try:
        tensors = tuple(
            TensorInfo(spec.name, spec.dtype, tuple(spec.shape), spec.nbytes, file.header.uri)
            for file in files
            for spec in file.selected
        )
        return CheckpointInfo(uri, tuple(file.header.uri for file in files), tensors)
    finally:
        for file in files:
            file.source.close()
