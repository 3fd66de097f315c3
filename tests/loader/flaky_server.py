"""A real threaded HTTP server (on 127.0.0.1) with range support that can misbehave on purpose.

It injects the faults nginx will not: 503s, connections reset mid-body, ignored Range headers.
"""

from __future__ import annotations

import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FlakyServer:
    """Serves ``root``; ``fail_first`` requests get 503, request numbers in ``reset_on`` die mid-body."""

    def __init__(self, root: Path, fail_first: int = 0, reset_on: frozenset[int] = frozenset(), ignore_range: bool = False):
        self.root = root
        self.fail_first = fail_first
        self.reset_on = reset_on
        self.ignore_range = ignore_range
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{path}"

    def __enter__(self) -> FlakyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_request(self) -> int:
        with self._lock:
            self.requests += 1
            return self.requests

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                number = flaky._next_request()
                if number <= flaky.fail_first:
                    self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"busy")
                    return
                path = flaky.root / self.path.lstrip("/")
                if not path.is_file():
                    self._reply(HTTPStatus.NOT_FOUND, b"missing")
                    return
                data = path.read_bytes()
                match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                if match and not flaky.ignore_range:
                    start, end = int(match[1]), min(int(match[2]), len(data) - 1)
                    body = data[start : end + 1]
                    self.send_response(HTTPStatus.PARTIAL_CONTENT)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    body = data
                    self.send_response(HTTPStatus.OK)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if number in flaky.reset_on:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _reply(self, status: HTTPStatus, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
