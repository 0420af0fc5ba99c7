"""Behaviour at volume against the local servers (Cosmos DB API, Azurite, the ARM stand-in):
the calls each event, page, parked message, history entry or poison message costs stay the same
at sizes 10x apart, and the read API keeps its documented budget for a whole page.

Bigger sizes were measured by hand with the same set-ups (2 cores, shared; figures in the audit
report): an Event Grid batch of 5,000 events (1 MiB) 10.7 s; 4,000 duplicates of stored events
carrying Event Grid's fields (3 calls each) 503 after the 20 s budget with 3,082 filled in;
paging 10,000 events at limit 1,000 one read per page; a backlog of 3,000 parked events drained
by the local host in 32 s; reconcile of 5,000 history entries in 21 s (25 s when all stored);
redrive of 1,000 poison messages in 12 s.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos import ContainerProxy
from azure.storage.queue import QueueClient

from acr_webhook import queries as queries_module
from acr_webhook import repository as repository_module
from acr_webhook.acr_history import ManagementApiHistory
from acr_webhook.config import BATCH_WRITE_THREADS, QUERY_BUDGET_S, Settings
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.fallback import StorageQueueFallback, create_queue_client
from acr_webhook.local.queues import QueueFunction, QueueOptions, QueuePoller
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.queries import MAX_CONTINUATION_CHARS, handle_events_query
from acr_webhook.reconcile import reconcile_webhooks
from acr_webhook.redrive import redrive
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import (
    EVENTGRID_WRITE_OPTIONS,
    CosmosEventRepository,
)
from acr_webhook.results import utc_now
from tests.conftest import container_for, fresh_settings
from tests.integration.test_reconcile_timer import (
    FakeCredential,
    list_events_path,
    target_from_settings,
)
from tests.support import payloads
from tests.support.arm_stand_in import ListEventsStandIn
from tests.support.azurite import LocalAzurite, new_queue
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.history import history_entry
from tests.support.logs import CountingHandler, on_app_logger

HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"
IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"
SEEDED = 1000


def document(number: int, **options: Any) -> dict[str, Any]:
    return to_document(AcrEvent.model_validate(payloads.numbered(number, **options)), utc_now())


@pytest.fixture
def sdk_calls(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Every call the app makes through the SDKs' container and queue clients, by name."""
    calls: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def counted(cls: type, name: str) -> None:
        original = getattr(cls, name)

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                calls[name] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, call)

    for name in ("create_item", "read_item", "replace_item", "query_items"):
        counted(ContainerProxy, name)
    for name in ("receive_messages", "send_message", "delete_message", "update_message"):
        counted(QueueClient, name)
    return calls


def per_item(calls: collections.Counter[str], count: int) -> dict[str, float]:
    return {name: round(made / count, 2) for name, made in calls.items() if made}


# --- Event Grid: duplicates of stored events that carry Event Grid's fields ------------------


def test_duplicates_with_event_grid_fields_cost_three_calls_each_at_any_size(
    cosmos_server: LocalCosmosServer, sdk_calls: collections.Counter[str]
) -> None:
    """Each needs a read and a replace after its create's 409, whatever the batch's size: 3
    calls per event at 20 and at 200 (measured: 4,000 of them overrun the 20 s budget)."""
    pool = ThreadPoolExecutor(max_workers=BATCH_WRITE_THREADS)
    costs = {}
    for size in (20, 200):
        settings = fresh_settings(cosmos_server)
        stored = CosmosEventRepository(settings)
        for number in range(size):
            assert stored.add(document(number))
        body = json.dumps(
            [
                {
                    "id": f"g{n}",
                    "eventType": IMAGE_PUSHED,
                    "data": payloads.numbered(n, enriched=True),
                }
                for n in range(size)
            ]
        ).encode()
        sdk_calls.clear()
        writer = CosmosEventRepository(settings, write_options=EVENTGRID_WRITE_OPTIONS)
        result = handle_eventgrid(body, {}, writer, executor=pool)
        assert result.status == 200
        assert result.body == {"recorded": 0, "duplicate": size, "ignored": 0}
        costs[size] = per_item(sdk_calls, size)
    pool.shutdown()
    assert costs[20] == costs[200] == {"create_item": 1, "read_item": 1, "replace_item": 1}


