"""The local host's dispatch, without sockets: each row of its parity with the Azure host."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import quote
from wsgiref.util import setup_testing_defaults

import azure.functions as func
import pytest

import function_app
from acr_webhook.config import HTTP_CONCURRENCY, QUERY_BUDGET_S, ConfigurationError
from acr_webhook.eventgrid import BATCH_BUDGET_S
from acr_webhook.handlers import MAX_BODY_BYTES
from acr_webhook.local.host import (
    BODY_READ_LIMIT,
    CONSOLE_HELD_RECORDS,
    HOST_JSON,
    STOP_GRACE_S,
    LocalFunctionsHost,
    Reply,
    ServerLimits,
    WsgiAdapter,
    console_log_on_its_own_thread,
    request_headers,
    route_prefix,
    status_line,
    wire_headers,
)
from acr_webhook.local.queues import QueueOptions
from tests.support import payloads
from tests.support.fakes import FakeEventRepository

KEY = "test-key"
URL = "/api/acr/webhook"
EMPTY_401 = Reply(401)


@pytest.fixture
def repository(app_repository: FakeEventRepository) -> FakeEventRepository:
    return app_repository


@pytest.fixture
def host() -> LocalFunctionsHost:
    return LocalFunctionsHost(function_app.app, KEY)


def push(host: LocalFunctionsHost, target: str, **headers: str) -> Reply:
    return host.dispatch("POST", target, headers, payloads.body(payloads.PUSH), "http://h")


def test_routes_come_from_the_function_app_decorators(host: LocalFunctionsHost) -> None:
    assert set(host.routes) == {"/api/acr/webhook", "/api/acr/eventgrid", "/api/acr/events"}
    webhook = host.routes["/api/acr/webhook"]
    assert webhook.methods == {"POST"}
    assert webhook.needs_key


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        (f"{URL}?code={KEY}", {}),
        (URL, {"x-functions-key": KEY}),
        (URL, {"X-Functions-Key": KEY}),
        (f"/API/ACR/Webhook/?code={KEY}", {}),
        # Azure: the query's key name is case-insensitive, and its first value counts.
        (f"{URL}?CODE={KEY}", {}),
        (f"{URL}?Code={KEY}", {}),
        (f"{URL}?code={KEY}&code=bad", {}),
        # Azure: the header, when present, wins over the query.
        (f"{URL}?code=bad", {"x-functions-key": KEY}),
    ],
)
def test_a_key_azure_accepts_reaches_the_function(
    host: LocalFunctionsHost,
    repository: FakeEventRepository,
    target: str,
    headers: dict[str, str],
) -> None:
    reply = push(host, target, **headers)
    assert reply.status == 201
    assert reply.headers["Content-Type"].startswith("application/json")
    assert json.loads(reply.body)["id"] == payloads.PUSH["id"]


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        (URL, {}),
        (f"{URL}?code=wrong", {}),
        (URL, {"x-functions-key": "wrong"}),
        (f"{URL}?code=", {}),
        (f"{URL}?code=bad&code={KEY}", {}),  # the first value counts
        (f"{URL}?code={KEY}", {"x-functions-key": "bad"}),  # the header wins
        (f"{URL}?code={KEY}", {"x-functions-key": ""}),  # even when empty
        (f"{URL}?key={KEY}", {}),
    ],
)
def test_a_key_azure_refuses_is_the_same_empty_401_and_nothing_runs(
    host: LocalFunctionsHost,
    repository: FakeEventRepository,
    target: str,
    headers: dict[str, str],
) -> None:
    assert push(host, target, **headers) == EMPTY_401
    assert repository.add_calls == 0


def test_unknown_path_and_wrong_method_are_an_empty_404(
    host: LocalFunctionsHost, repository: FakeEventRepository
) -> None:
    assert push(host, f"/api/nope?code={KEY}") == Reply(404)
    assert push(host, f"/acr/webhook?code={KEY}") == Reply(404)  # the prefix is required
    for method in ("GET", "PUT", "HEAD", "OPTIONS"):
        assert host.dispatch(method, f"{URL}?code={KEY}", {}, b"", "http://h") == Reply(404)
    # Method before key, as in Azure: no route, so no 401 either.
    assert host.dispatch("GET", URL, {}, b"", "http://h") == Reply(404)
    assert repository.add_calls == 0


@pytest.mark.parametrize(
    "target",
    [
        # Azure splits the query off before decoding the path: an encoded ? or # is part of the
        # path, which then matches no route.
        f"{URL}%3Fcode={KEY}",
        f"{URL}%3fcode={KEY}",
        f"{URL}%3Fcode={KEY}?code={KEY}",
        f"{URL}%23?code={KEY}",
    ],
)
def test_an_encoded_question_mark_is_part_of_the_path_so_a_key_there_is_no_key(
    host: LocalFunctionsHost, repository: FakeEventRepository, target: str
) -> None:
    assert push(host, target) == Reply(404)
    assert repository.add_calls == 0


def test_the_path_is_decoded_once_before_routing(
    host: LocalFunctionsHost, repository: FakeEventRepository
) -> None:
    assert push(host, f"/api/acr/%77ebhook?code={KEY}").status == 201
    assert push(host, f"/api/acr/%2577ebhook?code={KEY}") == Reply(404)


# ASP.NET Core decodes a path but for %2F, which stays inside its segment, then resolves dot
# segments (the documentation of HttpRequest.Path; Kestrel's PathNormalizer).
@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/api/acr%2Fwebhook", 404),
        ("/api/acr%2fwebhook", 404),
        ("/api/acr/webhook%2F", 404),
        ("/api/acr/x%2F../webhook", 404),
        ("/api/x/../acr/webhook", 201),
        ("/api/acr/./webhook", 201),
        ("/api/acr/%2E%2E/acr/webhook", 201),
        ("/../api/acr/webhook", 201),
    ],
)
def test_an_encoded_slash_stays_in_its_segment_and_dot_segments_are_resolved(
    host: LocalFunctionsHost, repository: FakeEventRepository, target: str, status: int
) -> None:
    assert push(host, f"{target}?code={KEY}").status == status
    assert repository.add_calls == (1 if status == 201 else 0)


def test_a_function_sees_the_url_of_the_path_azure_routed() -> None:
    app = open_app()

    @app.route(route="url", methods=["GET"])
    def url(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.url)

    reply = LocalFunctionsHost(app, KEY).dispatch(
        "GET", "/api/x/../%75rl?q=a%20b", {}, b"", "http://h"
    )
    assert (reply.status, reply.body) == (200, b"http://h/api/url?q=a%20b")


# ASP.NET Core's query collection (names in any case, repeated values as one comma-joined
# string), then the host's conversion for the Python worker (empty values left out).
@pytest.mark.parametrize(
    ("query", "params"),
    [
        ("a=1&a=2", {"a": "1,2"}),
        ("Tag=x&tag=y&TAG=z", {"Tag": "x,y,z"}),
        ("a=&b=1", {"b": "1"}),
        ("a=&a=", {}),  # StringValues.ToString() skips empty values
        ("tag=&tag=v1&tag=", {"tag": "v1"}),
        ("a=%2C+b", {"a": ", b"}),
    ],
)
def test_a_function_gets_the_query_parameters_azure_hands_it(
    query: str, params: dict[str, str]
) -> None:
    app = open_app()

    @app.route(route="params", methods=["GET"])
    def echo_params(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps(dict(req.params)))

    reply = LocalFunctionsHost(app, KEY).dispatch("GET", f"/api/params?{query}", {}, b"", "h")
    assert json.loads(reply.body) == params


def test_route_prefix_comes_from_host_json(tmp_path: Path) -> None:
    assert route_prefix(HOST_JSON) == "api"
    host_json = tmp_path / "host.json"
    assert route_prefix(host_json) == "api"  # no file: the host's default
    for http, expected in [({}, "api"), ({"routePrefix": ""}, ""), ({"routePrefix": "/v1/"}, "v1")]:
        host_json.write_text(json.dumps({"version": "2.0", "extensions": {"http": http}}))
        assert route_prefix(host_json) == expected
    # A null section has no settings, as in .NET's configuration: each keeps its default.
    for extensions in [None, {"http": None}]:
        host_json.write_text(json.dumps({"version": "2.0", "extensions": extensions}))
        assert route_prefix(host_json) == "api"
        assert QueueOptions.from_host_json(host_json) == QueueOptions()


def test_host_json_names_are_read_in_any_case_as_dotnet_reads_them(tmp_path: Path) -> None:
    host_json = tmp_path / "host.json"
    settings = {
        "Extensions": {
            "HTTP": {"RoutePrefix": "hooks"},
            "Queues": {"MaxDequeueCount": 3, "BATCHSIZE": 4, "visibilitytimeout": "00:00:07"},
        }
    }
    host_json.write_text(json.dumps(settings))
    assert route_prefix(host_json) == "hooks"
    options = QueueOptions.from_host_json(host_json)
    assert (options.max_dequeue_count, options.batch_size, options.visibility_timeout) == (3, 4, 7)


def test_a_null_route_prefix_stops_the_host_with_one_line(tmp_path: Path) -> None:
    """.NET reads a null routePrefix as "" or as unset depending on its version: the local
    host names the setting rather than serve routes under a prefix of its own guess."""
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"extensions": {"http": {"routePrefix": None}}}))
    with pytest.raises(ConfigurationError, match=r'routePrefix is null; write "" for no prefix'):
        route_prefix(host_json)


@pytest.mark.parametrize(
    ("prefix", "path"), [("", "/acr/webhook"), ("hooks/v1", "/hooks/v1/acr/webhook")]
)
def test_routes_follow_the_prefix(repository: FakeEventRepository, prefix: str, path: str) -> None:
    host = LocalFunctionsHost(function_app.app, KEY, prefix=prefix)
    assert path in host.routes
    assert push(host, f"{path}?code={KEY}").status == 201
    assert push(host, f"{URL}?code={KEY}") == Reply(404)


def test_ping_reply_has_no_body_and_the_workers_content_type(
    host: LocalFunctionsHost, repository: FakeEventRepository
) -> None:
    reply = host.dispatch("POST", f"{URL}?code={KEY}", {}, b'{"action":"ping"}', "http://h")
    assert (reply.status, reply.body) == (204, b"")
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"


def open_app() -> func.FunctionApp:
    return func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def test_a_crashing_function_is_an_empty_500() -> None:
    app = open_app()

    @app.route(route="boom", methods=["GET"])
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("secret detail")

    assert LocalFunctionsHost(app, KEY).dispatch("GET", "/api/boom", {}, b"", "h") == Reply(500)


def test_a_functions_own_empty_401_passes_through_as_the_python_worker_sends_it() -> None:
    app = open_app()

    @app.route(route="guarded", methods=["POST"])
    def guarded(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(status_code=401)

    reply = LocalFunctionsHost(app, KEY).dispatch("POST", "/api/guarded", {}, b"{}", "http://h")
    assert (reply.status, reply.body) == (401, b"")
    # The worker gives every response a Content-Type from its mimetype (text/plain by default),
    # which the Azure host sends on; its own 401 has none.
    assert reply.headers == {"Content-Type": "text/plain; charset=utf-8"}


def test_anonymous_routes_need_no_key_and_see_query_and_headers() -> None:
    app = open_app()

    @app.route(route="open", methods=["GET"])
    def open_route(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(f"{req.params.get('q')} {req.headers.get('x-trace')}")

    reply = LocalFunctionsHost(app, KEY).dispatch(
        "GET", "/api/open?q=hi", {"X-Trace": "t1"}, b"", "http://h"
    )
    assert (reply.status, reply.body) == (200, b"hi t1")


def test_wsgi_headers_are_turned_back_into_header_names() -> None:
    environ = {
        "HTTP_X_FUNCTIONS_KEY": "k",
        "HTTP_AEG_EVENT_TYPE": "Notification",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "2",
        "PATH_INFO": "/api/x",
    }
    assert request_headers(wire_headers(environ)) == {
        "x-functions-key": "k",
        "aeg-event-type": "Notification",
        "content-type": "application/json",
        "content-length": "2",
    }


def test_status_lines_name_the_status() -> None:
    assert status_line(413) == "413 Request Entity Too Large"
    assert status_line(299) == "299 Unknown"


def test_server_limits_are_one_azure_instance_and_above_the_handlers() -> None:
    adjustments = ServerLimits().adjustments()
    assert adjustments["threads"] == HTTP_CONCURRENCY == 16
    assert adjustments["backlog"] == 1024
    assert adjustments["channel_timeout"] == 30  # idle seconds before a connection is closed
    # Past the handlers' limit, so they answer 413 themselves; the server refuses past 2 MiB.
    assert adjustments["max_request_body_size"] == 2 * MAX_BODY_BYTES > BODY_READ_LIMIT


class _BlockedConsole(logging.Handler):
    """A console that takes nothing until released: a terminal nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()
        self.lines: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.released.wait(10)
        self.lines.append((record.getMessage(), record.created))


