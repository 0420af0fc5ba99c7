"""A line-by-line review of the deployed code: each test pins one branch the review questioned,
against what README.md and docs/*.md promise. Each defect it found failed one of these tests
until fixed (session 27)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

import pytest
from azure.core.exceptions import ServiceResponseTimeoutError
from azure.cosmos.exceptions import (
    CosmosClientTimeoutError,
    CosmosHttpResponseError,
    CosmosResourceNotFoundError,
)

from acr_webhook import queries as queries_module
from acr_webhook import repository as repository_module
from acr_webhook.config import QUERY_BUDGET_S, QueueSettings, Settings
from acr_webhook.fallback import StorageQueueFallback
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import MAX_PARKED_REPOSITORY_LENGTH, EventQuery, ParkedEvent, Position
from acr_webhook.queries import handle_events_query, parse_event_query
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import (
    CLIENT_TIMEOUTS,
    QUERY_TIMEOUTS,
    CosmosEventRepository,
    DatabaseHealth,
)
from acr_webhook.results import Result
from acr_webhook.store import RepositoryUnavailableError, StoreNotFoundError
from tests.support import payloads
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository, FakeTime

SETTINGS: Final = Settings("https://127.0.0.1:1/", "key", "acr", "events", None)
# README.md "Security and reliability": "Every webhook answer comes within 4.5 s".
ANSWER_BUDGET_S: Final = 4.5


class _Built:
    """What repository._LazyContainer.get gives: the container, already built."""

    def __init__(self, container: object) -> None:
        self._container = container

    def get(self, deadline: float | None = None) -> Any:
        return self._container


# --- repository.find_events: one budget for the whole page (docs/queries.md) ----------------


class _SlowContainer:
    """``query_items`` as azure-cosmos runs it against a database that takes ``round_trip_s``
    to answer each query, below every per-call timeout (QUERY_TIMEOUTS): the wait is paid when
    the first item is asked for. As in the SDK, ``timeout`` is checked only as the request
    starts (CosmosClientTimeoutError), and the wait for the answer is cut by ``read_timeout``
    (the socket's: ServiceResponseTimeoutError). The items are ``store``'s, filtered as
    repository.events_sql filters them."""

    def __init__(self, clock: FakeTime, store: FakeEventRepository, round_trip_s: float) -> None:
        self.clock = clock
        self.store = store
        self.round_trip_s = round_trip_s
        self.calls = 0

    def query_items(
        self, query: str, parameters: list[dict[str, Any]], max_item_count: int, **options: Any
    ) -> Iterator[dict[str, Any]]:
        values = {parameter["name"][1:]: parameter["value"] for parameter in parameters}
        after = values.get("after")
        wanted = EventQuery(
            repository=values.get("repository"),
            tag=values.get("tag"),
            digest=values.get("digest"),
            action=values.get("action"),
            since=values.get("since"),
            until=values.get("until"),
            after=None if after is None else Position(after),
        )
        self.calls += 1

        def items() -> Iterator[dict[str, Any]]:
            if options["timeout"] <= 0:
                raise CosmosClientTimeoutError()  # type: ignore[no-untyped-call]
            if options["read_timeout"] < self.round_trip_s:
                self.clock.now += options["read_timeout"]
                raise ServiceResponseTimeoutError("Read timed out.")
            self.clock.now += self.round_trip_s
            yield from self.store.find_events(wanted, values["limit"])

        return items()


def _pushes(count: int) -> FakeEventRepository:
    """``count`` pushes of different images to one repository, a second apart."""
    store = FakeEventRepository()
    for number in range(count):
        store.documents[f"e{number}"] = {
            "id": f"e{number}",
            "repository": "team/api",
            "action": "push",
            "tag": f"v{number}",
            "digest": f"sha256:{number:064x}",
            "timestamp": f"2026-11-23T10:{number // 60 % 60:02d}:{number % 60:02d}.000000Z",
        }
    return store


def test_a_page_against_a_slow_database_answers_within_the_query_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/queries.md: "Every call to the database is bounded at 5 s (QUERY_TIMEOUTS) and a
    whole page at 8 s (QUERY_BUDGET_S), all of its reads together". The pushes view reads in
    batches of 200: here three reads, each answered after 3.9 s (slow, not hung: under the
    4 s read timeout). The third starts at 7.8 s, inside the budget, and may wait only the
    0.2 s the page has left: its timeout and its read timeout are both cut. (It used to get the
    whole of its own 5 s: the 503 came at 11.7 s, since find_events checked the deadline only
    before a read and between its items.)"""
    round_trip_s = 3.9
    assert round_trip_s < QUERY_TIMEOUTS["read_timeout"] < QUERY_TIMEOUTS["timeout"]
    clock = FakeTime()
    container = _SlowContainer(clock, _pushes(450), round_trip_s)
    reader = CosmosEventRepository(SETTINGS)
    reader._reads = _Built(container)  # type: ignore[assignment]
    monkeypatch.setattr(repository_module, "time", clock)
    monkeypatch.setattr(queries_module, "time", clock)

    result = handle_events_query({"view": "pushes", "limit": "1000"}, reader)

    assert container.calls >= 3  # the page needed three reads: the budget ran out meanwhile
    assert result.status == 503
    assert clock.now <= QUERY_BUDGET_S, f"answered after {clock.now:.1f} s"


class _Recording:
    """A container that records the options of each call and answers at once."""

    def __init__(self) -> None:
        self.options: list[dict[str, Any]] = []

    def query_items(self, **options: Any) -> Iterator[dict[str, Any]]:
        self.options.append(options)
        return iter([])

    def create_item(self, _document: dict[str, Any], **options: Any) -> None:
        self.options.append(options)


def test_a_read_late_in_its_page_may_wait_to_connect_only_what_the_page_has_left() -> None:
    """A read that has to open a connection to a database that takes none waits for it too:
    its connect timeout (QUERY_TIMEOUTS, 2 s) is cut to the page's time as well."""
    container = _Recording()
    reader = CosmosEventRepository(SETTINGS)
    reader._reads = _Built(container)  # type: ignore[assignment]
    reader.find_events(EventQuery(), 10, deadline=time.monotonic() + 0.5)
    [options] = container.options
    for name in ("timeout", "connection_timeout", "read_timeout"):
        assert 0 < options[name] <= 0.5, (name, options)


def test_a_write_may_wait_to_connect_only_its_own_time() -> None:
    container = _Recording()
    writer = CosmosEventRepository(SETTINGS)
    writer._writes = _Built(container)  # type: ignore[assignment]
    writer.add({"id": "e1", "repository": "r", "action": "push"})
    [options] = container.options
    assert options["connection_timeout"] == CLIENT_TIMEOUTS["connection_timeout"]
    assert options["read_timeout"] <= CLIENT_TIMEOUTS["read_timeout"]


def test_a_page_whose_reads_fit_the_budget_is_answered_in_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control for the test above: the same page against a database twice as fast."""
    clock = FakeTime()
    container = _SlowContainer(clock, _pushes(450), 1.9)
    reader = CosmosEventRepository(SETTINGS)
    reader._reads = _Built(container)  # type: ignore[assignment]
    monkeypatch.setattr(repository_module, "time", clock)
    monkeypatch.setattr(queries_module, "time", clock)

    result = handle_events_query({"view": "pushes", "limit": "1000"}, reader)

    assert result.status == 200
    assert result.body is not None
    assert len(result.body["pushes"]) == 450
    assert clock.now <= QUERY_BUDGET_S


# --- repository._failure: which answers are remembered as an outage -------------------------


class _Answering:
    """A container whose every create_item is answered with ``status`` by Cosmos DB."""

    def __init__(self, status: int) -> None:
        self.status = status

    def create_item(self, body: dict[str, Any], **_: Any) -> None:
        raise CosmosHttpResponseError(status_code=self.status, message="answered")  # type: ignore[no-untyped-call]


def test_a_retry_with_answer_is_not_remembered_as_an_outage() -> None:
    """README.md: "A failure to reach the database is remembered for 5 s by every writer in
    the instance"; repository.DatabaseHealth remembers "that the database could not be
    reached"; 429 (throttled) is exempt, "throttled means reachable" (test_database_health
    pins that). 449 (Retry With) is Cosmos DB's answer to a transient conflict of concurrent
    writes, "safe to retry", which azure-cosmos 4.17 does not retry itself (_retry_utility has
    no case for it): the database answered. (repository._failure used to remember it, and the
    webhook, Event Grid and replay writes of the next 5 s all skipped a reachable database.)"""
    health = DatabaseHealth()
    repository = CosmosEventRepository(SETTINGS, health=health)
    repository._writes = _Built(_Answering(449))  # type: ignore[assignment]
    with pytest.raises(RepositoryUnavailableError):
        repository.add({"id": "e1", "repository": "r", "action": "push"})
    health.check()  # the next write tries the database again


# --- the time bound of a webhook answer: the managed identity's token ----------------------


@pytest.fixture
def hung_identity_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The App Service managed-identity endpoint (IDENTITY_ENDPOINT, as Azure Functions sets
    it) taking connections and never answering; closed afterwards, which ends the calls it
    held."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    for name in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "MSI_ENDPOINT",
        "IMDS_ENDPOINT",
        "IDENTITY_SERVER_THUMBPRINT",
    ):  # only the App Service source of ManagedIdentityCredential is left
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}/token")
    monkeypatch.setenv("IDENTITY_HEADER", "header")
    yield
    listener.close()


@pytest.mark.usefixtures("hung_identity_endpoint")
def test_a_webhook_answer_keeps_its_time_bound_when_the_identity_endpoint_hangs() -> None:
    """README.md: "Every webhook answer comes within 4.5 s, cold start or outage included".
    The deployed app has no COSMOS_KEY and an identity-based AzureWebJobsStorage: both the
    Cosmos client and the fallback queue get a token from DefaultAzureCredential before their
    first call (and again each time it nears expiry). CLIENT_TIMEOUTS and QUEUE_TIMEOUTS bound
    the calls to the database and the queue, not the token request, which goes through the
    credential's own pipeline: identity.IDENTITY_TIMEOUTS bounds it. (With azure-core's
    defaults, 300 s to connect and to read, with retries, neither repository.add nor
    StorageQueueFallback.put had returned after 20 s.)"""
    import azure.identity  # noqa: F401  (the import is not what is timed)

    closed_port = "https://127.0.0.1:9/"
    settings = Settings(closed_port, None, "acr", "events", None)
    fallback = StorageQueueFallback(
        QueueSettings("acr-events-fallback", queue_service_uri=closed_port)
    )
    answers: list[Result] = []
    body = json.dumps(payloads.PUSH).encode()
    call = threading.Thread(
        target=lambda: answers.append(
            handle_webhook(body, CosmosEventRepository(settings), fallback=fallback)
        ),
        daemon=True,
    )
    started = time.monotonic()
    call.start()
    call.join(ANSWER_BUDGET_S + 0.5)
    assert answers, f"no answer after {time.monotonic() - started:.1f} s"
    assert answers[0].status in (202, 503)


# --- queries: filters on what replay still stores ------------------------------------------


def test_an_event_replay_stores_can_be_asked_for_by_its_repository() -> None:
    """models.MAX_PARKED_REPOSITORY_LENGTH: "The first versions took repository names up to
    1,024 characters ... and may have parked such events: replay must still store them", and
    it does. docs/operations.md "Upgrading": stored documents are "read, filtered, paged and
    shown (endpoint and events) as they were stored". (queries.py used to bound the repository
    filter at MAX_REPOSITORY_LENGTH, 255: the event replay had just stored under a
    300-character name was a 400 "repository: must be at most 255 characters".)"""
    name = "team/" + "a" * 295
    assert 255 < len(name) <= MAX_PARKED_REPOSITORY_LENGTH
    document = {
        "id": "parked-by-an-earlier-version",
        "repository": name,
        "action": "push",
        "timestamp": "2026-11-23T10:00:00.000000Z",
    }
    store = FakeEventRepository()
    message = ParkedEvent(document).to_message()
    assert replay_queued_event(message, store, FakeFallbackQueue(), 60) == "recorded"

    result = handle_events_query({"repository": name}, store)

    assert (result.status, result.body) == (200, {"events": [document], "continuation": None})


class _Answering404:
    """A container whose query is answered 404 with ``sub_status``."""

    def __init__(self, sub_status: int | None) -> None:
        self.sub_status = sub_status

    def query_items(self, **options: Any) -> Iterator[dict[str, Any]]:
        raise CosmosResourceNotFoundError(status_code=404, message="", sub_status=self.sub_status)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(("sub_status", "missing"), [(None, True), (1003, True), (1002, False)])
def test_only_a_404_for_a_missing_container_is_told_as_one(
    sub_status: int | None, missing: bool
) -> None:
    """The CLI exits 2 "does not exist" for StoreNotFoundError (docs/queries.md); a 404 with
    sub-status 1002 is a session not yet readable in a region, an outage (exit 1)."""
    reader = CosmosEventRepository(SETTINGS)
    reader._reads = _Built(_Answering404(sub_status))  # type: ignore[assignment]
    with pytest.raises(RepositoryUnavailableError) as raised:
        reader.find_events(parse_event_query({}), 10)
    assert isinstance(raised.value, StoreNotFoundError) is missing
