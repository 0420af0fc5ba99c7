"""``redrive`` against real Azurite: poison messages go back for replay, once, unchanged."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func
import pytest

import acr_webhook.redrive
from acr_webhook.config import FALLBACK_QUEUE_NAME, QueueSettings, Settings
from acr_webhook.fallback import StorageQueueFallback, create_queue_client
from acr_webhook.local.queues import QueueOptions, QueuePoller, queue_functions
from acr_webhook.models import AcrEvent, ParkedEvent, parse_parked, to_document
from acr_webhook.redrive import RedriveReport, is_event_message, redrive
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventRepository
from tests.conftest import read_all
from tests.support import payloads
from tests.support.azurite import ACCOUNT, ACCOUNT_KEY, LocalAzurite, new_queue, raw_messages
from tests.support.serve import run_cli

FAST = QueueOptions(max_dequeue_count=2, visibility_timeout=0, max_polling_interval=0.2)
NOT_AN_EVENT = "not base64 !!"
# docs/operations.md: a queue service that refuses connections is exit 1 within 12 s.
UNREACHABLE_EXIT_S = 12


def send_raw(queue: QueueSettings, content: str) -> None:
    create_queue_client(queue, {}, base64_messages=False).send_message(content)


def queued_pushes(count: int) -> list[dict[str, object]]:
    return [
        to_document(AcrEvent.model_validate(payloads.with_new_id(payloads.PUSH)), datetime.now(UTC))
        for _ in range(count)
    ]


def poller(queue: QueueSettings, handler: Callable[[bytes], object]) -> QueuePoller:
    """The local host's queue trigger on ``queue``, with the runtime's retry and poison rules."""
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="message", queue_name=queue.queue_name, connection="Storage")
    def replay(message: func.QueueMessage) -> None:
        handler(message.get_body())

    [function] = queue_functions(app)
    return QueuePoller(function, queue, FAST)


def drain(
    queue_poller: QueuePoller, queue: QueueSettings, polls: int = 40, pause_s: float = 0.05
) -> None:
    for _ in range(polls):
        queue_poller.poll_once()
        if not raw_messages(queue):
            return
        time.sleep(pause_s)
    raise AssertionError(f"{queue.queue_name} did not drain")


def poisoned(azurite: LocalAzurite, documents: list[dict[str, object]]) -> QueueSettings:
    """Documents queued by the webhook's fallback whose replay kept failing: in the poison queue
    exactly as the queue trigger leaves them."""
    queue = new_queue(azurite)
    fallback = StorageQueueFallback(queue)
    for document in documents:
        fallback.put(document)

    def database_down(_body: bytes) -> None:
        raise RuntimeError("database still down")

    drain(poller(queue, database_down), queue)
    return queue


def test_redrive_moves_events_back_unchanged_and_replay_records_each_once(
    azurite: LocalAzurite, cosmos_settings: Settings
) -> None:
    documents = queued_pushes(3)
    queue = poisoned(azurite, documents)
    poison = queue.poison
    send_raw(poison, NOT_AN_EVENT)
    stored_in_poison = raw_messages(poison)
    assert len(stored_in_poison) == 4 and raw_messages(queue) == []

    assert redrive(queue) == RedriveReport(moved=3, not_events=1, left=1)
    assert sorted(raw_messages(queue)) == sorted(m for m in stored_in_poison if m != NOT_AN_EVENT)
    assert raw_messages(poison) == [NOT_AN_EVENT]  # visible again at once, for inspection

    # Run twice: nothing is moved a second time.
    assert redrive(queue) == RedriveReport(moved=0, not_events=1, left=1)
    assert len(raw_messages(queue)) == 3

    repository = CosmosEventRepository(cosmos_settings)
    drain(poller(queue, lambda body: replay_queued_event(body, repository, None, 60)), queue)
    assert sorted(d["id"] for d in read_all(cosmos_settings)) == sorted(
        str(d["id"]) for d in documents
    )
    assert raw_messages(poison) == [NOT_AN_EVENT]


def test_a_crash_between_send_and_delete_costs_one_duplicate_that_replay_stores_once(
    azurite: LocalAzurite, cosmos_settings: Settings
) -> None:
    [document] = queued_pushes(1)
    queue = poisoned(azurite, [document])
    [content] = raw_messages(queue.poison)
    send_raw(queue, content)  # the send of an earlier run whose delete never happened

    assert redrive(queue) == RedriveReport(moved=1, not_events=0, left=0)
    assert raw_messages(queue) == [content, content]
    repository = CosmosEventRepository(cosmos_settings)
    drain(poller(queue, lambda body: replay_queued_event(body, repository, None, 60)), queue)
    assert [d["id"] for d in read_all(cosmos_settings)] == [document["id"]]


def test_a_run_longer_than_the_lease_counts_and_releases_each_kept_message_once(
    azurite: LocalAzurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message that is not an event stays hidden for the lease only: in a longer run (the
    poison queue of a long outage) it came round again, was counted twice, and releasing its
    first copy failed on a stale receipt, ending the run with a traceback."""
    monkeypatch.setattr(acr_webhook.redrive, "LEASE_SECONDS", 1)
    queue = poisoned(azurite, queued_pushes(3))
    send_raw(queue.poison, NOT_AN_EVENT)

    checked: list[str] = []

    def slowly_checked(content: str) -> bool:
        checked.append(content)
        time.sleep(0.5)  # 4 messages: a run of 2 s, twice the lease
        return is_event_message(content)

    monkeypatch.setattr(acr_webhook.redrive, "is_event_message", slowly_checked)
    assert redrive(queue) == RedriveReport(moved=3, not_events=1, left=1)
    assert raw_messages(queue.poison) == [NOT_AN_EVENT]  # visible again at once
    # The case itself: the lease ran out and the run received the message a second time.
    assert checked.count(NOT_AN_EVENT) >= 2