@pytest.fixture
def console() -> Iterator[_BlockedConsole]:
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = _BlockedConsole()
    root.handlers = [handler]
    try:
        yield handler
    finally:
        handler.released.set()
        root.handlers = saved


def test_logging_never_waits_for_the_console_and_every_line_is_written_in_order(
    console: _BlockedConsole,
) -> None:
    log = logging.getLogger("acr_webhook.test_console")
    handlers = logging.getLogger().handlers[:]
    with console_log_on_its_own_thread():
        started = time.perf_counter()
        for index in range(200):
            log.warning("line %d", index)
        # The console is stuck, yet 200 lines took no longer than creating them.
        assert time.perf_counter() - started < 1.0
        logged_at = time.time()
        console.released.set()
    # Leaving the block writes what was still held: every line, in order, timed when logged.
    assert [line for line, _ in console.lines] == [f"line {index}" for index in range(200)]
    assert all(created <= logged_at for _, created in console.lines)
    assert logging.getLogger().handlers == handlers  # the console's own again


def test_a_console_that_stopped_reading_holds_a_bounded_number_of_lines(
    console: _BlockedConsole,
) -> None:
    log = logging.getLogger("acr_webhook.test_console")
    total = CONSOLE_HELD_RECORDS + 500
    with console_log_on_its_own_thread():
        for index in range(total):
            log.warning("line %d", index)
        console.released.set()
    written = [line for line, _ in console.lines]
    # The oldest went (one may already have been on its way out); the newest are all there.
    assert len(written) <= CONSOLE_HELD_RECORDS + 1
    assert written[-CONSOLE_HELD_RECORDS:] == [
        f"line {index}" for index in range(total - CONSOLE_HELD_RECORDS, total)
    ]


