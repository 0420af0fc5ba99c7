"""Application Insights' field limits against the app's decision records, through the Azure
Monitor exporter's own conversion (the code that cuts a field to its limit).

Source: MicrosoftDocs/azure-docs, includes/application-insights-limits.md (learn.microsoft.com
/azure/azure-monitor/service-limits#application-insights): "Maximum telemetry item size 64 kB",
"Property value string length 8,192", "Trace and exception message length 32,768". The
exporter (azure-monitor-opentelemetry-exporter: _utils._filter_custom_properties and
logs._exporter._map_body_to_message) cuts longer values to those lengths without a mark.

What a client controls in a record is bounded by models.py: the event id and repository (255
characters each, at most 10 characters each in repr: U+E0001 is shown as '\\U000e0001'), and
a 400's reason (one problem per field, no input values). Only a store's own message (the
detail of a refusal or an outage) is free text, and it comes after the event id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from azure.monitor.opentelemetry.exporter.export.logs._exporter import _convert_log_to_envelope
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from acr_webhook import handlers
from acr_webhook.eventgrid import MAX_BATCH_EVENTS, handle_eventgrid
from acr_webhook.handlers import handle_webhook, log_event_decision
from acr_webhook.models import MAX_ID_LENGTH, MAX_REPOSITORY_LENGTH, AcrEvent
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.logs import on_app_logger
from tests.unit.test_models import worst_case_payload

MAX_ITEM_BYTES = 64 * 1000  # "64 kB"
MAX_PROPERTY_CHARS = 8192
MAX_MESSAGE_CHARS = 32768
# A character the text rules let through whose repr is longest (a format character).
LONGEST_REPR = "\U000e0001"


@pytest.fixture
def exported() -> Iterator[InMemoryLogRecordExporter]:
    """The app's records as OpenTelemetry hands them to the Azure Monitor exporter."""
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with on_app_logger(LoggingHandler(logger_provider=provider), logging.INFO):
        yield exporter


def envelopes(exporter: InMemoryLogRecordExporter) -> list[dict[str, Any]]:
    """Each record as the exporter sends it: its envelope, serialised."""
    return [_convert_log_to_envelope(record).as_dict() for record in exporter.get_finished_logs()]


def sent(envelope: dict[str, Any]) -> tuple[str, dict[str, str], int]:
    """The message, the custom dimensions and the item's size in bytes (JSON, ASCII-escaped:
    the widest encoding of it)."""
    data = envelope["data"]["baseData"]
    return (
        data["message"],
        data.get("properties", {}),
        len(json.dumps(envelope, default=str).encode()),
    )


def widest_event() -> AcrEvent:
    payload = worst_case_payload()
    payload["id"] = LONGEST_REPR * MAX_ID_LENGTH
    payload["target"]["repository"] = LONGEST_REPR * MAX_REPOSITORY_LENGTH
    return AcrEvent.model_validate(payload)


def test_the_widest_decision_keeps_its_event_id_whole_whatever_the_detail(
    exported: InMemoryLogRecordExporter,
) -> None:
    """The message names the event first: a detail cut at 32,768 characters takes nothing of
    the id or the repository, and the dimensions carry both whole (255 < 8,192)."""
    event = widest_event()
    detail = "x" * 40_000  # longer than any store's message; only the detail is cut
    reason = "the event store refused this event: refused by the database (400)"
    log_event_decision(
        logging.getLogger(handlers.__name__),
        logging.WARNING,
        "webhook",
        "rejected",
        event,
        reason=reason,
        detail=detail,
    )

    [envelope] = envelopes(exported)
    message, dimensions, _size = sent(envelope)
    head = (
        f"webhook event={event.id!r} action={event.action!r} "
        f"repository={event.target.repository!r} rejected: "
    )
    assert len(head) == 5_163 < MAX_MESSAGE_CHARS
    assert message == (head + detail)[:MAX_MESSAGE_CHARS]
    assert dimensions["event_id"] == event.id
    assert dimensions["repository"] == event.target.repository
    assert dimensions["reason"] == reason  # not cut: what queries group by stays whole


def test_the_widest_routine_decision_fits_one_telemetry_item(
    exported: InMemoryLogRecordExporter,
) -> None:
    event = widest_event()
    log_event_decision(
        logging.getLogger(handlers.__name__), logging.INFO, "eventgrid", "recorded", event
    )

    [envelope] = envelopes(exported)
    message, dimensions, size = sent(envelope)
    assert len(message) < MAX_MESSAGE_CHARS
    assert (dimensions["event_id"], dimensions["repository"]) == (
        event.id,
        event.target.repository,
    )
    assert size < 20_000 < MAX_ITEM_BYTES, size


def every_field_invalid() -> dict[str, Any]:
    """Each field of the model at its limit and then some, so that each is a problem."""
    payload = worst_case_payload()

    def grow(node: dict[str, Any]) -> None:
        for name, value in node.items():
            if isinstance(value, dict):
                grow(value)
            elif isinstance(value, str) and name not in ("timestamp", "action"):
                node[name] = value + "x" * 300

    grow(payload)
    payload["request"]["useragent"] = "kept, never a problem"
    payload["target"].update(size="12", length=-1)
    payload["timestamp"] = "yesterday"
    return payload


def test_a_400_that_names_every_field_fits_a_dimension_and_a_message(
    exported: InMemoryLogRecordExporter,
) -> None:
    answer = handle_webhook(payloads.body(every_field_invalid()), FakeEventRepository())

    assert answer.status == 400
    [envelope] = envelopes(exported)
    message, dimensions, size = sent(envelope)
    assert answer.body is not None
    assert dimensions["reason"] == answer.body["error"]  # whole: ~1,000 characters
    assert len(dimensions["reason"]) < MAX_PROPERTY_CHARS
    assert len(message) < MAX_MESSAGE_CHARS and size < MAX_ITEM_BYTES
    # The claimed identity is clipped (handlers.MAX_LOGGED_CLAIM) but still names the event.
    assert dimensions["event_id"].startswith(worst_case_payload()["id"][:200])


def test_a_batch_of_5000_invalid_events_is_one_reason_of_ten_problems(
    exported: InMemoryLogRecordExporter,
) -> None:
    """Event Grid's largest batch, each event without its data: the answer and the record name
    the first ten problems and count the rest (eventgrid._summary)."""
    pushed = "Microsoft.ContainerRegistry.ImagePushed"
    batch = [{"id": str(index), "eventType": pushed} for index in range(MAX_BATCH_EVENTS)]
    answer = handle_eventgrid(
        payloads.body(batch),
        {},
        FakeEventRepository(),
        executor=None,  # type: ignore[arg-type]
    )

    assert answer.status == 400
    [envelope] = envelopes(exported)
    _message, dimensions, size = sent(envelope)
    assert dimensions["reason"].endswith(f"and {MAX_BATCH_EVENTS - 10} more")
    assert len(dimensions["reason"]) < MAX_PROPERTY_CHARS and size < MAX_ITEM_BYTES
