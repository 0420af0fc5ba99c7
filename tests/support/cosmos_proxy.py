"""An HTTPS proxy in front of the local Cosmos DB API server that injects the faults the local
server never shows, one knob each:

- ``throttle_next`` / ``throttle_always``: document writes answered 429 (throttled), as
  Cosmos DB does when a container's request units run out; ``throttled`` counts them;
- ``delay_s``: every request waits this long before it is passed on (slow but up);
- ``hang``: while set, requests are held unanswered (then their connection is closed);
- ``holds``: requests held unanswered at a fixed point (``holds.Hold``), before or after the
  server applied them, until the test has killed the app that sent them (or, ``then_pass``,
  passed on once released: a write in flight for as long as the test needs); released before
  the request comes, its connection is closed at once without an answer, as a server closing
  an idle connection does (tests/integration/test_closed_connections.py).
- ``refusal``: every request whose path matches it gets its answer (status, sub-status, the
  service's JSON error), as Cosmos DB refuses a set-up it cannot serve: a missing data role
  (403/5301), a wrong key (401); or, given a partition key, only the requests for that logical
  partition (a full one: 403/1014); ``refused`` counts them.

``seen`` lists every request that reached the proxy, as ``"<METHOD> <path>"`` in order of
arrival, ``"QUERY <path>"`` for a query (a POST too): what the app asked of Cosmos DB
(tests/integration/test_cost.py counts it). ``recorded`` lists the same requests as (method,
path, headers in lower case), which tell a create from an upsert: the data actions they need
(tests/support/data_actions.py).

Everything else is passed through. The account answer is rewritten to name the proxy, so the
SDK keeps sending to it rather than to the endpoints the server advertises.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import requests

from tests.support.arm_stand_in import LocalHttpsServer
from tests.support.holds import Hold, answered, claimed

_DOCUMENT_WRITE = re.compile(r"^/dbs/[^/]+/colls/[^/]+/docs/?$")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


@dataclass(frozen=True)
class Refusal:
    """An answer Cosmos DB gives every request of a set-up it refuses, to requests whose path
    matches ``paths`` (all of them by default: the account lookup too)."""

    status: int
    sub_status: int
    code: str
    message: str
    paths: str = ".*"
    # Only requests for this logical partition (the SDK's x-ms-documentdb-partitionkey header).
    partition_key: str | None = None
    # Only requests with this HTTP method (a container's replace, not its read).
    method: str | None = None

    def applies_to(self, path: str, headers: Mapping[str, str], method: str = "") -> bool:
        """``headers``: the request's, names in lower case."""
        if not re.match(self.paths, path) or self.method not in (None, method):
            return False
        if self.partition_key is None:
            return True
        sent = headers.get("x-ms-documentdb-partitionkey")
        return sent is not None and json.loads(sent) == [self.partition_key]


class FaultyCosmosProxy(LocalHttpsServer):
    """Passes everything to ``upstream`` unless a knob (module docstring) says otherwise."""

    def __init__(self, upstream: str, directory: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self.throttle_next = 0
        self.throttle_always = False
        self.throttled = 0
        self.delay_s = 0.0
        self.hang = threading.Event()
        self.holds: list[Hold] = []
        self.refusal: Refusal | None = None
        self.refused = 0
        self.seen: list[str] = []
        self.recorded: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._session = requests.Session()
        super().__init__(directory)

    def _should_throttle(self) -> bool:
        with self._lock:
            if self.throttle_always or self.throttle_next > 0:
                self.throttle_next = max(0, self.throttle_next - 1)
                self.throttled += 1
                return True
        return False

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                query = self.headers.get("Content-Type", "").startswith("application/query+json")
                lowered = {name.lower(): value for name, value in self.headers.items()}
                with proxy._lock:
                    proxy.seen.append(
                        f"{'QUERY' if query else self.command} {urlsplit(self.path).path}"
                    )
                    proxy.recorded.append((self.command, urlsplit(self.path).path, lowered))
                if proxy.hang.is_set():
                    while proxy.hang.is_set():
                        time.sleep(0.05)
                    self.close_connection = True
                    return
                time.sleep(proxy.delay_s)
                refusal = proxy.refusal
                if refusal is not None and refusal.applies_to(
                    urlsplit(self.path).path, lowered, self.command
                ):
                    with proxy._lock:
                        proxy.refused += 1
                    self._reply(
                        refusal.status,
                        json.dumps({"code": refusal.code, "message": refusal.message}).encode(),
                        {
                            "Content-Type": "application/json",
                            "x-ms-substatus": str(refusal.sub_status),
                            "x-ms-activity-id": "00000000-0000-0000-0000-000000000000",
                        },
                    )
                    return
                path = urlsplit(self.path).path
                hold = claimed(proxy.holds, self.command, path)
                if hold is not None and not hold.after_passing:
                    hold.hold()
                    if not hold.then_pass:
                        self.close_connection = True
                        return
                is_write = self.command == "POST" and bool(
                    _DOCUMENT_WRITE.match(urlsplit(self.path).path)
                )
                if is_write and proxy._should_throttle():
                    self._reply(
                        429,
                        b'{"code": "429", "message": "Request rate is large"}',
                        {
                            "Content-Type": "application/json",
                            "x-ms-retry-after-ms": "50",
                            "x-ms-substatus": "3200",
                        },
                    )
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = proxy._session.request(
                    self.command,
                    proxy.upstream + self.path,
                    headers=headers,
                    data=body,
                    verify=False,  # the local server's self-signed certificate
                    timeout=10,
                )
                if hold is not None and hold.after_passing:  # applied; the answer never leaves
                    hold.hold()
                    self.close_connection = True
                    return
                answered(proxy.holds, self.command, path)
                content = answer.content.replace(
                    urlsplit(proxy.upstream).netloc.encode(),
                    urlsplit(proxy.endpoint).netloc.encode(),
                )
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
                self._reply(answer.status_code, content, kept)

            def _reply(self, status: int, content: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                try:
                    self.wfile.write(content)
                except OSError:  # a client that gave up on a late answer (TLS errors too)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
