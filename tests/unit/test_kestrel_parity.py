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

Each limit at its edge, the order of the checks, the Host rule, the landing page the host
answers on "/" (azure-functions-host HomepageMiddleware.cs) and header values decoded as Kestrel
decodes them are checked through the WSGI adapter alone (call_wsgi: no sockets).
"""

from __future__ import annotations

import gzip
import re
import socket
from collections.abc import Iterator, Mapping

import pytest

from acr_webhook.local.host import (
    HOMEPAGE,
    LocalFunctionsHost,
    LocalHttpServer,
    request_headers,
    wire_headers,
)
from tests.unit.test_local_host import call_wsgi
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


# call_wsgi's environ, as waitress builds it: one header, "Host: 127.0.0.1".
HOST_LINE = "Host: 127.0.0.1\r\n"
PROBE = LocalFunctionsHost(probe_app, KEY, prefix="api")


def status_of(
    method: str,
    target: str,
    changes: Mapping[str, str | None] | None = None,
    protocol: str = "HTTP/1.1",
) -> int:
    """The status WsgiAdapter answers; ``changes``: environ keys as waitress would set them."""
    environ = {"SERVER_PROTOCOL": protocol, **(changes or {})}
    status, _ = call_wsgi(PROBE, method, target, changes=environ)
    return int(status.split()[0])


def target_for_a_line_of(length: int, method: str, protocol: str) -> str:
    """The probe's target padded so that the request line, CR LF included, is ``length`` bytes."""
    bare = f"{method} {P}?pad= {protocol}\r\n"
    return f"{P}?pad={'a' * (length - len(bare))}"


def header_lines(count: int) -> dict[str, str | None]:
    """Environ keys for ``count`` headers in all, the Host call_wsgi sends included."""
    return {f"HTTP_X_H{i}": "v" for i in range(count - 1)}


# --- local/host.refused_before_routing: each limit at its edge ----------------------------------


@pytest.mark.parametrize(("method", "protocol"), [("GET", "HTTP/1.1"), ("OPTIONS", "HTTP/1.0")])
def test_the_request_line_limit_holds_method_target_version_and_crlf(
    method: str, protocol: str
) -> None:
    """Http1Connection.TakeStartLine parses at most MaxRequestLineSize bytes and answers 414
    when the line's LF is not among them: 8,192 bytes with the CR LF pass, 8,193 do not.
    Kills: the limit one higher, ``>=``, and a line counted without its CR LF, its version
    or its method."""
    at = target_for_a_line_of(KESTREL_MAX_REQUEST_LINE, method, protocol)
    over = target_for_a_line_of(KESTREL_MAX_REQUEST_LINE + 1, method, protocol)
    assert (
        status_of(method, at, protocol=protocol),
        status_of(method, over, protocol=protocol),
    ) == (200, 414)


def test_the_header_count_limit_is_one_hundred_headers() -> None:
    """Http1Connection counts each header line and refuses the 101st (TooManyHeaders, 431).
    Kills: the limit one higher or lower, ``>=``."""
    statuses = [
        status_of("GET", P, header_lines(n)) for n in (KESTREL_MAX_HEADERS, KESTREL_MAX_HEADERS + 1)
    ]
    assert statuses == [200, 431]


def test_the_header_bytes_limit_counts_each_line_as_sent() -> None:
    """MaxRequestHeadersTotalSize (32,768) holds every header line, name, ": ", value and CR LF
    (Http1Connection.OnReset allows it plus the empty line's 2 bytes): 32,768 bytes of lines
    pass, 32,769 are 431. Kills: the limit one higher, ``>=``, and a line counted without its
    name, its ": " or its CR LF."""
    fill = KESTREL_MAX_HEADER_BYTES - len(HOST_LINE) - len("X-Pad: \r\n")
    at = status_of("GET", P, {"HTTP_X_PAD": "a" * fill})
    over = status_of("GET", P, {"HTTP_X_PAD": "a" * (fill + 1)})
    assert (at, over) == (200, 431)


