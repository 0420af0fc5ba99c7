"""Property-based fault injection on the write paths (webhook and Event Grid).

Each write's outcome is scripted per document (stored, already stored, refused, unavailable,
unavailable after it landed, slow, or held past the batch budget), the fallback queue is up,
down or absent, and the documented answers, decision records and end states are checked
whatever the outcomes and the interleaving of the batch's concurrent writes:

- the answers of README.md "Answers" and docs/delivery.md "What the Event Grid endpoint
  answers": never a 5xx but 503, a 4xx is ``{"error": ...}`` naming the problem;
- an Event Grid batch is all or nothing (README.md "Event Grid gets an answer it can act on"):
  200 only when every event is stored, 400 for a refused one while the others are still
  written, 503 otherwise;
- one decision record per event copy (docs/operations.md "Telemetry": the decisions metric
  counts every decision; a batch answered 503 gives each event one all the same), and a write
  never starts once the batch is answered 503: a copy is ``unavailable`` with the batch's
  reason exactly when its document was never written;
- a database outage with the queue up is 202 and the parked message holds the document; with
  the queue down or absent, 503 (README.md "A database outage of any length loses nothing");
- a replay that finds the database still down puts the event back with a delay doubling from
  2 s to the cap, or leaves the message to the runtime when the queue is down too (README.md,
  the same section);
- every event is stored once (README.md "Every event is stored once"): delivering again, or
  replaying what was parked, once the outage is over, ends with each event stored exactly once
  and nothing lost.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acr_webhook.eventgrid import BATCH_BUDGET_S, EVENT_TYPE_ACTIONS, handle_eventgrid
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import ENRICHMENT_FIELDS, AcrEvent, ParkedEvent, to_document
from acr_webhook.replay import replay_delay_s, replay_queued_event
from acr_webhook.results import Result
from acr_webhook.store import (
    DocumentRejectedError,
    FallbackUnavailableError,
    RepositoryUnavailableError,
)
from tests.support import payloads
from tests.support.fakes import store_or_fill_in
from tests.support.logs import on_app_logger
from tests.support.properties import DETERMINISTIC

NOW: Final = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EARLIER: Final = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
TOPIC: Final = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.ContainerRegistry/registries/myregistry"
)
# As in test_eventgrid: the batch writes' pool, bounded as runtime.batch_executor() is.
POOL_SIZE: Final = 4
# A held write outlasts this budget: the batch is answered 503 without a long wait.
SHORT_BUDGET_S: Final = 0.05


Key = tuple[str, str]  # a Cosmos DB document: (event id, repository partition)
Outcome = Literal["store", "duplicate", "slow", "refuse", "unavailable", "landed", "held"]
# store: written; duplicate: already stored before the delivery; slow: written after a short
# wait; refuse: DocumentRejectedError; unavailable: RepositoryUnavailableError, nothing written;
# landed: written, then RepositoryUnavailableError (a write that timed out but landed);
# held: written once the test lets it, after the answer (past the batch budget).
OUTCOMES: Final[tuple[Outcome, ...]] = (
    "store",
    "duplicate",
    "slow",
    "refuse",
    "unavailable",
    "landed",
    "held",
)
FAILED: Final = frozenset({"unavailable", "landed", "held"})  # the batch cannot be 200


# --- test doubles -------------------------------------------------------------------------------


class ScriptedRepository:
    """An EventRepository whose every write's outcome comes from ``script`` by document.

    Keyed as Cosmos DB keys documents: by id within the ``/repository`` partition. Counts the
    writes and creations of each document, fills in a duplicate's missing ENRICHMENT_FIELDS as
    the protocol says, and is safe for the batch's concurrent writers."""

    def __init__(self, script: dict[Key, Outcome]) -> None:
        self.script = dict(script)
        self.documents: dict[Key, dict[str, Any]] = {}
        self.writes: Counter[Key] = Counter()
        self.created: Counter[Key] = Counter()
        self.attempted: dict[Key, dict[str, Any]] = {}
        self.release = threading.Event()
        self._lock = threading.Lock()

    def prestore(self, document: dict[str, Any]) -> None:
        self.documents[(document["id"], document["repository"])] = dict(document)

    def heal(self) -> None:
        """The outage is over: every write succeeds but those the database refuses for good."""
        self.script = {
            key: "refuse" if outcome == "refuse" else "store"
            for key, outcome in self.script.items()
        }
        self.release.set()

    def add(self, document: dict[str, Any]) -> bool:
        key = (document["id"], document["repository"])
        with self._lock:
            self.writes[key] += 1
            self.attempted[key] = copy.deepcopy(document)
        outcome = self.script.get(key, "store")
        if outcome == "slow":
            time.sleep(0.002)
        elif outcome == "held":
            assert self.release.wait(timeout=10), "the held write was never released"
        elif outcome == "refuse":
            raise DocumentRejectedError("scripted refusal")
        elif outcome == "unavailable":
            raise RepositoryUnavailableError("scripted outage")
        created = self._store(key, document)
        if outcome == "landed":
            raise RepositoryUnavailableError("scripted timeout after the write landed")
        return created

    def _store(self, key: Key, document: dict[str, Any]) -> bool:
        with self._lock:
            created = store_or_fill_in(self.documents, key, document)
            if created:
                self.created[key] += 1
            return created


