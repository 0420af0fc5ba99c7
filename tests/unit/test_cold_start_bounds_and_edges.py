"""A cold start's time bounds against a slow, silent or unreachable database, and edges of the
digest filter, the local host's empty answers, the queue trigger's stop and the fill-in's log
records that no other test held (found by mutation testing: each test kills hand-made mutants
of ``queries._is_full_digest``, ``host._to_reply``, ``queues.QueuePoller.poll_once``,
``repository._policy_within``, ``CosmosEventRepository._left_of`` or ``models.about``
(then ``repository._about``) that every other test passed). Each asserts documented or
commented behaviour, cited in its docstring.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue import QueueMessage

import function_app
from acr_webhook.config import QueueSettings, Settings
from acr_webhook.local.host import LocalFunctionsHost
from acr_webhook.local.queues import QueueFunction, QueueOptions, QueuePoller
from acr_webhook.queries import QueryError, parse_event_query
from acr_webhook.repository import CLIENT_TIMEOUTS, CosmosEventRepository, DatabaseHealth
from acr_webhook.store import RepositoryUnavailableError
from tests.support.chaos import blackhole
from tests.support.interleave import FakeClock, FakeCosmosClient, GatedQueue, Turns, deployed
from tests.unit.test_concurrency_properties import (
    EVENT_ID,
    KEY,
    REPOSITORY,
    START,
    Delivery,
    app_settings,
    logged,
    prestored_document,
)

# --- queries: a digest filter is a full digest ---------------------------------------------------

HEX64 = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "digest",
    [
        "sha512:" + HEX64,  # a sha256-long sha512 (its encoding is 128 hex digits)
        "sha256:" + HEX64 + "0",  # one digit too many
        "sha256:" + HEX64.upper(),  # [A-F]: the OCI spec forbids upper-case hex here
        "SHA256:" + HEX64,  # the algorithm is lower case
        "sha512:" + "g" * 128,  # not hex
    ],
)
def test_a_digest_the_registered_algorithms_never_produce_is_a_400(digest: str) -> None:
    """docs/queries.md: ``digest`` is a "full digest, `sha256:<64 hex>`", and "a shortened one
    is a 400"; queries.py: "the registered algorithms' encodings have a fixed length". The OCI
    image spec (descriptor.md, "Registered algorithms"): sha256's encoded part MUST match
    ``[a-f0-9]{64}``, sha512's ``[a-f0-9]{128}``, and the algorithm is ``[a-z0-9]+``. So no
    stored digest could match any of these: the filter is refused, naming the parameter."""
    with pytest.raises(QueryError, match=r"^digest: must be a full digest"):
        parse_event_query({"digest": digest})


def test_a_full_sha512_digest_is_a_filter() -> None:
    """The other registered algorithm, at its own length, is accepted as given."""
    digest = "sha512:" + HEX64 * 2
    assert parse_event_query({"digest": digest}).digest == digest


# --- local host: 204 and 304 carry no body -------------------------------------------------------


@pytest.mark.parametrize("status", [204, 304])
def test_a_no_content_or_not_modified_answer_has_no_body(status: int) -> None:
    """host._to_reply: for 204 and 304 "No body, but the Content-Type stays" (RFC 9110
    15.3.5 and 15.4.5: neither has content), even when the function returned one."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="empty", methods=["GET"])
    def empty(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("should not be sent", status_code=status)

    reply = LocalFunctionsHost(app, "k").dispatch("GET", "/api/empty", {}, b"", "http://h")
    assert (reply.status, reply.body) == (status, b"")
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"


# --- local queue trigger: a stop ends the batch between messages -----------------------------


class _Queue:
    """The raw queue client the poller uses: one batch of messages, deletions recorded."""

    def __init__(self, count: int, on_receive: threading.Event | None = None) -> None:
        self.batch = [
            QueueMessage(base64.b64encode(f'"m{i}"'.encode()).decode(), id=f"m{i}")
            for i in range(count)
        ]
        for message in self.batch:
            message.dequeue_count = 1
        self.deleted: list[str] = []
        self._on_receive = on_receive

    def receive_messages(self, **_: Any) -> list[QueueMessage]:
        if self._on_receive is not None:
            self._on_receive.set()  # a stop asked for while the batch was being received
        return list(self.batch)

    def delete_message(self, message: QueueMessage) -> None:
        self.deleted.append(message.id)


def _poller(
    monkeypatch: pytest.MonkeyPatch, queue: _Queue, call: Any
) -> tuple[QueuePoller, list[str]]:
    monkeypatch.setattr("acr_webhook.local.queues.create_queue_client", lambda *_, **__: queue)
    function = QueueFunction("replay_fallback", "q", "AzureWebJobsStorage", call)
    settings = QueueSettings("q", connection_string="UseDevelopmentStorage=true")
    return QueuePoller(function, settings, QueueOptions()), queue.deleted


def test_a_stop_during_a_call_ends_the_batch_after_that_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """queues.poll_once: "handle its messages until asked to stop ... Those left when stopping
    stay leased" (README: the local host "stops within a few seconds on Ctrl+C or SIGTERM, its
    queue trigger ... with it"): a stop during the first of 3 calls makes no second call."""
    calls: list[str] = []
    holder: dict[str, QueuePoller] = {}

    def call(message: func.QueueMessage) -> None:
        calls.append(str(message.id))
        holder["poller"]._stop.set()  # SIGTERM arrives while this call runs

    poller, deleted = _poller(monkeypatch, _Queue(3), call)
    holder["poller"] = poller
    assert poller.poll_once() == 3  # received
    assert (calls, deleted) == (["m0"], ["m0"])


def test_a_stop_before_the_first_call_handles_none_of_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same docstring: a stop asked for while the batch was received handles none of it;
    every message stays on the queue, leased, for the next start."""
    calls: list[str] = []
    poller, deleted = _poller(monkeypatch, _Queue(2), lambda message: calls.append(str(message.id)))
    monkeypatch.setattr(poller._queue, "_on_receive", poller._stop)
    assert poller.poll_once() == 2
    assert (calls, deleted) == ([], [])


# --- repository: a cold start's account lookup keeps to the write's timeouts --------------------


@pytest.fixture
def silent_database() -> Iterator[str]:
    """An endpoint that takes connections and never answers (a hung database)."""
    listener = blackhole()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    listener.close()


def test_a_cold_start_against_a_silent_database_keeps_to_the_writes_own_timeout() -> None:
    """repository.CosmosEventRepository: ``write_options["timeout"]`` is "The bound of a whole
    add()", and _policy_within's docstring: the account lookup keeps to the client's
    timeouts. For a client whose read_timeout is shorter than its timeout (Event Grid's 2 s of
    5 s, the reads' 4 s of 5 s), azure-cosmos 4.17 retries a timed-out account lookup once
    with a read timeout of its own, 5 s (_health_check_retry_policy: initial_connection_timeout),
    past the client's timeout. Here: timeout 1 s, read_timeout 0.2 s, a database that holds
    every request 2.5 s before closing it: the first write gives up only after ~2.7 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def hold_then_close() -> None:
        while True:
            try:
                connection = server.accept()[0]
            except OSError:
                return
            closer = threading.Timer(2.5, connection.close)
            closer.daemon = True
            closer.start()

    threading.Thread(target=hold_then_close, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}/"
        elapsed = _first_write_s(endpoint, timeout=1.0, read_timeout=0.2)
    finally:
        server.close()
    assert elapsed < 1.8, elapsed


@pytest.fixture
def unconnectable_database() -> Iterator[str]:
    """An endpoint whose connections never complete: a listen backlog already full (Linux then
    drops the SYN, so connect() waits for its timeout)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    address = server.getsockname()
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(address)
        fillers.append(filler)
    with pytest.raises(TimeoutError):  # the precondition, checked rather than assumed
        socket.create_connection(address, timeout=0.2).close()
    yield f"http://127.0.0.1:{address[1]}/"
    for filler in fillers:
        filler.close()
    server.close()


def _first_write_s(endpoint: str, **timeouts: float) -> float:
    settings = Settings(endpoint, "a2V5", "acr", "events", None)
    repository = CosmosEventRepository(settings, write_options={**CLIENT_TIMEOUTS, **timeouts})
    started = time.monotonic()
    with pytest.raises(RepositoryUnavailableError):
        repository.add({"id": "e1", "repository": "r", "action": "push"})
    return time.monotonic() - started


def test_a_cold_start_against_a_database_that_never_answers_keeps_to_the_read_timeout(
    silent_database: str,
) -> None:
    """README: "building it and the first write share the one ~2 s", tested with a fresh host
    whose database answers "never"; repository._policy_within: the account lookup keeps
    to the client's timeouts, not the SDK's own 3 s (DBAReadTimeout). With 0.4 s timeouts the
    first write gives up in well under the SDK's 3 s."""
    elapsed = _first_write_s(silent_database, timeout=0.4, read_timeout=0.4)
    assert elapsed < 1.5, elapsed


def test_a_cold_start_against_a_database_that_takes_no_connection_keeps_to_the_connect_timeout(
    unconnectable_database: str,
) -> None:
    """The same, for connecting: the lookup gives up after the client's connection_timeout,
    not the SDK's own 3 s (DBAConnectionTimeout); the write's 1.5 s are not all used up."""
    elapsed = _first_write_s(
        unconnectable_database, timeout=1.5, read_timeout=1.5, connection_timeout=0.1
    )
    assert elapsed < 1.2, elapsed


class _SlowAccountThenSilent(BaseHTTPRequestHandler):
    """A database that answers its account lookup after 0.6 s, then holds every other request
    3 s unanswered."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path != "/":
            time.sleep(3)
            return
        time.sleep(0.6)
        endpoint = [{"name": "local", "databaseAccountEndpoint": self.server.endpoint}]  # type: ignore[attr-defined]
        body = json.dumps(
            {
                "id": "local",
                "_rid": "local",
                "writableLocations": endpoint,
                "readableLocations": endpoint,
                "enableMultipleWriteLocations": False,
                "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        time.sleep(3)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_first_write_after_a_slow_lookup_gets_only_what_is_left_of_its_time() -> None:
    """repository._left_of: "Timeouts for one SDK call that end it by ``deadline`` ... (The
    SDK's own ``timeout`` is checked only as a call starts.)"; README: "building it and the
    first write share the one ~2 s". The lookup took 0.6 s of the write's 1 s; the create's
    call then hangs: it ends at the 1 s, not after the client's own 2 s read timeout."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowAccountThenSilent)
    server.daemon_threads = True
    server.endpoint = f"http://127.0.0.1:{server.server_address[1]}/"  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        elapsed = _first_write_s(server.endpoint, timeout=1.0, read_timeout=2.0)  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
    assert elapsed < 1.6, elapsed


# --- repository: a write whose time the client build used up sends nothing ----------------------


def test_a_cold_start_whose_build_used_the_whole_write_time_parks_without_writing() -> None:
    """repository._left_of "raises RepositoryUnavailableError once that [deadline] has passed";
    README: "building it and the first write share the one ~2 s", then the event goes to the
    fallback (202). A client build that took 2.1 s leaves the create no time: it is never
    sent, and the event is parked."""
    turns = Turns(["solo"])
    clock = FakeClock(START)
    client = FakeCosmosClient(turns, clock)

    def slow_build(*_: Any) -> FakeCosmosClient:
        clock.advance(float(CLIENT_TIMEOUTS["timeout"]) + 0.1)
        return client

    queue = GatedQueue(turns)
    with deployed(
        app_settings(None), DatabaseHealth(clock=clock), slow_build, clock=clock, queue=queue
    ):
        request = Delivery("webhook", frozenset()).request(None)
        assert function_app.acr_webhook(request).status_code == 202
    assert (client.calls, client.documents) == ([], {})
    assert [message[1]["id"] for message in queue.messages] == [EVENT_ID]


# --- repository: a record about a duplicate whose document is gone names the event ---------------


class _GoneAfterConflict(FakeCosmosClient):
    """The stored document expires (time to live) between the create's 409 and the read."""

    def read_item(self, item: str, partition_key: str, **kwargs: Any) -> dict[str, Any]:
        self.documents.pop((item, partition_key), None)
        return super().read_item(item, partition_key, **kwargs)


def test_the_record_of_a_duplicate_whose_document_is_gone_carries_the_events_fields() -> None:
    """README "Logs" and docs/operations.md ("query them by event_id"): each record about an
    event carries its event_id, action and repository as fields; repository._fill_in logs
    "stored document gone before its fields were filled in" about the event too."""
    turns = Turns(["solo"])
    clock = FakeClock(START)
    client = _GoneAfterConflict(turns, clock)
    client.documents[KEY] = client._stored(prestored_document("bare"))
    with (
        deployed(app_settings(None), DatabaseHealth(clock=clock), lambda *_: client, clock=clock),
        logged() as records,
    ):
        # An Event Grid copy: a webhook duplicate fills in nothing (models.FILLED_IN_BY).
        request = Delivery("eventgrid", frozenset({"actor"})).request(None)
        assert function_app.acr_eventgrid(request).status_code == 200
    [gone] = [r for r in records.records if "gone before" in r.getMessage()]
    fields = {name: getattr(gone, name, None) for name in ("event_id", "action", "repository")}
    assert fields == {"event_id": EVENT_ID, "action": "push", "repository": REPOSITORY}