# --- the read API against the server --------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_settings(cosmos_server: LocalCosmosServer) -> Settings:
    """SEEDED events, each its own push, at distinct timestamps, over 10 repositories."""
    settings = fresh_settings(cosmos_server)
    container = container_for(settings)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda n: container.create_item(document(n, repository=f"repo{n % 10}")),
                range(SEEDED),
            )
        )
    return settings


class CountingReader(CosmosEventRepository):
    reads = 0
    documents = 0

    def find_events(
        self, query: Any, max_items: int, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        self.reads += 1
        found = super().find_events(query, max_items, deadline)
        self.documents += len(found)
        return found


def test_every_page_of_a_long_listing_costs_one_query(
    seeded_settings: Settings, sdk_calls: collections.Counter[str]
) -> None:
    reader = CountingReader(seeded_settings)
    token: str | None = None
    costs = []
    token_sizes = set()
    while True:
        reader.reads = reader.documents = 0
        sdk_calls.clear()
        params = {"limit": "100", **({"continuation": token} if token else {})}
        result = handle_events_query(params, reader)
        assert result.status == 200
        assert result.body is not None
        costs.append((len(result.body["events"]), reader.reads, sdk_calls["query_items"]))
        token = result.body["continuation"]
        if token is None:
            break
        token_sizes.add(len(token))
    # A token holds a position, not the pages passed: the same size on page 9 as on page 1.
    assert len(token_sizes) == 1
    assert token_sizes.pop() <= MAX_CONTINUATION_CHARS
    # Page 10 reads what page 1 did: keyset paging, never a scan from the start.
    assert costs == [(100, 1, 1)] * (SEEDED // 100)


class SlowClock:
    """``time`` for the repository and queries modules (the page's deadline is read in one, the
    reads in the other): each reading of the clock is STEP_S later, so a query's time grows
    with the documents it reads (one reading per document), as with a database that answers at
    1 / STEP_S documents a second; deterministic."""

    STEP_S = 0.01

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += self.STEP_S
        return self.now


def slow_page(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, params: dict[str, str]
) -> tuple[int, float]:
    clock = SlowClock()
    reader = CosmosEventRepository(settings)
    monkeypatch.setattr(repository_module, "time", clock)
    monkeypatch.setattr(queries_module, "time", clock)
    try:
        result = handle_events_query(params, reader)
    finally:
        monkeypatch.undo()
    return result.status, clock.now


def test_an_events_page_of_1000_at_100_documents_a_second_runs_out_of_budget(
    monkeypatch: pytest.MonkeyPatch, seeded_settings: Settings
) -> None:
    """The clock above works: 1,001 documents at 100/s is past QUERY_BUDGET_S, and the events
    view answers 503 when it is spent."""
    status, spent = slow_page(monkeypatch, seeded_settings, {"limit": "1000"})
    assert status == 503
    assert spent <= QUERY_BUDGET_S + 1


def test_a_page_of_1000_pushes_keeps_the_whole_query_budget(
    monkeypatch: pytest.MonkeyPatch, seeded_settings: Settings
) -> None:
    """docs/queries.md: "a whole query at 8 s (QUERY_BUDGET_S)". At the pushes view's maximum
    (limit 1000, MAX_PUSH_SCAN events) against the same slow database, the page must answer
    within the budget or 503. It read 1,200 documents in 6 queries of 200, each under the
    budget on its own: 200 after ~12 s. The page's reads now share one deadline."""
    status, spent = slow_page(monkeypatch, seeded_settings, {"limit": "1000", "view": "pushes"})
    assert status == 503 or spent <= QUERY_BUDGET_S


# --- replay of a backlog of parked events (local host's queue poller) -----------------------


def test_a_backlog_of_parked_events_costs_the_same_per_message_at_any_size(
    cosmos_server: LocalCosmosServer, azurite: LocalAzurite, sdk_calls: collections.Counter[str]
) -> None:
    """One write, one record and a delete per parked event, a receive per host.json batchSize
    (16), at 16 and at 160 (measured by hand: 3,000 in 32 s, one at a time)."""
    options = QueueOptions.from_host_json(HOST_JSON)
    costs = {}
    for size in (16, 160):
        queue = new_queue(azurite)
        parked = StorageQueueFallback(queue)
        for number in range(size):
            parked.put(document(number))
        writer = CosmosEventRepository(fresh_settings(cosmos_server))

        def replay(message: Any, writer: Any = writer, parked: Any = parked) -> None:
            replay_queued_event(message.get_body(), writer, parked, 60)

        poller = QueuePoller(QueueFunction("replay", queue.queue_name, "x", replay), queue, options)
        sdk_calls.clear()
        with on_app_logger(CountingHandler(), logging.INFO) as records:
            while poller.poll_once():
                pass
        costs[size] = (per_item(sdk_calls, size), records.records / size)
    assert costs[16][1] == costs[160][1] == 1
    assert costs[16][0]["create_item"] == costs[160][0]["create_item"] == 1
    assert costs[16][0]["delete_message"] == costs[160][0]["delete_message"] == 1
    # One receive per batch of 16, and the empty one that ends the drain.
    assert costs[160][0]["receive_messages"] == round((160 // 16 + 1) / 160, 2)


# --- reconcile of a long history over many ARM pages ----------------------------------------


def test_reconcile_of_a_long_history_costs_the_same_per_entry(
    cosmos_server: LocalCosmosServer,
    stand_in: ListEventsStandIn,
    sdk_calls: collections.Counter[str],
) -> None:
    """A page per 20 entries and one write per entry, at 20 and 200 entries; run again (every
    5 minutes), each entry costs its write again, and those carrying `actor` a read as well.
    Measured by hand: 5,000 entries in 21 s, again in 25 s."""
    stand_in.page_size = 20
    target = dataclasses.replace(target_from_settings(stand_in), webhook_names=("acrwebhook",))
    costs: dict[tuple[int, int], tuple[dict[str, float], float]] = {}
    for size in (20, 200):
        settings = fresh_settings(cosmos_server)
        stand_in.histories = {
            list_events_path("acrwebhook"): [
                history_entry(payloads.numbered(n, enriched=n % 2 == 1)) for n in range(size)
            ]
        }
        for run in (1, 2):
            stand_in.requests.clear()
            sdk_calls.clear()
            history = ManagementApiHistory(target, FakeCredential())
            outcome = reconcile_webhooks(target, CosmosEventRepository(settings), history)
            summary = outcome["acrwebhook"].counts.summary()
            assert (
                summary
                == (f"recorded={size} already=0" if run == 1 else f"recorded=0 already={size}")
                + " skipped=0 invalid=0"
            )
            costs[size, run] = (per_item(sdk_calls, size), len(stand_in.requests) / size)
    for run in (1, 2):
        assert costs[20, run] == costs[200, run]
    assert costs[200, 1] == ({"create_item": 1}, 1 / 20)
    assert costs[200, 2] == ({"create_item": 1, "read_item": 0.5}, 1 / 20)


# --- redrive of many poison messages ---------------------------------------------------------


def test_redrive_costs_a_send_and_a_delete_per_message_at_any_size(
    azurite: LocalAzurite, sdk_calls: collections.Counter[str]
) -> None:
    """Measured by hand: 1,000 in 12 s; 5,000 in 232 s against Azurite (the calls stay 2 per
    message: Azurite's own cost per call grows with the queue's length)."""
    costs = {}
    for size in (10, 100):
        queue = new_queue(azurite)
        poisoned = StorageQueueFallback(queue.poison)
        for number in range(size):
            poisoned.put(document(number))
        create_queue_client(queue.poison, {}, base64_messages=False).send_message("not-an-event")
        sdk_calls.clear()
        report = redrive(queue)
        assert (report.moved, report.not_events, report.left) == (size, 1, 1)
        costs[size] = per_item(sdk_calls, size)
    for name in ("send_message", "delete_message"):
        assert costs[10][name] == costs[100][name] == 1
    # A receive per 32 (redrive.BATCH_SIZE), and the empty one that ends the run.
    assert costs[100]["receive_messages"] == round((100 // 32 + 2) / 100, 2)
