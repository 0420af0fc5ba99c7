"""A local stand-in for Application Insights' ingestion endpoint: accepts every POST.

Runs with telemetry point APPLICATIONINSIGHTS_CONNECTION_STRING here, so the app configures the
Azure Monitor exporters exactly as deployed and its exporters do all their work (serialize, send)
without reaching outside hosts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A well-formed key that names no real Application Insights resource.
INSTRUMENTATION_KEY = "00000000-0000-0000-0000-000000000000"


class _CountingServer(ThreadingHTTPServer):
    posts = 0  # export requests received


class _Accept(BaseHTTPRequestHandler):
    server: _CountingServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts += 1  # a rough count: it only shows that exports arrive
        # The shape the exporter parses: nothing rejected, so nothing is retried.
        body = json.dumps({"itemsReceived": 0, "itemsAccepted": 0, "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass(frozen=True)
class Sink:
    url: str
    _server: _CountingServer

    @property
    def posts(self) -> int:
        return self._server.posts

    @property
    def connection_string(self) -> str:
        return (
            f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={self.url};"
            f"LiveEndpoint={self.url}"
        )

    @property
    def environment(self) -> dict[str, str]:
        """The app settings that point telemetry here. Statsbeat (the exporter's own usage
        reports to a fixed Microsoft endpoint) is off, so nothing leaves the machine."""
        return {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": self.connection_string,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        }


@contextmanager
def telemetry_sink() -> Iterator[Sink]:
    server = _CountingServer(("127.0.0.1", 0), _Accept)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Sink(f"http://127.0.0.1:{server.server_address[1]}/", server)
    finally:
        server.shutdown()
        server.server_close()
