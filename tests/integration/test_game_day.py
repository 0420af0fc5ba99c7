"""Game day: the faults docs/operations.md and docs/delivery.md are written for, caused for real,
then the runbooks followed as an on-call engineer would.

The database outage runs once for the module: function_app's registered functions and the
process-wide objects of runtime.py, the local Cosmos DB server frozen (SIGSTOP: it accepts
connections and never answers), the fallback queue on Azurite, and the local host's queue
trigger replaying it with host.json's rules. Every decision record the app logs is kept, so the
log queries and alerts of docs/operations.md can be run over what the app really emits: their
KQL is mirrored here clause by clause, and each mirrored clause is checked to be in the docs as
written, so that a change to either shows.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

import function_app
from acr_webhook import runtime
from acr_webhook.config import FALLBACK_QUEUE_NAME, QueueSettings, Settings
from acr_webhook.fallback import StorageQueueFallback, create_queue_client, provision_queue
from acr_webhook.local.host import HOST_JSON
from acr_webhook.local.queues import QueueOptions, QueuePoller, queue_functions
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.results import utc_now
from tests.conftest import fresh_settings, read_all
from tests.support import payloads
from tests.support.azurite import ACCOUNT, ACCOUNT_KEY, LocalAzurite
from tests.support.cosmos_server import REPO_ROOT, LocalCosmosServer
from tests.support.deployed import PROCESS_WIDE
from tests.support.kusto import compiled_shipped_queries
from tests.support.logs import DECISION_FIELDS, on_app_logger
from tests.support.serve import run_cli

OPERATIONS = (REPO_ROOT / "docs" / "operations.md").read_text()
KUSTO_BLOCKS = re.findall(r"```kusto\n(.*?)```", OPERATIONS, flags=re.DOTALL)
WEBHOOK_BUDGET_S = 4.5  # README: every webhook answer within 4.5 s


def kusto(text: str) -> str:
    return " ".join(text.split())


def in_the_docs(clause: str) -> None:
    """The KQL clause a test mirrors is in docs/operations.md as written (whitespace aside)."""
    assert any(kusto(clause) in kusto(block) for block in KUSTO_BLOCKS), clause


class Kept(logging.Handler):
    """Every record of the app's loggers, from every thread (the queue trigger's included)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass(frozen=True)
class Trace:
    """A record as the ``traces`` table has it: a timestamp, the message, customDimensions."""

    timestamp: datetime
    message: str
    dimensions: dict[str, Any]

    def dim(self, name: str) -> str:
        """``tostring(customDimensions.<name>)``: empty when the record does not carry it."""
        value = self.dimensions.get(name)
        return "" if value is None else str(value)


def traces_of(records: list[logging.LogRecord]) -> list[Trace]:
    return [
        Trace(
            datetime.fromtimestamp(record.created, UTC),
            record.getMessage(),
            {key: getattr(record, key) for key in DECISION_FIELDS if hasattr(record, key)},
        )
        for record in records
    ]


@dataclass
class Outage:
    settings: Settings
    answers: list[tuple[str, int, float]]  # (event id, status, seconds)
    healthy: list[Trace]  # before the fault
    during: list[Trace]  # from the fault to the database's return
    after: list[Trace]  # from its return until every parked event was replayed
    stored: list[dict[str, Any]]
    queues: tuple[int, int]  # messages left in the fallback queue and its poison queue

    @property
    def traces(self) -> list[Trace]:
        return [*self.healthy, *self.during, *self.after]


def post(body: bytes) -> func.HttpRequest:
    return func.HttpRequest("POST", "http://localhost/api/acr/webhook", body=body)


def push(tag: str) -> tuple[str, int, float]:
    event = payloads.with_new_id(payloads.PUSH, tag=tag)
    started = time.monotonic()
    answer = function_app.acr_webhook(post(payloads.body(event)))
    return str(event["id"]), answer.status_code, time.monotonic() - started


