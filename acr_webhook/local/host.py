"""A local stand-in for the Azure Functions host.

Serves the HTTP functions that ``function_app.app`` registers, from their own decorators
(route, methods, auth level), so there is no second copy of the routes to drift, and answers
as the Azure host does: the function key from ``x-functions-key`` or ``?code=`` (header first),
empty 401, 404 and 500 answers, 404 for a method the function does not take, the route prefix
from host.json, the path decoded and resolved as ASP.NET Core does. Core Tools checks no keys at
all; this host does.

HTTP itself is waitress's (a dev dependency; Azure runs its own host): a fixed pool of worker
threads as large as one Azure instance's concurrency, a real listen backlog, idle connections
cut after a timeout, and request limits above the handlers' own, so that the function, not the
server, answers an oversized or malformed body.
"""

from __future__ import annotations

import hmac
import logging
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from wsgiref.types import StartResponse, WSGIEnvironment

import azure.functions as func
import waitress  # type: ignore[import-untyped]
from azure.functions.decorators.http import HttpTrigger
from azure.functions.http import HttpRequest as WorkerHttpRequest

from acr_webhook.config import HTTP_CONCURRENCY, QUERY_BUDGET_S, ConfigurationError, read_values
from acr_webhook.eventgrid import BATCH_BUDGET_S
from acr_webhook.handlers import MAX_BODY_BYTES
from acr_webhook.local.app_index import extension_settings, indexed_functions
from acr_webhook.local.queues import QueueOptions, QueuePoller, start_queue_pollers
from acr_webhook.local.timers import start_timer_runners

log = logging.getLogger(__name__)

# function_app.py and host.json sit beside the acr_webhook package, as they are deployed.
HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"
DEFAULT_ROUTE_PREFIX = "api"  # the Functions host's own default
KEY_HEADER = "x-functions-key"
KEY_QUERY_PARAMETER = "code"
# Read one byte past the handlers' limit so they can see an oversized body and answer 413,
# without the host ever holding more than that in memory.
BODY_READ_LIMIT = MAX_BODY_BYTES + 1
# The characters RFC 3986 allows in a path, which the Azure host leaves unescaped in the URL it
# hands a function (ASP.NET's PathString); the rest of a path it percent-encodes.
PATH_SAFE_CHARACTERS = "/:@!$&'()*+,;="


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


# The Azure host answers these itself, with no body and no Content-Type.
UNAUTHORIZED = Reply(401)
NOT_FOUND = Reply(404)
INTERNAL_ERROR = Reply(500)
BAD_REQUEST = Reply(400)  # Kestrel's, before routing: no body either
# Kestrel's default limits, which the Azure host keeps (it raises only the body's), and what it
# answers past them or to a request it cannot take, before routing: no function runs.
KESTREL_MAX_REQUEST_LINE_BYTES = 8 * 1024
KESTREL_MAX_HEADER_BYTES = 32 * 1024
KESTREL_MAX_HEADERS = 100
URI_TOO_LONG = Reply(414)
HEADERS_TOO_LARGE = Reply(431)
# The Azure host's answer to / when no function takes it (HomepageMiddleware): availability
# probes and people checking a deployment ask for it.
HOMEPAGE = Reply(
    200,
    b"<!DOCTYPE html><html><head><title>Your Functions app is up and running</title></head>"
    b"<body><h1>Your Functions app is up and running</h1></body></html>",
    {"Content-Type": "text/html"},
)


def route_prefix(host_json: Path = HOST_JSON) -> str:
    """host.json ``extensions.http.routePrefix``: "api" when not set, "" for no prefix."""
    prefix = extension_settings(host_json, "http").get("routePrefix", DEFAULT_ROUTE_PREFIX)
    if prefix is None:
        # .NET reads a JSON null as "" before .NET 10 and as unset from it: not guessed here.
        raise ConfigurationError(
            f'{host_json}: extensions.http.routePrefix is null; write "" for no prefix'
        )
    return str(prefix).strip("/")


@dataclass(frozen=True)
class HttpFunction:
    name: str
    methods: frozenset[str]
    needs_key: bool
    call: Any