def call_wsgi(
    host: LocalFunctionsHost,
    method: str,
    target: str,
    body: bytes = b"",
    changes: Mapping[str, str | None] | None = None,
) -> tuple[str, bytes]:
    """One request through WsgiAdapter: its status line and body. ``target`` is the request
    target as sent (percent-encoded), which waitress hands over as REQUEST_URI. ``changes``:
    environ keys set (as waitress would, e.g. ``SERVER_PROTOCOL``, ``HTTP_*``) or, for None,
    removed from the defaults."""
    environ: dict[str, object] = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": target,
        "wsgi.input": io.BytesIO(body),
    }
    setup_testing_defaults(environ)  # the rest of a server's environ; host 127.0.0.1, HTTP/1.0
    for key, value in (changes or {}).items():
        if value is None:
            del environ[key]
        else:
            environ[key] = value
    statuses: list[str] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], object]:
        statuses.append(status)
        return io.BytesIO().write

    answer = b"".join(WsgiAdapter(host)(environ, start_response))
    return statuses[0], answer


WSGI_404 = ("404 Not Found", b"")


@pytest.fixture
def host_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="acr_webhook.local.host")
    return caplog


@pytest.mark.parametrize(
    "path",
    [
        "/api/acr/events\r\nFORGED2",  # sent as %0d%0a
        "/api/acr/events\x00",
        "/api/acr/events\u2028FORGED2",  # a line break to some log viewers
    ],
)
def test_a_failed_request_logs_one_line_whatever_its_path_holds(
    host: LocalFunctionsHost, host_log: pytest.LogCaptureFixture, path: str
) -> None:
    assert call_wsgi(host, "GET", f"{quote(path)}?code={KEY}") == WSGI_404
    [record] = host_log.records
    line = record.getMessage()
    assert line.isprintable()  # no CR, LF, NUL or other line break
    assert line.startswith(f"GET {path!r} 404 ")