QueueState = Literal["up", "down", "absent"]


class ScriptedQueue:
    """A FallbackQueue that is up or down; keeps each parked message as the queue would."""

    def __init__(self, up: bool) -> None:
        self.up = up
        self.messages: list[str] = []
        self.delays: list[int] = []

    def put(self, document: dict[str, Any], *, attempts: int = 0, delay_s: int = 0) -> None:
        if not self.up:
            raise FallbackUnavailableError("scripted queue outage")
        self.messages.append(ParkedEvent(copy.deepcopy(document), attempts).to_message())
        self.delays.append(delay_s)


Decision = dict[str, Any]
DECISION_FIELDS: Final = ("decision", "route", "event_id", "repository", "reason")


class Decisions(logging.Handler):
    """The decision records (those with ``decision`` in extra) of the app's loggers, from any
    thread: their structured fields, ``None`` for one a record lacks."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[Decision] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "decision"):
            self.records.append({name: getattr(record, name, None) for name in DECISION_FIELDS})

    def of(self, route: str) -> list[Decision]:
        return [record for record in self.records if record["route"] == route]


def decisions_logged() -> AbstractContextManager[Decisions]:
    return on_app_logger(Decisions(), logging.INFO)


def check_answer_shape(result: Result) -> None:
    """Never a 5xx but 503; every 4xx and 503 is JSON ``{"error": "..."}``."""
    assert result.status < 500 or result.status == 503, result
    if result.status >= 400:
        assert result.body is not None and set(result.body) == {"error"}, result
        assert isinstance(result.body["error"], str) and result.body["error"], result
    json.dumps(result.body)  # the HTTP body function_app.py writes


# --- Event Grid ---------------------------------------------------------------------------------

EVENT_IDS: Final = [f"0d9c6f6a-0000-4000-8000-00000000000{n}" for n in range(6)]
REPOSITORIES: Final = ("hello-world", "team/api")
ACR_DATA: Final = [payloads.PUSH, payloads.DELETE, payloads.CHART_PUSH, payloads.CHART_DELETE]
TYPES: Final = {action: event_type for event_type, action in EVENT_TYPE_ACTIONS.items()}
UNKNOWN_TYPES: Final = ("Microsoft.ContainerRegistry.ImageQuarantined", "Microsoft.Storage.Blob")


def acr_data(event_id: str, repository: str) -> dict[str, Any]:
    """The same ACR event for every copy of an id (its kind follows from the id), in one
    repository, with who pushed it as Event Grid adds it."""
    data = copy.deepcopy(ACR_DATA[EVENT_IDS.index(event_id) % len(ACR_DATA)])
    data["id"] = event_id
    data["target"]["repository"] = repository
    data["actor"] = {"name": "ci-bot@contoso.com"}
    return data


def envelope(cloud: bool, envelope_id: str, event_type: str, data: dict[str, Any]) -> Any:
    if cloud:
        return {
            "specversion": "1.0",
            "id": envelope_id,
            "source": TOPIC,
            "type": event_type,
            "time": "2026-11-23T11:59:59.1234567Z",
            "data": data,
        }
    return {
        "id": envelope_id,
        "topic": TOPIC,
        "subject": data["target"]["repository"],
        "eventType": event_type,
        "eventTime": "2026-11-23T11:59:59.1234567Z",
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


@dataclass
class Batch:
    body: bytes = field(repr=False)
    copies: Counter[Key] = field(default_factory=Counter)  # ACR event copies per document
    order: list[Key] = field(default_factory=list)  # documents in order of first copy
    ignored: Counter[str] = field(default_factory=Counter)  # unknown types by envelope id

    def document(self, key: Key) -> dict[str, Any]:
        """What the batch's copies of ``key`` store in a new document."""
        event = AcrEvent.model_validate(acr_data(*key))
        return to_document(event, NOW, "eventgrid", TOPIC)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    """1-20 events in one schema: copies of a few event ids, some in two repositories, and
    unknown event types (whose data may carry an ACR event id of the batch)."""
    cloud = draw(st.booleans())
    events: list[Any] = []
    batch = Batch(b"")
    for index in range(draw(st.integers(1, 20))):
        event_id = draw(st.sampled_from(EVENT_IDS))
        repository = draw(st.sampled_from(REPOSITORIES))
        data = acr_data(event_id, repository)
        if draw(st.integers(0, 5)) == 0:
            envelope_id = f"unknown-{draw(st.integers(0, 2))}"
            events.append(envelope(cloud, envelope_id, draw(st.sampled_from(UNKNOWN_TYPES)), data))
            batch.ignored[envelope_id] += 1
            continue
        key = (event_id, repository)
        events.append(envelope(cloud, f"envelope-{index}", TYPES[data["action"]], data))
        if key not in batch.copies:
            batch.order.append(key)
        batch.copies[key] += 1
    lone = cloud and len(events) == 1 and draw(st.booleans())
    batch.body = payloads.body(events[0] if lone else events)
    return batch


