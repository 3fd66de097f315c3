"""Choosing a loopback TCP port for a server servelab starts (Serve's proxy, test servers)."""

from __future__ import annotations

import random
import socket

# Below the kernel's ephemeral range (32768-60999) and above Ray's worker ports (10002-19999).
_QUIET_PORTS = range(20_000, 32_768)


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, outside the kernel's ephemeral range.

    A port the kernel hands out for outgoing connections can be taken by one of them between the
    choice and the bind (seen twice: Serve's proxy "Failed to bind" on a port picked with bind(0),
    once after a load client's many connections, once while Ray started its raylets).
    """
    for port in random.sample(_QUIET_PORTS, 200):
        if port_is_free(port):
            return port
    raise OSError("no free TCP port on 127.0.0.1 between 20000 and 32767")
