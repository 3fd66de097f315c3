"""The sidebar's driver process leaves once its cluster stops, instead of spinning on a dead GCS."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

WATCH = "from servelab.jupyter_ext.driver import watch; watch({address!r}, interval_s=0.1, misses=3)"


def test_the_watch_exits_once_nothing_listens_at_the_address() -> None:
    with socket.socket() as listener:  # the cluster's port, as long as it runs
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        watcher = subprocess.Popen([sys.executable, "-c", WATCH.format(address=address)], stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.5)  # many checks, all answered
            assert watcher.poll() is None, watcher.stderr.read() if watcher.stderr else ""
        except BaseException:
            watcher.kill()
            raise
    started = time.monotonic()  # the port closes: the cluster stopped
    assert watcher.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert watcher.stderr is not None and "the cluster stopped" in watcher.stderr.read()