def prestored(batch: Batch, key: Key) -> dict[str, Any]:
    """The same event as the webhook stored it earlier: without Event Grid's fields."""
    document = {**batch.document(key), "source": "webhook"}
    document["receivedAt"] = "2026-11-23T11:00:00.000000Z"
    return {**document, **dict.fromkeys(ENRICHMENT_FIELDS)}


def deliver(batch: Batch, repository: ScriptedRepository) -> tuple[Result, list[Decision]]:
    """One delivery on its own pool; returns once every write it started has ended (a held
    write is let go once the answer is out), with the decision records of the delivery."""
    held = any(repository.script.get(key) == "held" for key in batch.copies)
    budget_s = SHORT_BUDGET_S if held else BATCH_BUDGET_S
    with decisions_logged() as logged, ThreadPoolExecutor(max_workers=POOL_SIZE) as pool:
        try:
            result = handle_eventgrid(
                batch.body, {}, repository, lambda: NOW, executor=pool, budget_s=budget_s
            )
        finally:
            repository.release.set()  # the answer is out (or the handler raised)
    check_answer_shape(result)
    return result, logged.of("eventgrid")


def expected_status(batch: Batch, script: dict[Key, Outcome]) -> int:
    outcomes = {script[key] for key in batch.copies}
    if outcomes & FAILED:
        return 503
    return 400 if "refuse" in outcomes else 200