def depth(queue: QueueSettings) -> int:
    count = create_queue_client(queue, {}).get_queue_properties().approximate_message_count
    return int(count or 0)


@pytest.fixture(scope="module")
def outage(azurite: LocalAzurite) -> Iterator[Outage]:
    """One push while healthy; then the database frozen: two pushes at once (both wait out
    the write's ~2 s), one more (answered from the failure memory); the database back, and the
    queue trigger run until the fallback queue is empty."""
    server = LocalCosmosServer()
    server.start()
    queue = QueueSettings(FALLBACK_QUEUE_NAME, azurite.connection_string)
    provision_queue(queue)
    for each in (queue, queue.poison):
        create_queue_client(each, {}).clear_messages()
    settings = dataclasses.replace(
        fresh_settings(server), fallback_queue=queue, replay_max_delay_s=1
    )
    kept = Kept()
    poller: QueuePoller | None = None
    with pytest.MonkeyPatch.context() as patch, on_app_logger(kept, logging.INFO):
        patch.setattr(runtime, "settings", lambda: settings)
        patch.setattr(function_app, "settings", lambda: settings)
        for built in PROCESS_WIDE:
            built.cache_clear()
        try:
            answers = [push("healthy")]
            healthy = len(kept.records)
            server.freeze()
            with ThreadPoolExecutor(max_workers=2) as pool:
                answers += pool.map(push, ["outage-1", "outage-2"])
            answers.append(push("outage-3"))
            server.thaw()
            during = len(kept.records)
            [function] = [
                f for f in queue_functions(function_app.app) if f.name == "replay_fallback"
            ]
            poller = QueuePoller(function, queue, QueueOptions.from_host_json(HOST_JSON))
            poller.start()
            wanted = {event_id for event_id, status, _ in answers if status in (200, 201, 202)}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if wanted <= {str(d["id"]) for d in read_all(settings)} and depth(queue) == 0:
                    break
                time.sleep(0.2)
        finally:
            server.thaw()
            if poller is not None:
                poller.stop()
            for built in PROCESS_WIDE:
                built.cache_clear()
        traces = traces_of(kept.records)
        yield Outage(
            settings,
            answers,
            traces[:healthy],
            traces[healthy:during],
            traces[during:],
            read_all(settings),
            (depth(queue), depth(queue.poison)),
        )
    server.close()


def decisions(traces: list[Trace]) -> list[Trace]:
    return [t for t in traces if t.dim("decision")]


# --- answers and "nothing lost" -------------------------------------------------------------


def test_an_outage_is_answered_202_in_time_and_every_accepted_event_ends_stored_once(
    outage: Outage,
) -> None:
    """README Answers: "Cosmos DB unreachable or not answering, fallback queue configured:
    202 {"status": "queued"} within 4.5 s"; Security and reliability: "loses nothing, as long
    as the queue works"; replay "stores every parked event" once the database is back."""
    [(_, healthy, _), *during] = outage.answers
    assert healthy == 201
    assert [status for _, status, _ in during] == [202, 202, 202], outage.answers
    assert all(seconds < WEBHOOK_BUDGET_S for _, _, seconds in outage.answers), outage.answers
    ids = [str(d["id"]) for d in outage.stored]
    assert sorted(ids) == sorted(event_id for event_id, _, _ in outage.answers)  # once each
    assert {d["source"] for d in outage.stored} == {"webhook"}
    assert outage.queues == (0, 0)


# --- the log queries and alerts, over what the app emitted -------------------------------------


def test_every_custom_dimension_the_queries_read_is_one_the_outage_records_carry(
    outage: Outage,
) -> None:
    """Telemetry: "A decision's fields are in customDimensions: decision, route, event_id,
    action, repository, reason, store_ms". Every name the shipped KQL reads (docs/operations.md's
    queries and alerts, the alert rules, the workbook), in whichever spelling Kusto takes
    (customDimensions.x, ["x"], ['x'], .['x'], through an alias: read from Kusto.Language's
    syntax tree), is one the records of a real outage carry."""
    reads = [read for result in compiled_shipped_queries().values() for read in result.dynamic]
    used = {read["name"] for read in reads}
    carried = {name for t in outage.traces for name in t.dimensions}
    assert {"decision", "route", "store_ms"} <= used, "the queries lost their custom dimensions"
    assert used <= carried, used - carried


