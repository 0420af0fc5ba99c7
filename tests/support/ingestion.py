"""A loopback stand-in for Application Insights' ingestion endpoint: the Azure Monitor exporters
POST a JSON list of envelopes to ``<IngestionEndpoint>/v2.1/track`` and read back a
``TrackResponse`` (``itemsReceived``, ``itemsAccepted``, ``errors``: ``index``,
``statusCode``, ``message`` per refused item; 200 when all were accepted, 206 when some were
not). ``fault`` makes it answer as Azure does when ingestion is down or throttling, one fault
at a time; ``down()`` and ``up()`` refuse connections on its port and take them again.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.cosmos_server import bound_port

# Any well-formed key would do; this one is easy to look for in a log. Not a real resource's.
INSTRUMENTATION_KEY = "7e1e7e1e-0000-4000-8000-00000000c0de"


@dataclass(frozen=True)
class Fault:
    """How the stand-in answers a track request. ``status`` 0 with ``hang`` reads the request
    and never answers (until ``close``); ``delay_s`` waits before any answer; ``status`` 206
    refuses the items at ``refused`` with ``item_status`` each, accepting the rest."""

    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0
    hang: bool = False
    refused: Sequence[int] = ()
    item_status: int = 500


ANSWERS = Fault()
BLACKHOLE = Fault(status=0, hang=True)
EVERY_ITEM = range(1_000_000)

# Loggers of the exporters and of the OpenTelemetry SDK, as the local host prints them.
EXPORT_LOGGERS = (" azure.monitor.", " opentelemetry.")


# For an exporting process under test: no SDK self-reporting to Microsoft (statsbeat,
# sdkstats) and no remote configuration (settings.sdk.monitor.azure.com, polled from 5-15 s after
# the start). Tests reach loopback only.
NOTHING_TO_MICROSOFT: dict[str, str] = {
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
}


def exporting_env(ingestion: Ingestion, tmpdir: Path) -> dict[str, str]:
    """Settings for an app process whose telemetry goes to ``ingestion`` and nowhere else
    (NOTHING_TO_MICROSOFT); the exporters' offline storage, which the app leaves on, in
    ``tmpdir`` (tempfile.gettempdir(), as /tmp in Azure)."""
    return {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
        **NOTHING_TO_MICROSOFT,
        "TMPDIR": str(tmpdir),
    }


def export_log_lines(output: str) -> list[str]:
    """The lines the exporters and the OpenTelemetry SDK logged (the local host's format:
    time, level, logger name)."""
    return [line for line in output.splitlines() if any(n in line for n in EXPORT_LOGGERS)]


class Ingestion:
    """Keeps every envelope it accepts (``envelopes``) and counts every track request
    (``requests``), accepted or not."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.requests = 0
        self.fault = ANSWERS
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server = self._serve(0)
        self.port = int(self._server.server_address[1])
        self._refusing: socket.socket | None = None

    def _serve(self, port: int) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Track(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Azure's front door

            def setup(self) -> None:
                super().setup()
                with stand_in._lock:
                    stand_in._connections.add(self.connection)

            def finish(self) -> None:
                with stand_in._lock:
                    stand_in._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                items = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fault = stand_in.count(items)
                if fault.hang:
                    stand_in._closing.wait()
                    return
                if fault.delay_s:
                    stand_in._closing.wait(fault.delay_s)
                if fault.status in (200, 206):
                    refused = [i for i in range(len(items)) if i in fault.refused]
                    stand_in.keep([e for i, e in enumerate(items) if i not in refused])
                    errors = [
                        {"index": i, "statusCode": fault.item_status, "message": "refused"}
                        for i in refused
                    ]
                    status = 206 if errors else 200
                    self.answer(status, len(items), len(items) - len(errors), errors, fault)
                else:
                    self.answer(fault.status, len(items), 0, [], fault)

            def answer(
                self, status: int, received: int, accepted: int, errors: list[Any], fault: Fault
            ) -> None:
                body = json.dumps(
                    {"itemsReceived": received, "itemsAccepted": accepted, "errors": errors}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if fault.retry_after is not None:
                    self.send_header("Retry-After", fault.retry_after)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        return Track

    def count(self, items: list[dict[str, Any]]) -> Fault:
        with self._lock:
            self.requests += 1
            return self.fault

    def keep(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self.envelopes.extend(items)

    @property
    def connection_string(self) -> str:
        return (
            f"InstrumentationKey={INSTRUMENTATION_KEY};"
            f"IngestionEndpoint=http://127.0.0.1:{self.port}/"
        )

    def of_type(self, base_type: str) -> list[dict[str, Any]]:
        with self._lock:
            kept = list(self.envelopes)
        return [e["data"]["baseData"] for e in kept if e["data"]["baseType"] == base_type]

    def messages(self) -> list[str]:
        """The app's log records received (``traces``), their text."""
        return [message["message"] for message in self.of_type("MessageData")]

    def down(self) -> None:
        """Connections to the port are refused (bound, not listening) until ``up``."""
        self._stop_server()
        self._refusing = bound_port(self.port)
        assert self._refusing is not None, f"port {self.port} taken meanwhile"

    def up(self) -> None:
        if self._refusing is not None:
            self._refusing.close()
            self._refusing = None
        self._server = self._serve(self.port)

    def _stop_server(self) -> None:
        """Stops listening and cuts the connections kept alive: a down endpoint answers nothing."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stops it (once); any hung request is let go, closed unanswered."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._refusing is not None:
            self._refusing.close()
        else:
            self._stop_server()


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