def check_decisions(
    batch: Batch, result: Result, records: list[Decision], repository: ScriptedRepository
) -> None:
    """Exactly one decision per event copy, the one its write's outcome gives, logged by the
    write itself exactly when the document was written, by the 503 otherwise."""
    ignored = Counter(r["event_id"] for r in records if r["decision"] == "ignored")
    assert ignored == batch.ignored
    per_document: dict[Key, list[tuple[str, bool]]] = {}
    for record in records:
        if record["decision"] == "ignored":
            continue
        by_batch = str(record["reason"]).startswith("batch: ")
        key = (record["event_id"], record["repository"])
        per_document.setdefault(key, []).append((record["decision"], by_batch))
    assert set(per_document) == set(batch.copies), "a document's copies have no decision"
    for key, decided in per_document.items():
        copies, outcome = batch.copies[key], repository.script[key]
        # One write per document, however many copies (docs/delivery.md "Batching").
        assert repository.writes[key] <= 1, key
        if repository.writes[key] == 0:
            # Never started: only a 503 leaves a write undone, and it names each copy.
            assert result.status == 503, (key, decided)
            assert decided == [("unavailable", True)] * copies, (key, decided)
            continue
        assert all(not by_batch for _, by_batch in decided), (key, decided)
        names = Counter(decision for decision, _ in decided)
        if outcome in ("store", "slow", "held"):
            assert names == Counter({"recorded": 1, "duplicate": copies - 1}), (key, names)
        elif outcome == "duplicate":
            assert names == Counter({"duplicate": copies}), (key, names)
        elif outcome == "refuse":
            assert names == Counter({"rejected": copies}), (key, names)
        else:
            assert names == Counter({"unavailable": copies}), (key, names)


def check_store(batch: Batch, repository: ScriptedRepository, before: set[Key]) -> None:
    """What is stored is what the batch's writes stored, each document once, nothing else."""
    assert set(repository.documents) <= set(batch.copies), "a document the batch does not hold"
    for key in batch.copies:
        outcome = repository.script[key]
        assert repository.created[key] <= 1, key
        landed = outcome not in ("refuse", "unavailable") and repository.writes[key] == 1
        if outcome == "duplicate" or landed:
            assert key in repository.documents, key
        elif key not in before:
            assert key not in repository.documents, key
        if key not in repository.documents:
            continue
        stored = repository.documents[key]
        if key in before:
            # A duplicate only fills in what the stored document lacks (never overwrites).
            first = prestored(batch, key)
            filled = {name: batch.document(key)[name] for name in ENRICHMENT_FIELDS if landed}
            assert stored == {**first, **filled}, key
        else:
            assert stored == batch.document(key), key


@settings(DETERMINISTIC, max_examples=80)
@given(batches(), st.data())
def test_event_grid_batch_answers_logs_and_stores_as_documented_whatever_fails(
    batch: Batch, data: st.DataObject
) -> None:
    script: dict[Key, Outcome] = {
        key: data.draw(st.sampled_from(OUTCOMES), label=f"outcome {key}") for key in batch.order
    }
    repository = ScriptedRepository(script)
    for key in batch.order:
        if script[key] == "duplicate":
            repository.prestore(prestored(batch, key))
    before = set(repository.documents)

    result, records = deliver(batch, repository)

    status = expected_status(batch, script)
    assert result.status == status, (result, script)
    refused = [key for key in batch.order if script[key] == "refuse"]
    if status == 200:
        recorded = sum(1 for key in batch.copies if script[key] != "duplicate")
        copies = sum(batch.copies.values())
        assert result.body == {
            "recorded": recorded,
            "duplicate": copies - recorded,
            "ignored": sum(batch.ignored.values()),
        }
        # 200 only if every event is stored (or already was).
        assert set(batch.copies) <= set(repository.documents)
    elif status == 400:
        assert result.body is not None
        error = result.body["error"]
        assert "refused" in error and any(repr(key[0]) in error for key in refused), error
        # The batch's other documents are still written (docs/delivery.md answers table).
        assert {k for k in batch.copies if k not in refused} <= set(repository.documents)
    else:
        assert result.body is not None and "unavailable" in result.body["error"]
    check_decisions(batch, result, records, repository)
    check_store(batch, repository, before)

    # Event Grid redelivers anything but a 400 (and so may a dead-letter re-send): once the
    # outage is over the same batch ends with every document stored once, nothing lost.
    repository.heal()
    first_writes = Counter(repository.writes)
    again, records = deliver(batch, repository)
    assert again.status == (400 if refused else 200), again
    for key in batch.copies:
        assert repository.writes[key] - first_writes[key] == 1, key
        if key in refused:
            assert key not in repository.documents
        else:
            assert repository.created[key] == (0 if key in before else 1), key
    assert len(repository.documents) == len(set(batch.copies) - set(refused))
    decided = Counter(
        (r["event_id"], r["repository"]) for r in records if r["decision"] != "ignored"
    )
    assert decided == batch.copies


