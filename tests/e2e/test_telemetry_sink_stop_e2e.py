"""A graceful stop (SIGTERM) of ``python -m acr_webhook serve`` while Application Insights'
ingestion is down: README, the local host "stops within a few seconds on Ctrl+C or SIGTERM"
(scripts/dev kills what is left after 3 s; test_dev_script_e2e holds it to 5 s).

At exit the OpenTelemetry providers flush what they hold. Each provider's own exit hook waited
up to 30 s for its exporter (BatchProcessor.shutdown), in turn, and the exporters' calls had a
300 s read timeout, 3 retries and no cap on a Retry-After: 90 s with a sink that hangs. Now
(acr_webhook/telemetry.py) each export is sent once with a 10 s read timeout, and at exit the
three flush at once, waited for 2 s in all (EXIT_FLUSH_SECONDS).
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.e2e.test_dev_script_e2e import STOPPED_WITHIN_S
from tests.e2e.test_telemetry_sink_faults_e2e import apply, exporting, met, send
from tests.support.ingestion import Ingestion, wait_for
from tests.support.serve import ServeProcess


def stopped_after(served: ServeProcess) -> float | None:
    """SIGTERM, then the seconds serve took to exit with 0, or None if it had not within
    STOPPED_WITHIN_S (the fixture kills it)."""
    sent = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    try:
        code = served.process.wait(timeout=STOPPED_WITHIN_S)
    except subprocess.TimeoutExpired:
        return None
    assert code == 0, served.output()
    return time.monotonic() - sent


def stop_while(served: ServeProcess, ingestion: Ingestion, fault: str | None) -> float | None:
    """Telemetry waiting to be exported, an export under way into ``fault`` (None: the sink
    answers), then the stop."""
    exporting(served, ingestion)
    before = ingestion.requests
    if fault is not None:
        apply(ingestion, fault)
    send(served, pushes=5, refused=50)
    if fault is not None:
        assert wait_for(lambda: met(served, ingestion, fault, before), timeout=30)
    return stopped_after(served)


@pytest.mark.parametrize("fault", [None, "refused", "wrong-endpoint-404"])
def test_serve_stops_within_seconds_while_the_sink_answers_or_refuses(
    served_exporting: ServeProcess, ingestion: Ingestion, fault: str | None
) -> None:
    seconds = stop_while(served_exporting, ingestion, fault)
    assert seconds is not None, f"still running {STOPPED_WITHIN_S} s after SIGTERM"


@pytest.mark.parametrize("fault", ["blackhole", "throttled-429", "slow-20s", "500"])
def test_serve_stops_within_seconds_while_the_sink_hangs_throttles_or_fails(
    served_exporting: ServeProcess, ingestion: Ingestion, fault: str
) -> None:
    """What a platform engineer expects of an ingestion outage: the telemetry still held at
    exit is given up (or kept on disk), not waited for beyond the stop's few seconds."""
    seconds = stop_while(served_exporting, ingestion, fault)
    assert seconds is not None, f"still running {STOPPED_WITHIN_S} s after SIGTERM"
