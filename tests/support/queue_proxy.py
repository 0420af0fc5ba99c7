"""A plain HTTP proxy in front of Azurite's queue service that holds requests at a fixed point
(``holds.Hold``): a message sent, a message deleted, a queue created, before Azurite applies it
or after, with the answer never leaving; or (``then_pass``) held before and passed on at its
release, as a slow service would. Everything else is passed through unchanged, so the
storage SDK's signatures (made for the account's URL path, not its host) still verify.
``seen`` lists every request that reached it, as ``"<METHOD> <path>"``: the queue transactions
the app made (tests/integration/test_cost.py counts them); ``recorded`` the same as (method,
path, query), which names the operation (tests/support/data_actions.py)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.support.azurite import ACCOUNT, ACCOUNT_KEY, LocalAzurite
from tests.support.holds import Hold, answered, claimed

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class HoldingQueueProxy:
    def __init__(self, azurite: LocalAzurite) -> None:
        self.upstream = f"http://127.0.0.1:{azurite.port}"
        self.holds: list[Hold] = []
        self.seen: list[str] = []
        self.recorded: list[tuple[str, str, str]] = []
        self._session = requests.Session()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def connection_string(self) -> str:
        """A storage connection string whose queue endpoint is this proxy."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"QueueEndpoint=http://127.0.0.1:{self._server.server_address[1]}/{ACCOUNT};"
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        for hold in self.holds:
            hold.release()
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urlsplit(self.path).path
                proxy.seen.append(f"{self.command} {path}")
                proxy.recorded.append((self.command, path, urlsplit(self.path).query))
                hold = claimed(proxy.holds, self.command, path)
                if hold is not None and not hold.after_passing:
                    hold.hold()
                    if not hold.then_pass:
                        self.close_connection = True
                        return
                answer = proxy._session.request(
                    self.command,
                    proxy.upstream + self.path,
                    headers=dict(self.headers.items()),
                    data=body,
                    timeout=10,
                )
                if hold is not None and hold.after_passing:  # applied; the answer never leaves
                    hold.hold()
                    self.close_connection = True
                    return
                answered(proxy.holds, self.command, path)
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                try:
                    self.wfile.write(answer.content)
                except OSError:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
