"""Run as ``python -m tests.support.emitted_telemetry`` in a process of its own: loads
function_app as the Functions worker does, with APPLICATIONINSIGHTS_CONNECTION_STRING in the
environment (the app's own telemetry set-up, its exporters sending to whatever ingestion endpoint
that names), and drives each function through every decision it can log, so that the ingestion
endpoint receives every kind of trace and metric the deployed app sends. Prints the answers, so
the caller can tell each path was taken.

In-memory stores (tests/support/fakes.py): what is looked at here is what the app logs about an
outcome, not how the outcome came about. One departure from the deployed set-up: the routine
records are not sampled (sampling only leaves some of them out, unchanged), so that every one is
sent; offline storage is off, so nothing is written outside the process.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, cast

import azure.functions as func
from azure.functions.timer import TimerRequest
from opentelemetry._logs import get_logger_provider
from opentelemetry.metrics import get_meter_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider

from acr_webhook import telemetry

telemetry.configure_telemetry = functools.partial(
    telemetry.configure_telemetry,
    routine_records_per_second=None,
    exporter_options={"disable_offline_storage": True},
)

import function_app  # noqa: E402  (its import sets telemetry up, with the change above)
from acr_webhook.config import ReconcileSettings, Settings  # noqa: E402
from acr_webhook.eventgrid import EVENT_TYPE_ACTIONS  # noqa: E402
from acr_webhook.handlers import SharedSecret  # noqa: E402
from acr_webhook.models import AcrEvent, ParkedEvent, to_document  # noqa: E402
from acr_webhook.reconcile import StoredEvents  # noqa: E402
from acr_webhook.results import utc_now  # noqa: E402
from acr_webhook.store import HistoryUnreadableError  # noqa: E402
from tests.support import payloads  # noqa: E402
from tests.support.fake_queue import FakeFallbackQueue  # noqa: E402
from tests.support.fakes import FakeEventRepository  # noqa: E402
from tests.support.history import history_entry  # noqa: E402

SECRET = "emitted-telemetry-secret"
AUTHORIZED = {"Authorization": f"Bearer {SECRET}"}
RECORDED = [
    payloads.PUSH,
    payloads.DELETE,
    payloads.CHART_PUSH,
    payloads.CHART_DELETE,
    payloads.QUARANTINE,
]
TYPES = {action: event_type for event_type, action in EVENT_TYPE_ACTIONS.items()}
TARGET = ReconcileSettings(
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/reg",
    ("acrwebhook",),
)


class History:
    """ACR's delivery history: ``entries`` for the webhook, then, if ``broken``, unreadable."""

    def __init__(self) -> None:
        self.entries_of: list[dict[str, Any]] = []
        self.broken = False

    def entries(self, webhook_name: str) -> Iterator[dict[str, Any]]:
        yield from self.entries_of
        if self.broken:
            raise HistoryUnreadableError("HttpResponseError: (AuthorizationFailed) 403")


repository = FakeEventRepository()
queue = FakeFallbackQueue()
history = History()
pool = ThreadPoolExecutor(max_workers=4)
settings = dataclasses.replace(
    Settings("https://127.0.0.1:1/", None, "acr", "events", None), reconcile=TARGET
)
for name, built in {
    "event_repository": repository,
    "eventgrid_repository": repository,
    "fallback_queue": queue,
    "shared_secret": SharedSecret(SECRET),
    "batch_executor": pool,
    "settings": settings,
    "webhook_history": history,
    "reconciled_events": StoredEvents(),
}.items():
    setattr(function_app, name, functools.partial(lambda value: value, built))

answers: dict[str, Any] = {}