QUEUED_BY_WEBHOOK = '(decision == "queued" and route != "replay")'
REPLAY_DONE = '(route == "replay" and decision in ("replayed", "duplicate", "rejected"))'
DONE_DECISIONS = ("replayed", "duplicate", "rejected")


def queued_and_replayed(traces: list[Trace]) -> dict[str, dict[str, Any]]:
    """docs/operations.md "Queued and replayed" (and the 30-minute alert's first half), one row
    per event_id: queued_at, replayed_at, outcome, done."""
    in_the_docs(f"| where {QUEUED_BY_WEBHOOK} or {REPLAY_DONE}")
    in_the_docs('queued_at = minif(timestamp, decision == "queued" and route != "replay")')
    in_the_docs('replayed_at = minif(timestamp, route == "replay" and decision != "queued")')
    in_the_docs('done = countif(route == "replay" and decision != "queued") by event_id')
    rows: dict[str, dict[str, Any]] = {}
    for t in traces:
        decision, route = t.dim("decision"), t.dim("route")
        queued = decision == "queued" and route != "replay"
        done = route == "replay" and decision in DONE_DECISIONS
        if not (queued or done):
            continue
        row = rows.setdefault(
            t.dim("event_id"), {"queued_at": None, "replayed_at": None, "outcome": None, "done": 0}
        )
        if queued and row["queued_at"] is None:
            row["queued_at"] = t.timestamp
        if done:
            row["done"] += 1
            row["outcome"] = row["outcome"] or decision
            row["replayed_at"] = row["replayed_at"] or t.timestamp
    return {event_id: row for event_id, row in rows.items() if row["queued_at"] is not None}


def test_queued_and_replayed_shows_each_parked_event_with_its_replay(outage: Outage) -> None:
    """ "Queued and replayed: each event the webhook parked, when it was replayed and how long
    it waited (replayed_at empty = still waiting)": run over the outage's records, one row per
    event answered 202, each replayed after it was queued; while the database was still down
    (records up to its return) every row is still waiting."""
    parked = {event_id for event_id, status, _ in outage.answers if status == 202}
    rows = queued_and_replayed(outage.traces)
    assert set(rows) == parked
    for row in rows.values():
        # "duplicate": the frozen server stored a write after the app had given up on it.
        assert row["outcome"] in ("replayed", "duplicate"), rows
        assert row["replayed_at"] >= row["queued_at"], rows
    still_down = queued_and_replayed([*outage.healthy, *outage.during])
    assert set(still_down) == parked
    assert all(row["replayed_at"] is None for row in still_down.values())


def older_than_30_minutes(traces: list[Trace], now: datetime) -> list[str]:
    """The alert "Queued events older than 30 minutes": the event ids it returns at ``now``."""
    in_the_docs("| where isnotnull(queued_at) and done == 0 and queued_at < ago(30m)")
    rows = queued_and_replayed([t for t in traces if t.timestamp > now - timedelta(days=2)])
    return sorted(
        event_id
        for event_id, row in rows.items()
        if row["done"] == 0 and row["queued_at"] < now - timedelta(minutes=30)
    )


def test_the_30_minute_alert_fires_only_while_parked_events_wait(outage: Outage) -> None:
    """Recommended alerts: "an event still waiting after 30 minutes means the database has
    been unavailable that long". Evaluated 31 minutes after the outage: on the records up to
    the database's return it returns every parked event; once the replay ran, nothing; on a
    healthy stretch, nothing."""
    later = outage.traces[-1].timestamp + timedelta(minutes=31)
    parked = sorted(event_id for event_id, status, _ in outage.answers if status == 202)
    assert older_than_30_minutes([*outage.healthy, *outage.during], later) == parked
    assert older_than_30_minutes(outage.traces, later) == []
    assert older_than_30_minutes(outage.healthy, later) == []


