"""The HTTP layer, property-based: random requests through the local host's dispatch (no sockets)
into function_app's real functions, with in-memory stores, against what README.md promises
("Answers", "Security and reliability", and the local host's rows under "Running locally,
piece by piece") and what the Azure Functions host does (its AuthenticationLevelHandler reads
the key; ASP.NET Core's RoutePatternMatcher routes; azure.functions' HttpResponseConverter is
what the Python worker hands the host).

Each request is drawn with the answer a model of those promises expects: which function the
path routes to (or none), whether the key, then the shared secret, lets it through, and what
the function gets. The paths, queries and headers are built so that the model knows their
meaning by construction, not by running the product's own decoding."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import azure.functions as func
import pytest
from azure.functions.http import HttpResponseConverter
from hypothesis import event, given, settings
from hypothesis import strategies as st

import function_app
from acr_webhook.eventgrid import handle_eventgrid, handle_eventgrid_options
from acr_webhook.handlers import MAX_BODY_BYTES, SharedSecret, handle_webhook
from acr_webhook.local.host import HOST_JSON, LocalFunctionsHost, Reply, route_prefix
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.queries import handle_events_query
from acr_webhook.results import Result
from tests.support import payloads
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository
from tests.support.properties import DETERMINISTIC

PROPERTIES = settings(DETERMINISTIC, max_examples=80)
KEY = "test-key"
SECRET = "s3cret-value"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BASE_URL = "http://h"
# function name -> (route as decorated, methods it takes); test_local_host checks the same
# against the decorators, so a new route shows up there first.
FUNCTIONS: dict[str, tuple[str, frozenset[str]]] = {
    "acr_webhook": ("acr/webhook", frozenset({"POST"})),
    "acr_eventgrid": ("acr/eventgrid", frozenset({"POST", "OPTIONS"})),
    "acr_events": ("acr/events", frozenset({"GET"})),
}
PREFIX = "api"  # host.json extensions.http.routePrefix (checked below)
HOST = LocalFunctionsHost(function_app.app, KEY)
POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-http-batch")
TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.ContainerRegistry/registries/myregistry"
)
EVENT_TYPES = {
    "push": "Microsoft.ContainerRegistry.ImagePushed",
    "delete": "Microsoft.ContainerRegistry.ImageDeleted",
    "chart_push": "Microsoft.ContainerRegistry.ChartPushed",
    "chart_delete": "Microsoft.ContainerRegistry.ChartDeleted",
}
# Outside the key and secret, only these answers carry no JSON body (README "Answers").
EMPTY_STATUSES = {204, 401, 404}


# --- the stores -------------------------------------------------------------------------------


class WriteLog(FakeEventRepository):
    """FakeEventRepository that remembers each write's (id, repository), in order."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[str, str]] = []

    def add(self, document: dict[str, Any]) -> bool:
        self.written.append((document["id"], document["repository"]))
        return super().add(document)


SEEDED = [payloads.PUSH, payloads.DELETE, payloads.CHART_PUSH, payloads.PUSH_BY_DIGEST_OCI]


def seeded_store() -> WriteLog:
    """A store holding a few events, so that reads have something to page through."""
    store = WriteLog()
    for payload in SEEDED:
        store.add(to_document(AcrEvent.model_validate(payload), received_at=NOW))
    store.written.clear()
    store.add_calls = 0
    return store


@dataclass
class Stores:
    """What one request's functions see: the store, the fallback queue, the shared secret."""

    outage: str = "none"  # "none", "queued" (store down, queue up), "down" (both down)
    secret: SharedSecret | None = None
    repository: WriteLog = field(default_factory=seeded_store)
    queue: FakeFallbackQueue = field(default_factory=FakeFallbackQueue)

    def __post_init__(self) -> None:
        self.repository.unavailable = self.outage != "none"
        self.queue.unavailable = self.outage == "down"

    @property
    def fallback(self) -> FakeFallbackQueue | None:
        return None if self.outage == "none" else self.queue

    @property
    def touched(self) -> bool:
        return bool(self.repository.add_calls or self.repository.find_calls or self.queue.messages)


