"""Several instances at once: Flex Consumption scales the app out to processes on different
machines that share the Cosmos DB container and the storage account's queues, and the same
event reaches more than one of them at the same moment (ACR's webhook on one, Event Grid's
delivery on another, a parked copy replayed by a third, the reconcile timer on a fourth).

Here three ``serve`` processes talk to the local Cosmos DB server through one
proxy (FaultyCosmosProxy: an outage all of them see) and share one Azurite; a fourth, ``direct``,
reaches the database without the proxy and has no queue (an instance whose path to the
database still works). What must hold across instances (README, docs/delivery.md,
docs/operations.md):

- one document per event id whichever instance, path and order; ``source`` is the path that
  stored it first; a later Event Grid or reconcile delivery fills in the enrichment fields it
  lacks, never overwrites; a later webhook delivery fills in nothing;
- every answer a documented 2xx (201/200, or 202 when parked), never a 5xx, webhooks within
  4.5 s;
- an outage loses nothing: each parked copy is replayed by whichever instance's poller gets it,
  the event stored once, nothing in the poison queue; ``redrive`` while the pollers replay
  moves a message once;
- decision records: each instance records its own decision for each delivery it handled, and
  an event has at most one storing record (recorded, replayed or reconciled) in all;
- reconcile beside live deliveries: its summary counts what it stored and what was there;
- a continuation token from one instance pages on any other.
"""

from __future__ import annotations

import copy
import logging
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests

from acr_webhook.config import FALLBACK_QUEUE_NAME, QueueSettings, ReconcileSettings, Settings
from acr_webhook.fallback import create_queue_client, provision_queue
from acr_webhook.local import queues
from acr_webhook.models import AcrEvent, ParkedEvent, to_document
from acr_webhook.reconcile import reconcile_webhooks
from acr_webhook.repository import CosmosEventRepository
from tests.conftest import fresh_settings, read_all
from tests.support import payloads
from tests.support.azurite import LocalAzurite
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.history import history_entry
from tests.support.instances import (
    Answer,
    Delivery,
    all_decisions,
    at_once,
    deliver_at_once,
    eventgrid,
    start_instances,
    stop_instances,
    webhook,
)
from tests.support.logs import decisions as logged_decisions
from tests.support.serve import ServeProcess, run_cli
from tests.unit.test_eventgrid import ENRICHED_BY_EVENT_GRID, TOPIC, event_grid

# Loads the machine and holds time bounds: takes turns with the other such tests.
pytestmark = pytest.mark.usefixtures("machine_to_itself")

INSTANCES = 3
WEBHOOK_BUDGET_S = 4.5  # README: every webhook answer, a parked one included, within 4.5 s
REPLAY_CAP_S = 1  # REPLAY_MAX_DELAY_SECONDS, the smallest allowed: the same code path
# After the outage: the 5 s each instance remembers it, the cap, host.json's 2 s polling.
STORED_AFTER_RECOVERY_S = 5 + REPLAY_CAP_S + 2 + 7
STORING = ("recorded", "replayed", "reconciled")  # operations.md: at most one per event


@dataclass
class Fleet:
    instances: list[ServeProcess]  # through the proxy, with the fallback queue
    direct: ServeProcess  # straight to the database, no queue
    proxy: FaultyCosmosProxy
    database: Settings
    storage: str  # AzureWebJobsStorage

    @property
    def everyone(self) -> list[ServeProcess]:
        return [*self.instances, self.direct]

    def queue_depths(self) -> tuple[int, int]:
        """Messages in the fallback queue and in its poison queue."""
        queue = QueueSettings(FALLBACK_QUEUE_NAME, self.storage)
        depths = []
        for each in (queue, queue.poison):
            properties = create_queue_client(each, {}).get_queue_properties()
            depths.append(int(properties.approximate_message_count or 0))
        return depths[0], depths[1]


