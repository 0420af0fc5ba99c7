"""Concurrency and fault injection through the deployed entry points.

function_app's registered functions (acr_webhook, acr_eventgrid, replay_fallback,
reconcile_history) are called with azure.functions requests, composed as runtime.py composes
them: the real CosmosEventRepository instances and their one shared outage memory
(DatabaseHealth), over a fake Cosmos client (tests/support/interleave.py) whose calls fail,
time out, land and time out, or answer slowly on a fake clock.

1. One delivery at a time, any fault: README.md "Answers" and "Security and reliability", and
   docs/delivery.md "What the Event Grid endpoint answers": never a 5xx but a JSON 503; a 4xx
   is ``{"error": ...}``, 401 empty; JSON answers are application/json as the worker sends
   them; 202 only with the queue up, holding the document; the Cosmos part of a write never
   outlasts the write's time (~2 s for the webhook, README "When Cosmos DB fails or does not
   answer within ~2 s (a duplicate's fill-in included)"); no traceback or secret in a body or
   a log record; each decision record names the event (event id, action, repository).
2. Overlapping deliveries of one event (same id) on threads, through the webhook, Event Grid,
   the fallback replay and reconcile, in any interleaving of their database calls (drawn by
   hypothesis, forced by interleave.Turns): one document per (id, repository); at most one
   creating decision (docs/operations.md: "An event has at most one such record"), exactly one
   when no write failed; every answer one the docs allow; the stored document has every
   enrichment field its creator's copy or a stored Event Grid or reconcile copy supplied, none
   that only a webhook copy's duplicate (replayed too) carried, and never loses a value (README
   "Every event is stored once": "An Event Grid or reconcile copy only fills in fields the
   stored document lacks ..., never overwriting"); nothing parked unless that delivery met a
   database failure.
3. The outage memory under concurrent threads (README "Every webhook answer comes within
   4.5 s": "A failure to reach the database is remembered for 5 s by every writer in the
   instance (webhook, Event Grid, replay), which then answer from the fallback (202) or with
   503 at once").
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import azure.functions as func
import pytest
from azure.functions.http import HttpResponseConverter
from azure.functions.timer import TimerRequest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

import function_app
from acr_webhook.config import HTTP_CONCURRENCY, ReconcileSettings, Settings
from acr_webhook.eventgrid import THROTTLED_PAUSE_S
from acr_webhook.fallback import QUEUE_TIMEOUTS
from acr_webhook.models import (
    ENRICHMENT_FIELDS,
    AcrEvent,
    ParkedEvent,
    Source,
    to_document,
)
from acr_webhook.repository import (
    CLIENT_TIMEOUTS,
    EVENTGRID_WRITE_OPTIONS,
    UNAVAILABLE_MEMORY_S,
    DatabaseHealth,
)
from acr_webhook.results import utc_now
from acr_webhook.store import FallbackUnavailableError, RepositoryUnavailableError
from tests.support import payloads
from tests.support.interleave import (
    FakeClock,
    FakeCosmosClient,
    FakeHistory,
    Fault,
    GatedHealth,
    GatedQueue,
    Turns,
    deployed,
)
from tests.support.logs import on_app_logger
from tests.support.properties import DETERMINISTIC
from tests.unit.test_eventgrid import TOPIC, cloud_event, event_grid

EVENT_ID: Final = "5d0e3a5c-1b7e-4c52-9a61-0c1c2b3d4e5f"
REPOSITORY: Final = "hello-world"
KEY: Final = (EVENT_ID, REPOSITORY)
SECRET: Final = "s3cret-c0nc-7f1e2d"
REGISTRY_ID: Final = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.ContainerRegistry/registries/myregistry"
)
# What each enrichment field is when a delivery carries it (payloads.ENRICHED_PUSH, TOPIC).
CARRIED: Final = {
    "actor": "ci-bot@contoso.com",
    "clientAddress": "203.0.113.7:51234",
    "location": "westeurope",
    "connectedRegistry": "edge01",
    "registryResourceId": TOPIC,
}
ROUTES: Final = ("webhook", "eventgrid", "cloudevents", "replay", "reconcile")
# The source each route's document says: a replay stores what the webhook parked.
SOURCE_OF: Final[dict[str, Source]] = {
    "webhook": "webhook",
    "eventgrid": "eventgrid",
    "cloudevents": "eventgrid",
    "replay": "webhook",
    "reconcile": "reconcile",
}
HTTP_ROUTES: Final = ("webhook", "eventgrid", "cloudevents")
# Decisions that say this delivery created the document (docs/operations.md).
CREATING: Final = frozenset({"recorded", "replayed", "reconciled"})


# --- deliveries ---------------------------------------------------------------------------------


def acr_payload(carried: frozenset[str]) -> dict[str, Any]:
    """The event EVENT_ID as ACR sends it, with the enrichment fields in ``carried`` only."""
    payload = copy.deepcopy(payloads.ENRICHED_PUSH)
    payload["id"] = EVENT_ID
    payload["target"]["repository"] = REPOSITORY
    if "actor" not in carried:
        del payload["actor"]
    if "clientAddress" not in carried:
        del payload["request"]["addr"]
    if "location" not in carried:
        del payload["location"]
    if "connectedRegistry" not in carried:
        del payload["connectedRegistry"]
    return payload


@dataclass(frozen=True)
class Delivery:
    """One copy of the event, by one route, carrying some of the enrichment fields."""

    route: str
    carried: frozenset[str]

    @property
    def offered(self) -> frozenset[str]:
        """The enrichment fields its document has: only Event Grid knows the registry's id."""
        if self.route in HTTP_ROUTES[1:]:
            return self.carried
        return self.carried - {"registryResourceId"}

    @property
    def source(self) -> Source:
        """Its document's ``source`` (replay: the webhook's, which parked it)."""
        return SOURCE_OF[self.route]

    @property
    def fills_in(self) -> bool:
        """Whether, as a duplicate, it fills in the fields the stored document lacks: README,
        only "a later Event Grid or reconcile delivery" does; a webhook copy (replayed too)
        fills in nothing. Written out, not models.FILLED_IN_BY, so that a change to it fails."""
        return self.source in ("eventgrid", "reconcile")

    def document(self) -> dict[str, Any]:
        """The document this copy would write (replay: the one the webhook parked)."""
        resource_id = TOPIC if "registryResourceId" in self.offered else None
        event = AcrEvent.model_validate(acr_payload(self.carried))
        return to_document(event, utc_now(), self.source, resource_id)

    def request(self, secret: str | None) -> func.HttpRequest:
        payload = acr_payload(self.carried)
        headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
        if self.route == "webhook":
            url, body = "http://localhost/api/acr/webhook", payloads.body(payload)
        else:
            envelope = event_grid(payload) if self.route == "eventgrid" else cloud_event(payload)
            origin = "topic" if self.route == "eventgrid" else "source"
            if "registryResourceId" not in self.carried:
                del envelope[origin]
            sent = [envelope] if self.route == "eventgrid" else envelope
            url, body = "http://localhost/api/acr/eventgrid", payloads.body(sent)
        return func.HttpRequest("POST", url, headers=headers, body=body)

    def history_entry(self) -> dict[str, Any]:
        """An entry of ACR's webhook delivery history, as reconcile reads it."""
        return {
            "id": "history-1",
            "eventRequestMessage": {
                "content": acr_payload(self.carried),
                "requestUri": f"https://app.example/api/acr/webhook?code={SECRET}",
                "headers": {"Authorization": f"Bearer {SECRET}"},
            },
        }