@pytest.mark.parametrize(
    ("then", "status", "decision"),
    [("store", 400, "recorded"), ("unavailable", 503, "unavailable")],
)
def test_a_refused_document_leaves_the_same_events_document_in_another_repository_written(
    then: Outcome, status: int, decision: str
) -> None:
    """One event id pushed to two repositories is two documents (docs/delivery.md "Batching");
    the database refuses the first for good. docs/delivery.md's answers: a refused event is a
    400 and "the batch's other events are still written"; 503 when the store is unavailable, so
    that Event Grid redelivers. docs/operations.md: each event copy has one decision."""
    event_id = EVENT_IDS[0]
    first, second = (event_id, REPOSITORIES[0]), (event_id, REPOSITORIES[1])
    events = [
        envelope(False, f"envelope-{n}", TYPES["push"], acr_data(*key))
        for n, key in enumerate((first, second))
    ]
    batch = Batch(payloads.body(events), Counter({first: 1, second: 1}), [first, second])
    repository = ScriptedRepository({first: "refuse", second: then})

    result, records = deliver(batch, repository)

    assert [(r["decision"], r["repository"]) for r in records] == [
        ("rejected", REPOSITORIES[0]),
        (decision, REPOSITORIES[1]),
    ]
    assert repository.writes == Counter({first: 1, second: 1})
    assert result.status == status


# --- webhook ------------------------------------------------------------------------------------

WEBHOOK_KINDS: Final = (*sorted(payloads.RECORDED), "ping", "unrecorded")
WEBHOOK_OUTCOMES: Final = tuple(outcome for outcome in OUTCOMES if outcome != "held")


def webhook_body(kind: str, event_id: str, repository: str) -> bytes:
    if kind == "ping":
        return payloads.body({"action": "ping", "id": event_id})
    base = payloads.PUSH if kind == "unrecorded" else payloads.RECORDED[kind]
    payload = copy.deepcopy(base)
    payload["id"], payload["target"]["repository"] = event_id, repository
    if kind == "unrecorded":
        payload["action"] = "tag_delete"
    return payloads.body(payload)


@settings(DETERMINISTIC, max_examples=150)
@given(
    st.sampled_from(WEBHOOK_KINDS),
    st.sampled_from(EVENT_IDS),
    st.sampled_from(REPOSITORIES),
    st.sampled_from(WEBHOOK_OUTCOMES),
    st.sampled_from(["up", "down", "absent"]),
)
def test_webhook_answers_parks_and_stores_as_documented_whatever_fails(
    kind: str, event_id: str, repository_name: str, outcome: Outcome, queue_state: QueueState
) -> None:
    body = webhook_body(kind, event_id, repository_name)
    key = (event_id, repository_name)
    repository = ScriptedRepository({key: outcome})
    recorded = kind in payloads.RECORDED
    if recorded and outcome == "duplicate":
        event = AcrEvent.model_validate(json.loads(body))
        repository.prestore(to_document(event, EARLIER))
    before = dict(repository.documents)
    queue = None if queue_state == "absent" else ScriptedQueue(up=queue_state == "up")

    with decisions_logged() as logged:
        result = handle_webhook(body, repository, fallback=queue, now=lambda: NOW)
    check_answer_shape(result)
    records = logged.of("webhook")
    assert len(records) == 1, records  # one decision per call
    decision = records[0]["decision"]

    if not recorded:
        # ping 204, another action 202: nothing written, nothing parked.
        expected = (204, "ping") if kind == "ping" else (202, "ignored")
        assert (result.status, decision) == expected
        assert repository.writes == Counter() and not (queue and queue.messages)
        return
    assert repository.writes == Counter({key: 1})
    parked = [ParkedEvent(**json.loads(m)) for m in queue.messages] if queue else []
    if outcome in ("store", "slow"):
        assert (result.status, result.body, decision) == (
            201,
            {"status": "recorded", "id": event_id},
            "recorded",
        )
    elif outcome == "duplicate":
        assert (result.status, result.body, decision) == (
            200,
            {"status": "duplicate", "id": event_id},
            "duplicate",
        )
    elif outcome == "refuse":
        assert (result.status, decision) == (400, "rejected")
        assert result.body is not None and "refused" in result.body["error"]
    elif queue_state == "up":
        assert (result.status, result.body, decision) == (
            202,
            {"status": "queued", "id": event_id},
            "queued",
        )
        # The parked message holds the very document the database did not take.
        assert parked == [ParkedEvent(repository.attempted[key], 0)]
    else:
        assert (result.status, decision) == (503, "unavailable")
    if outcome not in ("unavailable", "landed") or queue_state != "up":
        assert parked == []
    if outcome in ("refuse", "unavailable"):
        assert repository.documents == before

    # After the outage: the queue trigger replays what was parked, and the same call again
    # (reconcile, or a resend) finds it stored. Each event stored once, nothing lost.
    repository.heal()
    for message in queue.messages if queue else []:
        replayed = replay_queued_event(message, repository, queue, 60)
        assert replayed == ("duplicate" if outcome == "landed" else "recorded")
    lost = result.status == 503 and outcome == "unavailable"  # "not known to be stored"
    assert (key in repository.documents) == (outcome != "refuse" and not lost)
    again = handle_webhook(body, repository, fallback=queue, now=lambda: NOW)
    if outcome == "refuse":
        assert again.status == 400 and key not in repository.documents
        return
    if lost:  # this call stores it
        assert (again.status, again.body) == (201, {"status": "recorded", "id": event_id})
    else:
        assert (again.status, again.body) == (200, {"status": "duplicate", "id": event_id})
    assert repository.created[key] == (0 if outcome == "duplicate" else 1)
    assert list(repository.documents) == [key]
    if outcome != "duplicate":
        assert repository.documents[key] == repository.attempted[key]