def http_functions(app: func.FunctionApp, prefix: str) -> dict[str, HttpFunction]:
    """The app's HTTP-triggered functions by lower-case path (``/<prefix>/<route>``)."""
    routes: dict[str, HttpFunction] = {}
    for function in indexed_functions(app):
        trigger = function.get_trigger()
        if not isinstance(trigger, HttpTrigger):
            continue
        name = str(function.get_function_name())
        route = str(trigger.route or name).strip("/")
        methods = trigger.methods or list(func.HttpMethod)
        auth_level = trigger.auth_level or func.AuthLevel.FUNCTION
        path = "/" + "/".join(part for part in (prefix, route) if part)
        routes[path.lower()] = HttpFunction(
            name=name,
            methods=frozenset(str(m.value if hasattr(m, "value") else m).upper() for m in methods),
            needs_key=auth_level != func.AuthLevel.ANONYMOUS,
            call=function.get_user_function(),
        )
    return routes


def azure_path(encoded_path: str) -> str:
    """The request path as the Azure host (ASP.NET Core) routes it and hands it on: decoded,
    except that an encoded slash (%2F) stays encoded inside its segment, and with the dot
    segments (``.``, ``..``, encoded or not) resolved."""
    segments: list[str] = []
    for segment in encoded_path.split("/")[1:]:
        decoded = unquote(segment).replace("/", "%2F")
        if decoded == "..":
            if segments:
                segments.pop()
        elif decoded != ".":
            segments.append(decoded)
    return "/" + "/".join(segments)