@contextmanager
def wired(stores: Stores) -> Iterator[None]:
    """function_app's functions reading from ``stores`` for the length of the block."""
    with (
        mock.patch.object(function_app, "event_repository", lambda: stores.repository),
        mock.patch.object(function_app, "eventgrid_repository", lambda: stores.repository),
        mock.patch.object(function_app, "event_reader", lambda: stores.repository),
        mock.patch.object(function_app, "fallback_queue", lambda: stores.fallback),
        mock.patch.object(function_app, "shared_secret", lambda: stores.secret),
        mock.patch.object(function_app, "batch_executor", lambda: POOL),
    ):
        yield


def dispatch(
    stores: Stores, method: str, target: str, headers: Mapping[str, str], body: bytes
) -> Reply:
    with wired(stores):
        return HOST.dispatch(method, target, headers, body, BASE_URL)


# --- spelling: text as a client may send it, with its meaning known ---------------------------

UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def percent(char: str, lower_hex: bool) -> str:
    encoded = "".join(f"%{byte:02X}" for byte in char.encode())
    return encoded.lower() if lower_hex else encoded


@st.composite
def spelled(draw: st.DrawFn, text: str, *, query: bool = False) -> str:
    """``text`` percent-encoded as a client might: any character may be encoded (hex in either
    case), the ones a URL cannot carry bare always are; in a query a space may be a '+'."""
    out = []
    for char in text:
        if query and char == " " and draw(st.booleans()):
            out.append("+")
        elif char in UNRESERVED and draw(st.integers(0, 4)) != 0:
            out.append(char)
        else:
            out.append(percent(char, draw(st.booleans())))
    return "".join(out)


@st.composite
def any_case(draw: st.DrawFn, text: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in text)


# --- paths ------------------------------------------------------------------------------------

# Segments a path may carry before any of its own that routing resolves away: ".", an encoded
# ".", a segment and "..", one with an encoded slash (still one segment) and ".." (README: dot
# segments resolved, encoded or not; %2F stays inside its segment).
DOT_NOISE: list[list[str]] = [
    [],
    ["."],
    ["%2E"],
    ["x", ".."],
    ["x", "%2e%2E"],
    ["Q%2F", ".."],
    ["a", "b", "..", "%2E%2E"],
]


@dataclass(frozen=True)
class TargetPath:
    target_path: str
    function: str | None  # the function Azure routes it to, None for none (404)


@st.composite
def routed_path(draw: st.DrawFn, function: str) -> TargetPath:
    """A path that routes to ``function``: the prefix and route in any case, any character
    percent-encoded, dot segments on the way, at most one trailing slash."""
    route, _ = FUNCTIONS[function]
    segments = [PREFIX, *route.split("/")]
    raw: list[str] = []
    for segment in segments:
        raw += draw(st.sampled_from(DOT_NOISE))
        raw.append(draw(spelled(draw(any_case(segment)))))
    trailing = draw(st.sampled_from(["", "/", "/.", "/%2e"]))
    leading = draw(st.sampled_from(["", "/..", "/."]))
    return TargetPath(leading + "/" + "/".join(raw) + trailing, function)


# Ways to miss every route: (name, how to spell the segments). Azure answers each 404.
@st.composite
def unrouted_path(draw: st.DrawFn) -> TargetPath:
    route, _ = FUNCTIONS[draw(st.sampled_from(sorted(FUNCTIONS)))]
    segments = [PREFIX, *route.split("/")]
    miss = draw(
        st.sampled_from(
            [
                "no prefix",
                "encoded slash",
                "double encoded",
                "empty segment",
                "extra segment",
                "dot dot after",
                "other name",
                "random",
            ]
        )
    )
    if miss == "random":
        # No dots (so no dot segments) and no '%': only a path that spells a route routes.
        text = draw(st.text(st.characters(codec="ascii", exclude_characters="?#.%"), max_size=30))
        path = "/" + "".join(c if c in UNRESERVED or c == "/" else percent(c, False) for c in text)
        # Only paths that really miss: a random one could spell a route.
        assume_unrouted = path.rstrip("/").lower().replace("%2f", "/")
        if any(assume_unrouted.endswith(route) for route, _ in FUNCTIONS.values()):
            path = "/nope" + path
        return TargetPath(path, None)
    if miss == "no prefix":
        segments = segments[1:]
    elif miss == "other name":
        segments[-1] += draw(st.sampled_from(["s", "x", "_", "%20"]))
    spelled_segments = [draw(spelled(s)) for s in segments]
    if miss == "encoded slash":
        index = draw(st.integers(1, len(spelled_segments) - 1))
        joint = draw(st.sampled_from(["%2F", "%2f"]))
        spelled_segments[index - 1 : index + 1] = [
            spelled_segments[index - 1] + joint + spelled_segments[index]
        ]
    elif miss == "double encoded":
        index = draw(st.integers(0, len(segments) - 1))
        spelled_segments[index] = (
            "%25" + percent(segments[index][0], False)[1:] + segments[index][1:]
        )
    elif miss == "empty segment":
        index = draw(st.integers(1, len(spelled_segments) - 1))
        spelled_segments.insert(index, "")
    elif miss == "extra segment":
        spelled_segments.append(draw(st.sampled_from(["x", "%2E%2E%2E", "webhook"])))
    elif miss == "dot dot after":
        spelled_segments.append(draw(st.sampled_from(["..", "%2E%2E"])))
    return TargetPath("/" + "/".join(spelled_segments), None)