# --- replay -------------------------------------------------------------------------------------

REPLAY_CAP_S: Final = 8  # REPLAY_MAX_DELAY_SECONDS, small so that the cap is reached


@settings(DETERMINISTIC, max_examples=80)
@given(
    st.sampled_from(sorted(payloads.RECORDED)),
    st.lists(
        st.tuples(st.sampled_from(["unavailable", "landed"]), st.booleans()),
        max_size=8,
    ),
)
def test_a_parked_event_outlives_any_outage_and_is_stored_once(
    kind: str, tries: list[tuple[Outcome, bool]]
) -> None:
    """README.md "A database outage of any length loses nothing": each replay that finds the
    database down puts the event back with a delay doubling from 2 s to the cap (queue up) or
    leaves the message to the runtime's retry (queue down); once the database is back the event
    is stored once, as parked, whatever landed meanwhile. One decision per replay."""
    event = AcrEvent.model_validate(payloads.RECORDED[kind])
    document = to_document(event, NOW)
    key = (event.id, event.target.repository)
    repository = ScriptedRepository({})
    message = ParkedEvent(document).to_message()
    failed = 0
    with decisions_logged() as logged:
        for outcome, queue_up in tries:
            repository.script[key] = outcome
            queue = ScriptedQueue(up=queue_up)
            if not queue_up:
                # The runtime keeps this message and retries it (then poisons it: operations.md).
                with pytest.raises(FallbackUnavailableError):
                    replay_queued_event(message, repository, queue, REPLAY_CAP_S)
                continue
            assert replay_queued_event(message, repository, queue, REPLAY_CAP_S) == "requeued"
            failed += 1
            assert queue.delays == [replay_delay_s(failed, REPLAY_CAP_S)]
            assert queue.delays[0] == min(REPLAY_CAP_S, 2**failed)
            [message] = queue.messages
            assert ParkedEvent(document, failed) == ParkedEvent(**json.loads(message))
        repository.heal()
        landed = any(outcome == "landed" for outcome, _ in tries)
        replayed = replay_queued_event(message, repository, ScriptedQueue(up=True), REPLAY_CAP_S)
    assert replayed == ("duplicate" if landed else "recorded")
    assert repository.created == Counter({key: 1})
    assert repository.documents == {key: document}
    expected = [("queued" if up else "unavailable") for _, up in tries]
    expected.append("replayed" if replayed == "recorded" else "duplicate")
    assert [record["decision"] for record in logged.of("replay")] == expected