def azure_params(query: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The query parameters as the Azure host hands them to a Python function: a name in any
    case is one parameter (its first spelling kept), a repeated one's values joined with commas,
    and one whose value is empty left out. (ASP.NET Core's query collection, then the host's
    conversion, which keeps only non-empty values for a worker that, like Python's, does not
    ask for nullable ones.)"""
    values: dict[str, list[str]] = {}
    spellings: dict[str, str] = {}
    for name, value in query:
        values.setdefault(spellings.setdefault(ordinal_ignore_case(name), name), []).append(value)
    # StringValues.ToString() joins the values with commas and skips the empty ones.
    joined = {name: ",".join(filter(None, given)) for name, given in values.items()}
    return {name: value for name, value in joined.items() if value}


def given_key(query: Sequence[tuple[str, str]], headers: Mapping[str, str]) -> str:
    """The key as the Azure host reads it: the header if present (even empty), else the first
    ``code`` in the query, whose name is case-insensitive."""
    if KEY_HEADER in headers:
        return headers[KEY_HEADER]
    wanted = ordinal_ignore_case(KEY_QUERY_PARAMETER)
    return next((value for name, value in query if ordinal_ignore_case(name) == wanted), "")


class LocalFunctionsHost:
    """Dispatches one HTTP request to the matching function; no sockets, so tests can call it."""

    def __init__(self, app: func.FunctionApp, function_key: str, prefix: str | None = None) -> None:
        self.prefix = route_prefix() if prefix is None else prefix.strip("/")
        self.routes = http_functions(app, self.prefix)
        self._by_route = {
            ordinal_ignore_case(path): function for path, function in self.routes.items()
        }
        self._key = function_key.encode()

    def dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, base_url: str
    ) -> Reply:
        """``target``: the request target as sent, a percent-encoded path and ``?`` query."""
        # Split before decoding, as Azure does: an encoded ? (%3F) is part of the path, so a key
        # never comes from the path.
        encoded_path, _, query_string = target.partition("?")
        path = azure_path(encoded_path)
        # ASP.NET Core ignores one trailing slash: the empty segment of a second one is no match.
        function = self._by_route.get(ordinal_ignore_case(path.removesuffix("/")))
        # Azure routes on path and method together: a method the function does not take is
        # no route at all.
        if function is None or method.upper() not in function.methods:
            return HOMEPAGE if encoded_path == "/" else NOT_FOUND
        query = parse_qsl(query_string, keep_blank_values=True)
        lower_headers = {name.lower(): value for name, value in headers.items()}
        if function.needs_key:
            key = given_key(query, lower_headers).encode()
            if not key or not hmac.compare_digest(key, self._key):
                return UNAUTHORIZED
        # The URL as Azure builds it from the routed path: the characters a path may hold
        # unescaped stay so, the rest are percent-encoded.
        url = base_url + quote(path, safe=PATH_SAFE_CHARACTERS)
        if query_string:
            url += f"?{query_string}"
        # The Python worker's own request class (HttpRequestConverter.decode), whose get_json
        # raises one ValueError for any body that is not JSON; the host sends the body as bytes.
        request = WorkerHttpRequest(
            method.upper(),
            url,
            headers=lower_headers,
            params=azure_params(query),
            route_params={},
            body_type="bytes",
            body=body,
        )
        try:
            response: func.HttpResponse = function.call(request)
        except Exception:
            # Like the real host: the traceback goes to the log, never to the client.
            log.exception("function %s failed", function.name)
            return INTERNAL_ERROR
        return _to_reply(response)


def ordinal_ignore_case(text: str) -> str:
    """``text`` as .NET's OrdinalIgnoreCase compares it (ASP.NET Core's routes and query names):
    each character by its simple upper case, so that the Kelvin sign is not a "k" as
    ``str.lower`` makes it, and never a non-ASCII one as an ASCII letter (.NET keeps the
    dotless i and the long s as they are, where ``str.upper`` makes them "I" and "S")."""
    return "".join(map(_ordinal_upper, text))


def _ordinal_upper(char: str) -> str:
    upper = char.upper()
    if len(upper) != 1 or (upper.isascii() and not char.isascii()):
        return char
    return upper


def _to_reply(response: func.HttpResponse) -> Reply:
    """The function's answer as the Python worker hands it to the Azure host: its headers, and
    a Content-Type from its mimetype unless it set one."""
    headers = dict(response.headers)
    if response.mimetype and not any(k.lower() == "content-type" for k in headers):
        # As the worker (HttpResponseConverter.encode): a charset for text/* only.
        text = response.mimetype.startswith("text/")
        charset = f"; charset={response.charset}" if text and response.charset else ""
        headers["Content-Type"] = f"{response.mimetype}{charset}"
    body = response.get_body() or b""
    if response.status_code in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
        # No body, but the Content-Type stays: the Azure host sets it and Kestrel keeps it.
        body = b""
    return Reply(response.status_code, body, headers)


class WsgiAdapter:
    """WSGI in front of ``LocalFunctionsHost.dispatch``: the server parses HTTP, the host
    decides the answer."""

    def __init__(self, host: LocalFunctionsHost) -> None:
        self.host = host

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        method = str(environ["REQUEST_METHOD"])
        target = request_target(environ)
        body = environ["wsgi.input"].read(BODY_READ_LIMIT)
        host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
        wire = wire_headers(environ)
        # What Kestrel refuses, in its order: the request line as it reads it, then the headers.
        if (refused := request_line_refused(environ, method)) is not None:
            reply = refused
        elif target is None:
            reply = BAD_REQUEST
        elif (refused := headers_refused(environ, wire)) is not None:
            reply = refused
        else:
            reply = self.host.dispatch(
                method,
                target,
                request_headers(wire),
                body,
                f"{environ['wsgi.url_scheme']}://{host}",
            )
        answer = [(k, v) for k, v in reply.headers.items() if k.lower() != "content-length"]
        answer.append(("Content-Length", str(len(reply.body))))
        start_response(status_line(reply.status), answer)
        # Only failed requests: every request the function handles already logs its decision
        # line, and a second line for each one cost ~6% of the host's throughput.
        if reply.status >= HTTPStatus.BAD_REQUEST:
            # The decoded path only, never the query string, which carries the function key.
            # Cut at any "?", so that a key sent inside the path (webhook%3Fcode=...) stays out
            # of the log too, and as a repr, so that a client's CR, LF or NUL shows escaped
            # rather than starting a line of its own.
            path = unquote((target or "").partition("?")[0]).partition("?")[0]
            elapsed_ms = (time.perf_counter() - started) * 1000
            log.info("%s %r %d %.1fms", method, path, reply.status, elapsed_ms)
        return [reply.body]


def request_line_refused(environ: WSGIEnvironment, method: str) -> Reply | None:
    """Kestrel's answer to a request line past its default limit, which waitress passes on."""
    request_line = f"{method} {environ['REQUEST_URI']} {environ['SERVER_PROTOCOL']}\r\n"
    if len(request_line) > KESTREL_MAX_REQUEST_LINE_BYTES:  # Latin-1 text: one byte a character
        return URI_TOO_LONG
    return None