def paths() -> st.SearchStrategy[TargetPath]:
    return st.one_of(*(routed_path(name) for name in sorted(FUNCTIONS)), unrouted_path())


# --- methods ----------------------------------------------------------------------------------

METHODS = st.one_of(
    st.sampled_from(["POST", "GET", "OPTIONS"]).flatmap(any_case),
    st.sampled_from(["PUT", "DELETE", "PATCH", "HEAD", "TRACE", "CONNECT", "PROPFIND", "BREW"]),
)


# --- the key: in the header, the query, both, neither -----------------------------------------

KEY_VALUES = st.sampled_from([KEY, KEY, "wrong", "", KEY + "x", " " + KEY, KEY.upper()])


@dataclass(frozen=True)
class QueryPart:
    raw: str  # as sent, percent-encoded
    name: str  # decoded
    value: str  # decoded


@st.composite
def code_part(draw: st.DrawFn) -> QueryPart:
    """A ``code`` parameter: its name in any case and spelling, any value, maybe no '='."""
    name = draw(any_case("code"))
    value = draw(KEY_VALUES)
    raw_name = draw(spelled(name, query=True))
    if not value and draw(st.booleans()):
        return QueryPart(raw_name, name, "")
    return QueryPart(f"{raw_name}={draw(spelled(value, query=True))}", name, value)


def param_part(name: str, value: str) -> st.SearchStrategy[QueryPart]:
    return st.builds(
        lambda raw_name, raw_value: QueryPart(f"{raw_name}={raw_value}", name, value),
        spelled(name, query=True),
        spelled(value, query=True),
    )


# Parameters the read endpoint takes (valid or not), and others.
OTHER_PARAMS = st.one_of(
    st.sampled_from(
        [
            ("repository", "hello-world"),
            ("repository", "team/api"),
            ("Repository", "hello-world"),
            ("tag", "v1"),
            ("tag", ""),
            ("tag", "a,b"),
            ("digest", payloads.PUSH["target"]["digest"]),
            ("digest", "nope"),
            ("action", "push"),
            ("action", "pull"),
            ("since", "2017-01-01T00:00:00Z"),
            ("until", "2030-01-01T00:00:00+01:00"),
            ("since", "yesterday"),
            ("limit", "2"),
            ("limit", "0"),
            ("limit", "1001"),
            ("view", "pushes"),
            ("view", "table"),
            ("continuation", "not-a-token"),
            ("x", "y"),
            ("key", KEY),
            ("codes", KEY),
            ("", KEY),
        ]
    ),
    st.tuples(
        st.text(st.sampled_from("abcxyzAB-_ é"), min_size=1, max_size=6),
        st.text(st.sampled_from("abc12 +&=%é"), max_size=6),
    ),
).flatmap(lambda pair: param_part(*pair))


