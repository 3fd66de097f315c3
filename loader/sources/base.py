"""ByteSource: what every transport implements, ranged reads straight into caller-owned buffers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from servelab.errors import SourceReadError
from servelab.loader.retry import RetryPolicy, call_with_retries

Buffers = Sequence[memoryview]


class ByteSource(ABC):
    """A file of known ``size`` whose byte ranges can be read into buffers, from any thread."""

    def __init__(self, uri: str, policy: RetryPolicy) -> None:
        self.uri = uri
        self.size = 0
        self._policy = policy
        self._head = b""

    def open(self, head_bytes: int) -> bytes:
        """Learn the size and return the first ``head_bytes`` (fewer if the file is shorter)."""
        self._head = call_with_retries(lambda: self._open(head_bytes), self._policy, self.uri)
        return self._head

    def read_into(self, offset: int, buffers: Buffers) -> None:
        """Fill ``buffers`` with consecutive bytes starting at ``offset``, retrying transient errors."""
        length = sum(len(b) for b in buffers)
        if offset + length <= len(self._head):
            for buffer in buffers:
                buffer[:] = self._head[offset : offset + len(buffer)]
                offset += len(buffer)
            return
        if offset + length > self.size:
            raise SourceReadError(f"{self.uri}: read of bytes {offset}..{offset + length} is past the end ({self.size}).")
        call_with_retries(lambda: self._read_into(offset, buffers, length), self._policy, self.uri)

    def read(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset`` into a new bytes object (for small reads: headers, indexes)."""
        buffer = bytearray(length)
        self.read_into(offset, [memoryview(buffer)])
        return bytes(buffer)

    def close(self) -> None:  # noqa: B027 - a no-op unless the source holds something
        """Release connections or file handles; idempotent."""

    @abstractmethod
    def _open(self, head_bytes: int) -> bytes: ...

    @abstractmethod
    def _read_into(self, offset: int, buffers: Buffers, length: int) -> None: ...
