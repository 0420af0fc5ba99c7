"""The local host against what Kestrel, the Azure Functions host's HTTP server, does with a
request before any route or function sees it, over real sockets.

Unlike test_worker_parity, nothing here was captured from a running host: every expectation is
read from source. The host (Azure/azure-functions-host 89dc438, src/WebJobs.Script.WebHost/
Program.cs CreateWebHostBuilder) changes one Kestrel limit, MaxRequestBodySize (100 MB), and
leaves the rest at Kestrel's defaults (dotnet/aspnetcore src/Servers/Kestrel/Core/src/
KestrelServerLimits.cs): a request line of 8,192 bytes, 32,768 bytes of headers, 100 headers.
Kestrel refuses a request past them with the statuses of KestrelBadHttpRequestException.cs
GetException (414, 431, 431), one without the Host header HTTP/1.1 requires, or with two, with
400 (Internal/Http/Http1Connection.cs EnsureHostHeaderExists, RFC 9112 section 3.2: "MUST"),
and a version other than HTTP/1.0 or 1.1 with 505 (waitress answers that one as HTTP/1.0 and
does not tell the app: a README difference). Each answer is Kestrel's own, with no body,
and no function runs. In Azure the App Service front end sits before Kestrel and may refuse
earlier (the HTTP trigger's documented URL limit is 4 KB), never later: a request Kestrel
refuses never reaches the function either way.
"""

from __future__ import annotations

import gzip
import re
import socket
from collections.abc import Iterator

import pytest

from acr_webhook.local.host import LocalFunctionsHost, LocalHttpServer
from tests.unit.test_worker_parity import KEY, P, probe_app, raw_request, seen_requests, send

KESTREL_MAX_REQUEST_LINE = 8 * 1024
KESTREL_MAX_HEADER_BYTES = 32 * 1024
KESTREL_MAX_HEADERS = 100


@pytest.fixture(scope="module")
def wire() -> Iterator[LocalHttpServer]:
    """waitress as ``serve`` runs it, in front of test_worker_parity's probe function (GET, POST,
    PUT and OPTIONS on /api/probe), which answers with what it saw."""
    local = LocalHttpServer(LocalFunctionsHost(probe_app, KEY, prefix="api"), "127.0.0.1", 0)
    local.start()
    yield local
    local.stop()


def answered(server: LocalHttpServer, raw: bytes) -> tuple[int, bytes, int]:
    """Status and body of the answer to ``raw``, and how many times the probe function ran."""
    before = len(seen_requests)
    status, body = send(server, raw)
    return status, body, len(seen_requests) - before


def with_headers(*lines: str, version: str = "HTTP/1.1", host: bool = True) -> bytes:
    """A GET of the probe with exactly these header lines (and Host unless ``host`` is False)."""
    head = [f"GET {P} {version}", *(["Host: 127.0.0.1"] if host else []), *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")


def over_the_request_line_limit() -> bytes:
    padding = "a" * KESTREL_MAX_REQUEST_LINE
    return raw_request("GET", f"{P}?pad={padding}")


def over_the_header_bytes_limit() -> bytes:
    # Two headers of 20,000 bytes each: under waitress's 64 KiB, over Kestrel's 32 KiB total.
    return with_headers(*(f"X-Pad-{i}: {'a' * 20_000}" for i in range(2)))


def over_the_header_count_limit() -> bytes:
    return with_headers(*(f"X-H{i}: v" for i in range(KESTREL_MAX_HEADERS + 1)))


KESTREL_REFUSES = [
    pytest.param(over_the_request_line_limit(), 414, id="request-line-over-8KiB"),
    pytest.param(over_the_header_bytes_limit(), 431, id="headers-over-32KiB"),
    pytest.param(over_the_header_count_limit(), 431, id="headers-over-100"),
    pytest.param(with_headers(host=False), 400, id="http11-without-host"),
    pytest.param(with_headers("Host: other.example"), 400, id="two-host-headers"),
]


@pytest.mark.parametrize(("raw", "kestrel_status"), KESTREL_REFUSES)
def test_a_request_kestrel_refuses_never_reaches_a_function(
    wire: LocalHttpServer, raw: bytes, kestrel_status: int
) -> None:
    status, body, ran = answered(wire, raw)
    assert (status, body, ran) == (kestrel_status, b"", 0)


def test_the_readmes_version_difference_holds(wire: LocalHttpServer) -> None:
    """README: a version other than HTTP/1.0 or 1.1 is answered as HTTP/1.0 here (waitress
    does not tell the app the version sent), where Kestrel answers 505."""
    status, _, ran = answered(wire, with_headers(version="HTTP/1.2"))
    assert (status, ran) == (200, 1)


KESTREL_PASSES = [
    # Just under each limit: the request line counts "GET ", the target and " HTTP/1.1".
    pytest.param(
        raw_request("GET", f"{P}?pad={'a' * (KESTREL_MAX_REQUEST_LINE - 100)}"),
        id="request-line-under-8KiB",
    ),
    pytest.param(with_headers(f"X-Pad: {'a' * 30_000}"), id="headers-under-32KiB"),
    pytest.param(
        with_headers(*(f"X-H{i}: v" for i in range(KESTREL_MAX_HEADERS - 2))), id="100-headers"
    ),
    # Host is optional in HTTP/1.0 (EnsureHostHeaderExists returns early for it).
    pytest.param(with_headers(version="HTTP/1.0", host=False), id="http10-without-host"),
]


@pytest.mark.parametrize("raw", KESTREL_PASSES)
def test_a_request_within_kestrels_limits_reaches_the_function(
    wire: LocalHttpServer, raw: bytes
) -> None:
    status, _, ran = answered(wire, raw)
    assert (status, ran) == (200, 1)


def test_a_utf8_header_value_reaches_the_function_as_kestrel_decodes_it(
    wire: LocalHttpServer,
) -> None:
    raw = with_headers("X-Name: café".encode().decode("latin-1"))
    status, body, _ = answered(wire, raw)
    assert status == 200
    assert '"x-name": "caf\\u00e9"' in body.decode()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        # The worker asks for the body as bytes (RawHttpBodyBytes), so the host hands it over
        # as sent (ToRpcHttp, PopulateBody): no BOM stripped, no gzip undone, whatever the type.
        ("application/json; charset=utf-8", b'\xef\xbb\xbf{"a": 1}'),
        ("application/cloudevents+json; charset=utf-8", b'{"specversion": "1.0"}'),
        ("application/cloudevents-batch+json; charset=utf-8", b'[{"specversion": "1.0"}]'),
        ("application/json", gzip.compress(b'{"a": 1}', mtime=0)),
    ],
    ids=["utf8-bom", "cloudevents", "cloudevents-batch", "gzip"],
)
def test_a_body_reaches_the_function_as_sent_whatever_its_type(
    wire: LocalHttpServer, content_type: str, body: bytes
) -> None:
    headers = [("Content-Type", content_type)]
    if body.startswith(b"\x1f\x8b"):
        headers.append(("Content-Encoding", "gzip"))
    status, answer, ran = answered(wire, raw_request("POST", P, tuple(headers), body))
    assert (status, ran) == (200, 1)
    assert f'"body_hex": "{body.hex()}"' in answer.decode()


