"""Any other fsspec filesystem: ``cat_file`` ranges, copied into the buffers once."""

from __future__ import annotations

from typing import Any

from servelab.errors import CheckpointNotFoundError, SourceReadError
from servelab.loader.retry import RetryPolicy, TransientReadError
from servelab.loader.sources.base import Buffers, ByteSource


class FsspecSource(ByteSource):
    """Any fsspec filesystem, read with ``cat_file`` ranges and copied into the buffers once."""

    def __init__(self, fs: Any, path: str, uri: str, policy: RetryPolicy) -> None:
        super().__init__(uri, policy)
        self._fs = fs
        self._path = path

    def _open(self, head_bytes: int) -> bytes:
        self.size = self._call(lambda: self._fs.size(self._path))
        return self._cat(0, min(head_bytes, self.size))

    def _read_into(self, offset: int, buffers: Buffers, length: int) -> None:
        data = memoryview(self._cat(offset, length))
        for buffer in buffers:
            buffer[:] = data[: len(buffer)]
            data = data[len(buffer) :]

    def _cat(self, offset: int, length: int) -> bytes:
        data = self._call(lambda: self._fs.cat_file(self._path, start=offset, end=offset + length))
        if len(data) != length:
            raise TransientReadError(f"asked for {length} bytes at {offset}, got {len(data)}")
        return data

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except FileNotFoundError:
            raise CheckpointNotFoundError(f"{self.uri}: not found. Check the URI.") from None
        except PermissionError as exc:
            raise SourceReadError(f"{self.uri}: access denied ({exc}). Check credentials in storage_options.") from None
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise TransientReadError(repr(exc)) from exc