def call(delivery: Delivery, secret: str | None) -> Callable[[], Any]:
    """The registered function that takes ``delivery``, ready to run."""
    if delivery.route in HTTP_ROUTES:
        request = delivery.request(secret)
        if delivery.route == "webhook":
            return lambda: function_app.acr_webhook(request)
        return lambda: function_app.acr_eventgrid(request)
    if delivery.route == "replay":
        message = func.QueueMessage(body=ParkedEvent(delivery.document()).to_message())
        return lambda: function_app.replay_fallback(message)
    return lambda: function_app.reconcile_history(TimerRequest())


def app_settings(secret: str | None) -> Settings:
    return Settings(
        "https://cosmos.invalid:443/",
        "not-a-key",
        "acr",
        "events",
        None,
        webhook_secret=secret,
        reconcile=ReconcileSettings(REGISTRY_ID, ("acrwebhook",)),
    )


# --- what the docs allow an answer to be ----------------------------------------------------------


def answer(response: func.HttpResponse, secret: str | None) -> tuple[int, Any]:
    """Status and JSON body, checked against README "Answers": a 5xx only as a JSON 503; a 4xx
    ``{"error": ...}`` naming the problem, 401 empty; the Content-Type the Python worker sends
    (HttpResponseConverter) application/json for JSON; no traceback or secret."""
    status = response.status_code
    raw = response.get_body()
    sent = HttpResponseConverter.encode(response, expected_type=None)
    assert sent is not None
    content_type = {name: datum.value for name, datum in sent.value["headers"].items()}
    assert b"Traceback" not in raw
    if secret is not None:
        assert secret.encode() not in raw
    if status in (204, 401):
        assert raw == b"", (status, raw)
        return status, None
    assert content_type == {"content-type": "application/json"}, (status, content_type)
    body = json.loads(raw)
    assert status < 500 or status == 503, (status, body)
    if status >= 400:
        assert set(body) == {"error"} and isinstance(body["error"], str), body
        assert body["error"].strip(), body
    return status, body


