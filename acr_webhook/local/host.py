"""A small local stand-in for the Azure Functions host.

Serves the HTTP functions that ``function_app.app`` registers, from their own decorators
(route, methods, auth level), so there is no second copy of the routes to drift. It checks
function keys like the real host (``?code=`` or ``x-functions-key``), which Core Tools skips.
"""

from __future__ import annotations

import hmac
import json
import logging
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.decorators.http import HttpTrigger

from acr_webhook.config import read_values
from acr_webhook.handlers import MAX_BODY_BYTES, UNAUTHORIZED
from acr_webhook.local.app_index import indexed_functions
from acr_webhook.local.queues import QueueOptions, start_queue_pollers

log = logging.getLogger(__name__)

ROUTE_PREFIX = "/api/"
# function_app.py and host.json sit beside the acr_webhook package, as they are deployed.
HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"
# Read one byte past the handlers' limit so they can see an oversized body and answer 413,
# without the host ever holding more than that in memory.
BODY_READ_LIMIT = MAX_BODY_BYTES + 1


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json_reply(status: int, message: str, **headers: str) -> Reply:
    body = json.dumps({"error": message}).encode()
    return Reply(status, body, {"Content-Type": "application/json", **headers})


@dataclass(frozen=True)
class HttpFunction:
    name: str
    methods: frozenset[str]
    needs_key: bool
    call: Any


def http_functions(app: func.FunctionApp) -> dict[str, HttpFunction]:
    """The app's HTTP-triggered functions by lower-case path (``/api/<route>``)."""
    routes: dict[str, HttpFunction] = {}
    for function in indexed_functions(app):
        trigger = function.get_trigger()
        if not isinstance(trigger, HttpTrigger):
            continue
        name = str(function.get_function_name())
        route = str(trigger.route or name)
        methods = trigger.methods or list(func.HttpMethod)
        auth_level = trigger.auth_level or func.AuthLevel.FUNCTION
        routes[(ROUTE_PREFIX + route.strip("/")).lower()] = HttpFunction(
            name=name,
            methods=frozenset(str(m.value if hasattr(m, "value") else m).upper() for m in methods),
            needs_key=auth_level != func.AuthLevel.ANONYMOUS,
            call=function.get_user_function(),
        )
    return routes


class LocalFunctionsHost:
    """Dispatches one HTTP request to the matching function; no sockets, so tests can call it."""

    def __init__(self, app: func.FunctionApp, function_key: str) -> None:
        self.routes = http_functions(app)
        self._key = function_key.encode()

    def _key_matches(self, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        given = query.get("code") or headers.get("x-functions-key") or ""
        return hmac.compare_digest(given.encode(), self._key)

    def dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, base_url: str
    ) -> Reply:
        parts = urlsplit(target)
        function = self.routes.get(parts.path.rstrip("/").lower())
        if function is None:
            return _json_reply(404, f"no function at {parts.path}")
        if method not in function.methods:
            allow = ", ".join(sorted(function.methods))
            return _json_reply(405, f"method {method} not allowed", Allow=allow)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        lower_headers = {name.lower(): value for name, value in headers.items()}
        if function.needs_key and not self._key_matches(query, lower_headers):
            return _json_reply(401, UNAUTHORIZED["error"])
        request = func.HttpRequest(
            method, base_url + target, headers=lower_headers, params=query, body=body
        )
        try:
            response: func.HttpResponse = function.call(request)
        except Exception:
            # Like the real host: the traceback goes to the log, never to the client.
            log.exception("function %s failed", function.name)
            return _json_reply(500, "internal error")
        return _to_reply(response)


def _to_reply(response: func.HttpResponse) -> Reply:
    headers = dict(response.headers)
    if response.mimetype and not any(k.lower() == "content-type" for k in headers):
        charset = f"; charset={response.charset}" if response.charset else ""
        headers["Content-Type"] = f"{response.mimetype}{charset}"
    body = response.get_body() or b""
    if response.status_code in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
        body = b""
        headers.pop("Content-Type", None)
    return Reply(response.status_code, body, headers)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as ACR and load tests expect
    server: _Server

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > BODY_READ_LIMIT:
            self.close_connection = True  # the unread rest of the body cannot be skipped
        return self.rfile.read(min(length, BODY_READ_LIMIT))

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk_size = int(self.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
            if chunk_size == 0:
                self.rfile.readline(64)
                return b"".join(chunks)
            if size + chunk_size > BODY_READ_LIMIT:
                self.close_connection = True
                return b"".join(chunks) + self.rfile.read(BODY_READ_LIMIT - size)
            chunks.append(self.rfile.read(chunk_size))
            size += chunk_size
            self.rfile.readline(64)

    def _handle(self) -> None:
        started = time.perf_counter()
        try:
            body = self._read_body()
        except ValueError:
            reply = _json_reply(400, "malformed Content-Length or chunked body")
            self.close_connection = True
        else:
            host = self.headers.get("Host") or "127.0.0.1"
            reply = self.server.host.dispatch(
                self.command, self.path, dict(self.headers.items()), body, f"http://{host}"
            )
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
        elapsed_ms = (time.perf_counter() - started) * 1000
        # The path only: the query string carries the function key.
        log.info(
            "%s %s %d %.1fms", self.command, urlsplit(self.path).path, reply.status, elapsed_ms
        )

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        # BaseHTTPRequestHandler would log the request line, key included; _handle logs instead.
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], host: LocalFunctionsHost) -> None:
        self.host = host
        super().__init__(address, _RequestHandler)


def serve(
    app: func.FunctionApp,
    host: str,
    port: int,
    function_key: str,
    values: Mapping[str, str] | None = None,
) -> None:
    """Serve HTTP functions and run queue triggers until SIGINT or SIGTERM, then return.

    ``values``: the settings queue triggers resolve connections and names from (default:
    environment over local.settings.json, as the app itself reads them).
    """
    server = _Server((host, port), LocalFunctionsHost(app, function_key))
    pollers = start_queue_pollers(
        app, read_values() if values is None else values, QueueOptions.from_host_json(HOST_JSON)
    )
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])

    def stop(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        # shutdown() waits for serve_forever() to return, so it cannot run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"Local Functions host listening on http://{bound_host}:{bound_port}", flush=True)
    for path, function in server.host.routes.items():
        url = f"http://{bound_host}:{bound_port}{path}"
        if function.needs_key:
            url += f"?code={function_key}"
        print(f"  {'/'.join(sorted(function.methods))} {url}", flush=True)
    for poller in pollers:
        print(f"  queue trigger {poller.function.name} on {poller.queue_name}", flush=True)
    try:
        server.serve_forever()
    finally:
        for poller in pollers:
            poller.stop()
        server.server_close()