@pytest.fixture(scope="module")
def fleet(
    cosmos_server: LocalCosmosServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("multi")
    queues = LocalAzurite()  # the module's own: its pollers take every fallback message
    queues.start()
    proxy = FaultyCosmosProxy(cosmos_server.endpoint, workdir)
    proxy.start()
    instances: list[ServeProcess] = []
    try:
        provision_queue(QueueSettings(FALLBACK_QUEUE_NAME, queues.connection_string))
        database = fresh_settings(cosmos_server)
        env = {
            "AzureWebJobsStorage": queues.connection_string,
            "REPLAY_MAX_DELAY_SECONDS": str(REPLAY_CAP_S),
        }
        via_proxy = replace(database, cosmos_endpoint=proxy.endpoint)
        specs = [(via_proxy, env)] * INSTANCES + [(database, {})]
        instances = start_instances(specs, workdir)
        yield Fleet(instances[:INSTANCES], instances[-1], proxy, database, queues.connection_string)
    finally:
        proxy.hang.clear()
        stop_instances(instances)
        proxy.stop()
        queues.close()


def stored(database: Settings, ids: set[str]) -> list[dict[str, Any]]:
    return [document for document in read_all(database) if document["id"] in ids]


def wait_until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {seconds:g} s"
        time.sleep(0.2)


def without_enrichment(event: dict[str, Any]) -> dict[str, Any]:
    """The webhook's payload of an enriched event: no actor, region, connected registry or
    client address."""
    plain = {k: v for k, v in event.items() if k not in ("actor", "location", "connectedRegistry")}
    plain["request"] = {k: v for k, v in event["request"].items() if k != "addr"}
    return copy.deepcopy(plain)


def first_store(delivery: Delivery, answer: Answer) -> bool:
    """Whether this answer says its delivery stored the (one) event first."""
    if delivery.route == "webhook":
        return answer.status == 201
    return isinstance(answer.body, dict) and answer.body.get("recorded") == 1


def storing_records(records: list[Counter[tuple[str, str, str]]]) -> Counter[str]:
    """Per event id: how many storing decisions all instances recorded."""
    count: Counter[str] = Counter()
    for instance in records:
        for (event_id, _, decision), n in instance.items():
            if decision in STORING:
                count[event_id] += n
    return count


def test_one_event_at_every_instance_at_once_is_one_document_with_event_grids_fields(
    fleet: Fleet,
) -> None:
    """Twice: the same event six times at once, two or three paths per instance. Each Event
    Grid copy carries a different part of the enrichment and fills it in; one webhook copy
    carries the client address (ACR's never does), which is on the document only when that
    copy stored the event first: a webhook duplicate fills in nothing."""
    everyone = fleet.instances
    rounds = []
    for _ in range(2):
        event = payloads.with_new_id(payloads.ENRICHED_PUSH)
        plain = without_enrichment(event)
        with_addr = copy.deepcopy(plain)
        with_addr["request"]["addr"] = event["request"]["addr"]
        deliveries = [
            webhook(0, plain),
            eventgrid(1, [event_grid({**plain, "actor": event["actor"]})]),
            webhook(2, with_addr),
            eventgrid(0, [event_grid({**plain, "location": event["location"]})]),
            webhook(1, plain),
            eventgrid(2, [event_grid({**plain, "connectedRegistry": event["connectedRegistry"]})]),
        ]
        answers: list[Answer] = deliver_at_once(deliveries, everyone)
        rounds.append((event["id"], deliveries, answers))

    for event_id, deliveries, answers in rounds:
        assert [a.status for a in answers if a.status not in (200, 201)] == [], answers
        paired = enumerate(zip(deliveries, answers, strict=True))
        firsts = [index for index, (d, a) in paired if first_store(d, a)]
        assert len(firsts) == 1, answers
        (document,) = stored(fleet.database, {event_id})
        assert document["source"] == deliveries[firsts[0]].route
        by_first = ENRICHED_BY_EVENT_GRID["clientAddress"] if firsts == [2] else None
        expected = {**ENRICHED_BY_EVENT_GRID, "clientAddress": by_first}
        assert {k: document[k] for k in ENRICHED_BY_EVENT_GRID} == expected

    records = all_decisions(everyone)
    for event_id, deliveries, _ in rounds:
        assert storing_records(records)[event_id] == 1
        duplicates = sum(
            r[(event_id, route, "duplicate")] for r in records for route in ("webhook", "eventgrid")
        )
        assert duplicates == len(deliveries) - 1


def test_one_batch_at_every_instance_at_once_stores_each_event_once(fleet: Fleet) -> None:
    """Event Grid redelivers a batch it thinks failed, maybe to another instance while the first
    delivery is still being written; the webhook delivers some of its events meanwhile."""
    events = [payloads.with_new_id(payloads.PUSH, tag=f"b{n}") for n in range(8)]
    batch = [event_grid(event) for event in events]
    deliveries = [
        eventgrid(0, batch),
        eventgrid(1, batch[::-1]),
        eventgrid(2, batch[4:] + batch[:4]),
        *(webhook(n % INSTANCES, event) for n, event in enumerate(events[:4])),
    ]
    answers: list[Answer] = deliver_at_once(deliveries, fleet.instances)

    batches, webhooks = answers[:3], answers[3:]
    assert [a.status for a in batches] == [200] * 3, batches
    assert {a.status for a in webhooks} <= {200, 201}, webhooks
    for answer in batches:
        assert answer.body["recorded"] + answer.body["duplicate"] == len(events)
    created = sum(a.body["recorded"] for a in batches) + sum(a.status == 201 for a in webhooks)
    assert created == len(events)  # each event stored first by exactly one delivery
    documents = stored(fleet.database, {event["id"] for event in events})
    assert sorted(d["id"] for d in documents) == sorted(event["id"] for event in events)
    for document in documents:
        assert document["registryResourceId"] == TOPIC  # filled in when the webhook was first


class _History:
    """ACR's delivery history of one webhook, as the management API would page it."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self._entries = entries

    def entries(self, webhook_name: str) -> Iterator[dict[str, Any]]:
        yield from copy.deepcopy(self._entries)


def test_reconcile_while_live_deliveries_of_the_same_events_arrive(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """The reconcile timer (on a fourth instance: this process) runs through a history of the
    same events that the webhook and Event Grid deliver to the instances at that moment."""
    events = [payloads.with_new_id(payloads.PUSH, tag=f"r{n}") for n in range(12)]
    actor = {"name": "history-bot"}
    history = _History(
        [history_entry({**event, "actor": actor}) for event in events]
        + [history_entry({**payloads.PUSH, "id": "ping-1", "action": "ping"}, "200")]
    )
    target = ReconcileSettings(registry_id=TOPIC, webhook_names=("acrhook",))
    repository = CosmosEventRepository(fleet.database)
    deliveries = [
        webhook(n % INSTANCES, event)
        if n % 2 == 0
        else eventgrid(n % INSTANCES, [event_grid({**event, "location": "westeurope"})])
        for n, event in enumerate(events)
    ]
    with caplog.at_level(logging.INFO, logger="acr_webhook"):
        *answers, outcomes = deliver_at_once(
            deliveries, fleet.instances, partial(reconcile_webhooks, target, repository, history)
        )

    assert {a.status for a in answers} <= {200, 201}, answers
    counts = outcomes["acrhook"].counts
    documents = {d["id"]: d for d in stored(fleet.database, {e["id"] for e in events})}
    assert sorted(documents) == sorted(event["id"] for event in events)
    by_reconcile = sorted(i for i, d in documents.items() if d["source"] == "reconcile")
    assert counts.recorded == len(by_reconcile)
    assert (counts.already, counts.skipped, counts.invalid) == (len(events) - counts.recorded, 1, 0)
    summary = f"reconcile of webhook 'acrhook': {counts.summary()}"
    assert summary in caplog.messages
    reconciled = [r["event_id"] for r in logged_decisions(caplog) if r["decision"] == "reconciled"]
    assert sorted(reconciled) == by_reconcile
    for n, event in enumerate(events):
        document = documents[event["id"]]
        assert document["actor"] == "history-bot"  # ACR's history carried who pushed
        if n % 2:
            assert (document["location"], document["registryResourceId"]) == ("westeurope", TOPIC)

    def decided() -> Counter[str]:
        """Per event: its storing decisions on the instances and by reconcile."""
        storing = storing_records(all_decisions(fleet.instances))
        return Counter({e["id"]: storing[e["id"]] + reconciled.count(e["id"]) for e in events})

    # An instance's lines reach this process through a pipe after its answer: wait for them
    # (under load they had not all come, read as 0 decisions for a stored event).
    wait_until(lambda: all(decided().values()), 10, "every stored event's decision line")
    assert decided() == Counter({event["id"]: 1 for event in events})


def page_through(instances: list[ServeProcess], params: dict[str, str]) -> list[str]:
    """Every event id the read API gives for ``params``, two per page, each page asked of the
    next instance with the continuation the previous instance gave."""
    ids: list[str] = []
    continuation: str | None = None
    for page in range(20):
        query = {**params, "limit": "2", **({"continuation": continuation} if continuation else {})}
        process = instances[page % len(instances)]
        answer = requests.get(process.url("acr/events"), params=query, timeout=10)
        assert answer.status_code == 200, answer.text
        ids += [event["id"] for event in answer.json()["events"]]
        continuation = answer.json()["continuation"]
        if continuation is None:
            return ids
    raise AssertionError("paging never ended")


def test_a_continuation_token_pages_on_any_instance(fleet: Fleet) -> None:
    """A load balancer sends each page to any instance: the token of one is the next page on
    another. Two of the events share a timestamp (a tie the token ends in)."""
    repository, tag = "multi/paging", "paging-tag"
    events = [payloads.with_new_id(payloads.PUSH, repository=repository, tag=tag) for _ in range(7)]
    for n, event in enumerate(events):
        event["timestamp"] = f"2026-06-01T00:00:0{min(n, 5)}Z"
    deliveries = [webhook(n % INSTANCES, event) for n, event in enumerate(events)]
    answers: list[Answer] = deliver_at_once(deliveries, fleet.instances)
    assert {a.status for a in answers} == {201}, answers
    everyone = fleet.everyone
    for params in ({"repository": repository}, {"tag": tag}):  # one partition, and across
        whole = requests.get(
            everyone[0].url("acr/events"), params={**params, "limit": "50"}, timeout=10
        )
        expected = [event["id"] for event in whole.json()["events"]]
        assert sorted(expected) == sorted(event["id"] for event in events)
        assert page_through(everyone, params) == expected
        assert page_through(everyone[::-1], params) == expected


def test_a_message_one_instance_holds_is_not_handled_by_another(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen with two serve processes and Cosmos DB answering in 1.85 s: the first took a batch
    of 16 parked events; 30 s later the second took the last one, still waiting in that batch,
    and replayed it too ('already recorded'), and the first's delete failed ('pop receipt did not
    match', logged as the queue being unreachable). The Functions runtime keeps a message hidden
    while its function runs (it renews the visibility timeout: the WebJobs SDK's
    UpdateQueueMessageVisibilityCommand). Here the lease is 1 s and each call 0.3 s, the same
    code path in 2.5 s instead of 40."""
    monkeypatch.setattr(queues, "LEASE_SECONDS", 1)
    queue = QueueSettings(f"q{uuid.uuid4().hex[:16]}", fleet.storage)
    provision_queue(queue)
    client = create_queue_client(queue, {})
    for number in range(5):
        client.send_message(f"message {number}")
    handled: Counter[bytes] = Counter()
    first_call = threading.Event()

    def replay(message: func.QueueMessage) -> None:
        handled[message.get_body()] += 1
        first_call.set()
        time.sleep(0.3)  # a replay against a database that answers slowly

    app = func.FunctionApp()
    app.queue_trigger(arg_name="message", queue_name=queue.queue_name, connection="Storage")(replay)
    [function] = queues.queue_functions(app)
    options = queues.QueueOptions(max_polling_interval=0.2)
    first, second = (queues.QueuePoller(function, queue, options) for _ in range(2))
    first.start()
    try:
        assert first_call.wait(10)  # the first instance holds the batch: all five messages
        second.start()
        wait_until(lambda: len(handled) == 5, seconds=10, what="every message handled")
        time.sleep(0.8)  # the rest of the first instance's batch
    finally:
        first.stop()
        second.stop()
    assert [body for body, times in handled.items() if times > 1] == []


def test_an_outage_seen_by_every_instance_parks_replays_and_redrives_each_event_once(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The database hangs for every proxied instance. Each parks what it is sent, the same
    event included (three copies); one event's parked copy waits while Event Grid stores that
    event live on an instance that still reaches the database. Once the hang ends, every
    instance's poller replays the one queue, while two ``redrive`` runs at once move a poisoned
    event back."""
    instances, queue = fleet.instances, QueueSettings(FALLBACK_QUEUE_NAME, fleet.storage)
    shared = payloads.with_new_id(payloads.PUSH)
    own = [payloads.with_new_id(payloads.PUSH) for _ in instances]
    waiting = payloads.with_new_id(payloads.ENRICHED_PUSH)
    poisoned = payloads.with_new_id(payloads.PUSH)
    # As the runtime moves a message to poison: the parked event's message, unchanged.
    document = to_document(AcrEvent.model_validate(poisoned), received_at=datetime.now(UTC))
    create_queue_client(queue.poison, {}).send_message(ParkedEvent(document).to_message())

    deliveries = [
        *(webhook(n, shared) for n in range(INSTANCES)),
        *(webhook(n, event) for n, event in enumerate(own)),
        webhook(0, without_enrichment(waiting)),
    ]
    fleet.proxy.hang.set()
    try:
        answers: list[Answer] = deliver_at_once(deliveries, instances)
        # While its parked copy waits, Event Grid's delivery of the event reaches an instance
        # whose path to the database works.
        live = eventgrid(0, [event_grid(waiting)]).send([fleet.direct])
    finally:
        fleet.proxy.hang.clear()
    redrive = partial(run_cli, ["redrive"], tmp_path, {"AzureWebJobsStorage": fleet.storage})
    moved: list[subprocess.CompletedProcess[str]] = at_once([redrive, redrive])

    assert [(a.status, a.body["status"]) for a in answers] == [(202, "queued")] * len(answers)
    assert max(a.elapsed_s for a in answers) < WEBHOOK_BUDGET_S
    assert (live.status, live.body) == (200, {"recorded": 1, "duplicate": 0, "ignored": 0})
    assert [done.returncode for done in moved] == [0, 0], [done.stderr for done in moved]
    lines = [re.search(r"Moved (\d+) message", done.stdout) for done in moved]
    assert sum(int(line[1]) for line in lines if line) == 1, [done.stdout for done in moved]

    ids = {shared["id"], waiting["id"], poisoned["id"], *(event["id"] for event in own)}
    wait_until(
        lambda: len(stored(fleet.database, ids)) >= len(ids) and fleet.queue_depths() == (0, 0),
        seconds=STORED_AFTER_RECOVERY_S,
        what="every parked event stored and both queues empty",
    )
    time.sleep(0.5)  # a replay still under way would log a second outcome now
    documents = {d["id"]: d for d in stored(fleet.database, ids)}
    assert len(documents) == len(ids)
    assert documents[waiting["id"]]["source"] == "eventgrid"  # the live delivery was first
    expected = {**ENRICHED_BY_EVENT_GRID}
    assert {k: documents[waiting["id"]][k] for k in expected} == expected  # kept, not replaced
    assert {documents[i]["source"] for i in ids - {waiting["id"]}} == {"webhook"}
    assert fleet.queue_depths() == (0, 0)

    records = all_decisions(fleet.everyone)
    # Each instance recorded its own decision for each delivery it answered...
    for n, instance in enumerate(records[:INSTANCES]):
        assert instance[(shared["id"], "webhook", "queued")] == 1
        assert instance[(own[n]["id"], "webhook", "queued")] == 1
    assert records[0][(waiting["id"], "webhook", "queued")] == 1

    # ...and each parked copy has one outcome among all the pollers: three copies of the shared
    # event, one stored, two found stored.
    def replayed(event: dict[str, Any], decision: str) -> int:
        return sum(r[(event["id"], "replay", decision)] for r in records)

    assert (replayed(shared, "replayed"), replayed(shared, "duplicate")) == (1, 2)
    for event in [*own, poisoned]:
        assert (replayed(event, "replayed"), replayed(event, "duplicate")) == (1, 0)
    assert (replayed(waiting, "replayed"), replayed(waiting, "duplicate")) == (0, 1)
    assert records[-1][(waiting["id"], "eventgrid", "recorded")] == 1
    storing = storing_records(records)
    assert {event_id: storing[event_id] for event_id in ids} == dict.fromkeys(ids, 1)
