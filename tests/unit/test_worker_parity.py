"""The local host against the real Azure Functions Python worker, both ways.

Every expected value here was captured by running the real worker, not by reading it:
azure-functions-worker 4.34.0 (the newest source release available; PyPI only carries 1.1.9,
so it was built from the Azure/azure-functions-python-worker tag with protobuf 4.25 and
grpcio 1.59) with azure-functions 1.26.0 on Python 3.11, its Dispatcher driven over gRPC by a
stand-in host (WorkerInit, FunctionsMetadata indexing function_app.py, FunctionLoad,
Invocation). The worker declared the capabilities RawHttpBodyBytes, RpcHttpBodyOnly,
RpcHttpTriggerMetadataRemoved, TypedDataCollection, SharedMemoryDataTransfer, WorkerStatus.

Requests reached it as the Functions host builds RpcHttp for such a worker
(azure-functions-host 4.1037.0, src/WebJobs.Script.Grpc/MessageExtensions/
GrpcMessageConversionExtensions.cs, ToRpcHttp): L139-153 the query, one entry per name in any
case, ``pair.Value.ToString()``, empty ones left out; L155-170 the headers, name
``ToLowerInvariant()``, value ``pair.Value.ToString()``; L209 a body only when
``request.ContentLength > 0``; L251-253 the body as bytes (RawHttpBodyBytes). ``ToString()`` of
ASP.NET Core's StringValues joins the non-empty values with "," and skips the empty ones
(dotnet/runtime src/libraries/Microsoft.Extensions.Primitives/src/StringValues.cs,
GetJoinedStringValueFromArray: "Skip null and empty values"). The worker turned that into
``func.HttpRequest`` (azure_functions_worker/bindings/datumdef.py Datum.from_typed_data,
azure/functions/http.py HttpRequestConverter.decode); the function's ``func.HttpResponse`` went
back through HttpResponseConverter.encode and datumdef.datum_as_proto.

The suite does not need the worker: its answers are written down below.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.functions.http import HttpRequest as WorkerHttpRequest

import function_app
from acr_webhook.handlers import MAX_BODY_BYTES, SharedSecret
from acr_webhook.local.host import LocalFunctionsHost, LocalHttpServer
from tests.support import payloads
from tests.support.fakes import FakeEventRepository

KEY = "test-key"

# --- Requests: what a function sees ------------------------------------------------------------

probe_app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
seen_requests: list[func.HttpRequest] = []


@probe_app.route(route="probe", methods=["GET", "POST", "PUT", "OPTIONS"])
def probe(req: func.HttpRequest) -> func.HttpResponse:
    """Answers with every attribute function_app's functions read."""
    seen_requests.append(req)
    seen = {
        "method": req.method,
        "url": req.url,
        "headers": dict(req.headers),
        "params": dict(req.params),
        "route_params": dict(req.route_params),
        "body_hex": req.get_body().hex(),
    }
    return func.HttpResponse(json.dumps(seen), mimetype="application/json")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalHttpServer]:
    """waitress, as ``serve`` runs it: header parsing and body framing are part of what a
    function sees."""
    local = LocalHttpServer(LocalFunctionsHost(probe_app, KEY, prefix="api"), "127.0.0.1", 0)
    local.start()
    yield local
    local.stop()


