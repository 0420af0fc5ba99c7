"""Mutation audit of session 27's product changes: what the earlier tests left unpinned.

Each test below kills a hand-made mutant that the tests written with the change let through
(the mutant is named in the test's docstring). Every one asserts what a doc or the code's own
comment says, not the mutant.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.acr_history import _origin
from acr_webhook.config import Settings
from acr_webhook.eventgrid import MAX_BATCH_EVENTS, THROTTLED_PAUSE_S, handle_eventgrid
from acr_webhook.models import EventQuery, ParkedEvent
from acr_webhook.replay import replay_delay_s, replay_queued_event
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.store import RepositoryUnavailableError, StoreThrottledError
from tests.support import payloads
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository, FakeTime, client_build_under_way

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SETTINGS = Settings("https://127.0.0.1:1/", "key", "acr", "events", None)
TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.ContainerRegistry/registries/myregistry"
)


def event_grid(data: dict[str, Any]) -> dict[str, Any]:
    """An ACR push in the Event Grid schema, as a system topic delivers it."""
    return {
        "id": f"envelope-{data['id']}",
        "topic": TOPIC,
        "subject": f"{data['target']['repository']}:{data['target'].get('tag', '')}",
        "eventType": "Microsoft.ContainerRegistry.ImagePushed",
        "eventTime": "2026-11-23T11:59:59.1234567Z",
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


# --- replay.py: the try number counts the runtime's deliveries ----------------------------------


@pytest.mark.parametrize("dequeue_count", [None, 0, -1])
def test_a_delivery_without_a_usable_dequeue_count_is_the_first(dequeue_count: int | None) -> None:
    """replay_queued_event: ``dequeue_count`` is how many times the runtime delivered the copy,
    "1 the first time"; the code takes anything less as 1 (``max(dequeue_count or 1, 1)``), so a
    try is never counted as none or as a step back. Mutants: ``max(..., 0)`` and no ``max``."""
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    repository.unavailable = True
    document = {
        "id": "e1",
        "repository": "r",
        "action": "push",
        "timestamp": "2026-11-23T10:00:00.000000Z",
    }
    message = ParkedEvent(document, attempts=2).to_message()
    assert replay_queued_event(message, repository, queue, 60, dequeue_count) == "requeued"
    assert queue.puts == [(3, replay_delay_s(3, 60))]


# --- __main__.py: the command line as typed -----------------------------------------------------


def test_the_cli_reads_its_own_command_line_as_typed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m acr_webhook`` calls ``main()`` with no argv: it reads ``sys.argv[1:]``, each
    argument as typed (``_as_typed``: in the C locale a non-ASCII name arrives as lone
    surrogates). Mutant: ``sys.argv`` whole, the program name taken for the command."""
    name = "team/w\u00f6rld"
    fake = FakeEventRepository()
    fake.documents["e1"] = {
        "id": "e1",
        "repository": name,
        "action": "push",
        "timestamp": "2026-11-23T10:00:00.000000Z",
    }
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _settings: fake)
    as_the_c_locale_reads_it = name.encode().decode("ascii", "surrogateescape")
    argv = ["python -m acr_webhook", "events", "--repository", as_the_c_locale_reads_it, "--json"]
    monkeypatch.setattr(sys, "argv", argv)
    assert cli.main() == 0
    [listed] = json.loads(capsys.readouterr().out)["events"]
    assert listed["id"] == "e1"


# --- acr_history.py: the origin a next-page link goes to ----------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_port_a_scheme_implies_is_the_same_origin(scheme: str) -> None:
    """acr_history._origin: "Scheme, host and port that a request to ``url`` goes to, the port
    filled in where the scheme implies it" (http 80, https 443). Mutant: http's 80 dropped, so a
    next-page link naming the port an http endpoint (a local stand-in) implies is refused."""
    default = {"http": 80, "https": 443}[scheme]
    implied = _origin(f"{scheme}://management.example/subscriptions/s")
    assert implied == _origin(f"{scheme}://management.example:{default}/subscriptions/s?page=2")
    assert implied[2] == default


# --- eventgrid.py: the batch bound and the throttled retries ------------------------------------