def test_the_header_bytes_limit_counts_bytes_not_decoded_characters() -> None:
    as_waitress_reads_it = ("é" * (KESTREL_MAX_HEADER_BYTES // 2)).encode().decode("latin-1")
    assert status_of("GET", P, {"HTTP_X_PAD": as_waitress_reads_it}) == 431


# --- the order of Kestrel's checks --------------------------------------------------------------


def test_a_request_past_several_limits_gets_the_answer_of_the_first_kestrel_checks() -> None:
    """Kestrel reads the request line (414), then the headers (431), then checks Host (400).
    Kills: the header limits checked before the request line, the Host rule before the header
    limits, and the target's form checked before the request line's length."""
    too_long = target_for_a_line_of(KESTREL_MAX_REQUEST_LINE + 1, "GET", "HTTP/1.1")
    too_many = header_lines(KESTREL_MAX_HEADERS + 1)
    assert status_of("GET", too_long, too_many) == 414
    no_host_and_101_others = header_lines(KESTREL_MAX_HEADERS + 2) | {"HTTP_HOST": None}
    assert status_of("GET", P, no_host_and_101_others) == 431
    assert status_of("GET", "x" + too_long) == 414  # not origin form, and too long


def test_a_target_kestrel_refuses_is_400_before_any_header_limit() -> None:
    assert status_of("GET", "x" + P, header_lines(KESTREL_MAX_HEADERS + 1)) == 400


# --- Host ----------------------------------------------------------------------------------------


def test_an_empty_host_is_one_host_and_a_comma_in_one_is_invalid() -> None:
    """EnsureHostHeaderExists: one Host header, even empty ("The spec allows empty values",
    HttpUtilities.IsHostHeaderValid), passes; a "," is no host character, so one Host holding
    it is 400 as two are (waitress joins two with ", "). Kills: an empty Host taken for none,
    the "," test narrowed to ", "."""
    assert status_of("GET", P, {"HTTP_HOST": ""}) == 200
    assert status_of("GET", P, {"HTTP_HOST": "127.0.0.1,other.example"}) == 400


def test_two_hosts_are_400_in_http_1_0_too() -> None:
    assert status_of("GET", P, {"HTTP_HOST": "127.0.0.1, other.example"}, "HTTP/1.0") == 400


# --- HOMEPAGE: the landing page -----------------------------------------------------------------


@pytest.mark.parametrize(("method", "target"), [("POST", "/"), ("DELETE", "/"), ("GET", "/?a=1")])
def test_the_landing_page_answers_any_method_and_any_query_on_the_root(
    method: str, target: str
) -> None:
    """HomepageMiddleware: ``Request.Path.Value == "/"`` (the query is not the path) with no
    function run, whatever the method, answers a ContentResult of type "text/html", which
    ASP.NET Core sends as it is (no charset added). Kills: the page for GET only, for the
    target "/" only, and a charset in its Content-Type."""
    reply = PROBE.dispatch(method, target, {}, b"", "http://h")
    assert (reply.status, reply.headers) == (200, {"Content-Type": "text/html"})
    assert reply.body == HOMEPAGE.body


def test_an_absolute_form_target_without_a_path_is_the_root() -> None:
    assert status_of("GET", "http://127.0.0.1") == 200


# --- as_kestrel_decodes on every header ---------------------------------------------------------


def test_content_type_is_decoded_too_and_bytes_that_are_not_utf8_stay_as_read() -> None:
    """Kills: CONTENT_TYPE and CONTENT_LENGTH left Latin-1, and a value that is not UTF-8
    replaced (U+FFFD) or dropped instead of kept as waitress read it."""
    environ = {
        "CONTENT_TYPE": "text/plain; name=café".encode().decode("latin-1"),
        "HTTP_X_NAME": b"\xe9t\xe9".decode("latin-1"),  # été in Latin-1: not UTF-8
    }
    assert request_headers(wire_headers(environ)) == {
        "content-type": "text/plain; name=café",
        "x-name": "été",
    }