def headers_refused(environ: WSGIEnvironment, wire: Mapping[str, str]) -> Reply | None:
    """Kestrel's answer to headers past its default limits, or to a request with two Host
    headers (waitress joins repeated headers with commas) or an HTTP/1.1 one without any,
    which waitress passes on. ``wire``: the headers as sent, one character a byte."""
    header_bytes = sum(len(name) + len(value) + len(": \r\n") for name, value in wire.items())
    if len(wire) > KESTREL_MAX_HEADERS or header_bytes > KESTREL_MAX_HEADER_BYTES:
        return HEADERS_TOO_LARGE
    host = wire.get("host")
    if "," in (host or "") or (host is None and environ["SERVER_PROTOCOL"] == "HTTP/1.1"):
        return BAD_REQUEST
    return None


def request_target(environ: WSGIEnvironment) -> str | None:
    """The request target as the client sent it, still percent-encoded (waitress's REQUEST_URI:
    WSGI's PATH_INFO is decoded, which would lose the difference between / and %2F), in origin
    form: an absolute-form target's scheme and host are dropped. None for a target in neither
    form (``x/api/...``), which Kestrel refuses with 400 and waitress passes on."""
    target = str(environ["REQUEST_URI"])
    if target.startswith("/"):
        return target
    parts = urlsplit(target)
    if not (parts.scheme and parts.netloc):
        return None
    # http://host with no path asks for the root, as Kestrel reads it.
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def request_headers(wire: Mapping[str, str]) -> dict[str, str]:
    """The headers as the function gets them, from ``wire_headers``."""
    return {name: as_kestrel_decodes(value) for name, value in wire.items()}


def wire_headers(environ: WSGIEnvironment) -> dict[str, str]:
    """Request headers by lower-case name, back from WSGI's ``HTTP_*`` keys: Latin-1 text, one
    character for each byte sent (PEP 3333)."""
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        # waitress sets these only for a header that was sent; Azure passes an empty one on.
        if key in environ:
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