def test_no_failure_alert_fires_for_an_outage_the_queue_absorbed(outage: Outage) -> None:
    """The queue took every event: nothing was lost, so neither the 5xx alert's `unavailable`
    half, nor the replay's `rejected` alert, nor the poison alert has anything to show (the
    30-minute alert is the one for this fault); on the healthy stretch, no warning at all."""
    in_the_docs('tostring(customDimensions.decision) == "unavailable"')
    in_the_docs(
        'tostring(customDimensions.decision) == "rejected" '
        'and tostring(customDimensions.route) == "replay"'
    )
    in_the_docs('message has "acr-events-fallback-poison"')
    assert [t for t in outage.traces if t.dim("decision") == "unavailable"] == []
    assert [t for t in outage.traces if t.dim("decision") == "rejected"] == []
    assert [t for t in outage.traces if "acr-events-fallback-poison" in t.message] == []
    assert [t.dim("decision") for t in decisions(outage.healthy)] == ["recorded"]


def test_push_activity_counts_each_push_once_whichever_way_it_was_stored(outage: Outage) -> None:
    """ "Push activity ... An event has at most one such record: a write that times out
    although Cosmos DB stored it is queued ..., and its replay ... then finds a duplicate":
    one `recorded` or `replayed` record per push, none for a push whose timed-out write landed
    all the same (its replay a `duplicate`), never two."""
    in_the_docs('tostring(customDimensions.decision) in ("recorded", "replayed", "reconciled")')
    counted = Counter(
        t.dim("event_id")
        for t in outage.traces
        if t.dim("action") == "push" and t.dim("decision") in ("recorded", "replayed", "reconciled")
    )
    landed = {t.dim("event_id") for t in outage.after if t.dim("decision") == "duplicate"}
    expected = {event_id: 1 for event_id, _, _ in outage.answers if event_id not in landed}
    assert counted == Counter(expected)


def test_events_parked_for_the_same_fault_share_one_reason(outage: Outage) -> None:
    """ "Rejected, queued and unavailable, by reason" summarizes by decision, route and
    `reason`. The two pushes sent at once while the database was frozen met the same fault (the
    write's read timed out) and are one row of that query, with events = 2. Each reason held
    the SDK's message, with the request's own read timeout in it ('read timeout=1.99999...'):
    a row per event. The message still says it all."""
    in_the_docs(
        "by decision, route = tostring(customDimensions.route), "
        "reason = tostring(customDimensions.reason)"
    )
    together = {event_id for event_id, _, _ in outage.answers[1:3]}  # outage-1 and outage-2
    by_reason = Counter(
        (t.dim("decision"), t.dim("route"), t.dim("reason"))
        for t in outage.during
        if t.dim("decision") == "queued" and t.dim("event_id") in together
    )
    assert sorted(by_reason.values()) == [2], by_reason
    [(_, _, reason)] = by_reason
    assert reason == "database unavailable (ServiceResponseTimeoutError); queued for replay"
    messages = [t.message for t in outage.during if t.dim("event_id") in together]
    assert all("Read timed out. (read timeout=" in message for message in messages), messages


# --- poison messages, then "Re-driving poison messages" step by step ---------------------------


