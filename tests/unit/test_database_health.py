"""The writers' memory of an unreachable database (issue 10): answered at once for 5 s after a
failure, then the database is tried again; a success or a throttle never starts it."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceExistsError

from acr_webhook.config import Settings
from acr_webhook.connections import connection_refused
from acr_webhook.repository import (
    CLIENT_TIMEOUTS,
    EVENTGRID_WRITE_OPTIONS,
    UNAVAILABLE_MEMORY_S,
    CosmosEventRepository,
    DatabaseHealth,
)
from acr_webhook.store import (
    DocumentRejectedError,
    RepositoryUnavailableError,
    StoreSetUpError,
    StoreThrottledError,
)
from tests.support.fakes import client_build_under_way

SETTINGS = Settings("https://127.0.0.1:1/", "key", "acr", "events", None)
# Nothing listens on port 1 of the loopback: a connection there is refused at once.
SETTINGS_FIELDS = ("https://127.0.0.1:1/", "a2V5", "acr", "events", None)
REFUSING = Settings(*SETTINGS_FIELDS)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_is_remembered_for_five_seconds_then_the_database_is_tried_again() -> None:
    assert UNAVAILABLE_MEMORY_S == 5.0  # the README's promise
    clock = Clock()
    health = DatabaseHealth(clock=clock)
    health.check()  # nothing remembered yet
    health.failed("ServiceResponseTimeoutError: read timed out")
    clock.now += UNAVAILABLE_MEMORY_S - 0.01
    with pytest.raises(RepositoryUnavailableError, match="read timed out"):
        health.check()
    clock.now += 0.02
    health.check()


def test_a_success_forgets_the_failure_at_once() -> None:
    clock = Clock()
    health = DatabaseHealth(clock=clock)
    health.failed("refused")
    health.succeeded()
    health.check()


@pytest.mark.parametrize(
    ("status", "raised", "remembered"),
    [
        (429, StoreThrottledError, False),  # throttled: reachable, the next may pass
        (449, StoreThrottledError, False),  # retry a conflicting write: reachable too
        (503, RepositoryUnavailableError, True),
        (408, RepositoryUnavailableError, True),
        (400, DocumentRejectedError, False),  # the document, not the database
        (413, DocumentRejectedError, False),
    ],
)
def test_which_failures_are_remembered(
    status: int, raised: type[Exception], remembered: bool
) -> None:
    health = DatabaseHealth()
    repository = CosmosEventRepository(SETTINGS, health=health)  # nothing is contacted
    response_error = CosmosHttpResponseError(status_code=status, message="x")  # type: ignore[no-untyped-call]
    error = repository._failure(response_error)
    assert type(error) is raised
    if remembered:
        with pytest.raises(RepositoryUnavailableError):
            health.check()
    else:
        health.check()


def test_a_write_waiting_for_another_requests_client_build_waits_only_its_own_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a cold start one request builds the client and the others wait for it: each only
    until its own write's 2 s are up, never the build's timeout + 1 s, so that the fallback
    queue still has its time within the 4.5 s answer."""
    repository = CosmosEventRepository(SETTINGS)
    document = {"id": "x", "repository": "r", "action": "push"}

    def build_first() -> None:
        with pytest.raises(RepositoryUnavailableError, match="connection timed out"):
            repository.add(document)

    with client_build_under_way(monkeypatch, build_first):
        started = time.monotonic()
        with pytest.raises(RepositoryUnavailableError, match="database client is not ready"):
            repository.add(document)
        waited = time.monotonic() - started
    # The build was still under way for the whole wait, so nothing else ended it.
    write_s = CLIENT_TIMEOUTS["timeout"]
    assert write_s - 0.5 < waited < write_s + 0.5


class RecordingContainer:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def create_item(self, document: object, **options: Any) -> None:
        self.calls.append(options)


class RecordingClient:
    def __init__(self, container: RecordingContainer) -> None:
        self.container = container

    def get_database_client(self, _name: str) -> RecordingClient:
        return self

    def get_container_client(self, _name: str) -> RecordingContainer:
        return self.container


