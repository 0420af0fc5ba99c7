"""After Application Insights' ingestion comes back, export resumes without a restart; what the
outage left on disk follows; memory stays bounded while it is down.

The app leaves the exporters' offline storage on (their default): a batch that fails for a
reason worth retrying is written to ``<tempfile.gettempdir()>/Microsoft-AzureMonitor-<hash>/
opentelemetry-python-<ikey>/`` (/tmp in Azure), leased for 60 s, sent again after a later
export succeeds (10 files at a time), kept 48 h at most, 50 MiB at most for the three exporters
(their shared folder; azure-monitor-opentelemetry-exporter's _base.py and _storage.py). Only an
export that succeeds sends them: an instance that logs nothing more after the outage keeps them
(seen: not sent within 150 s of the sink's return; in Azure the reconcile timer logs every 5
minutes).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.test_telemetry_sink_faults_e2e import FAULTS, apply, exporting, send
from tests.support.ingestion import ANSWERS, INSTRUMENTATION_KEY, Fault, Ingestion, wait_for
from tests.support.serve import ServeProcess

RESUMED_WITHIN_S = 10.0  # the log records' batch leaves every second


def rejected(ingestion: Ingestion, label: str) -> list[str]:
    """The refused deliveries' warnings received, of those sent with ``label``."""
    return [message for message in ingestion.messages() if f"id='{label}-" in message]


def gave_up(served: ServeProcess, ingestion: Ingestion, fault: str, before: int) -> bool:
    """Whether an export into ``fault`` has ended (retries included), its batch on disk."""
    if fault == "refused":
        return "Failed to establish a new connection" in served.output()
    # One try each (telemetry.EXPORT_CALL_OPTIONS): the batch then goes to disk.
    return ingestion.requests >= before + 1


def blobs(tmpdir: Path) -> list[Path]:
    folder = f"Microsoft-AzureMonitor-*/opentelemetry-python-{INSTRUMENTATION_KEY}"
    return sorted(path for path in tmpdir.glob(f"{folder}/*") if ".blob" in path.name)


@pytest.mark.parametrize("fault", ["refused", "500", "throttled-429-briefly"])
def test_new_telemetry_is_exported_again_once_the_sink_is_back(
    served_exporting: ServeProcess, ingestion: Ingestion, fault: str
) -> None:
    exporting(served_exporting, ingestion)
    before = ingestion.requests
    apply(ingestion, fault)
    send(served_exporting, pushes=0, refused=5, label="during")
    assert wait_for(lambda: gave_up(served_exporting, ingestion, fault, before), timeout=30)
    if FAULTS[fault] is None:
        ingestion.up()
    ingestion.fault = ANSWERS
    send(served_exporting, pushes=0, refused=5, label="after")
    assert wait_for(lambda: len(rejected(ingestion, "after")) == 5, RESUMED_WITHIN_S)


def test_a_throttled_batch_kept_on_disk_is_sent_with_the_next_export_once_the_sink_is_back(
    served_exporting: ServeProcess, ingestion: Ingestion, tmp_path: Path
) -> None:
    """Throttled (429) with a Retry-After of 1 s, the batch's file is leased that long, not
    60 s: the first export after the sink is back takes it along, and deletes it."""
    exporting(served_exporting, ingestion)
    before = ingestion.requests
    ingestion.fault = Fault(status=429, retry_after="1")
    send(served_exporting, pushes=0, refused=5, label="during")
    assert wait_for(lambda: ingestion.requests >= before + 1, timeout=30)  # one try
    assert wait_for(lambda: bool(blobs(tmp_path / "tmp")), timeout=5)
    assert rejected(ingestion, "during") == []
    ingestion.fault = ANSWERS
    time.sleep(1.0)  # the lease
    send(served_exporting, pushes=0, refused=1, label="after")
    assert wait_for(lambda: len(rejected(ingestion, "during")) == 5, RESUMED_WITHIN_S)
    assert wait_for(lambda: not blobs(tmp_path / "tmp"), timeout=5)


@pytest.mark.usefixtures("machine_to_itself")
def test_memory_stays_flat_while_the_sink_hangs(
    served_exporting: ServeProcess, ingestion: Ingestion
) -> None:
    """The batch processors queue 2,048 log records and spans each and drop the rest (the
    exporter holds one batch of 512 in its hung call): after the first round of events fills
    them, two more rounds (12,000 more records, ~1.5 KB each if kept) add nothing. (A sink
    that refuses: test_soak, in a bare process; here the export hangs, in serve.)"""
    exporting(served_exporting, ingestion)
    apply(ingestion, "blackhole")
    rounds = []
    for number in range(3):
        sent = send(served_exporting, pushes=0, refused=3000, label=f"round{number}")
        assert {status for status, _ in sent.answers} == {400}
        rounds.append(served_exporting.rss_bytes())
    assert rounds[2] - rounds[0] < 8 * 2**20, rounds