def storage_at(port: int) -> str:
    """A storage connection string whose queue endpoint is ``port`` on this machine."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


def documented_redrive_output() -> list[str]:
    """The output docs/operations.md shows for ``python -m acr_webhook redrive``."""
    section = OPERATIONS.split("## Re-driving poison messages", 1)[1]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, flags=re.DOTALL)
    [command, output, *_] = blocks
    assert command == ("bash", ".venv/bin/python -m acr_webhook redrive\n")
    assert output[0] == "", output  # a plain block: the command's output
    return str(output[1]).splitlines()


def test_a_parked_event_poisoned_by_a_double_outage_is_redriven_as_the_docs_say(
    cosmos_settings: Settings,
    azurite: LocalAzurite,
    queues: QueueSettings,
    tmp_path: Path,
    refusing_port: Callable[[], int],
) -> None:
    """The one way an event the webhook parked reaches the poison queue: its replay finds the
    database down and the queue cannot take it back. docs/operations.md: poison "only when its
    replay failed 5 times" (host.json maxDequeueCount); "Find the cause first: ... its
    `unavailable` decision when the queue could not take the event back"; the poison alert
    matches the move's log line. Then, the cause fixed, the section's command as written, its
    output as shown, the replay "within seconds", and a second run that moves nothing."""
    queue = queues
    event = AcrEvent.model_validate(payloads.with_new_id(payloads.PUSH))
    StorageQueueFallback(queue).put(to_document(event, utc_now()))  # parked by the webhook
    # The database and the queue the replay puts events back into, both refusing connections.
    down = dataclasses.replace(
        cosmos_settings,
        cosmos_endpoint=f"https://127.0.0.1:{refusing_port()}/",
        fallback_queue=QueueSettings(FALLBACK_QUEUE_NAME, storage_at(refusing_port())),
    )
    fixed = dataclasses.replace(cosmos_settings, fallback_queue=queue)
    host_json = QueueOptions.from_host_json(HOST_JSON)
    # host.json's retry count; its 5 s between tries left out to keep the test short.
    options = dataclasses.replace(host_json, visibility_timeout=0, max_polling_interval=0.2)
    [function] = [f for f in queue_functions(function_app.app) if f.name == "replay_fallback"]
    kept = Kept()
    current = down
    with pytest.MonkeyPatch.context() as patch, on_app_logger(kept, logging.INFO):
        patch.setattr(runtime, "settings", lambda: current)
        patch.setattr(function_app, "settings", lambda: current)
        for built in PROCESS_WIDE:
            built.cache_clear()
        poller = QueuePoller(function, queue, options)
        try:
            poller.start()
            deadline = time.monotonic() + 20
            while depth(queue.poison) == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            poller.stop()
        poisoned = traces_of(kept.records)

        current = fixed  # the cause fixed
        for built in PROCESS_WIDE:
            built.cache_clear()
        env = {"AzureWebJobsStorage": azurite.connection_string}
        first = run_cli(["redrive"], tmp_path, env)
        poller = QueuePoller(function, queue, options)
        try:
            poller.start()
            deadline = time.monotonic() + 10
            while not read_all(cosmos_settings) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            poller.stop()
            for built in PROCESS_WIDE:
                built.cache_clear()
        again = run_cli(["redrive"], tmp_path, env)
        replayed = traces_of(kept.records)[len(poisoned) :]

    assert host_json.max_dequeue_count == 5
    mine = [t for t in poisoned if t.dim("event_id") == event.id]
    assert [t.dim("decision") for t in mine] == ["unavailable"] * 5, [t.message for t in poisoned]
    assert all("fallback queue unavailable" in t.dim("reason") for t in mine)
    assert [t for t in poisoned if "acr-events-fallback-poison" in t.message], "no poison alert"
    assert (depth(queue), depth(queue.poison)) == (0, 0)

    assert (first.returncode, first.stdout.splitlines()) == (0, documented_redrive_output())
    assert [str(d["id"]) for d in read_all(cosmos_settings)] == [event.id]
    assert [(t.dim("event_id"), t.dim("decision")) for t in decisions(replayed)] == [
        (event.id, "replayed")
    ]
    assert (again.returncode, again.stdout.splitlines()[0]) == (
        0,
        "Moved 0 message(s) from 'acr-events-fallback-poison' to 'acr-events-fallback' for replay",
    )