def cosmos_over(
    monkeypatch: pytest.MonkeyPatch, container: RecordingContainer, **options: Any
) -> CosmosEventRepository:
    """The real repository (its error mapping and memory) over a fake container."""
    monkeypatch.setattr(
        "acr_webhook.repository.create_cosmos_client", lambda *_a, **_k: RecordingClient(container)
    )
    return CosmosEventRepository(SETTINGS, health=DatabaseHealth(clock=Clock()), **options)


@pytest.mark.parametrize("options", [CLIENT_TIMEOUTS, EVENTGRID_WRITE_OPTIONS])
def test_a_create_gets_what_is_left_of_the_write_and_waits_no_longer_than_the_client(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write's bound (2 s, Event Grid's 5 s) covers building the client and the create
    together; an answer is awaited no longer than the client's read timeout (2 s) even
    inside Event Grid's longer bound, so an outage is noticed as soon as on the webhook."""
    container = RecordingContainer()
    monkeypatch.setattr(
        "acr_webhook.repository.create_cosmos_client", lambda *_a, **_k: RecordingClient(container)
    )
    repository = CosmosEventRepository(SETTINGS, write_options=options)
    assert repository.add({"id": "x", "repository": "r", "action": "push"}) is True
    [call] = container.calls
    assert 0 < call["timeout"] <= options["timeout"]
    assert call["read_timeout"] <= CLIENT_TIMEOUTS["read_timeout"]


class GatewayContainer(RecordingContainer):
    """Every create is a duplicate; reads and replaces are answered as Cosmos DB's gateway
    answers them for an id with a %XX sequence, which it decodes once more than the SDK
    encodes (401, "The input authorization token can't serve the request";
    azure-sdk-for-python#24327). The local server decodes once, so it cannot show this."""

    def create_item(self, document: object, **options: Any) -> None:
        raise CosmosResourceExistsError(status_code=409, message="Conflict")  # type: ignore[no-untyped-call]

    def read_item(self, item: str, **options: Any) -> dict[str, Any]:
        self.calls.append({"read": item})
        raise CosmosHttpResponseError(status_code=401, message="token")  # type: ignore[no-untyped-call]

    replace_item = read_item