def as_kestrel_decodes(value: str) -> str:
    """A header value as Kestrel decodes it, UTF-8, from the Latin-1 text WSGI gives (PEP 3333).
    Bytes that are not UTF-8 stay as waitress read them: what Kestrel does with those is not
    documented."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def status_line(status: int) -> str:
    return _STATUS_LINES.get(status) or f"{status} Unknown"


# waitress holds a response back until this much is waiting, or the request is done.
SEND_BYTES = 18000


@dataclass(frozen=True)
class ServerLimits:
    """waitress's limits. Its body limit sits above the handlers' (1 MiB), so the function
    answers 413 and 400 in its JSON shape; past it, or on a ``Content-Length`` or chunk size
    that is not a number, waitress answers itself, reads no further and closes the connection.
    Worst case, each open connection holds its headers and ``body_in_memory_bytes`` in memory."""

    threads: int = HTTP_CONCURRENCY  # one Azure instance's per-instance concurrency
    backlog: int = 1024
    idle_timeout_s: int = 30  # a connection that sends nothing for this long is closed
    connection_limit: int = 1000  # beyond it, new connections wait in the backlog
    max_body_bytes: int = 2 * MAX_BODY_BYTES
    max_header_bytes: int = 64 * 1024
    # Bodies past this go to an anonymous temporary file, so a connection holds at most
    # this much body in memory.
    body_in_memory_bytes: int = 64 * 1024

    def adjustments(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "backlog": self.backlog,
            "channel_timeout": self.idle_timeout_s,
            "cleanup_interval": max(1, self.idle_timeout_s // 4),
            "connection_limit": self.connection_limit,
            "max_request_body_size": self.max_body_bytes,
            "max_request_header_size": self.max_header_bytes,
            "inbuf_overflow": self.body_in_memory_bytes,
            "asyncore_use_poll": True,  # select() fails past 1024 open descriptors
            # Status line, headers and a small body leave in one send() from the server's
            # loop instead of two from the worker thread: one GIL hand-off less per request.
            # Deprecated in waitress 3 but honoured by the pinned 3.0.2; a waitress that
            # dropped it refuses to start ("Unknown adjustment"), it does not go quiet.
            "send_bytes": SEND_BYTES,
            "clear_untrusted_proxy_headers": False,  # functions see headers as sent
        }


# How often the main thread wakes, so that a signal handler due on it runs (serve).
SIGNAL_CHECK_INTERVAL_S = 0.2
# What requests in flight get to be answered after a stop: the longest route's budget (an Event
# Grid batch while the database throttles; a webhook answers within 4.5 s, a read page within
# 8 s), and a second for the answer to go out. The stop ends as soon as the last is answered.
STOP_GRACE_S = max(BATCH_BUDGET_S, QUERY_BUDGET_S) + 1.0


class CannotListenError(Exception):
    """The address or port cannot be listened on (in use, not this machine's, privileged)."""


class LocalHttpServer:
    """waitress serving a LocalFunctionsHost on its own thread; ``stop`` from any thread."""

    def __init__(
        self,
        host: LocalFunctionsHost,
        address: str,
        port: int,
        limits: ServerLimits = ServerLimits(),
    ) -> None:
        self.host = host
        self._connections: dict[int, Any] = {}  # waitress's socket map: listener + channels
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "send_bytes", DeprecationWarning)
            try:
                self._server = waitress.create_server(
                    WsgiAdapter(host),
                    map=self._connections,
                    host=address,
                    port=port,
                    **limits.adjustments(),
                )
            except OSError as error:
                self._close_half_built_server()
                raise CannotListenError(
                    f"cannot listen on {address}:{port}: {error.strerror or error}"
                ) from None
            except ValueError:  # waitress found no address for the name ("Invalid host/port")
                self._close_half_built_server()
                raise CannotListenError(
                    f"cannot listen on {address}:{port}: not an address of this machine nor a "
                    "name that resolves"
                ) from None
        self.address = (str(self._server.effective_host), int(self._server.effective_port))
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def _close_half_built_server(self) -> None:
        """waitress starts its worker threads and registers its trigger pipe and socket before
        it binds: a refused address would leave the threads blocked for good and the
        descriptors to the garbage collector."""
        for dispatcher in list(self._connections.values()):
            workers = getattr(dispatcher, "task_dispatcher", None)
            if workers is not None:
                workers.shutdown()
            dispatcher.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace_s``), close every
        connection once its answer is sent, and wait for the server thread."""
        # The socket map belongs to the server's thread: changes to it go through its trigger.
        trigger = self._server.trigger
        trigger.pull_trigger(self._stop_accepting)
        self._server.task_dispatcher.shutdown(timeout=grace_s)
        # The last step closes the trigger's pipe. The server's thread may run it on the first
        # wake-up, before this thread writes the second one: it waits for that write, which
        # would otherwise go to a closed descriptor (or to whatever file reused its number).
        woken = threading.Event()
        try:
            trigger.pull_trigger(lambda: self._close_connections(after=woken))
        finally:
            woken.set()
        self._thread.join(timeout=grace_s)

    def _stop_accepting(self) -> None:
        self._server.accepting = False

    def _close_connections(self, after: threading.Event) -> None:
        after.wait()
        for connection in list(self._connections.values()):
            connection.close_when_flushed = True
        self._server.close()  # the listener and the trigger; the loop ends with the last channel


class Runner(Protocol):
    """A running non-HTTP trigger (queue poller, timer): it runs until stopped."""

    def stop(self) -> None: ...


R = TypeVar("R", bound=Runner)


@dataclass(frozen=True)
class TriggerKind(Generic[R]):
    """One kind of non-HTTP trigger: how to start a runner for each such function in the app
    (given the settings), and the banner line for a runner."""

    start: Callable[[func.FunctionApp, Mapping[str, str]], Sequence[R]]
    describe: Callable[[R], str]


def _start_queue_pollers(app: func.FunctionApp, values: Mapping[str, str]) -> list[QueuePoller]:
    return start_queue_pollers(app, values, QueueOptions.from_host_json(HOST_JSON))


# serve() starts a runner for every function of these kinds with the server, and stops them
# with it.
TRIGGER_KINDS: tuple[TriggerKind[Any], ...] = (
    TriggerKind(
        _start_queue_pollers, lambda p: f"queue trigger {p.function.name} on {p.queue_name}"
    ),
    TriggerKind(start_timer_runners, lambda r: f"timer trigger {r.function.name} ({r.schedule})"),
)


# How often the console's thread writes the lines logged since it last wrote.
CONSOLE_WRITE_INTERVAL_S = 0.1
# Lines held for the console at most (~10 MB; ~60 are held between writes at 600 events/s):
# past this (a console that stopped reading) the oldest are dropped rather than letting memory
# grow.
CONSOLE_HELD_RECORDS = 10_000


class _HeldForConsole(logging.Handler):
    """Appends each record to a deque for the console's thread: all a request pays for its log
    line besides creating the record (no formatting, no write, no thread woken)."""

    def __init__(self, records: deque[logging.LogRecord]) -> None:
        super().__init__()
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)


def _write_to_console(
    records: deque[logging.LogRecord], handlers: Sequence[logging.Handler]
) -> None:
    while records:
        record = records.popleft()
        for handler in handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


@contextmanager
def console_log_on_its_own_thread() -> Iterator[None]:
    """The root logger's handlers (the console) run on one thread of their own, which writes
    what was logged every CONSOLE_WRITE_INTERVAL_S, as the Azure Python worker hands its log
    records to the host: a request never waits for the console, nor wakes a thread for each
    line (at ~600 lines/s that cost the host ~5% of its throughput). Lines keep their order,
    format and time of logging."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    records: deque[logging.LogRecord] = deque(maxlen=CONSOLE_HELD_RECORDS)
    stopping = threading.Event()

    def write_until_stopped() -> None:
        while not stopping.wait(CONSOLE_WRITE_INTERVAL_S):
            _write_to_console(records, handlers)

    writer = threading.Thread(target=write_until_stopped, name="console", daemon=True)
    root.handlers = [_HeldForConsole(records)]
    writer.start()
    try:
        yield
    finally:
        stopping.set()
        writer.join()
        _write_to_console(records, handlers)
        root.handlers = handlers
        _write_to_console(records, handlers)  # lines logged while the handlers were swapped