def test_a_key_sent_inside_the_path_answers_404_and_stays_out_of_the_log(
    host: LocalFunctionsHost, repository: FakeEventRepository, host_log: pytest.LogCaptureFixture
) -> None:
    body = payloads.body(payloads.PUSH)
    # /api/acr/webhook%3Fcode=<key>, then the same with the key in the query as well.
    assert call_wsgi(host, "POST", f"{URL}%3Fcode={KEY}", body) == WSGI_404
    assert call_wsgi(host, "POST", f"{URL}%3Fcode={KEY}?code={KEY}", body) == WSGI_404
    assert repository.add_calls == 0
    lines = [record.getMessage() for record in host_log.records]
    assert [line.rsplit(" ", 1)[0] for line in lines] == [f"POST {URL!r} 404"] * 2
    assert not any(KEY in line for line in lines)


def test_over_wsgi_an_absolute_form_target_is_routed_by_its_path(
    host: LocalFunctionsHost, repository: FakeEventRepository
) -> None:
    body = payloads.body(payloads.PUSH)
    status, _ = call_wsgi(host, "POST", f"http://127.0.0.1{URL}?code={KEY}", body)
    assert status == "201 Created"
    assert call_wsgi(host, "POST", f"http://127.0.0.1{URL}%2F?code={KEY}", body) == WSGI_404
    assert repository.add_calls == 1


def test_over_wsgi_a_function_sees_the_url_azure_builds() -> None:
    app = open_app()

    @app.route(route="url", methods=["GET"])
    def url(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.url)

    status, answer = call_wsgi(LocalFunctionsHost(app, KEY), "GET", "/api/url?q=a%20b&r=1")
    assert (status, answer) == ("200 OK", b"http://127.0.0.1/api/url?q=a%20b&r=1")


# --- local/host.STOP_GRACE_S: the stop's grace outlasts every route's budget --------------------


def test_the_stop_grace_outlasts_every_route_s_budget() -> None:
    """Mutants killed: STOP_GRACE_S back to 5 s, min for max, no second for the answer. The
    grace is "the longest route's budget ... and a second for the answer to go out"
    (host.py): an Event Grid batch throttled for its 20 s lost its answer at 5 s."""
    assert STOP_GRACE_S > BATCH_BUDGET_S
    assert STOP_GRACE_S > QUERY_BUDGET_S
