"""scripts/cosmos-server.js keeps idle connections as long as COSMOS_SERVER_KEEP_ALIVE_S says
(the benchmark's 600 s, bench/local.py), and Node.js's 5 s without it, which the tests keep:
test_closed_connections.py is about what the app does when such a close meets a request."""

from __future__ import annotations

import socket
import ssl
import time

from bench.local import local_cosmos_server
from tests.support.cosmos_server import LocalCosmosServer


def closed_after_idle(server: LocalCosmosServer, idle_s: float) -> bool:
    """Whether the server closed a kept-alive connection left idle for ``idle_s``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the local server's self-signed certificate
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
        assert tls.recv(65536).startswith(b"HTTP/1.1 ")
        time.sleep(idle_s)
        tls.settimeout(0.5)
        try:
            return tls.recv(1) == b""
        except TimeoutError:
            return False  # nothing to read: still open


def test_the_keep_alive_setting_is_taken_and_its_absence_keeps_nodes_default() -> None:
    short, default = LocalCosmosServer(keep_alive_s=0.5), LocalCosmosServer()
    short.start()
    default.start()
    try:
        assert closed_after_idle(short, idle_s=2.0)
        assert not closed_after_idle(default, idle_s=2.0)
    finally:
        short.close()
        default.close()


# --- scripts/cosmos-server.js, bench/local.py: how long an idle connection stays ---------


def test_the_keep_alive_setting_is_read_in_seconds() -> None:
    """COSMOS_SERVER_KEEP_ALIVE_S is seconds: a server given 2 s keeps a connection idle for
    1.7 s (the test above checks that one given 0.5 s closes it within 2 s).
    Node.js closes an idle connection about 1 s after its keepAliveTimeout (measured: 0.15 s
    -> 1.15 s, 2 s -> 3 s, the default 5 s -> 6 s). Kills: the seconds taken as tenths."""
    server = LocalCosmosServer(keep_alive_s=2.0)
    server.start()
    try:
        assert not closed_after_idle(server, idle_s=1.7)
    finally:
        server.close()


def test_the_benchmarks_server_keeps_an_idle_connection_past_nodes_default() -> None:
    """bench/local.py: "connections that sit out the other floors' rounds stay open", 600 s
    where Node.js closes one idle for 5 s (6 s, measured). One idle for 7 s is still open.
    Kills: bench's server started without keep_alive_s, KEEP_ALIVE_S at 5, cosmos-server.js
    capping the setting at Node's default."""
    with local_cosmos_server() as server:
        try:
            assert not closed_after_idle(server, idle_s=7.0)
        finally:
            server.close()