def serve(
    app: func.FunctionApp,
    host: str,
    port: int,
    function_key: str,
    values: Mapping[str, str] | None = None,
) -> None:
    """Serve HTTP functions and run the other triggers until SIGINT or SIGTERM, then return.

    ``values``: the settings triggers resolve connections and names from (default:
    environment over local.settings.json, as the app itself reads them).
    """
    # More callers than worker threads queue, as they do in Azure: not worth a warning each.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    server = LocalHttpServer(LocalFunctionsHost(app, function_key), host, port)
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    settings = read_values() if values is None else values
    started: list[tuple[str, Runner]] = []
    server.start()
    try:
        for kind in TRIGGER_KINDS:
            started += [(kind.describe(runner), runner) for runner in kind.start(app, settings)]
        print(f"Local Functions host listening on {server.base_url}", flush=True)
        for path, function in server.host.routes.items():
            url = server.base_url + path
            if function.needs_key:
                # Quoted: a key set by hand may hold "+", "&", "#" or spaces.
                url += f"?{KEY_QUERY_PARAMETER}={quote(function_key, safe='')}"
            print(f"  {'/'.join(sorted(function.methods))} {url}", flush=True)
        for description, _ in started:
            print(f"  {description}", flush=True)
        # Only after the banner: a line written from the console's thread could otherwise
        # land inside a banner line (print writes the text and its newline separately).
        with console_log_on_its_own_thread():
            # Not one untimed wait: a signal the kernel hands to another thread only marks the
            # handler as due, and the main thread runs it when it next runs Python code. An
            # untimed wait never does, and one Ctrl+C in ~100 was lost (the process kept on).
            while not stop_requested.wait(SIGNAL_CHECK_INTERVAL_S):
                pass
    finally:
        server.stop()
        for _, runner in started:
            runner.stop()
