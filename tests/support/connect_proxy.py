"""An HTTP proxy on loopback that records which host each HTTPS request asked for.

A client that reads HTTPS_PROXY (requests, so every Azure SDK client) opens each HTTPS
connection with ``CONNECT host:port``. This proxy writes the target down and tunnels the
connection to one local server instead (``tunnel_to``), or, with none, answers 502: so a test
sees the very host a client connects to (a sovereign cloud's management endpoint or sign-in
host) without the network. The local server proves to be that host with a certificate naming it
(arm_stand_in.write_self_signed_certificate's ``dns_names``) that the client trusts through
REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import socketserver
import threading
from typing import Any


class _TunnelServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class RecordingConnectProxy:
    """``targets`` lists each CONNECT's ``host:port``, in order."""

    def __init__(self, tunnel_to: int | None = None) -> None:
        self.targets: list[str] = []
        self._tunnel_to = tunnel_to
        self._server = _TunnelServer(("127.0.0.1", 0), self._handler_class())
        # Polled often: stop() waits for the next poll, 0.5 s by default.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[socketserver.BaseRequestHandler]:
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request_line = self.rfile.readline(65537).decode("latin-1").split()
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # the request's headers
                if len(request_line) < 2 or request_line[0] != "CONNECT":
                    self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                    return
                proxy.targets.append(request_line[1])
                if proxy._tunnel_to is None:
                    self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    return
                with socket.create_connection(("127.0.0.1", proxy._tunnel_to)) as upstream:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.wfile.flush()
                    _pipe(self.connection, upstream)

        return Handler


def _pipe(client: Any, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    with selectors.DefaultSelector() as selector:
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        while events := selector.select(timeout=30):
            for key, _ in events:
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except OSError:
                    return
                if not data:
                    return
                with contextlib.suppress(OSError):
                    key.data.sendall(data)
