"""The port rule: quiet ports only, and a taken port is never handed out."""

import socket

from servelab.ports import free_port, port_is_free


def test_free_port_is_outside_the_ephemeral_range_and_bindable():
    for _ in range(20):
        port = free_port()
        assert 20_000 <= port < 32_768
        assert port_is_free(port)


def test_a_listening_port_is_not_free():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_is_free(sock.getsockname()[1])