def test_head_and_an_unknown_method_are_the_routes_empty_404(wire: LocalHttpServer) -> None:
    """Azure's route constraint compares the method alone (aspnetcore HttpMethodRouteConstraint:
    no HEAD for GET), and Kestrel takes any token as a method: both are no route, an empty 404
    with no Allow header, never waitress's own 405 or 501."""
    for method in ("HEAD", "DELETE", "PATCH", "FOO"):
        with socket.create_connection(wire.address, timeout=5) as sock:
            sock.sendall(raw_request(method, P, (("Connection", "close"),)))
            answer = sock.makefile("rb").read()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 404 "), (method, head)
        assert b"\r\nallow:" not in head.lower()
        assert body == b""


def test_expect_100_continue_gets_its_interim_answer_then_the_functions(
    wire: LocalHttpServer,
) -> None:
    """curl sends ``Expect: 100-continue`` for a body over 1 KiB and waits (1 s) for the
    interim answer: Kestrel sends it when the host first reads the body, which it does for every
    request with a Content-Length."""
    body = b"x" * 2048
    head = raw_request("POST", P, (("Expect", "100-continue"),), body)[: -len(body)]
    with socket.create_connection(wire.address, timeout=5) as sock:
        sock.sendall(head)
        reader = sock.makefile("rb")
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert reader.readline() == b"\r\n"
        sock.sendall(body)
        assert reader.readline().startswith(b"HTTP/1.1 200 ")


def test_pipelined_requests_are_answered_in_order_on_one_connection_after_errors(
    wire: LocalHttpServer,
) -> None:
    """Kestrel answers pipelined HTTP/1.1 requests one after another and keeps the connection
    open after a 404 (no route) as after any answer the app gives."""
    requests = [
        raw_request("GET", "/api/nope"),
        raw_request("GET", P + "?n=1"),
        raw_request("POST", P, (), b"{}"),
        raw_request("GET", P + "?n=2", (("Connection", "close"),)),
    ]
    with socket.create_connection(wire.address, timeout=5) as sock:
        sock.sendall(b"".join(requests))
        answers = sock.makefile("rb").read()
    statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)]
    assert statuses == [404, 200, 200, 200]


def test_the_root_is_the_hosts_landing_page_as_in_azure() -> None:
    """azure-functions-host src/WebJobs.Script.WebHost/Middleware/HomepageMiddleware.cs: after
    the pipeline, ``Request.Path.Value == "/"`` with no function execution answers the landing
    page, whatever the method. Availability probes and people checking a deployment hit it."""
    host = LocalFunctionsHost(probe_app, KEY, prefix="api")
    reply = host.dispatch("GET", "/", {}, b"", "http://h")
    media_type = reply.headers.get("Content-Type", "").partition(";")[0]
    assert (reply.status, media_type) == (200, "text/html")
