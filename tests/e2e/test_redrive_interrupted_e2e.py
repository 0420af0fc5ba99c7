"""``python -m acr_webhook redrive`` stopped part-way, as a real process against Azurite, at a
point the queue proxy fixes (tests/support/holds.py). The poison queue holds a message that is
not an event first, then events: the run keeps the first (released when it ends) and moves the
others one by one (send, then delete).

docs/operations.md, "Re-driving poison messages": a stop between the send and the delete
leaves the message in both queues, replayed twice and stored once; a stopped run holds what it
had received for 60 s, and a run before that says how many were hidden; running it again is
safe. A SIGKILL between the send and the delete is tests/e2e/test_crash_e2e.py's; Ctrl+C
differs from it in what the run does on its way out (it releases the message it kept).

A Ctrl+C while the queue service did not answer was not obeyed for ~98 s, then reported as an
outage (exit 1); a delete whose answer was lost stopped the run as "unavailable or refused"
though the message was moved."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from acr_webhook.config import FALLBACK_QUEUE_NAME, QueueSettings, Settings
from acr_webhook.fallback import StorageQueueFallback, create_queue_client
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.results import utc_now
from tests.conftest import read_all
from tests.e2e.test_crash_e2e import depth, patched, start_cli, storage_of
from tests.e2e.test_multi_instance_e2e import wait_until
from tests.support import payloads
from tests.support.holds import Hold
from tests.support.queue_proxy import HoldingQueueProxy
from tests.support.serve import app_environment, run_cli

SEND = rf"^POST /\w+/{FALLBACK_QUEUE_NAME}/messages$"
POISON_DELETE = rf"^DELETE /\w+/{FALLBACK_QUEUE_NAME}-poison/messages/"
POISON_RELEASE = rf"^PUT /\w+/{FALLBACK_QUEUE_NAME}-poison/messages/"
NOT_AN_EVENT = "not base64 !!"
NOISE = ("Traceback", "Exception ignored")
# The existing Ctrl+C test's bound (tests/e2e/test_cli_pipelines_e2e.py): stopped at once.
STOPS_WITHIN_S = 3
MOVED = (
    f"Moved {{}} message(s) from '{FALLBACK_QUEUE_NAME}-poison' to '{FALLBACK_QUEUE_NAME}' "
    "for replay"
)


def poisoned(queues: QueueSettings, count: int) -> list[str]:
    """The poison queue: one message that is not an event, then ``count`` parked events."""
    create_queue_client(queues.poison, {}, base64_messages=False).send_message(NOT_AN_EVENT)
    poison = StorageQueueFallback(queues.poison)
    ids = []
    for n in range(count):
        event = payloads.with_new_id(payloads.PUSH, tag=f"poisoned-{n}")
        poison.put(to_document(AcrEvent.model_validate(event), received_at=utc_now()))
        ids.append(str(event["id"]))
    return ids


def redrive_env(queue: QueueSettings | HoldingQueueProxy, settings: Settings) -> dict[str, str]:
    return {**app_environment(settings), **storage_of(queue)}


def visible_poison(queues: QueueSettings) -> list[str]:
    client = create_queue_client(queues.poison, {}, base64_messages=False)
    return [str(message.content) for message in client.peek_messages(max_messages=32)]


def test_ctrl_c_between_a_send_and_its_delete_loses_nothing_and_replay_stores_each_once(
    queues: QueueSettings,
    queue_proxy: HoldingQueueProxy,
    cosmos_settings: Settings,
    tmp_path: Path,
) -> None:
    """The 2nd event sent (the fallback queue has it) and its answer held, then Ctrl+C: the
    kept message is visible again at once, the two events not yet deleted are leased (60 s;
    3 s here), the next run moves them, and the 4 messages replay as 3 events."""
    ids = poisoned(queues, 3)
    second_send = Hold(SEND, skip=1, after_passing=True)
    queue_proxy.holds = [second_send]
    process = start_cli(
        ["redrive"],
        tmp_path,
        redrive_env(queue_proxy, cosmos_settings),
        *patched("acr_webhook.redrive.LEASE_SECONDS=3"),
    )
    second_send.wait(held=1, passed=1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert (process.returncode, err) == (130, "interrupted\n")
    assert out == f"{MOVED.format(1)}\n"  # the 2nd was sent but not deleted: not moved yet
    assert depth(queues) == (2, 2)  # the 1st moved, the 2nd sent and never deleted
    assert depth(queues.poison) == (3, 1)  # 2 events leased, the kept message released
    assert visible_poison(queues) == [NOT_AN_EVENT]

    wait_until(lambda: depth(queues.poison) == (3, 3), 10, "the stopped run's lease to end")
    again = run_cli(["redrive"], tmp_path, redrive_env(queues, cosmos_settings))
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout.splitlines() == [
        MOVED.format(2),
        f"1 message(s) are not event documents; they stay in '{FALLBACK_QUEUE_NAME}-poison'",
        f"Left in '{FALLBACK_QUEUE_NAME}-poison': 1",
    ]
    assert visible_poison(queues) == [NOT_AN_EVENT]

    # What the queue trigger would do with each of the 4 messages: 3 stored, 1 duplicate.
    repository = CosmosEventRepository(cosmos_settings)
    fallback = create_queue_client(queues, {})
    outcomes = Counter(
        replay_queued_event(str(message.content), repository, None, max_delay_s=60)
        for message in fallback.receive_messages(max_messages=32)
    )
    assert outcomes == Counter(recorded=3, duplicate=1)
    assert sorted(str(document["id"]) for document in read_all(cosmos_settings)) == sorted(ids)


def test_ctrl_c_while_the_queue_service_hangs_stops_at_once_with_a_message_kept(
    queues: QueueSettings,
    queue_proxy: HoldingQueueProxy,
    cosmos_settings: Settings,
    tmp_path: Path,
) -> None:
    """The operator presses Ctrl+C because the network stopped answering: then the release of
    the kept message cannot get through either (a laptop gone to sleep, a dropped VPN). The
    kept message may stay leased for 60 s, as after any stop (operations.md)."""
    poisoned(queues, 2)
    send, release = Hold(SEND), Hold(POISON_RELEASE)
    queue_proxy.holds = [send, release]
    process = start_cli(["redrive"], tmp_path, redrive_env(queue_proxy, cosmos_settings))
    try:
        send.wait(held=1)
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            out, err = process.communicate(timeout=STOPS_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {time.monotonic() - sent:.1f} s after Ctrl+C")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (process.returncode, out, err) == (130, f"{MOVED.format(0)}\n", "interrupted\n")


def test_sigterm_mid_run_says_what_was_moved_releases_the_kept_message_and_ends_by_it(
    queues: QueueSettings,
    queue_proxy: HoldingQueueProxy,
    cosmos_settings: Settings,
    tmp_path: Path,
) -> None:
    """A cancelled CI job sends SIGTERM: the run stops as for Ctrl+C (the kept message visible
    again at once, a `Moved` line for what it moved) and is then ended by SIGTERM (143 in a
    shell), as erase and reconcile are. It had been killed where it stood, with no line."""
    poisoned(queues, 3)
    third_send = Hold(SEND, skip=2)
    queue_proxy.holds = [third_send]
    process = start_cli(["redrive"], tmp_path, redrive_env(queue_proxy, cosmos_settings))
    third_send.wait(held=1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert (process.returncode, out) == (-signal.SIGTERM, f"{MOVED.format(2)}\n")
    assert not any(noise in err for noise in NOISE)
    assert depth(queues) == (2, 2)
    assert visible_poison(queues) == [NOT_AN_EVENT]  # the 3rd event is leased, not lost


def test_a_poison_delete_whose_answer_was_lost_counts_as_moved_and_the_run_goes_on(
    queues: QueueSettings,
    queue_proxy: HoldingQueueProxy,
    cosmos_settings: Settings,
    tmp_path: Path,
) -> None:
    """The network drops under the first delete once Azurite has applied it: the message was
    moved (it is in the fallback queue, gone from poison), which is all the delete was for."""
    poisoned(queues, 3)
    lost_answer = Hold(POISON_DELETE, after_passing=True, limit=1)
    lost_answer.release()  # applied by Azurite, then the connection closed unanswered
    queue_proxy.holds = [lost_answer]
    run = run_cli(["redrive"], tmp_path, redrive_env(queue_proxy, cosmos_settings))
    assert lost_answer.held == 1
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.splitlines()[0].startswith("Moved 3 message(s)")
    assert (depth(queues), depth(queues.poison)) == ((3, 3), (1, 1))
    assert not any(noise in run.stderr for noise in NOISE)