@pytest.mark.parametrize("event_id", ["a%41b", "%%%%Device123", "%3D%3D_144733031"])
def test_a_duplicate_whose_id_cosmos_cannot_address_is_no_outage(
    event_id: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The duplicate's fill-in read such an id back, got the gateway's 401 and took it for an
    outage: 202 (or 503) for an event already stored, and every writer skipping the database
    for 5 s. The fill-in is skipped with a warning naming what stays missing."""
    container = GatewayContainer()
    monkeypatch.setattr(
        "acr_webhook.repository.create_cosmos_client", lambda *_a, **_k: RecordingClient(container)
    )
    repository = CosmosEventRepository(SETTINGS)
    document = {
        "id": event_id,
        "repository": "r",
        "action": "push",
        "actor": "ci-bot",
        "source": "eventgrid",  # a source whose duplicate fills in (models.FILLED_IN_BY)
    }
    assert repository.add(document) is False
    assert container.calls == []  # nothing read back by id
    # Not answered from the outage memory: a remembered outage raises before the create.
    assert repository.add({**document, "id": "plain-id", "actor": None}) is False
    assert "actor not filled in" in caplog.text


# One hex digit after the % (at the end, or before another character) is no %XX sequence.
@pytest.mark.parametrize("event_id", ["50%off", "100%Ahead", "a%4", "%A-%b-%9"])
def test_a_duplicate_whose_id_cosmos_can_address_is_still_filled_in(
    event_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The skip is for %XX alone: a % without two hex digits after it is read back."""
    container = GatewayContainer()
    monkeypatch.setattr(
        "acr_webhook.repository.create_cosmos_client", lambda *_a, **_k: RecordingClient(container)
    )
    repository = CosmosEventRepository(SETTINGS)
    with pytest.raises(RepositoryUnavailableError):
        repository.add(
            {
                "id": event_id,
                "repository": "r",
                "action": "push",
                "actor": "ci-bot",
                "source": "eventgrid",
            }
        )
    assert container.calls == [{"read": event_id}]


# --- connections.connection_refused: a refused connection is not remembered ---------------------


def _refused_by_azure_core() -> ServiceRequestError:
    """A refused connection as the SDK's transport raises it (port 1: refused at once)."""
    with RequestsTransport() as transport:
        try:
            transport.send(HttpRequest("GET", "http://127.0.0.1:1/"))
        except ServiceRequestError as error:
            return error
    raise AssertionError("port 1 of the loopback answered")


def _chained(link: str, cause: BaseException) -> AzureError:
    """An SDK error that holds ``cause`` through ``link`` only."""
    if link == "inner_exception":
        return ServiceRequestError("connect failed", error=cause)
    if link == "__cause__":  # `raise ... from cause`, where cause is no longer being handled
        error = ServiceRequestError("connect failed")
        error.__cause__ = cause
        return error
    try:  # raised while handling it: requests' ConnectionError holds urllib3's so
        try:
            raise cause
        except (OSError, AzureError):
            raise ServiceRequestError("connect failed") from None
    except ServiceRequestError as error:
        assert error.__cause__ is None and error.__context__ is cause
        return error
    raise AssertionError("unreachable")


@pytest.mark.parametrize("link", ["inner_exception", "__cause__", "__context__"])
def test_a_refusal_is_found_through_each_link_of_the_chain(link: str) -> None:
    """connection_refused: "whether a refused connection is among error's causes", the SDK's
    inner_exception and Python's __cause__ and __context__ alike, two links deep. Kills each
    link dropped, and only the top error looked at."""
    error = _chained(link, _chained(link, ConnectionRefusedError(111, "Connection refused")))
    assert connection_refused(error)


@pytest.mark.parametrize(
    "cause",
    [
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
        BrokenPipeError(32, "Broken pipe"),
    ],
)
def test_other_connection_failures_are_no_refusal(cause: OSError) -> None:
    """Only a refusal is quick: a reset, a timeout or a broken pipe is remembered as before.
    Kills ConnectionRefusedError widened to ConnectionError or OSError."""
    assert not connection_refused(_chained("inner_exception", cause))
    health = DatabaseHealth()
    repository = CosmosEventRepository(REFUSING, health=health)  # nothing is contacted
    error = repository._failure(ServiceResponseError("x", error=cause))
    assert type(error) is RepositoryUnavailableError
    with pytest.raises(RepositoryUnavailableError):
        health.check()


def test_an_error_chain_with_a_loop_is_looked_through_once() -> None:
    """Kills the `seen` check dropped: the walk would never end. (Run on a thread so that the
    mutant fails rather than hangs; the real walk ends in microseconds.)"""
    first, second = ServiceRequestError("a"), ServiceRequestError("b")
    first.__context__, second.__context__ = second, first
    found: list[bool] = []
    walker = threading.Thread(target=lambda: found.append(connection_refused(first)), daemon=True)
    walker.start()
    walker.join(30)
    assert found == [False]


def test_a_refused_write_is_not_remembered_and_a_failed_one_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A create refused as the SDK raises it is no outage to remember; one that timed out is.
    Kills _failure remembering every unreachable database, as before a8abfa0."""

    class Failing(RecordingContainer):
        error: AzureError

        def create_item(self, document: object, **options: Any) -> None:
            raise self.error

    container = Failing()
    monkeypatch.setattr(
        "acr_webhook.repository.create_cosmos_client", lambda *_a, **_k: RecordingClient(container)
    )
    document = {"id": "x", "repository": "r", "action": "push"}
    for error, remembered in [
        (_refused_by_azure_core(), False),
        (ServiceResponseError("read timed out", error=TimeoutError("timed out")), True),
    ]:
        container.error = error
        health = DatabaseHealth()
        with pytest.raises(RepositoryUnavailableError):
            CosmosEventRepository(REFUSING, health=health).add(document)
        if remembered:
            with pytest.raises(RepositoryUnavailableError):
                health.check()
        else:
            health.check()


def test_a_client_build_refused_by_the_database_is_not_remembered() -> None:
    """The client is built on the first write, which reads the account: refused there (the
    real SDK, port 1), the next write tries again. Kills _LazyContainer._build remembering
    every failure, as before a8abfa0."""
    health = DatabaseHealth()
    repository = CosmosEventRepository(REFUSING, health=health)
    document = {"id": "x", "repository": "r", "action": "push"}
    for _ in range(2):
        with pytest.raises(RepositoryUnavailableError, match="refused"):
            repository.add(document)
        health.check()


# --- repository.DatabaseHealth: what it remembers is the latest failure, set-up or outage --------


def test_an_outage_after_a_refused_set_up_is_remembered_as_an_outage() -> None:
    """DatabaseHealth.failed: ``set_up`` says what the failure *being remembered* was. A role
    fixed, then a timeout: the next writes are answered "database unavailable moments ago", not
    as the set-up refusal the memory no longer holds. Kills `set_up` only ever turned on
    (`self._set_up = self._set_up or set_up`), and a refusal remembered without saying it was
    answered from memory."""
    clock = Clock()
    health = DatabaseHealth(clock=clock)
    health.failed("role missing: detail", "role missing", set_up=True)
    with pytest.raises(StoreSetUpError) as remembered:
        health.check()
    assert (str(remembered.value), remembered.value.cause) == (
        "role missing: detail (refused moments ago)",
        "role missing",
    )

    health.failed("ServiceResponseTimeoutError: read timed out")

    with pytest.raises(RepositoryUnavailableError) as outage:
        health.check()
    assert type(outage.value) is RepositoryUnavailableError
    assert outage.value.cause == (
        "database unavailable moments ago (ServiceResponseTimeoutError: read timed out)"
    )


# --- repository.DatabaseHealth: the memory's end ------------------------------------------------


def test_a_failure_is_forgotten_exactly_five_seconds_later() -> None:
    """Mutant killed: check() remembering while ``clock > until`` instead of ``>=`` (one more
    instant). The memory is UNAVAILABLE_MEMORY_S long, as before session 32 (``clock < until``
    raised): at its end the database is tried again."""
    clock = Clock()
    health = DatabaseHealth(clock=clock)
    health.failed("ServiceResponseTimeoutError: read timed out")
    clock.now += UNAVAILABLE_MEMORY_S
    health.check()


# --- repository._fill_in: an id stored for another event ----------------------------------------


class DuplicateContainer(RecordingContainer):
    """Every create is a duplicate of ``stored``; replaces are recorded."""

    def __init__(self, stored: dict[str, Any]) -> None:
        super().__init__()
        self.stored = stored
        self.replaced: list[dict[str, Any]] = []

    def create_item(self, document: object, **options: Any) -> None:
        raise CosmosResourceExistsError(status_code=409, message="Conflict")  # type: ignore[no-untyped-call]

    def read_item(self, item: str, **options: Any) -> dict[str, Any]:
        return {**self.stored, "_etag": '"1"'}

    def replace_item(self, item: str, body: dict[str, Any], **options: Any) -> None:
        self.replaced.append(body)


def test_an_id_stored_for_another_event_is_warned_of_when_nothing_is_missing_too(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutant killed: the other-event check after the "nothing missing" return (then an id
    used twice whose stored event already has every field is silent again: "an id used twice
    is a sender's fault to be seen", repository._another_event)."""
    stored = {
        "id": "e1",
        "repository": "r",
        "action": "push",
        "tag": "v1",
        "actor": "ci-bot",
        "source": "reconcile",  # a source whose duplicate fills in (models.FILLED_IN_BY)
    }
    container = DuplicateContainer(stored)
    repository = cosmos_over(monkeypatch, container)
    caplog.set_level(logging.WARNING, logger="acr_webhook")

    assert repository.add({**stored, "action": "delete", "actor": "someone-else"}) is False

    assert [r.getMessage() for r in caplog.records] == [
        "event='e1' already stored with another action: the stored event is kept"
    ]
    assert container.replaced == []