@dataclass(frozen=True)
class Query:
    parts: tuple[QueryPart, ...]

    @property
    def string(self) -> str:
        return "&".join(part.raw for part in self.parts)

    def key(self) -> str | None:
        """The first ``code`` value, its name in any case (None: there is none)."""
        return next((p.value for p in self.parts if p.name.lower() == "code"), None)

    def params(self) -> dict[str, str]:
        """What Azure hands a Python function (README): names in any case are one parameter,
        first spelling kept; repeated values joined with commas; empty ones left out."""
        spelling: dict[str, str] = {}
        values: dict[str, list[str]] = {}
        for part in self.parts:
            name = spelling.setdefault(part.name.lower(), part.name)
            values.setdefault(name, []).append(part.value)
        joined = {name: ",".join(given) for name, given in values.items()}
        return {name: value for name, value in joined.items() if value}


QUERIES = st.builds(
    lambda parts: Query(tuple(parts)),
    st.lists(st.one_of(code_part(), OTHER_PARAMS), max_size=5),
)

KEY_HEADER_NAMES = st.sampled_from(["x-functions-key", "X-Functions-Key", "X-FUNCTIONS-KEY"])
SECRET_VALUES = st.sampled_from(
    [f"Bearer {SECRET}", f"Bearer {SECRET}", SECRET, f"bearer {SECRET}", "Bearer wrong", ""]
)


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, str]:
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers[draw(KEY_HEADER_NAMES)] = draw(KEY_VALUES)
    if draw(st.booleans()):
        headers[draw(st.sampled_from(["Authorization", "authorization"]))] = draw(SECRET_VALUES)
    if draw(st.booleans()):
        headers["Content-Type"] = draw(
            st.sampled_from(["application/json", "text/plain", "application/cloudevents+json"])
        )
    if draw(st.integers(0, 3)) == 0:
        headers["aeg-event-type"] = draw(
            st.sampled_from(["SubscriptionValidation", "subscriptionvalidation", "Notification"])
        )
    if draw(st.integers(0, 3)) == 0:
        headers["WebHook-Request-Origin"] = draw(
            st.sampled_from(["eventgrid.azure.net", "", "bad origin", "x" * 300])
        )
    return headers


def header_key(headers: Mapping[str, str]) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == "x-functions-key"), None)


# --- bodies -----------------------------------------------------------------------------------


def fresh(payload: dict[str, Any]) -> dict[str, Any]:
    event = copy.deepcopy(payload)
    event["id"] = str(uuid.uuid4())
    return event