def raw_request(
    method: str,
    target: str,
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    chunked: bool = False,
) -> bytes:
    """The bytes a client sends, headers exactly as given (repeats, case, underscores)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" if value else f"{name}:" for name, value in headers]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    else:
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def send(server: LocalHttpServer, raw: bytes) -> tuple[int, bytes]:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(raw)
        answer = sock.makefile("rb")
        status = int(answer.readline().split()[1])
        length = 0
        while (line := answer.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, answer.read(length)


def seen_by_function(server: LocalHttpServer, raw: bytes) -> dict[str, Any]:
    status, body = send(server, raw)
    assert status == 200, body
    seen: dict[str, Any] = json.loads(body)
    return seen


P = "/api/probe"
URL = "http://127.0.0.1" + P
HOST = {"host": "127.0.0.1"}


def worker_saw(
    method: str = "GET",
    query: str = "",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    body_hex: str = "",
) -> dict[str, Any]:
    """What the probe answered under the real worker (4.34.0, HttpRequestConverter.decode)."""
    return {
        "method": method,
        "url": URL + query,
        "headers": {**HOST, **(headers or {})},
        "params": params or {},
        "route_params": {},  # the app's routes have no {parameters}: the host sends none
        "body_hex": body_hex,
    }


JSON_BODY = b'{"a": 1, "t": "2026-11-23T16:52:01.343145347Z"}'


REQUEST_CASES = [
    pytest.param(raw_request("GET", P), worker_saw(), id="get"),
    pytest.param(
        raw_request("GET", P + "?a=1&a=2"),
        worker_saw(query="?a=1&a=2", params={"a": "1,2"}),
        id="query-repeated",
    ),
    pytest.param(
        raw_request("GET", P + "?Tag=x&tag=y&TAG=z"),
        worker_saw(query="?Tag=x&tag=y&TAG=z", params={"Tag": "x,y,z"}),
        id="query-name-case",
    ),
    pytest.param(
        raw_request("GET", P + "?a=&b=1"),
        worker_saw(query="?a=&b=1", params={"b": "1"}),
        id="query-empty-value",
    ),
    pytest.param(
        raw_request("GET", P + "?a=%2C+b"),
        worker_saw(query="?a=%2C+b", params={"a": ", b"}),
        id="query-decoded",
    ),
    pytest.param(
        raw_request("GET", P + "?flag&b=2"),
        worker_saw(query="?flag&b=2", params={"b": "2"}),
        id="query-name-only",
    ),
    # StringValues.ToString skips empty values.
    pytest.param(
        raw_request("GET", P + "?a=&a="),
        worker_saw(query="?a=&a=", params={}),
        id="query-repeated-empty",
    ),
    pytest.param(
        raw_request("GET", P + "?tag=&tag=v1"),
        worker_saw(query="?tag=&tag=v1", params={"tag": "v1"}),
        id="query-empty-then-value",
    ),
    pytest.param(
        raw_request("GET", P + "?tag=v1&tag="),
        worker_saw(query="?tag=v1&tag=", params={"tag": "v1"}),
        id="query-value-then-empty",
    ),
    pytest.param(
        raw_request("GET", P, (("X-MiXeD", "V"),)),
        worker_saw(headers={"x-mixed": "V"}),
        id="header-name-case",
    ),
    pytest.param(
        raw_request("GET", P, (("X-Empty", ""),)),
        worker_saw(headers={"x-empty": ""}),
        id="header-empty",
    ),
    pytest.param(
        raw_request("POST", P, (("Content-Type", ""),), b"{}"),
        worker_saw("POST", headers={"content-length": "2", "content-type": ""}, body_hex="7b7d"),
        id="header-empty-content-type",
    ),
    pytest.param(
        raw_request("POST", P),
        worker_saw("POST", headers={"content-length": "0"}),
        id="body-none",
    ),
    pytest.param(
        raw_request("POST", P, (("Content-Type", "application/json"),), JSON_BODY),
        worker_saw(
            "POST",
            headers={"content-length": "47", "content-type": "application/json"},
            body_hex=JSON_BODY.hex(),  # bytes as sent: the host never re-serializes JSON
        ),
        id="body-json",
    ),
    pytest.param(
        raw_request("POST", P, (("Content-Type", "application/json"),), b'{"a": '),
        worker_saw(
            "POST",
            headers={"content-length": "6", "content-type": "application/json"},
            body_hex="7b2261223a20",
        ),
        id="body-invalid-json",
    ),
    pytest.param(
        raw_request("POST", P, (("Content-Type", "application/octet-stream"),), bytes(range(256))),
        worker_saw(
            "POST",
            headers={"content-length": "256", "content-type": "application/octet-stream"},
            body_hex=bytes(range(256)).hex(),
        ),
        id="body-binary",
    ),
    pytest.param(
        raw_request("POST", P, (("Content-Type", "text/plain; charset=latin-1"),), b"caf\xe9"),
        worker_saw(
            "POST",
            headers={"content-length": "4", "content-type": "text/plain; charset=latin-1"},
            body_hex="636166e9",  # not decoded as UTF-8 on the way: the bytes as sent
        ),
        id="body-non-utf8-text",
    ),
    pytest.param(
        raw_request("POST", P, (("Content-Type", "application/json"),), b'{"a": "caf\xe9"}'),
        worker_saw(
            "POST",
            headers={"content-length": "13", "content-type": "application/json"},
            body_hex="7b2261223a2022636166e9227d",
        ),
        id="body-non-utf8-json",
    ),
    pytest.param(
        raw_request(
            "POST", P, (("Content-Type", "application/x-www-form-urlencoded"),), b"a=1&b=%20x"
        ),
        worker_saw(
            "POST",
            headers={"content-length": "10", "content-type": "application/x-www-form-urlencoded"},
            body_hex="613d3126623d25323078",
        ),
        id="body-form",
    ),
    pytest.param(
        raw_request("POST", P, (), b'{"x": 1}'),
        worker_saw("POST", headers={"content-length": "8"}, body_hex="7b2278223a20317d"),
        id="body-no-content-type",
    ),
    pytest.param(
        raw_request("PUT", P, (("Content-Type", "application/json"),), b"[]"),
        worker_saw(
            "PUT",
            headers={"content-length": "2", "content-type": "application/json"},
            body_hex="5b5d",
        ),
        id="method-put",
    ),
    pytest.param(raw_request("OPTIONS", P), worker_saw("OPTIONS"), id="method-options"),
]


@pytest.mark.parametrize(("raw", "expected"), REQUEST_CASES)
def test_a_function_sees_the_request_as_the_python_worker_hands_it(
    server: LocalHttpServer, raw: bytes, expected: dict[str, Any]
) -> None:
    assert seen_by_function(server, raw) == expected


# The README's differences that come from waitress's HTTP parsing: what Azure hands the function
# (captured as above) in the comments, what the local host hands it asserted.
DIFFERENCES = [
    pytest.param(
        raw_request("GET", P, (("X-Multi", "a"), ("x-multi", "b"))),
        worker_saw(headers={"x-multi": "a, b"}),  # Azure: "a,b"
        id="header-repeated",
    ),
    pytest.param(
        raw_request("GET", P, (("X-Multi", ""), ("X-Multi", "b"))),
        worker_saw(headers={"x-multi": ", b"}),  # Azure skips the empty value: "b"
        id="header-empty-then-value",
    ),
    pytest.param(
        raw_request("GET", P, (("X_Under", "v"),)),
        worker_saw(),  # Azure: {"x_under": "v"}; waitress drops a name with "_"
        id="header-underscore",
    ),
    pytest.param(
        raw_request("POST", P, (("Content-Type", "application/json"),), b'{"c": 1}', chunked=True),
        # Azure's host passes a body only when ContentLength > 0 (ToRpcHttp L209): for a chunked
        # request no body and the Transfer-Encoding header as sent; waitress de-chunks it.
        worker_saw(
            "POST",
            headers={"content-length": "8", "content-type": "application/json"},
            body_hex=b'{"c": 1}'.hex(),
        ),
        id="body-chunked",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), DIFFERENCES)
def test_the_readmes_differences_from_azure_hold(
    server: LocalHttpServer, raw: bytes, expected: dict[str, Any]
) -> None:
    assert seen_by_function(server, raw) == expected


def test_a_function_gets_the_workers_request_type_and_its_get_json() -> None:
    """The worker hands ``azure.functions.http.HttpRequest`` (HttpRequestConverter.decode),
    whose get_json wraps every failure in one ValueError ("HTTP request does not contain valid
    JSON data"); the base class the local host builds raises the decoder's own error
    (JSONDecodeError, UnicodeDecodeError). function_app reads get_body only, so this is all."""
    seen_requests.clear()
    host = LocalFunctionsHost(probe_app, KEY, prefix="api")
    assert host.dispatch("POST", P, {}, b"caf\xe9", "http://h").status == 200
    [req] = seen_requests
    with pytest.raises(ValueError, match=r"^HTTP request does not contain valid JSON data$"):
        req.get_json()
    assert isinstance(req, WorkerHttpRequest)


@pytest.fixture
def repository(app_repository: FakeEventRepository) -> FakeEventRepository:
    return app_repository


@pytest.fixture
def host(repository: FakeEventRepository) -> LocalFunctionsHost:
    return LocalFunctionsHost(function_app.app, KEY)


def call(
    host: LocalFunctionsHost,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    reply = host.dispatch(method, target, headers or {}, body, "http://h")
    # Names in lower case: the Azure host sets Content-Type through response.ContentType
    # (RawScriptResult.cs L49-55), which Kestrel writes as "Content-Type"; the rest as named.
    return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.body


WEBHOOK = f"/api/acr/webhook?code={KEY}"


def test_the_events_query_reads_the_parameters_azure_hands_it(host: LocalFunctionsHost) -> None:
    """What function_app does with the query differences above: GET /api/acr/events takes its
    filters from req.params."""
    assert call(host, "POST", WEBHOOK, payloads.body(payloads.PUSH))[0] == 201
    status, _, body = call(host, "GET", f"/api/acr/events?code={KEY}&repository=hello-world")
    assert (status, [e["id"] for e in json.loads(body)["events"]]) == (200, [payloads.PUSH["id"]])


@pytest.mark.parametrize(
    "query",
    [
        "repository=hello-world&repository=",
        "repository=hello-world&limit=&limit=",
    ],
)
def test_empty_repeats_of_a_query_parameter_change_nothing_as_in_azure(
    host: LocalFunctionsHost, query: str
) -> None:
    assert call(host, "POST", WEBHOOK, payloads.body(payloads.PUSH))[0] == 201
    status, _, body = call(host, "GET", f"/api/acr/events?code={KEY}&{query}")
    assert (status, [e["id"] for e in json.loads(body)["events"]]) == (200, [payloads.PUSH["id"]])


# --- Responses: what the host gets back ---------------------------------------------------------
# (No function answers 404: that is the host's own NotFoundResult, empty, like its 401.)

# The RpcHttp the worker returned for function_app's own answers: (status_code, headers, body).
# HttpResponseConverter.encode adds a Content-Type from the mimetype unless the function set
# one ("; charset=" only for text/*) and sends the body as bytes, b"" when there is none.
TEXT = {"content-type": "text/plain; charset=utf-8"}
JSON_TYPE = {"content-type": "application/json"}


def test_recorded_and_duplicate_answers_are_the_workers(host: LocalFunctionsHost) -> None:
    body = payloads.body(payloads.PUSH)
    assert call(host, "POST", WEBHOOK, body) == (
        201,
        JSON_TYPE,
        b'{"status": "recorded", "id": "cb8c3971-9adc-488b-aaaa-43cbb4974ff5"}',
    )
    assert call(host, "POST", WEBHOOK, body) == (
        200,
        JSON_TYPE,
        b'{"status": "duplicate", "id": "cb8c3971-9adc-488b-aaaa-43cbb4974ff5"}',
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            payloads.body({"action": "tag_delete", "id": "x"}),
            (
                202,
                JSON_TYPE,
                b'{"status": "ignored", "reason": "action \'tag_delete\' is not recorded"}',
            ),
        ),
        (
            b"{",
            (
                400,
                JSON_TYPE,
                b'{"error": "body is not valid JSON: Expecting property name enclosed in double'
                b' quotes: line 1 column 2 (char 1)"}',
            ),
        ),
        (b"", (400, JSON_TYPE, b'{"error": "body is empty; expected JSON"}')),
        (
            b" " * (MAX_BODY_BYTES + 1),
            (413, JSON_TYPE, b'{"error": "body is larger than 1048576 bytes"}'),
        ),
        pytest.param(
            payloads.body({"action": "ping"}),
            # The host sets it (RawScriptResult.cs L49-55) and Kestrel keeps it: on a 204 it
            # drops only Content-Length and refuses Transfer-Encoding (aspnetcore
            # HttpProtocol.CreateResponseHeaders).
            (204, TEXT, b""),
        ),
    ],
    ids=["ignored-202", "invalid-400", "empty-400", "too-large-413", "ping-204"],
)
def test_webhook_answers_are_the_workers(
    host: LocalFunctionsHost, body: bytes, expected: tuple[int, dict[str, str], bytes]
) -> None:
    assert call(host, "POST", WEBHOOK, body) == expected


def test_the_secrets_401_and_an_outages_503_are_the_workers(
    host: LocalFunctionsHost, repository: FakeEventRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = payloads.body(payloads.PUSH)
    monkeypatch.setattr(function_app, "shared_secret", lambda: SharedSecret("s3cret"))
    assert call(host, "POST", WEBHOOK, body) == (401, TEXT, b"")
    monkeypatch.setattr(function_app, "shared_secret", lambda: None)
    repository.unavailable = True
    assert call(host, "POST", WEBHOOK, body) == (
        503,
        JSON_TYPE,
        b'{"error": "the event store is unavailable; the event was not recorded"}',
    )


def test_eventgrid_handshake_and_events_answers_are_the_workers(host: LocalFunctionsHost) -> None:
    origin = {"WebHook-Request-Origin": "eventgrid.azure.net"}
    assert call(host, "OPTIONS", f"/api/acr/eventgrid?code={KEY}", headers=origin) == (
        200,
        {"webhook-allowed-origin": "eventgrid.azure.net", "webhook-allowed-rate": "*", **TEXT},
        b"",
    )
    assert call(host, "GET", f"/api/acr/events?code={KEY}&limit=abc") == (
        400,
        JSON_TYPE,
        b'{"error": "limit: must be a whole number from 1 to 1000"}',
    )
    status, headers, _ = call(host, "GET", f"/api/acr/events?code={KEY}")
    assert (status, headers) == (200, JSON_TYPE)


def test_a_crash_is_an_empty_500_with_the_exception_in_the_log(
    host: LocalFunctionsHost, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker answers a raising function with InvocationResponse result Failure, exception
    message "RuntimeError: secret detail" and its stack trace, and no return value; it logs
    nothing of it itself (only "Received FunctionInvocationRequest"). The host logs that
    exception and answers 500 with no body."""

    def broken() -> FakeEventRepository:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(function_app, "event_repository", broken)
    with caplog.at_level(logging.ERROR):
        status, headers, body = call(host, "POST", WEBHOOK, payloads.body(payloads.PUSH))
    assert (status, headers, body) == (500, {}, b"")
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    raised = record.exc_info[1]
    assert isinstance(raised, RuntimeError)
    assert str(raised) == "secret detail"