def test_without_a_poison_queue_there_is_nothing_to_move(azurite: LocalAzurite) -> None:
    """The fallback queue is there, its poison queue never made: nothing was ever poisoned.
    (Neither queue there: tests/integration/test_misconfiguration.py.)"""
    never_poisoned = QueueSettings(f"q{uuid.uuid4().hex[:16]}", azurite.connection_string)
    create_queue_client(never_poisoned, {}).create_queue()
    assert redrive(never_poisoned) == RedriveReport(moved=0, not_events=0, left=0)


def test_the_command_reads_azure_web_jobs_storage_like_serve(
    restartable_azurite: LocalAzurite, tmp_path: Path
) -> None:
    queue = new_queue(restartable_azurite, FALLBACK_QUEUE_NAME)
    [document] = queued_pushes(1)
    StorageQueueFallback(queue.poison).put(document)  # encoded as the app writes
    env = {"AzureWebJobsStorage": restartable_azurite.connection_string}

    first = run_cli(["redrive"], tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "Moved 1 message(s) from 'acr-events-fallback-poison' to 'acr-events-fallback' for replay",
        "Left in 'acr-events-fallback-poison': 0",
    ]
    again = run_cli(["redrive"], tmp_path, env)
    assert again.stdout.splitlines()[0].startswith("Moved 0 message(s)")
    [moved] = create_queue_client(queue, {}, base64_messages=False).peek_messages()
    assert parse_parked(base64.b64decode(str(moved.content))).document == document
    assert moved.expires_on is not None and moved.expires_on.year == 9999  # never expires


def test_messages_a_stopped_run_still_holds_are_named_with_when_to_run_again(
    azurite: LocalAzurite,
    queues: QueueSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A redrive stopped midway (tests/e2e/test_crash_e2e.py) holds its batch for the lease:
    run again at once, the command moved nothing and counted them as left, with no word of why
    ("Moved 0 ... Left in ...: 3", exit 0). Now it says they were hidden and when to retry."""
    from acr_webhook import __main__ as cli

    for document in queued_pushes(3):
        StorageQueueFallback(queues.poison).put(document)
    stopped_run = create_queue_client(queues.poison, {}, base64_messages=False)
    held = list(stopped_run.receive_messages(max_messages=3, visibility_timeout=60))
    assert len(held) == 3
    send_raw(queues.poison, NOT_AN_EVENT)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)

    assert cli.main(["redrive"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Moved 0 message(s) from 'acr-events-fallback-poison' to 'acr-events-fallback' for replay",
        "1 message(s) are not event documents; they stay in 'acr-events-fallback-poison'",
        "Left in 'acr-events-fallback-poison': 4",
        "3 of them were hidden from this run (another redrive holds them, or one stopped in the"
        f" last {acr_webhook.redrive.LEASE_SECONDS} s), or arrived since: run it again after"
        f" {acr_webhook.redrive.LEASE_SECONDS} s",
    ]


def test_the_command_names_the_missing_setting(tmp_path: Path) -> None:
    result = run_cli(["redrive"], tmp_path, {})
    assert result.returncode == 2
    assert "AzureWebJobsStorage is not set" in result.stderr


def test_an_unreachable_queue_service_is_exit_1_within_seconds(
    tmp_path: Path, refusing_port: Callable[[], int]
) -> None:
    """It took 80 s: the SDK's own retries wait 18, 24 and 42 s."""
    nowhere = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint=http://127.0.0.1:{refusing_port()}/{ACCOUNT};"
    )
    started = time.monotonic()
    result = run_cli(["redrive"], tmp_path, {"AzureWebJobsStorage": nowhere})
    assert time.monotonic() - started < UNREACHABLE_EXIT_S
    assert result.returncode == 1
    assert result.stderr.startswith("the queue service is unavailable or refused: ")
    assert result.stdout == ""


def test_a_queue_service_that_refuses_the_key_is_exit_1(
    azurite: LocalAzurite, tmp_path: Path
) -> None:
    wrong_key = base64.b64encode(bytes(64)).decode()
    refused = azurite.connection_string.replace(ACCOUNT_KEY, wrong_key)
    result = run_cli(["redrive"], tmp_path, {"AzureWebJobsStorage": refused})
    assert result.returncode == 1
    assert result.stderr.startswith("the queue service is unavailable or refused: ")
    assert wrong_key not in result.stderr


def test_a_message_nested_too_deeply_is_not_an_event_and_stays_for_inspection() -> None:
    """It ended redrive with a RecursionError traceback, the events after it not moved."""
    assert is_event_message(base64.b64encode(b"[" * 100_000).decode()) is False


def test_a_line_wrapped_event_is_an_event_as_the_runtime_would_decode_it() -> None:
    body = ParkedEvent(queued_pushes(1)[0], 0).to_message().encode()
    encoded = base64.b64encode(body).decode()
    assert is_event_message("\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)))