def webhook(label: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    request = func.HttpRequest(
        "POST",
        "http://localhost/api/acr/webhook",
        headers=AUTHORIZED if headers is None else headers,
        body=body,
    )
    answers[label] = function_app.acr_webhook(request).status_code


def eventgrid(label: str, events: list[dict[str, Any]]) -> None:
    request = func.HttpRequest(
        "POST",
        "http://localhost/api/acr/eventgrid",
        headers={"aeg-event-type": "Notification", **AUTHORIZED},
        body=json.dumps(events).encode(),
    )
    answers[label] = function_app.acr_eventgrid(request).status_code


def grid_event(data: dict[str, Any], event_type: str | None = None) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": TARGET.registry_id,
        "subject": data["target"]["repository"],
        "eventType": event_type or TYPES[data["action"]],
        "eventTime": "2026-11-23T11:59:59.1234567Z",
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


def replay(label: str, body: str) -> None:
    try:
        function_app.replay_fallback(func.QueueMessage(id=str(uuid.uuid4()), body=body))
        answers[label] = "returned"
    except Exception as error:  # the runtime retries it, then poisons it
        answers[label] = type(error).__name__


def parked(payload: dict[str, Any]) -> str:
    document = to_document(AcrEvent.model_validate(payload), utc_now())
    return ParkedEvent(document).to_message()


def reconcile(label: str) -> None:
    function_app.reconcile_history(TimerRequest())
    answers[label] = "returned"


@contextmanager
def down(fallback: bool = False) -> Iterator[None]:
    """The database unavailable for the block, and the fallback queue too if ``fallback``."""
    repository.unavailable, queue.unavailable = True, fallback
    try:
        yield
    finally:
        repository.unavailable = queue.unavailable = False


def main() -> None:
    logging.getLogger().setLevel(logging.INFO)  # the Functions worker's level
    # The webhook: every recorded action, again (duplicate), ping, an unknown action, refusals.
    for payload in RECORDED:
        webhook(f"webhook {payload['action']}", payloads.body(payloads.with_new_id(payload)))
    push = payloads.with_new_id(payloads.PUSH)
    webhook("webhook push", payloads.body(push))
    webhook("webhook again", payloads.body(push))
    webhook("webhook ping", payloads.body({"action": "ping"}))
    webhook(
        "webhook unknown", payloads.body({**payloads.with_new_id(payloads.PUSH), "action": "x"})
    )
    webhook("webhook not json", b"{")
    webhook("webhook invalid", payloads.body({**payloads.with_new_id(payloads.PUSH), "id": 1}))
    webhook("webhook no secret", payloads.body(payloads.with_new_id(payloads.PUSH)), {})
    refused = payloads.with_new_id(payloads.PUSH)
    repository.refused.add(refused["id"])
    webhook("webhook refused", payloads.body(refused))
    with down():
        webhook("webhook queued", payloads.body(payloads.with_new_id(push)))
    with down(fallback=True):
        webhook("webhook unavailable", payloads.body(payloads.with_new_id(push)))

    # Event Grid: recorded, duplicate, an unknown event type, refusals, an outage.
    grid_push = payloads.with_new_id(payloads.PUSH)
    eventgrid("eventgrid push", [grid_event(grid_push)])
    eventgrid("eventgrid again", [grid_event(grid_push)])
    eventgrid("eventgrid unknown", [grid_event(grid_push, "Microsoft.ContainerRegistry.Other")])
    eventgrid("eventgrid invalid", [grid_event({**grid_push, "timestamp": "not a time"})])
    with down():
        eventgrid("eventgrid outage", [grid_event(payloads.with_new_id(push))])

    # The replay of parked events: stored, already stored, still down, down with the queue,
    # refused, not an event.
    replay("replay new", parked(payloads.with_new_id(payloads.PUSH)))
    replay("replay again", parked(push))
    with down():
        replay("replay queued", parked(payloads.with_new_id(payloads.PUSH)))
    with down(fallback=True):
        replay("replay unavailable", parked(payloads.with_new_id(payloads.PUSH)))
    replay("replay refused", parked(refused))
    replay("replay not json", "{")

    # The reconcile timer: a missed event, an invalid entry, an outage, an unreadable history.
    history.entries_of = [
        history_entry(payloads.with_new_id(payloads.PUSH)),
        history_entry({**payloads.with_new_id(payloads.PUSH), "timestamp": "not a time"}),
    ]
    reconcile("reconcile")
    history.entries_of = [history_entry(payloads.with_new_id(payloads.PUSH))]
    with down():
        reconcile("reconcile outage")
    history.entries_of, history.broken = [], True
    reconcile("reconcile unreadable")

    handler = next(
        h
        for h in logging.getLogger(telemetry.APP_LOGGER).handlers
        if isinstance(h, telemetry.DecisionTelemetry)
    )
    assert handler.wait_until_exporting(30), "the exporters were never built"
    cast(LoggerProvider, get_logger_provider()).force_flush()
    cast(MeterProvider, get_meter_provider()).force_flush()
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
