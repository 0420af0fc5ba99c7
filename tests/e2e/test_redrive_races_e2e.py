"""Two ``redrive`` runs at once while the running app's queue trigger replays what they move:
two operators following the same runbook after a poison alert, or a CI job and a person. The
queue proxy holds run A's first delete from the poison queue, so that the replay of the message
it has just sent, and all of run B, happen while A holds the rest of its batch (not hoped for).

docs/operations.md ("Re-driving poison messages"): each message is received (hidden from other
readers for 60 s), sent to the fallback queue, then deleted; "Running it again is safe: it
moves only what is still in the poison queue"; a run that meets messages another holds "says
how many were hidden from it". What must hold: each poisoned event replayed once, as one
document; none lost; both runs' printed counts true."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.config import FALLBACK_QUEUE_NAME, QueueSettings, Settings
from acr_webhook.fallback import create_queue_client
from acr_webhook.models import AcrEvent, ParkedEvent, to_document
from acr_webhook.redrive import RedriveReport, redrive
from tests.conftest import read_all
from tests.support import payloads
from tests.support.azurite import ACCOUNT, LocalAzurite
from tests.support.holds import Background, Hold
from tests.support.instances import decisions
from tests.support.queue_proxy import HoldingQueueProxy
from tests.support.serve import ServeProcess

POISONED = 3


def depth(queue: QueueSettings) -> int:
    return int(create_queue_client(queue, {}).get_queue_properties().approximate_message_count or 0)


def wait_until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {seconds:g} s"
        time.sleep(0.1)


def test_two_redrives_at_once_during_replay_replay_each_event_once_with_true_counts(
    cosmos_settings: Settings,
    azurite: LocalAzurite,
    queues: QueueSettings,
    queue_proxy: HoldingQueueProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = [payloads.with_new_id(payloads.PUSH, tag=f"p{n}") for n in range(POISONED)]
    poison = create_queue_client(queues.poison, {})
    for event in events:  # as the runtime poisons a parked event: its message, unchanged
        document = to_document(AcrEvent.model_validate(event), datetime.now(UTC))
        poison.send_message(ParkedEvent(document).to_message())
    ids = {event["id"] for event in events}
    app = ServeProcess(
        cosmos_settings, tmp_path, extra_env={"AzureWebJobsStorage": azurite.connection_string}
    )
    try:
        hold = Hold(
            rf"^DELETE /{ACCOUNT}/{FALLBACK_QUEUE_NAME}-poison/messages/", then_pass=True, limit=1
        )
        queue_proxy.holds.append(hold)
        via_proxy = QueueSettings(FALLBACK_QUEUE_NAME, queue_proxy.connection_string)
        run_a = Background(lambda: redrive(via_proxy))
        hold.wait()
        # The message A sent is replayed while its poison copy is still there, held by A.
        wait_until(lambda: len(read_all(cosmos_settings)) == 1, seconds=10, what="the first replay")

        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
        status_b = cli.main(["redrive"])
        out_b = capsys.readouterr().out
        hold.release()
        report_a = run_a.result()

        wait_until(
            lambda: (
                {d["id"] for d in read_all(cosmos_settings)} == ids
                and (depth(queues), depth(queues.poison)) == (0, 0)
            ),
            seconds=15,
            what="every event stored and both queues empty",
        )
        time.sleep(0.5)  # a second replay of any of them would log its outcome now
    finally:
        app.stop()

    assert status_b == 0
    moved_b = re.search(r"Moved (\d+) message", out_b)
    assert moved_b is not None and moved_b[1] == "0", out_b
    assert f"Left in '{FALLBACK_QUEUE_NAME}-poison': {POISONED}" in out_b
    assert f"{POISONED} of them were hidden from this run" in out_b
    assert report_a == RedriveReport(moved=POISONED, not_events=0, left=0)
    documents = read_all(cosmos_settings)
    assert sorted(d["id"] for d in documents) == sorted(ids)
    replays = decisions(app.output())
    assert {i: replays[(i, "replay", "replayed")] for i in ids} == dict.fromkeys(ids, 1)
    assert [key for key in replays if key[2] != "replayed"] == []