class Records(logging.Handler):
    """Every record of the app's loggers, from every thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.threads: list[str] = []  # the thread that logged each (the app turns logThreads off)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.records.append(record)
            self.threads.append(threading.current_thread().name)

    def decisions(self) -> list[logging.LogRecord]:
        return [r for r in self.records if hasattr(r, "decision")]


@contextmanager
def logged() -> Iterator[Records]:
    with on_app_logger(Records(), logging.INFO) as records:
        yield records


def check_records(records: Records, secret: str | None) -> None:
    """README "Logs": no traceback, key or secret; each decision about an event names it."""
    for record in records.records:
        assert record.exc_info is None, record.getMessage()
        text = record.getMessage() + repr(vars(record))
        assert "Traceback" not in text
        if secret is not None:
            assert secret not in text, text
    for record in records.decisions():
        if getattr(record, "reason", None) == "shared secret":
            continue  # nothing of the body is read before the secret is checked
        fields = {name: getattr(record, name, None) for name in ("event_id", "repository")}
        assert fields == {"event_id": EVENT_ID, "repository": REPOSITORY}, record.getMessage()
        assert getattr(record, "action", None) == "push", record.getMessage()
        assert getattr(record, "route", None) in ROUTES, record.getMessage()


# --- 1. one delivery, any fault ---------------------------------------------------------------

FAULTS: Final[tuple[Fault, ...]] = ("timeout", "landed", "unavailable", "throttled", "slow")
CALLS: Final = ("create_item", "read_item", "replace_item")
FAILURES: Final[tuple[Fault, ...]] = ("timeout", "landed", "unavailable", "throttled")
START: Final = 1000.0


def prestored_document(kind: str) -> dict[str, Any]:
    """The event as an earlier delivery stored it: with no enrichment, or with other values."""
    document = Delivery("reconcile", frozenset()).document()
    if kind == "other":
        document.update({name: f"earlier-{name}" for name in ENRICHMENT_FIELDS})
    return document


@settings(DETERMINISTIC, max_examples=80)
@given(
    delivery=st.builds(
        Delivery,
        st.sampled_from(HTTP_ROUTES),
        st.frozensets(st.sampled_from(ENRICHMENT_FIELDS)),
    ),
    prestored=st.sampled_from([None, "bare", "other"]),
    faults=st.dictionaries(
        st.sampled_from(CALLS), st.sampled_from((*FAULTS, "refused")), max_size=3
    ),
    queue=st.sampled_from(["up", "down", "absent"]),
    remembered=st.booleans(),
    credential=st.sampled_from(["no secret", "right", "wrong", "missing"]),
)
# A webhook duplicate whose create answered slowly, carrying every field the stored document
# lacks: it reads nothing, so it is answered 200 in time with the document unchanged.
@example(
    Delivery("webhook", frozenset(ENRICHMENT_FIELDS)),
    "bare",
    {"create_item": "slow", "read_item": "slow"},
    "up",
    False,
    "no secret",
)
# An Event Grid duplicate whose create answered slowly: its fill-in gets only what is left of
# the write's time.
@example(
    Delivery("eventgrid", frozenset(ENRICHMENT_FIELDS)),
    "bare",
    {"create_item": "slow", "read_item": "slow", "replace_item": "slow"},
    "absent",
    False,
    "right",
)
def test_one_delivery_is_answered_parked_stored_and_logged_as_documented_whatever_fails(
    delivery: Delivery,
    prestored: str | None,
    faults: dict[str, Fault],
    queue: str,
    remembered: bool,
    credential: str,
) -> None:
    if faults.get("replace_item") == "refused" or faults.get("read_item") == "refused":
        faults = {**faults, "create_item": "refused"}  # a 400 is about the document: a create
        faults.pop("read_item", None)
        faults.pop("replace_item", None)
    secret = None if credential == "no secret" else SECRET
    sent = {"no secret": None, "right": SECRET, "wrong": "wrong", "missing": None}[credential]
    turns = Turns(["solo"])
    clock = FakeClock(START)
    client = FakeCosmosClient(turns, clock, {(None, op, 0): f for op, f in faults.items()})
    before = None
    if prestored is not None:
        before = prestored_document(prestored)
        client.documents[KEY] = client._stored(before)
    health = DatabaseHealth(clock=clock)
    if remembered:
        health.failed("ServiceResponseTimeoutError: an earlier write timed out")
    fallback = None if queue == "absent" else GatedQueue(turns, up=queue == "up")
    with (
        deployed(app_settings(secret), health, lambda *_: client, clock=clock, queue=fallback),
        logged() as records,
    ):
        status, body = answer(call(delivery, sent)(), secret)
    check_records(records, secret)
    webhook = delivery.route == "webhook"
    parked = fallback.messages if fallback is not None else []
    assert all(message[0] is None for message in parked)

    if credential in ("wrong", "missing"):
        assert (status, client.calls, parked) == (401, [], [])
        return
    [decision] = [r.decision for r in records.decisions()]  # type: ignore[attr-defined]
    hit = {c.operation: faults[c.operation] for c in client.calls if c.operation in faults}
    # An Event Grid write tries again while throttled (only a call's first try is faulted).
    failed = {"timeout", "landed", "unavailable", *(["throttled"] if webhook else [])} & set(
        hit.values()
    )
    budget = CLIENT_TIMEOUTS["timeout"] if webhook else EVENTGRID_WRITE_OPTIONS["timeout"]
    if not webhook and "throttled" in hit.values():
        budget += THROTTLED_PAUSE_S  # the write tried again, after one pause, in its own time
    # The Cosmos part of the answer: no call starts, nor is let wait, past the write's time.
    assert clock.now - START <= budget + 1e-9, client.calls
    for record in client.calls:
        waits = record.timeout if record.timeout is not None else 0.0
        assert record.started + waits <= START + budget + 1e-9, client.calls

    if remembered:
        # README: answered from the fallback or with 503 at once: the database is not asked.
        assert client.calls == []
    if status == 201 or (not webhook and status == 200 and body["recorded"] == 1):
        assert prestored is None and decision == "recorded"
    elif status == 200:
        assert prestored is not None and decision == "duplicate"
        if not webhook:
            assert body == {"recorded": 0, "duplicate": 1, "ignored": 0}
    elif status == 202:
        assert webhook and queue == "up" and decision == "queued"
        assert body == {"status": "queued", "id": EVENT_ID}
        [(_, document, attempts, delay_s)] = parked
        assert (document["id"], document["repository"], document["source"]) == (
            EVENT_ID,
            REPOSITORY,
            "webhook",
        )
        assert (attempts, delay_s) == (0, 0)
        assert {n for n in ENRICHMENT_FIELDS if document[n]} == delivery.offered
    elif status == 503:
        assert not webhook or queue != "up"
        assert decision == "unavailable"
    else:
        assert status == 400 and decision == "rejected", (status, body)
        assert hit.get("create_item") == "refused"
        assert "refused" in body["error"]
    if status != 202:
        assert parked == []
    # Whatever is stored: the first document, with its values kept and gaps filled only, and
    # only by an Event Grid copy: a webhook duplicate neither reads nor writes it.
    assert client.overwritten == []
    if not delivery.fills_in:
        assert {c.operation for c in client.calls} <= {"create_item"}, client.calls
    if status in (200, 201):
        assert not failed and not remembered
        stored = client.documents[KEY]
        if status == 201 or delivery.fills_in:
            for name in delivery.offered:
                assert stored[name] is not None, (name, stored)
        if before is not None:
            filled = {n: stored[n] for n in ENRICHMENT_FIELDS if before[n] is None}
            assert {k: v for k, v in stored.items() if not k.startswith("_")} == {
                **before,
                **(filled if delivery.fills_in else {}),
            }
    elif not failed and not remembered and "refused" not in hit.values():
        # Only the fill-in's time running out makes a fault-free write fail: an Event Grid
        # copy's, since a webhook copy fills in nothing.
        assert delivery.fills_in and "slow" in hit.values(), hit


# --- 2. overlapping deliveries of one event -----------------------------------------------------


@dataclass(frozen=True)
class Overlap:
    deliveries: tuple[Delivery, ...]
    order: tuple[int, ...]  # whose database step comes next, by index into deliveries
    faults: tuple[tuple[int, str, Fault], ...]  # (delivery, call, fault) on its first call
    queue: str
    prestored: bool


def names(overlap: Overlap) -> list[str]:
    return [f"{index}-{d.route}" for index, d in enumerate(overlap.deliveries)]


@st.composite
def overlaps(draw: st.DrawFn) -> Overlap:
    deliveries = draw(
        st.lists(
            st.builds(
                Delivery,
                st.sampled_from(ROUTES),
                st.frozensets(st.sampled_from(ENRICHMENT_FIELDS)),
            ),
            min_size=2,
            max_size=4,
        ).filter(lambda found: sum(d.route == "reconcile" for d in found) <= 1)
    )
    count = len(deliveries)
    order = draw(st.lists(st.integers(0, count - 1), max_size=24))
    faults = draw(
        st.lists(
            st.tuples(
                st.integers(0, count - 1),
                st.sampled_from(CALLS),
                st.sampled_from(FAILURES),
            ),
            max_size=2,
            unique_by=lambda fault: fault[:2],
        )
    )
    queue = draw(st.sampled_from(["up", "up", "down", "absent"]))
    return Overlap(tuple(deliveries), tuple(order), tuple(faults), queue, draw(st.booleans()))


@dataclass
class Overlapped:
    outcomes: dict[str, Any]
    client: FakeCosmosClient
    queue: GatedQueue | None
    health: GatedHealth
    records: Records
    turns: Turns


def run_overlap(overlap: Overlap) -> Overlapped:
    actors = names(overlap)
    turns = Turns(actors, [actors[index] for index in overlap.order])
    clock = FakeClock(START)
    faults: dict[tuple[str | None, str, int], Fault] = {
        (actors[i], op, 0): fault for i, op, fault in overlap.faults
    }
    client = FakeCosmosClient(turns, clock, faults)
    if overlap.prestored:
        client.documents[KEY] = client._stored(prestored_document("bare"))
    health = GatedHealth(turns, clock)
    queue = None if overlap.queue == "absent" else GatedQueue(turns, up=overlap.queue == "up")
    histories = [
        FakeHistory(turns, [d.history_entry()])
        for d in overlap.deliveries
        if d.route == "reconcile"
    ]
    history = histories[0] if histories else None
    with (
        deployed(
            app_settings(None),
            health,
            lambda *_: client,
            clock=clock,
            queue=queue,
            history=history,
        ),
        logged() as records,
    ):
        actions = {
            actor: call(delivery, None)
            for actor, delivery in zip(actors, overlap.deliveries, strict=True)
        }
        outcomes = turns.run(actions)
    return Overlapped(outcomes, client, queue, health, records, turns)


def check_memory(trace: list[tuple[str, str]]) -> None:
    """README: a failure is remembered by every writer (the clock stays inside the 5 s here),
    and a success forgets it: a writer's check passes (its next step is a database call)
    exactly when the last failure or success remembered before it was a success, or none."""
    last = "succeeded"
    for index, (actor, label) in enumerate(trace):
        if label in ("health.failed", "health.succeeded"):
            last = label.removeprefix("health.")
        elif label == "health.check":
            after = [step for who, step in trace[index + 1 :] if who == actor]
            asked = bool(after) and after[0].startswith("cosmos.")
            assert asked == (last == "succeeded"), (index, trace)


@settings(DETERMINISTIC, max_examples=60)
@given(overlap=overlaps())
def test_overlapping_deliveries_of_one_event_store_one_complete_document(
    overlap: Overlap,
) -> None:
    ran = run_overlap(overlap)
    check_records(ran.records, SECRET)  # the history entries carry it in their URL and headers
    actors = names(overlap)
    steps = [label for _, label in ran.turns.trace]
    event(f"fill-ins written: {min(steps.count('cosmos.replace_item'), 2)}")
    event(f"fill-ins refused for a changed ETag: {min(ran.client.conflicts, 1)}")
    decisions: dict[str, list[str]] = {actor: [] for actor in actors}
    for record, thread in zip(ran.records.records, ran.records.threads, strict=True):
        if hasattr(record, "decision"):
            decisions[thread.removeprefix("actor-")].append(record.decision)
    met_failure = {
        c.actor for c in ran.client.calls if (c.actor, c.operation, 0) in ran.client.faults
    }
    stored_by: set[str] = set()  # deliveries whose answer says the event is stored
    parked_by = {message[0] for message in ran.queue.messages} if ran.queue else set()

    for actor, delivery in zip(actors, overlap.deliveries, strict=True):
        outcome = ran.outcomes[actor]
        made = decisions[actor]
        if delivery.route in HTTP_ROUTES:
            assert isinstance(outcome, func.HttpResponse), outcome
            status, body = answer(outcome, SECRET)
            assert len(made) == 1, made
            if delivery.route == "webhook":
                allowed = {201: "recorded", 200: "duplicate", 202: "queued", 503: "unavailable"}
                assert status in allowed and made == [allowed[status]], (status, made)
                assert (status == 202) == (actor in parked_by)
                assert status != 503 or overlap.queue != "up"
            else:
                assert status in (200, 503), (status, body)
                if status == 200:
                    assert made == (["recorded"] if body["recorded"] else ["duplicate"])
                else:
                    assert made == ["unavailable"]
            if status in (200, 201):
                stored_by.add(actor)
        elif delivery.route == "replay":
            # Returns normally, or leaves the message to the runtime when the queue is down too.
            if isinstance(outcome, FallbackUnavailableError):
                assert overlap.queue != "up" and made == ["unavailable"]
            else:
                assert outcome is None, outcome
                assert made in (["replayed"], ["duplicate"], ["queued"]), made
                assert (made == ["queued"]) == (actor in parked_by)
                if made != ["queued"]:
                    stored_by.add(actor)
        else:
            assert outcome is None, outcome
            assert made in ([], ["reconciled"], ["unavailable"]), made
            if made != ["unavailable"]:
                stored_by.add(actor)
        if actor in parked_by or made in (["unavailable"], ["queued"]):
            # README: only a database failure parks an event or answers 503; the outage memory
            # of another delivery's failure counts (it is every writer's).
            assert met_failure or ran.health.failures, (actor, made)

    creating = [d for made in decisions.values() for d in made if d in CREATING]
    assert len(creating) <= 1, decisions
    assert ran.client.created <= 1 - overlap.prestored
    assert list(ran.client.documents) == ([KEY] if overlap.prestored or ran.client.created else [])
    if not overlap.faults and not overlap.prestored:
        assert len(creating) == 1, decisions
    # A creating decision is the creator's own; the document's source is the creator's route.
    for actor, made in decisions.items():
        if CREATING & set(made):
            assert actor == ran.client.creator, (actor, ran.client.creator)
    if ran.client.creator is not None:
        creator = overlap.deliveries[actors.index(ran.client.creator)]
        assert ran.client.documents[KEY]["source"] == creator.source
    check_memory(ran.turns.trace)
    if stored_by:
        assert KEY in ran.client.documents
    assert ran.client.overwritten == []
    if KEY in ran.client.documents:
        # The document has what its creator's copy had, and what each stored Event Grid or
        # reconcile copy supplied; a field only webhook copies (replays too) carried, as
        # duplicates, stays empty: they fill in nothing.
        stored = ran.client.enrichment(KEY)
        supplied: set[str] = set()
        for actor, delivery in zip(actors, overlap.deliveries, strict=True):
            if actor == ran.client.creator or delivery.fills_in:
                supplied |= delivery.offered
            if actor == ran.client.creator or (actor in stored_by and delivery.fills_in):
                for name in delivery.offered:
                    assert stored[name] == CARRIED[name], (actor, name, stored, ran.turns.trace)
        for name, value in stored.items():
            assert value is None or name in supplied, (name, stored, ran.turns.trace)
    for actor, delivery in zip(actors, overlap.deliveries, strict=True):
        if not delivery.fills_in:  # no read, no write of the stored document
            asked = {c.operation for c in ran.client.calls if c.actor == actor}
            assert asked <= {"create_item"}, (actor, ran.client.calls)
    # Every parked copy holds its own document, to be replayed.
    for parker, document, _, _ in ran.queue.messages if ran.queue else []:
        delivery = overlap.deliveries[actors.index(str(parker))]
        assert {n for n in ENRICHMENT_FIELDS if document[n]} == delivery.offered


# --- 3. the outage memory under concurrent threads -----------------------------------------------


def posting(request: func.HttpRequest) -> Callable[[], func.HttpResponse]:
    return lambda: function_app.acr_webhook(request)


def test_concurrent_webhook_requests_after_a_failure_answer_from_the_queue_without_asking() -> None:
    """HTTP_CONCURRENCY webhook deliveries at once, the first database call timing out: every
    request whose turn comes after the failure is remembered is answered 202 without a
    database call; those already past the check each make one; once the memory is over, one
    more delivery asks the database again and is stored."""
    actors = [f"{i}-webhook" for i in range(HTTP_CONCURRENCY)]
    # Two requests pass the check before the first write fails; the rest come after.
    order = [actors[0], actors[1], actors[2], actors[0], actors[0]]
    turns = Turns(actors, order)
    clock = FakeClock(START)
    down: dict[tuple[str | None, str, int], Fault] = {
        (actor, "create_item", 0): "timeout" for actor in actors
    }
    client = FakeCosmosClient(turns, clock, down)
    health = GatedHealth(turns, clock)
    queue = GatedQueue(turns)
    events: dict[str, func.HttpRequest] = {}
    for index, actor in enumerate(actors):  # sixteen events, each its own id
        payload = acr_payload(frozenset()) | {"id": f"{EVENT_ID[:-2]}{index:02d}"}
        events[actor] = func.HttpRequest(
            "POST", "http://localhost/api/acr/webhook", body=payloads.body(payload)
        )
    with deployed(app_settings(None), health, lambda *_: client, clock=clock, queue=queue):
        outcomes = turns.run({actor: posting(events[actor]) for actor in actors})
        statuses = {actor: outcomes[actor].status_code for actor in actors}  # type: ignore[union-attr]
        asked = [c.actor for c in client.calls]
        assert statuses[actors[0]] == 202
        assert sorted(map(str, asked)) == sorted(actors[:3])
        # Answered at once: no database call, and the fake clock did not move for them.
        assert all(statuses[actor] == 202 for actor in actors[3:])
        assert {message[0] for message in queue.messages} >= set(actors[3:])
        # The memory ends 5 s after the failure: the next delivery asks and is stored.
        clock.advance(UNAVAILABLE_MEMORY_S)
        payload = acr_payload(frozenset()) | {"id": "after-the-memory"}
        request = func.HttpRequest("POST", "http://x/api/acr/webhook", body=payloads.body(payload))
        assert function_app.acr_webhook(request).status_code == 201


def test_a_failure_remembered_by_one_writer_answers_every_route_at_once() -> None:
    """The memory is every writer's (README: webhook, Event Grid, replay): after one webhook
    write times out, concurrent Event Grid deliveries, replays and a reconcile make no
    database call until the memory is over."""
    routes = ("webhook", "eventgrid", "cloudevents", "replay", "reconcile", "webhook")
    deliveries = tuple(Delivery(route, frozenset(CARRIED)) for route in routes)
    overlap = Overlap(deliveries, (0, 0, 0), ((0, "create_item", "timeout"),), "up", False)
    ran = run_overlap(overlap)
    actors = names(overlap)
    assert [c.actor for c in ran.client.calls] == [actors[0]]
    statuses = {
        a: o.status_code for a, o in ran.outcomes.items() if isinstance(o, func.HttpResponse)
    }
    assert statuses == {actors[0]: 202, actors[1]: 503, actors[2]: 503, actors[5]: 202}
    assert {m[0] for m in ran.queue.messages} == {actors[0], actors[3], actors[5]}  # type: ignore[union-attr]


def test_a_success_after_a_failure_lets_every_writer_ask_the_database_again_at_once() -> None:
    """README: "the app tries the database again ... events succeed again once it is back":
    a write that succeeds after another's failure ends the memory for every route at once,
    without waiting out the 5 s."""
    routes = ("webhook", "webhook", "webhook", "eventgrid", "replay", "reconcile")
    deliveries = tuple(Delivery(route, frozenset()) for route in routes)
    # 1 passes the check; 0 fails and is remembered; 1 then writes, which succeeds.
    order = (1, 0, 0, 0, 1, 1)
    overlap = Overlap(deliveries, order, ((0, "create_item", "timeout"),), "up", False)
    ran = run_overlap(overlap)
    actors = names(overlap)
    assert [label for _, label in ran.turns.trace[:6]] == [
        "health.check",
        "health.check",
        "cosmos.create_item",
        "health.failed",
        "cosmos.create_item",
        "health.succeeded",
    ]
    asked = [c.actor for c in ran.client.calls if c.operation == "create_item"]
    assert asked == actors  # every later writer asked the database
    statuses = {
        a: o.status_code for a, o in ran.outcomes.items() if isinstance(o, func.HttpResponse)
    }
    assert statuses == {actors[0]: 202, actors[1]: 201, actors[2]: 200, actors[3]: 200}
    assert [m[0] for m in ran.queue.messages] == [actors[0]]  # type: ignore[union-attr]


def test_many_threads_failing_and_checking_at_once_all_see_the_failure_for_five_seconds() -> None:
    clock = FakeClock(START)
    health = DatabaseHealth(clock=clock)
    start = threading.Barrier(HTTP_CONCURRENCY)
    seen: list[bool] = []

    def writer(index: int) -> None:
        start.wait()
        if index % 2:
            health.failed(f"failure {index}")
        for _ in range(50):
            try:
                health.check()
            except RepositoryUnavailableError:
                seen.append(True)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(HTTP_CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for moment in (0.0, UNAVAILABLE_MEMORY_S - 0.01):
        clock.now = START + moment
        with pytest.raises(RepositoryUnavailableError, match="failure"):
            health.check()
    clock.now = START + UNAVAILABLE_MEMORY_S + 0.01
    health.check()
    assert seen  # the failing threads' own checks saw it


class SteppedClock:
    """A clock whose reading by one thread waits (at most ``wait_s``) for another's step: the
    interleaving "A reads the time, B fails and is remembered, A stores its failure"."""

    def __init__(self, readings: Mapping[str, float], wait_s: float = 0.5) -> None:
        self.readings = dict(readings)
        self.now = 0.0
        self.b_done = threading.Event()
        self._wait_s = wait_s

    def __call__(self) -> float:
        name = threading.current_thread().name
        if name == "A":
            reading = self.readings["A"]
            self.b_done.wait(self._wait_s)
            return reading
        if name == "B":
            return self.readings["B"]
        return self.now


def test_the_latest_of_two_concurrent_failures_is_remembered_for_five_seconds() -> None:
    clock = SteppedClock({"A": START, "B": START + 3})
    health = DatabaseHealth(clock=clock)
    first = threading.Thread(target=health.failed, args=("A timed out",), name="A")

    def later_failure() -> None:
        try:
            health.failed("B timed out")
        finally:
            clock.b_done.set()

    second = threading.Thread(target=later_failure, name="B")
    first.start()
    second.start()
    first.join()
    second.join()
    clock.now = START + 3 + UNAVAILABLE_MEMORY_S - 0.5  # 4.5 s after B's failure
    with pytest.raises(RepositoryUnavailableError):
        health.check()


# --- log records about one event ---------------------------------------------------------------


def test_every_record_about_an_event_carries_its_id_action_and_repository() -> None:
    """docs/operations.md: the app's records are not linked to the host's requests, "query them
    by event_id instead"; README "Logs": event id, action and repository as structured fields.
    A duplicate that fills in a field (an Event Grid copy: a webhook copy fills in nothing)
    logs a record about the event that carries none."""
    turns = Turns(["solo"])
    clock = FakeClock(START)
    client = FakeCosmosClient(turns, clock)
    client.documents[KEY] = client._stored(prestored_document("bare"))
    health = DatabaseHealth(clock=clock)
    with (
        deployed(app_settings(None), health, lambda *_: client, clock=clock),
        logged() as records,
    ):
        request = Delivery("eventgrid", frozenset({"actor"})).request(None)
        assert function_app.acr_eventgrid(request).status_code == 200
    assert client.documents[KEY]["actor"] == CARRIED["actor"]
    about_the_event = [r for r in records.records if EVENT_ID in r.getMessage()]
    assert len(about_the_event) == 2  # the fill-in and the decision
    for record in about_the_event:
        fields = {
            name: getattr(record, name, None) for name in ("event_id", "action", "repository")
        }
        assert fields == {"event_id": EVENT_ID, "action": "push", "repository": REPOSITORY}, (
            record.getMessage()
        )


# --- a cold start that meets a database slow to answer ------------------------------------------


def test_a_cold_start_whose_client_builds_slowly_still_answers_within_4_5_s() -> None:
    """README: "Every webhook answer comes within 4.5 s, cold start or outage included"; the
    database part gets ~2 s so that the queue (fallback.QUEUE_TIMEOUTS: 1 s to connect, 1.5 s
    to answer) fits in the rest. Here the client's account lookup answers after 1.9 s (inside
    its 2 s ``timeout``), then the create is not answered: the SDK gives up after the client's
    own 2 s, because add() passes the create none of what the build used of the write's time."""
    turns = Turns(["solo"])
    clock = FakeClock(START)
    client = FakeCosmosClient(turns, clock, {(None, "create_item", 0): "timeout"})

    def slow_build(*_: Any) -> FakeCosmosClient:
        clock.advance(1.9)
        return client

    queue = GatedQueue(turns)
    health = DatabaseHealth(clock=clock)
    with deployed(app_settings(None), health, slow_build, clock=clock, queue=queue):
        request = Delivery("webhook", frozenset()).request(None)
        assert function_app.acr_webhook(request).status_code == 202
    queue_s = QUEUE_TIMEOUTS["connection_timeout"] + QUEUE_TIMEOUTS["read_timeout"]
    assert (clock.now - START) + queue_s <= 4.5, clock.now - START
