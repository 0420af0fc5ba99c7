"""What the app costs to run, counted (docs/cost.md): the Cosmos DB requests, Storage queue
transactions, management (ARM) calls and log records each path makes, against the local
Cosmos DB server behind the counting proxy (``FaultyCosmosProxy.seen``), Azurite behind
``HoldingQueueProxy.seen`` and the management stand-in (``ListEventsStandIn.requests``).

Each count is exact where the code fixes it, so that a change that adds a call fails here and
docs/cost.md is looked at again. The local server answers like Cosmos DB's gateway for what is
counted here (one request per point operation, one per single-partition query page); what it
cannot show (request units, a real account's cross-partition fan-out) docs/cost.md takes from
Microsoft's published figures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest

from acr_webhook.acr_history import ManagementApiHistory
from acr_webhook.config import BATCH_WRITE_THREADS, QueueSettings, Settings
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.fallback import StorageQueueFallback
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import AcrEvent, ParkedEvent, to_document
from acr_webhook.queries import handle_events_query
from acr_webhook.reconcile import StoredEvents, reconcile_webhooks
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import EVENTGRID_WRITE_OPTIONS, CosmosEventRepository
from acr_webhook.results import utc_now
from acr_webhook.telemetry import is_routine, quiet_sdk_loggers
from tests.integration.test_reconcile_timer import (
    FakeCredential,
    list_events_path,
    target_from_settings,
)
from tests.support import payloads
from tests.support.arm_stand_in import ListEventsStandIn
from tests.support.azurite import LocalAzurite, new_queue
from tests.support.cosmos_proxy import FaultyCosmosProxy, Refusal
from tests.support.history import history_entry
from tests.support.queue_proxy import HoldingQueueProxy
from tests.unit.test_eventgrid import event_grid


@pytest.fixture(autouse=True)
def _worker_levels(caplog: pytest.LogCaptureFixture) -> None:
    """Logging as deployed: the worker's root logger at INFO, the Azure SDKs' at WARNING
    (function_app's import sets those)."""
    quiet_sdk_loggers()
    caplog.set_level(logging.INFO)


def sdk_background_done() -> None:
    """azure-cosmos checks a new client's endpoints on a thread of its own after its first
    request (a GET / each, "cosmos-endpoint-refresh"): waited for, so that it counts with the
    action that started it and never lands in a later one (seen once in a CI run on a busy
    machine: a page of the read endpoint "made" a GET /)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        thread.name == "cosmos-endpoint-refresh" and thread.is_alive()
        for thread in threading.enumerate()
    ):
        time.sleep(0.01)


def calls(seen: list[str], action: Callable[[], object]) -> list[str]:
    """The requests ``action`` made, of those a proxy lists in ``seen``, in order."""
    sdk_background_done()
    before = len(seen)
    action()
    sdk_background_done()
    return seen[before:]


def kinds(requests: list[str], container: str) -> Counter[str]:
    """Requests by kind: create, read, replace, query (all on documents), or as sent."""
    docs = f"/dbs/acr/colls/{container}/docs"
    named: Counter[str] = Counter()
    for request in requests:
        method, path = request.split(" ", 1)
        if path.rstrip("/") == docs:
            named["create" if method == "POST" else request] += 1
        elif path.startswith(docs + "/"):
            named[{"GET": "read", "PUT": "replace"}.get(method, request)] += 1
        else:
            named[request] += 1
    return named


def log_cost(caplog: pytest.LogCaptureFixture, action: Callable[[], object]) -> tuple[int, int]:
    """Log records ``action`` made at INFO and above, every logger, and their messages' bytes."""
    caplog.clear()
    action()
    records = caplog.records
    return len(records), sum(len(record.getMessage().encode()) for record in records)


def push(**target: Any) -> dict[str, Any]:
    return payloads.with_new_id(payloads.PUSH, **target)


@pytest.fixture
def repository(through_proxy: Settings) -> Iterator[CosmosEventRepository]:
    """The webhook's repository on the proxied container, its client built (first use)."""
    built = CosmosEventRepository(through_proxy)
    assert handle_webhook(payloads.body(push()), built).status == 201
    yield built


def docs(settings: Settings) -> str:
    return f"/dbs/acr/colls/{settings.cosmos_container}/docs/"


def test_a_new_or_repeated_webhook_event_is_one_request_after_the_first_builds_the_client(
    through_proxy: Settings, proxy: FaultyCosmosProxy, caplog: pytest.LogCaptureFixture
) -> None:
    repository = CosmosEventRepository(through_proxy)
    collection = docs(through_proxy).removesuffix("docs/")
    # A new instance's first write: the account (and the SDK's start-up health check of it on
    # a thread of its own), the container's properties, the write.
    first = calls(proxy.seen, lambda: handle_webhook(payloads.body(push()), repository))
    assert sorted(first) == sorted(
        ["GET /", "GET /", f"GET {collection}", f"POST {docs(through_proxy)}"]
    )

    new = payloads.body(push())
    assert calls(proxy.seen, lambda: handle_webhook(new, repository)) == [
        f"POST {docs(through_proxy)}"
    ]
    # A duplicate is the same create, answered 409: a webhook copy fills in nothing
    # (test_fill_in_sources: not even when it carries who pushed).
    assert calls(proxy.seen, lambda: handle_webhook(new, repository)) == [
        f"POST {docs(through_proxy)}"
    ]

    # One log record each, ~100 bytes, a routine one (sampled at 5 a second in telemetry).
    for body in (payloads.body(push()), new):
        records, size = log_cost(caplog, partial(handle_webhook, body, repository))
        assert records == 1
        assert 80 <= size <= 160, size
        assert is_routine(caplog.records[0])


def deliver(events: list[dict[str, Any]], settings: Settings) -> Any:
    """An Event Grid delivery as function_app makes it (its own client, the batch pool)."""
    repository = CosmosEventRepository(settings, write_options=EVENTGRID_WRITE_OPTIONS)
    with ThreadPoolExecutor(max_workers=BATCH_WRITE_THREADS) as executor:
        return handle_eventgrid(payloads.body(events), {}, repository, executor=executor)


N = 5


def test_an_event_grid_batch_is_a_create_per_event_and_a_redelivery_a_read_more(
    through_proxy: Settings,
    proxy: FaultyCosmosProxy,
    repository: CosmosEventRepository,
    caplog: pytest.LogCaptureFixture,
) -> None:
    container = through_proxy.cosmos_container
    # Each delivery here builds its client (2 account reads, 1 container read), as the first
    # batch of a new instance does; a warm instance makes only the writes.
    client = {"GET /": 2, f"GET /dbs/acr/colls/{container}/": 1}
    batch = [event_grid(push()) for _ in range(N)]
    assert kinds(calls(proxy.seen, lambda: deliver(batch, through_proxy)), container) == {
        "create": N,
        **client,
    }
    # Event Grid's redelivery of a stored batch: each create answered 409, and each event
    # carries a field a webhook delivery lacks (registryResourceId, from the topic), so the
    # stored document is read to see whether it lacks it.
    assert kinds(calls(proxy.seen, lambda: deliver(batch, through_proxy)), container) == {
        "create": N,
        "read": N,
        **client,
    }
    # deliveryMode=both: the webhook stores each event first, Event Grid fills it in.
    by_webhook = [push() for _ in range(N)]
    for event in by_webhook:
        handle_webhook(payloads.body(event), repository)
    both = [event_grid(event) for event in by_webhook]
    assert kinds(calls(proxy.seen, lambda: deliver(both, through_proxy)), container) == {
        "create": N,
        "read": N,
        "replace": N,
        **client,
    }

    # A record per event (routine) and one summary per batch (always exported).
    more = [event_grid(push()) for _ in range(N)]
    records, size = log_cost(caplog, lambda: deliver(more, through_proxy))
    assert records == N + 1
    assert sum(is_routine(record) for record in caplog.records) == N
    assert 100 * N <= size <= 160 * N + 200, size


def test_a_parked_event_is_one_queue_message_and_its_replay_one_create(
    through_proxy: Settings,
    proxy: FaultyCosmosProxy,
    repository: CosmosEventRepository,
    azurite: LocalAzurite,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue_proxy = HoldingQueueProxy(azurite)
    queue_proxy.start()
    try:
        queue = new_queue(azurite)
        messages = f"POST /devstoreaccount1/{queue.queue_name}/messages"
        fallback = StorageQueueFallback(
            QueueSettings(queue.queue_name, connection_string=queue_proxy.connection_string)
        )
        write = f"POST {docs(through_proxy)}"
        # Two replaying instances, their clients built before the outage.
        replayers = [CosmosEventRepository(through_proxy) for _ in range(2)]
        for replayer in replayers:
            assert replayer.add(as_document(push()))
        proxy.refusal = Refusal(503, 0, "ServiceUnavailable", "down", paths=".*/docs/?$")
        parked = push()

        def park(payload: dict[str, Any]) -> list[str]:
            answer: list[int] = []
            queued = calls(
                queue_proxy.seen,
                lambda: answer.append(
                    handle_webhook(payloads.body(payload), repository, fallback=fallback).status
                ),
            )
            assert answer == [202]
            return queued

        # The first event of an outage: the create and the SDK's own retry of the 503, then
        # one queue message (put). One warning record. The replayers' new clients check their
        # endpoints on a thread (a GET / each): done first, or it lands among the event's calls
        # (seen once in a full run on a loaded machine).
        sdk_background_done()
        before = len(proxy.seen)
        assert park(parked) == [messages]
        assert proxy.seen[before:] == [write, write]
        # Within the 5 s the outage is remembered: no Cosmos DB request at all.
        before = len(proxy.seen)
        records, size = log_cost(caplog, lambda: park(push()))
        assert proxy.seen[before:] == []
        assert records == 1
        assert caplog.records[0].levelno == logging.WARNING and not is_routine(caplog.records[0])
        assert 200 <= size <= 400, size

        # The replay of a parked event while the database is still down (another instance:
        # nothing remembered): the create and its retry, and the event put back, delayed.
        outcome: list[str] = []
        message = ParkedEvent(as_document(parked), 0).to_message()
        replayer = replayers[0]
        before = len(proxy.seen)
        caplog.clear()
        queued = calls(
            queue_proxy.seen,
            lambda: outcome.append(replay_queued_event(message, replayer, fallback, 60, 1)),
        )
        assert (outcome, proxy.seen[before:], queued) == (["requeued"], [write, write], [messages])
        # One record: a warning that it was put back.
        assert [record.levelno for record in caplog.records] == [logging.WARNING]

        # Once it is back: one create; the runtime deletes the message (not the app).
        proxy.refusal = None
        replayer = replayers[1]
        before = len(proxy.seen)
        outcome.clear()
        caplog.clear()
        queued = calls(
            queue_proxy.seen,
            lambda: outcome.append(replay_queued_event(message, replayer, fallback, 60, 2)),
        )
        assert (outcome, proxy.seen[before:], queued) == (["recorded"], [write], [])
        # One record, replayed (always exported, not sampled).
        assert [record.levelno for record in caplog.records] == [logging.INFO]
        assert not is_routine(caplog.records[0])
    finally:
        queue_proxy.stop()


def as_document(payload: dict[str, Any]) -> dict[str, Any]:
    return to_document(AcrEvent.model_validate(payload), utc_now())


def test_a_page_of_the_read_endpoint_is_one_query(
    through_proxy: Settings,
    proxy: FaultyCosmosProxy,
    repository: CosmosEventRepository,
    caplog: pytest.LogCaptureFixture,
) -> None:
    query = f"QUERY {docs(through_proxy)}"
    for minute in range(12):
        event = push(repository="team/api", tag=f"v{minute}")
        event["timestamp"] = f"2026-11-23T16:{minute:02d}:00Z"
        assert handle_webhook(payloads.body(event), repository).status == 201
    reader = CosmosEventRepository(through_proxy)
    assert handle_events_query({"limit": "1"}, reader).status == 200  # its client built

    def page(params: dict[str, str]) -> tuple[list[str], Any]:
        answers: list[Any] = []
        caplog.clear()
        seen = calls(proxy.seen, lambda: answers.append(handle_events_query(params, reader)))
        assert answers[0].status == 200
        assert len(caplog.records) == 1  # one log record a page, always exported
        assert not is_routine(caplog.records[0])
        return seen, answers[0].body

    # One query per page (limit + 1 events read, to know whether more follow), in one
    # partition with repository=, across all of them without; a continuation the same.
    seen, body = page({"repository": "team/api", "limit": "5"})
    assert (seen, len(body["events"])) == ([query], 5)
    seen, body = page(
        {"repository": "team/api", "limit": "5", "continuation": body["continuation"]}
    )
    assert (seen, len(body["events"])) == ([query], 5)
    seen, body = page({"limit": "5"})
    assert (seen, len(body["events"])) == ([query], 5)
    # view=pushes reads 200 events a batch: one query for a page of up to 200.
    seen, body = page({"repository": "team/api", "limit": "50", "view": "pushes"})
    assert (seen, len(body["pushes"])) == ([query], 12)


K, D = 5, 2  # history entries, of which already stored by the webhook


def reconcile_setup(
    stand_in: ListEventsStandIn, repository: CosmosEventRepository, actor: bool
) -> tuple[Callable[[], object], FakeCredential]:
    """A history of K entries (D of them stored already) on the first webhook, none on the
    second; the timer's run as function_app makes it (one history reader for the process)."""
    events = [push() for _ in range(K)]
    for event in events[:D]:
        assert handle_webhook(payloads.body(event), repository).status == 201
    if actor:
        events = [{**event, "actor": {"name": "ci-bot"}} for event in events]
    stand_in.histories = {
        list_events_path("acrwebhook"): [history_entry(event) for event in events],
        list_events_path("acrwebhookeu"): [],
    }
    credential = FakeCredential()
    target = target_from_settings(stand_in)
    history = ManagementApiHistory(target, credential)
    stored = StoredEvents()
    return lambda: reconcile_webhooks(target, repository, history, stored=stored), credential


@pytest.mark.parametrize("actor", [False, True], ids=["history without actor", "with actor"])
def test_a_reconcile_run_is_a_create_per_entry_and_an_arm_call_per_page(
    through_proxy: Settings,
    proxy: FaultyCosmosProxy,
    repository: CosmosEventRepository,
    stand_in: ListEventsStandIn,
    caplog: pytest.LogCaptureFixture,
    actor: bool,
) -> None:
    container = through_proxy.cosmos_container
    run, credential = reconcile_setup(stand_in, repository, actor)

    arm_before = len(stand_in.requests)
    caplog.clear()
    seen = kinds(calls(proxy.seen, run), container)
    # Each entry one create (D answered 409); with an actor, each stored one is read and
    # filled in (the webhook carries none).
    assert seen == ({"create": K, "read": D, "replace": D} if actor else {"create": K})
    # ARM: per webhook a POST listEvents and a GET per further page (2 entries a page here):
    # 3 for the first webhook's 5 entries, 1 for the empty second. One token for the process.
    assert [r.method for r in stand_in.requests[arm_before:]] == ["POST", "GET", "GET", "POST"]
    assert len(credential.scopes) == 1
    # Logs: a record per event stored (reconciled) or filled in, a summary per webhook.
    assert len(caplog.records) == (K - D) + (D if actor else 0) + 2
    assert not any(is_routine(record) for record in caplog.records)

    arm_before = len(stand_in.requests)
    caplog.clear()
    again = kinds(calls(proxy.seen, run), container)
    # The next run (every 5 minutes) reads the same history and skips every entry the first
    # found stored: no create answered 409, no read.
    assert again == {}
    assert len(stand_in.requests) - arm_before == 4
    assert len(credential.scopes) == 1  # the token is kept
    assert len(caplog.records) == 2


def test_a_reconcile_run_over_an_unchanged_history_costs_no_cosmos_request(
    through_proxy: Settings,
    proxy: FaultyCosmosProxy,
    repository: CosmosEventRepository,
    stand_in: ListEventsStandIn,
) -> None:
    """Each run wrote every entry again: a history of 1,000 entries with an actor was 2,000
    requests (a create answered 409 and a read each), 288 runs a day per webhook."""
    container = through_proxy.cosmos_container
    run, _ = reconcile_setup(stand_in, repository, actor=True)
    run()
    assert calls(proxy.seen, run) == []
    # A new process (a new instance, or the CLI) remembers nothing: it pays once, then no more.
    target = target_from_settings(stand_in)
    history = ManagementApiHistory(target, FakeCredential())
    stored = StoredEvents()

    def new_process_run() -> object:
        return reconcile_webhooks(target, repository, history, stored=stored)

    assert kinds(calls(proxy.seen, new_process_run), container) == {"create": K, "read": K}
    assert calls(proxy.seen, new_process_run) == []