def test_one_event_more_than_event_grids_largest_batch_is_413() -> None:
    """docs/delivery.md: "an array of more than 5,000 events (more than Event Grid ever batches)
    | 413 JSON, refused before any event in it is checked". Checked here at 5,001, the first
    length refused (test_security has 5,000 accepted and a 1 MiB array refused). Mutant: the
    bound one higher."""
    # Not events: checked one by one, they would be a 400.
    batch: list[dict[str, Any]] = [{}] * (MAX_BATCH_EVENTS + 1)
    repository = FakeEventRepository()
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = handle_eventgrid(json.dumps(batch).encode(), {}, repository, executor=pool)
    assert result.status == 413
    assert result.body is not None
    assert "this one has 5001" in result.body["error"]
    assert repository.add_calls == 0


def test_no_throttled_write_is_tried_again_after_the_batch_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """eventgrid._add_while_throttled: a throttled write is "tried again while the database
    throttles it, the batch has time left and is not abandoned"; _BatchProgress: "Once the batch
    is abandoned (answered 503) no write starts". So no try may start after the budget, where
    the batch is answered 503: the pause is only taken when the try after it still fits. Mutant:
    the deadline checked without the pause (one more write after the 503)."""
    clock = FakeTime()
    monkeypatch.setattr("acr_webhook.eventgrid.time", clock)
    tries: list[float] = []

    class Throttled(FakeEventRepository):
        def add(self, document: dict[str, Any]) -> bool:
            tries.append(clock.now)
            raise StoreThrottledError("429 Too Many Requests", cause="throttled")

    budget_s = 2.5 * THROTTLED_PAUSE_S + 0.01  # the fourth try would start after it
    body = payloads.body([event_grid(payloads.PUSH)])
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = handle_eventgrid(body, {}, Throttled(), executor=pool, budget_s=budget_s)
    assert result.status == 503
    assert tries == [0.0, THROTTLED_PAUSE_S, 2 * THROTTLED_PAUSE_S]
    assert max(tries) < budget_s


def test_a_batch_answered_503_for_an_outage_stops_its_throttled_writes() -> None:
    """The same promise when the batch is abandoned before its budget ends: one write finds the
    database down (the batch is answered 503 at once), another is throttled; it is not tried
    again, though the batch has time left. Mutants: the ``progress.abandoned`` check dropped,
    ``abandoned`` always False (the throttled write goes on until the budget runs out)."""
    pushed, deleted = payloads.PUSH, payloads.with_new_id(payloads.PUSH)
    throttled_entered, answered = threading.Event(), threading.Event()
    throttled_tries: list[float] = []

    class Repository(FakeEventRepository):
        def add(self, document: dict[str, Any]) -> bool:
            if document["id"] == pushed["id"]:
                assert throttled_entered.wait(5)  # both writes under way
                raise RepositoryUnavailableError("connection refused", cause="connection refused")
            throttled_tries.append(time.monotonic())
            throttled_entered.set()
            assert answered.wait(5)
            raise StoreThrottledError("429 Too Many Requests", cause="throttled")

    body = payloads.body([event_grid(pushed), event_grid(deleted)])
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        result = handle_eventgrid(body, {}, Repository(), executor=pool, budget_s=1.0)
        answered.set()
    assert result.status == 503
    assert len(throttled_tries) == 1
    assert time.monotonic() - started < 1.0


# --- repository.find_events: a page's reads within the page's budget ----------------------------


def test_a_page_read_waiting_for_another_requests_client_build_waits_only_the_pages_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """_LazyContainer.get: "a request that finds a build under way waits for it until its own
    ``deadline``"; find_events passes the page's (docs/queries.md: 8 s for a page, all of its
    reads together). A read late in its page must not wait the build's 5 s + 1 s. Mutant:
    ``self._reads.get()`` without the deadline."""
    reader = CosmosEventRepository(SETTINGS)
    errors: list[Exception] = []

    def build_first() -> None:
        try:
            reader.find_events(EventQuery(), 10)
        except RepositoryUnavailableError as error:
            errors.append(error)

    with client_build_under_way(monkeypatch, build_first):
        started = time.monotonic()
        with pytest.raises(RepositoryUnavailableError, match="database client is not ready"):
            reader.find_events(EventQuery(), 10, deadline=started + 0.2)
        waited = time.monotonic() - started
    assert waited < 1.0
    assert errors  # the build itself failed: nothing else ended the wait
