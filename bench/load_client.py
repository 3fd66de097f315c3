"""A request loop in its own process, for benchmarks: ``python -m bench.load_client OUT URL [URL ...]``.

Sends one request at a time, round-robin over the URLs, and appends ``time ok latency_ms`` per
request to OUT until it is terminated. A separate process, so the load does not share the GIL (or
fate) with the process that drives the cluster.
"""

from __future__ import annotations

import signal
import sys
import time
import urllib.request


def main() -> None:
    out, urls = sys.argv[1], sys.argv[2:]
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    with open(out, "a", buffering=1) as log:
        sent = 0
        while running:
            url = urls[sent % len(urls)]
            started = time.time()
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    response.read()
                    ok = response.status == 200
            except OSError:
                ok = False
            log.write(f"{started:.4f} {int(ok)} {(time.time() - started) * 1000:.2f}\n")
            sent += 1
            time.sleep(0.02)


if __name__ == "__main__":
    main()
