"""Application Insights' ingestion down, throttling or refusing, one fault at a time, with the
real Azure Monitor exporters as the app sets them up (acr_webhook/telemetry.py, offline storage
left on) in ``python -m acr_webhook serve``, against the stand-in of tests/support/ingestion.py
and the real local Cosmos DB server.

Every webhook is still answered within ACR's 5 s (README) and stored: the exporters run on
threads of their own, the events' path only queues records. The exporters' complaints come once
per failed export (the log records' batch leaves every second, the spans' every 5 s, the
metrics' every minute), never once per event, and never name the instrumentation key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest
import requests

from acr_webhook.config import Settings
from tests.conftest import read_all
from tests.support import payloads
from tests.support.ingestion import (
    BLACKHOLE,
    EVERY_ITEM,
    INSTRUMENTATION_KEY,
    Fault,
    Ingestion,
    export_log_lines,
    wait_for,
)
from tests.support.serve import ServeProcess

ACR_WAITS_S = 5.0  # README: ACR calls once and waits 5 s
# Events sent while the sink fails: pushes (their records are sampled) and refused deliveries
# (400, a warning each: every one is exported), enough that a line per record would show.
PUSHES, REFUSED = 20, 200
# Export attempts per second at most: the log records' batch every second (more when over
# 512 are waiting), the spans' every 5 s, the metrics' every minute.
EXPORTS_PER_S = 2.0

FAULTS = {
    "refused": None,  # Ingestion.down(): nothing listens on its port
    "blackhole": BLACKHOLE,
    "500": Fault(status=500),
    "503": Fault(status=503),
    "throttled-429": Fault(status=429, retry_after="3600"),
    "throttled-429-briefly": Fault(status=429, retry_after="2"),
    "daily-cap-439": Fault(status=439, retry_after="3600"),
    "wrong-endpoint-404": Fault(status=404),
    "partial-206-retryable": Fault(status=206, refused=EVERY_ITEM, item_status=500),
    "slow-20s": Fault(delay_s=20.0),
}


@dataclass
class Sent:
    pushes: list[str]  # the event ids
    answers: list[tuple[int, float]]  # status, seconds, for every request


def exporting(served: ServeProcess, ingestion: Ingestion) -> None:
    """The first event, which starts the exporters (telemetry._Pipeline), and its records'
    export: the pipeline is then up, whatever fault comes next."""
    send(served, pushes=1, refused=0)
    assert wait_for(lambda: ingestion.requests >= 1, timeout=30), served.output()


def apply(ingestion: Ingestion, fault: str) -> None:
    chosen = FAULTS[fault]
    if chosen is None:
        ingestion.down()
    else:
        ingestion.fault = chosen


def send(
    served: ServeProcess, pushes: int = PUSHES, refused: int = REFUSED, label: str = "refused"
) -> Sent:
    """``pushes`` pushes, then ``refused`` deliveries without a target (400), whose warnings
    name their ids: ``<label>-<number>``."""
    sent = Sent([], [])
    with requests.Session() as session:
        for number in range(pushes + refused):
            if number < pushes:
                payload = payloads.with_new_id(payloads.PUSH)
                sent.pushes.append(payload["id"])
                body = payloads.body(payload)
            else:
                body = json.dumps({"action": "push", "id": f"{label}-{number}"}).encode()
            started = time.monotonic()
            answer = session.post(
                served.url(), data=body, headers={"Content-Type": "application/json"}, timeout=10
            )
            sent.answers.append((answer.status_code, time.monotonic() - started))
    return sent


def met(served: ServeProcess, ingestion: Ingestion, fault: str, before: int) -> bool:
    """Whether an export has run into the fault: a request reached the stand-in, or (refused)
    the exporter said it could not connect."""
    if FAULTS[fault] is None:
        return "Failed to establish a new connection" in served.output()
    return ingestion.requests > before


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_webhook_is_answered_and_stored_and_the_exporters_log_once_per_export(
    served_exporting: ServeProcess, ingestion: Ingestion, cosmos_settings: Settings, fault: str
) -> None:
    exporting(served_exporting, ingestion)
    before = ingestion.requests
    apply(ingestion, fault)
    started = time.monotonic()
    sent = send(served_exporting)

    statuses = [status for status, _ in sent.answers]
    assert statuses == [201] * PUSHES + [400] * REFUSED
    assert max(seconds for _, seconds in sent.answers) < ACR_WAITS_S
    stored = {document["id"] for document in read_all(cosmos_settings)}
    assert set(sent.pushes) <= stored

    assert wait_for(lambda: met(served_exporting, ingestion, fault, before), timeout=30)
    time.sleep(2.0)  # the exports of what is still queued
    assert_log_bounded(served_exporting.output(), time.monotonic() - started)


def assert_log_bounded(output: str, seconds: float) -> None:
    lines = export_log_lines(output)
    assert len(lines) <= EXPORTS_PER_S * seconds + 3, (len(lines), seconds, lines[:3])
    assert "Traceback" not in output, output[-3000:]
    assert INSTRUMENTATION_KEY not in output, [ln for ln in lines if INSTRUMENTATION_KEY in ln]
    assert "IngestionEndpoint" not in output


def test_a_batch_ingestion_refuses_item_by_item_is_logged_once_without_the_key(
    served_exporting: ServeProcess, ingestion: Ingestion, cosmos_settings: Settings
) -> None:
    """Azure answers 206 when it refuses some items of a batch for good (400: an item older
    than 48 h, which the 48 h offline storage can hand it after a long outage; a field too
    long): the exporter drops them, which deserves a line per batch, not the items themselves
    (the instrumentation key and each record's custom dimensions, at ERROR)."""
    exporting(served_exporting, ingestion)
    before = ingestion.requests
    ingestion.fault = Fault(status=206, refused=EVERY_ITEM, item_status=400)
    started = time.monotonic()
    sent = send(served_exporting)
    assert [status for status, _ in sent.answers] == [201] * PUSHES + [400] * REFUSED
    assert wait_for(lambda: ingestion.requests > before, timeout=30)
    time.sleep(2.0)
    assert_log_bounded(served_exporting.output(), time.monotonic() - started)