def event_grid_event(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": TOPIC,
        "subject": data["target"]["repository"],
        "eventType": EVENT_TYPES[data["action"]],
        "eventTime": "2026-11-23T11:59:59.1234567Z",
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


def cloud_event(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": TOPIC,
        "type": EVENT_TYPES[data["action"]],
        "data": data,
    }


VALIDATION = {
    "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
    "topic": TOPIC,
    "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
    "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
    "dataVersion": "1",
}

# Events Event Grid carries (no quarantine).
GRID_PAYLOADS = [payloads.PUSH, payloads.DELETE, payloads.CHART_PUSH, payloads.CHART_DELETE]
WEBHOOK_EVENTS = st.sampled_from(list(payloads.RECORDED.values())).map(fresh) | st.sampled_from(
    SEEDED  # already stored: a duplicate
).map(copy.deepcopy)
GRID_DATA = st.sampled_from(GRID_PAYLOADS).map(fresh) | st.sampled_from(GRID_PAYLOADS).map(
    copy.deepcopy
)
GRID_BATCHES = st.one_of(
    st.lists(GRID_DATA.map(event_grid_event), min_size=1, max_size=4),
    # the same event twice in one batch, or through a replica's second delivery
    GRID_DATA.map(event_grid_event).map(lambda e: [e, copy.deepcopy(e)]),
    GRID_DATA.map(cloud_event),
    st.lists(GRID_DATA.map(cloud_event), min_size=1, max_size=3),
)
HOSTILE_EVENTS = st.sampled_from(payloads.HOSTILE).map(
    lambda hostile: payloads.mutated(hostile[0], hostile[1])
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


BODIES = st.one_of(
    WEBHOOK_EVENTS.map(encoded),
    GRID_BATCHES.map(encoded),
    st.just([VALIDATION]).map(encoded),
    HOSTILE_EVENTS.map(encoded),
    HOSTILE_EVENTS.map(lambda event: [event_grid_event(event)]).map(encoded),
    st.sampled_from(
        [
            b'{"action": "ping"}',
            b'{"action": "pull", "id": "x"}',
            b"",
            b"   ",
            b"{broken",
            b"[1, 2]",
            b'"text"',
            b"\xff\xfe{}",
            b"[" * 100_000,
            b'{"id": "\\ud800", "action": "push"}',
            b"{" + b" " * MAX_BODY_BYTES + b"}",
        ]
    ),
    JSON_VALUES.map(encoded),
    st.binary(max_size=64),
)


# --- what the model expects -------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: TargetPath
    query: Query
    headers: dict[str, str]
    body: bytes

    @property
    def target(self) -> str:
        query = self.query.string
        return self.path.target_path + (f"?{query}" if query else "")

    def routed(self) -> bool:
        """Azure routes on path and method together: a wrong method is no route at all."""
        if self.path.function is None:
            return False
        return self.method.upper() in FUNCTIONS[self.path.function][1]

    def key(self) -> str:
        """AuthenticationLevelHandler: the header when present (even empty), else the first
        ``code`` in the query, its name in any case."""
        from_header = header_key(self.headers)
        if from_header is not None:
            return from_header
        return self.query.key() or ""

    def authorised(self) -> bool:
        return self.key() == KEY

    def needs_secret(self) -> bool:
        """README: deliveries need the secret; Event Grid's handshake and OPTIONS do not, nor
        do reads."""
        if self.method.upper() != "POST":
            return False
        if self.path.function == "acr_webhook":
            return True
        handshake = {k.lower(): v for k, v in self.headers.items()}.get("aeg-event-type", "")
        return self.path.function == "acr_eventgrid" and handshake.lower() != (
            "subscriptionvalidation"
        )

    def secret_ok(self) -> bool:
        given = next((v for k, v in self.headers.items() if k.lower() == "authorization"), "")
        return given == f"Bearer {SECRET}"


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """Mostly requests the host lets through (a method the route takes, the right key), so
    that the functions' answers are reached as often as the host's."""
    path = draw(paths())
    methods = FUNCTIONS[path.function][1] if path.function else frozenset({"POST"})
    if draw(st.integers(0, 4)):
        method = draw(any_case(draw(st.sampled_from(sorted(methods)))))
    else:
        method = draw(METHODS)
    query, headers = draw(QUERIES), draw(header_sets())
    keying = draw(st.sampled_from(["header", "query", "as drawn"]))
    if keying == "header":
        headers = {k: v for k, v in headers.items() if k.lower() != "x-functions-key"}
        headers[draw(KEY_HEADER_NAMES)] = KEY
    elif keying == "query":
        headers = {k: v for k, v in headers.items() if k.lower() != "x-functions-key"}
        name = draw(any_case("code"))
        raw = f"{draw(spelled(name, query=True))}={draw(spelled(KEY, query=True))}"
        query = Query((QueryPart(raw, name, KEY), *query.parts))
    return Request(method, path, query, headers, draw(BODIES))


REQUESTS = requests()
STORES = st.builds(
    Stores,
    outage=st.sampled_from(["none", "none", "queued", "down"]),
    secret=st.sampled_from([None, SharedSecret(SECRET)]),
)

# The secret's 401 is the function's own, to which the Python worker adds a Content-Type (README
# "Security and reliability": the one difference left); the host's 401 for a key has none.
KEY_401 = Reply(401)
SECRET_401 = Reply(401, b"", {"Content-Type": "text/plain; charset=utf-8"})
NOT_FOUND = Reply(404)


def json_body(reply: Reply) -> Any:
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply
    return json.loads(reply.body)


def check_error_body(reply: Reply) -> str:
    """README "Answers": a 4xx other than 401 is ``{"error": "..."}`` naming the problem."""
    body = json_body(reply)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    return str(body["error"])


# Every 4xx message starts with what it is about: the body, a field of the event (its dotted
# path, or events[i] / event in a batch), a query parameter, a header, or the store's refusal.
ERROR_SUBJECTS = (
    "body",
    "action",
    "id",
    "timestamp",
    "target",
    "request",
    "actor",
    "events[",
    "event.",
    "event:",
    "repository",
    "tag",
    "digest",
    "since",
    "until",
    "limit",
    "view",
    "continuation",
    "WebHook-Request-Origin",
    "aeg-event-type",
    "a subscription-validation body",
    "the event store refused",
    "location",
    "connectedRegistry",
)


def names_its_subject(message: str, request: Request) -> bool:
    # An unknown parameter is named as sent.
    unknown = {repr(part.name)[1:-1] for part in request.query.parts}
    return message.startswith(ERROR_SUBJECTS) or any(
        message.startswith(f"{name}: ") for name in unknown
    )


# --- the properties ---------------------------------------------------------------------------


@settings(PROPERTIES, max_examples=150)
@given(request=REQUESTS, stores=STORES)
def test_every_answer_is_one_the_docs_name(request: Request, stores: Stores) -> None:
    """Whatever a client sends: a wrong route or method is an empty 404, whatever the key; a
    wrong key an empty 401 (the host's), a wrong secret on a delivery the function's empty 401;
    neither reaches a store. Everything else is the function's answer: never a 5xx but the 503
    of a store outage, never a traceback, and every 4xx JSON naming what is wrong."""
    reply = dispatch(stores, request.method, request.target, request.headers, request.body)
    event(f"{request.path.function} {reply.status}")
    assert b"Traceback" not in reply.body and b'File "' not in reply.body
    if not request.routed():
        assert reply == NOT_FOUND
    elif not request.authorised():
        assert reply == KEY_401
    elif stores.secret is not None and request.needs_secret() and not request.secret_ok():
        assert reply == SECRET_401
    else:
        assert reply.status not in (401, 404), reply
        if reply.status >= 500:
            assert reply.status == 503 and stores.outage != "none", reply
            assert "unavailable" in check_error_body(reply)
        elif 400 <= reply.status < 500:
            message = check_error_body(reply)
            assert names_its_subject(message, request), message
        elif reply.status not in EMPTY_STATUSES and reply.body:
            assert isinstance(json_body(reply), dict)
        return
    assert not stores.touched
    assert stores.repository.written == []


@PROPERTIES
@given(request=REQUESTS, stores=STORES)
def test_a_request_writes_each_event_at_most_once(request: Request, stores: Stores) -> None:
    """README "Every event is stored once": one request never writes the same document twice
    (a batch repeating an event is written merged), and never parks it twice."""
    dispatch(stores, request.method, request.target, request.headers, request.body)
    written = stores.repository.written
    assert len(written) == len(set(written)), written
    parked = [(m["id"], m["repository"]) for m in stores.queue.messages]
    assert len(parked) == len(set(parked)) <= 1, parked
    if request.path.function != "acr_eventgrid":
        assert len(written) <= 1, written


# Requests that get past the host: routed, with the right key somewhere it counts.
@st.composite
def keyed(draw: st.DrawFn, function: str) -> tuple[TargetPath, Query, dict[str, str]]:
    path = draw(routed_path(function))
    query = draw(QUERIES)
    headers: dict[str, str] = {}
    if draw(st.booleans()) or query.key() != KEY:
        headers[draw(KEY_HEADER_NAMES)] = KEY
    if function == "acr_eventgrid" and draw(st.booleans()):
        headers["aeg-event-type"] = "Notification"
    if draw(st.booleans()):
        headers["Content-Type"] = "application/json"
    return path, query, headers


def same_answer(reply: Reply, result: Result) -> None:
    """The host's answer is the function's, as the Python worker hands it on: the status, the
    JSON body, the function's own headers; the Content-Type's media type from its mimetype."""
    assert reply.status == result.status, (reply, result)
    if result.body is None:
        assert reply.body == b""
    else:
        assert json_body(reply) == result.body
    own = {k: v for k, v in reply.headers.items() if k.lower() != "content-type"}
    assert own == result.headers


@PROPERTIES
@given(
    request=keyed("acr_webhook"),
    method=any_case("POST"),
    bodies=st.lists(st.one_of(WEBHOOK_EVENTS.map(encoded), BODIES), min_size=1, max_size=3),
    outage=st.sampled_from(["none", "none", "queued", "down"]),
)
def test_a_keyed_webhook_call_answers_what_the_handler_answers(
    request: tuple[TargetPath, Query, dict[str, str]],
    method: str,
    bodies: list[bytes],
    outage: str,
) -> None:
    """README "Answers": with a valid key, the route's answer is the handler's, request after
    request (the second delivery of an event a 200, not a 201)."""
    path, query, headers = request
    target = path.target_path + (f"?{query.string}" if query.parts else "")
    through_host, direct = Stores(outage=outage), Stores(outage=outage)
    for body in bodies:
        reply = dispatch(through_host, method, target, headers, body)
        result = handle_webhook(
            body,
            direct.repository,
            headers=headers,
            secret=None,
            fallback=direct.fallback,
            now=lambda: NOW,
        )
        same_answer(reply, result)
    assert sorted(through_host.repository.documents) == sorted(direct.repository.documents)
    assert len(through_host.queue.messages) == len(direct.queue.messages)


@PROPERTIES
@given(
    request=keyed("acr_eventgrid"),
    method=st.sampled_from(["POST", "OPTIONS"]).flatmap(any_case),
    origin=st.sampled_from(["eventgrid.azure.net", "", "two words", "x" * 256]),
    body=st.one_of(GRID_BATCHES.map(encoded), BODIES),
    outage=st.sampled_from(["none", "none", "down"]),
)
def test_a_keyed_event_grid_delivery_answers_what_the_handler_answers(
    request: tuple[TargetPath, Query, dict[str, str]],
    method: str,
    origin: str,
    body: bytes,
    outage: str,
) -> None:
    """README "Answers" and "Event Grid gets an answer it can act on": with a valid key, a
    delivery (or the CloudEvents OPTIONS handshake, its headers included) is answered as the
    handler answers it."""
    path, query, headers = request
    headers["WebHook-Request-Origin"] = origin
    target = path.target_path + (f"?{query.string}" if query.parts else "")
    through_host, direct = Stores(outage=outage), Stores(outage=outage)
    reply = dispatch(through_host, method, target, headers, body)
    lower = {name.lower(): value for name, value in headers.items()}
    if method.upper() == "OPTIONS":
        result = handle_eventgrid_options(lower)
    else:
        result = handle_eventgrid(body, lower, direct.repository, executor=POOL, secret=None)
    same_answer(reply, result)
    assert sorted(through_host.repository.documents) == sorted(direct.repository.documents)


@PROPERTIES
@given(request=keyed("acr_events"), method=any_case("GET"))
def test_a_keyed_read_gets_the_parameters_azure_hands_a_python_function(
    request: tuple[TargetPath, Query, dict[str, str]], method: str
) -> None:
    """README (the local host): the function gets the query as Azure passes it to Python;
    ``code`` among them, which the read endpoint ignores."""
    path, query, headers = request
    target = path.target_path + (f"?{query.string}" if query.parts else "")
    through_host, direct = Stores(), Stores()
    reply = dispatch(through_host, method, target, headers, b"")
    result = handle_events_query(query.params(), direct.repository)
    same_answer(reply, result)


@PROPERTIES
@given(
    path=routed_path("acr_webhook"),
    query=QUERIES,
    header=st.none() | KEY_VALUES,
    header_name=KEY_HEADER_NAMES,
    secret_header=st.none() | SECRET_VALUES,
    secret=st.sampled_from([None, SharedSecret(SECRET)]),
)
def test_the_key_is_the_header_else_the_first_code_in_any_case(
    path: TargetPath,
    query: Query,
    header: str | None,
    header_name: str,
    secret_header: str | None,
    secret: SharedSecret | None,
) -> None:
    """README: the header wins (even empty); else the first ``code`` whose name is in any case;
    then, with WEBHOOK_SECRET set, the secret. A valid event behind both is recorded once; a
    request refused is refused before any store is touched."""
    headers = {} if header is None else {header_name: header}
    if secret_header is not None:
        headers["Authorization"] = secret_header
    request = Request("POST", path, query, headers, b"")
    stores = Stores(secret=secret)
    event = fresh(payloads.PUSH)
    reply = dispatch(stores, "POST", request.target, headers, encoded(event))
    if not request.authorised():
        assert reply == KEY_401
    elif secret is not None and secret_header != f"Bearer {SECRET}":
        assert reply == SECRET_401
    else:
        assert reply.status == 201, reply
        assert stores.repository.written == [(event["id"], "hello-world")]
        return
    assert not stores.touched


@PROPERTIES
@given(
    segments=st.lists(
        st.text(st.sampled_from("abcXYZ019-_.~"), min_size=1, max_size=6).filter(
            lambda s: s.strip(".")
        ),
        min_size=1,
        max_size=3,
    ),
    slashes=st.sampled_from(["", "/"]),
    data=st.data(),
)
def test_the_routes_live_under_the_prefix_host_json_names(
    tmp_path_factory: pytest.TempPathFactory,
    segments: list[str],
    slashes: str,
    data: st.DataObject,
) -> None:
    """README: the route prefix comes from host.json extensions.http.routePrefix; every route
    lives under it, in any case, and nowhere else."""
    prefix = "/".join(segments)
    host_json = tmp_path_factory.mktemp("host") / "host.json"
    host_json.write_text(json.dumps({"extensions": {"http": {"routePrefix": slashes + prefix}}}))
    assert route_prefix(host_json) == prefix
    host = LocalFunctionsHost(function_app.app, KEY, prefix=route_prefix(host_json))
    name = data.draw(st.sampled_from(sorted(FUNCTIONS)))
    route, methods = FUNCTIONS[name]
    method = sorted(methods)[0]
    spelled_prefix = "/".join(data.draw(spelled(data.draw(any_case(s)))) for s in segments)
    stores = Stores()
    with wired(stores):
        under = host.dispatch(method, f"/{spelled_prefix}/{route}", {}, b"", BASE_URL)
        elsewhere = host.dispatch(method, f"/{route}", {}, b"", BASE_URL)
        default = host.dispatch(method, f"/{PREFIX}/{route}", {}, b"", BASE_URL)
    assert under == KEY_401  # found: the host asks for the key
    assert elsewhere == NOT_FOUND
    assert default == (KEY_401 if prefix.lower() == PREFIX else NOT_FOUND)


def test_the_deployed_prefix_is_the_one_in_host_json() -> None:
    assert (
        route_prefix(HOST_JSON)
        == PREFIX
        == json.loads(Path(HOST_JSON).read_text())["extensions"]["http"]["routePrefix"]
    )
    assert set(HOST.routes) == {f"/{PREFIX}/{route}" for route, _ in FUNCTIONS.values()}


CRASHES = st.sampled_from([RuntimeError, ValueError, KeyError, TypeError, RecursionError])


@PROPERTIES
@given(error=CRASHES, message=st.text(max_size=40), method=st.sampled_from(["GET", "POST"]))
def test_a_function_that_raises_is_an_empty_500_whatever_it_says(
    error: type[Exception], message: str, method: str
) -> None:
    """README (the local host): a function that raises is 500 with an empty body, its
    traceback in the log only."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="boom", methods=["GET", "POST"])
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise error(f"{message} {SECRET}")

    host = LocalFunctionsHost(app, KEY)
    assert host.dispatch(method, f"/api/boom?code={KEY}", {}, b"{}", BASE_URL) == Reply(500)


# --- where the local host once answered unlike Azure -----------------------------------------


def keyed_push(target: str) -> Reply:
    return dispatch(Stores(), "POST", f"{target}?code={KEY}", {}, encoded(fresh(payloads.PUSH)))


@pytest.mark.parametrize("path", ["/api/acr/webhook//", "/api/acr/webhook/.//"])
def test_two_trailing_slashes_are_no_route(path: str) -> None:
    assert keyed_push("/api/acr/webhook/").status == 201  # one trailing slash is fine
    assert keyed_push(path) == NOT_FOUND


def test_a_kelvin_sign_is_not_a_k() -> None:
    assert keyed_push("/api/acr/webhoo%E2%84%AA") == NOT_FOUND


def test_a_json_answer_has_the_content_type_the_python_worker_sends() -> None:
    reply = keyed_push("/api/acr/webhook")
    worker = HttpResponseConverter.encode(
        func.HttpResponse("{}", status_code=201, mimetype="application/json"), expected_type=None
    )
    sent = {name: datum.value for name, datum in worker.value["headers"].items()}
    assert sent == {"content-type": "application/json"}
    assert reply.headers == {"Content-Type": "application/json"}
