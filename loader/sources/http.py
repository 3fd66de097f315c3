"""HTTP(S): Range requests over a keep-alive connection per thread, ``readinto`` the buffers (S3 with
a presigned URL comes here too)."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from urllib.parse import urlsplit

from servelab.errors import CheckpointNotFoundError, SourceReadError
from servelab.loader.retry import RetryPolicy, TransientReadError
from servelab.loader.sources.base import Buffers, ByteSource

HTTP_TIMEOUT_S = 60.0


class HTTPSource(ByteSource):
    """An HTTP(S) URL read with Range requests over one keep-alive connection per thread."""

    def __init__(self, url: str, uri: str, policy: RetryPolicy, headers: dict[str, str] | None = None) -> None:
        super().__init__(uri, policy)
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._target = parts.path + (f"?{parts.query}" if parts.query else "")
        self._headers = dict(headers or {})
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _open(self, head_bytes: int) -> bytes:
        response = self._get(0, max(head_bytes, 1))
        if response.status == 416:  # an empty file has no byte 0
            response.read()
            return b""
        total = _total_from_content_range(response.getheader("Content-Range"))
        if response.status == 200:
            total = int(response.getheader("Content-Length") or -1)
            if total > head_bytes or total < 0:
                self._drop_connection()
                raise SourceReadError(
                    f"{self.uri}: the server ignored the HTTP Range header. servelab reads byte ranges; "
                    "serve the file from a server with range support (nginx, S3, most static servers)."
                )
        if total < 0:
            self._drop_connection()
            raise SourceReadError(f"{self.uri}: the server did not report the file size (Content-Range).")
        self.size = total
        return self._read_body(response, min(head_bytes, total))

    def _read_into(self, offset: int, buffers: Buffers, length: int) -> None:
        response = self._get(offset, length)
        if response.status != 206:
            self._drop_connection()
            raise SourceReadError(f"{self.uri}: expected a 206 partial response to a Range request, got {response.status}.")
        try:
            for buffer in buffers:
                _readinto_exactly(response, buffer)
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise TransientReadError(f"connection broke mid-read ({exc!r})") from exc
        if response.read(1):
            self._drop_connection()

    def _get(self, offset: int, length: int) -> http.client.HTTPResponse:
        headers = {**self._headers, "Range": f"bytes={offset}-{offset + length - 1}"}
        try:
            connection = self._connection()
            connection.request("GET", self._target, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise TransientReadError(f"request failed ({exc!r})") from exc
        if response.status in (200, 206, 416):
            return response
        body = response.read(512)
        self._drop_connection()
        if response.status == 404:
            raise CheckpointNotFoundError(f"{self.uri}: not found (HTTP 404). Check the URI.")
        if response.status in (401, 403):
            raise SourceReadError(f"{self.uri}: access denied (HTTP {response.status}). Check credentials in storage_options.")
        if response.status == 429 or response.status >= 500:
            raise TransientReadError(f"HTTP {response.status} {response.reason}")
        raise SourceReadError(f"{self.uri}: HTTP {response.status} {response.reason}: {body[:200]!r}")

    def _read_body(self, response: http.client.HTTPResponse, length: int) -> bytes:
        buffer = bytearray(length)
        try:
            _readinto_exactly(response, memoryview(buffer))
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise TransientReadError(f"connection broke mid-read ({exc!r})") from exc
        if response.read(1):  # unread body left: this connection cannot be reused
            self._drop_connection()
        return bytes(buffer)

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self._https:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=HTTP_TIMEOUT_S, context=ssl.create_default_context()
                )
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=HTTP_TIMEOUT_S)
            connection.connect()
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


def _total_from_content_range(value: str | None) -> int:
    if not value or "/" not in value or value.endswith("/*"):
        return -1
    return int(value.rsplit("/", 1)[1])


def _readinto_exactly(response: http.client.HTTPResponse, buffer: memoryview) -> None:
    while len(buffer):
        got = response.readinto(buffer)
        if not got:
            raise http.client.IncompleteRead(b"", len(buffer))
        buffer = buffer[got:]
