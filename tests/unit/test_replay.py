"""Replay of parked events (issue 10): back into the queue with a growing delay while the
database is unavailable, poison only for what can never be stored. With fakes."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from acr_webhook.config import DEFAULT_REPLAY_MAX_DELAY_S, load_settings
from acr_webhook.models import (
    MAX_PARKED_REPOSITORY_LENGTH,
    InvalidQueuedEventError,
    ParkedEvent,
    parse_parked,
)
from acr_webhook.replay import REPLAY_FIRST_DELAY_S, replay_delay_s, replay_queued_event
from acr_webhook.store import DocumentRejectedError, FallbackUnavailableError
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository
from tests.support.logs import decisions

DOCUMENT = {
    "id": "e1",
    "repository": "r",
    "action": "push",
    "timestamp": "2026-11-23T10:00:00.000000Z",
}
CAP_S = DEFAULT_REPLAY_MAX_DELAY_S  # 60 s, as the README says


class RefusingRepository(FakeEventRepository):
    def add(self, document: dict[str, Any]) -> bool:
        raise DocumentRejectedError("refused by the database (400): bad document")


def test_replay_writes_once_and_treats_a_duplicate_as_done() -> None:
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    message = ParkedEvent(DOCUMENT).to_message()
    assert replay_queued_event(message, repository, queue, CAP_S) == "recorded"
    assert replay_queued_event(message.encode(), repository, queue, CAP_S) == "duplicate"
    assert list(repository.documents) == ["e1"]
    assert queue.messages == []


def test_a_bare_document_parked_by_an_earlier_version_still_replays() -> None:
    repository = FakeEventRepository()
    assert replay_queued_event(json.dumps(DOCUMENT), repository, None, CAP_S) == "recorded"
    assert parse_parked(json.dumps(DOCUMENT)) == ParkedEvent(DOCUMENT, attempts=0)


def test_while_the_store_is_down_the_event_goes_back_with_a_doubling_delay() -> None:
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    repository.unavailable = True
    message = ParkedEvent(DOCUMENT).to_message()
    for _ in range(8):
        assert replay_queued_event(message, repository, queue, CAP_S) == "requeued"
        attempts, _ = queue.puts[-1]
        message = ParkedEvent(queue.messages[-1], attempts).to_message()
    assert [attempts for attempts, _ in queue.puts] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [delay for _, delay in queue.puts] == [2, 4, 8, 16, 32, 60, 60, 60]
    assert all(document == DOCUMENT for document in queue.messages)

    repository.unavailable = False  # the database is back: the next try stores it
    assert replay_queued_event(message, repository, queue, CAP_S) == "recorded"
    assert list(repository.documents) == ["e1"]


def test_the_delay_starts_small_and_never_passes_the_cap() -> None:
    assert replay_delay_s(1, CAP_S) == REPLAY_FIRST_DELAY_S == 2
    assert replay_delay_s(2, 3) == 3
    assert replay_delay_s(10**6, CAP_S) == CAP_S  # a very old message does not overflow


def test_a_failed_try_is_one_log_line_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    repository.unavailable = True
    with caplog.at_level(logging.INFO):
        replay_queued_event(ParkedEvent(DOCUMENT).to_message(), repository, queue, CAP_S)
    [record] = caplog.records
    assert record.exc_info is None
    assert "replay attempt 1" in record.getMessage()
    assert decisions(caplog) == [
        {
            "decision": "queued",
            "route": "replay",
            "event_id": "e1",
            "action": "push",
            "repository": "r",
            "reason": "database unavailable",
        }
    ]


def test_each_runtime_retry_of_a_message_that_could_not_go_back_logs_its_own_try(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Neither the database nor the queue takes the event: the runtime delivers the same copy
    again (its dequeue count rising) until it poisons it. Each try must say which one it is, not
    "attempt 1" five times."""
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    repository.unavailable = queue.unavailable = True
    message = ParkedEvent(DOCUMENT, attempts=2).to_message()
    with caplog.at_level(logging.INFO):
        for dequeue_count in range(1, 6):
            with pytest.raises(FallbackUnavailableError):
                replay_queued_event(message, repository, queue, CAP_S, dequeue_count)
    tries = [record.getMessage().split("replay attempt ")[1][:1] for record in caplog.records]
    assert tries == ["3", "4", "5", "6", "7"]

    # When the queue takes it back at the runtime's third delivery, the tries made so far count
    # towards its next delay.
    queue.unavailable = False
    assert replay_queued_event(message, repository, queue, CAP_S, 3) == "requeued"
    assert queue.puts[-1] == (5, replay_delay_s(5, CAP_S))


def test_the_queue_trigger_hands_its_dequeue_count_to_the_replay(
    app_repository: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from azure.functions.queue import QueueMessage  # what the worker hands the function

    import function_app

    queue = FakeFallbackQueue()
    settings = load_settings({"COSMOS_ENDPOINT": "https://account.documents.azure.com:443/"})
    monkeypatch.setattr(function_app, "settings", lambda: settings)
    monkeypatch.setattr(function_app, "fallback_queue", lambda: queue)
    app_repository.unavailable = True
    message = QueueMessage(body=ParkedEvent(DOCUMENT).to_message(), dequeue_count=4)  # type: ignore[no-untyped-call]
    with caplog.at_level(logging.INFO):
        function_app.replay_fallback(message)
    assert "replay attempt 4" in caplog.records[-1].getMessage()
    assert queue.puts == [(4, replay_delay_s(4, CAP_S))]


def test_a_document_the_database_refuses_is_invalid_so_it_ends_in_poison() -> None:
    queue = FakeFallbackQueue()
    with pytest.raises(InvalidQueuedEventError, match="refused"):
        replay_queued_event(ParkedEvent(DOCUMENT).to_message(), RefusingRepository(), queue, 60)
    assert queue.messages == []


def test_without_a_queue_to_put_it_back_the_message_stays_for_the_runtime() -> None:
    repository = FakeEventRepository()
    repository.unavailable = True
    with pytest.raises(FallbackUnavailableError):
        replay_queued_event(ParkedEvent(DOCUMENT).to_message(), repository, None, CAP_S)


def test_when_the_queue_refuses_the_put_back_the_message_stays_for_the_runtime() -> None:
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    repository.unavailable = queue.unavailable = True
    with pytest.raises(FallbackUnavailableError):
        replay_queued_event(ParkedEvent(DOCUMENT).to_message(), repository, queue, CAP_S)


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[]",
        '{"id": 1, "repository": "r"}',
        '{"id": "x"}',
        '{"document": {"id": "x"}, "attempts": 0}',
        '{"document": {"id": "x", "repository": "r"}, "attempts": -1}',
        '{"document": {"id": "x", "repository": "r"}, "attempts": true}',
        "[" * 100_000,  # a RecursionError in json.loads
        # What no path that makes documents would make: missing keys, or an id that is a
        # dot segment in the item's URL (a 500 or a remembered outage on its duplicate).
        json.dumps({k: v for k, v in DOCUMENT.items() if k != "action"}),
        json.dumps({k: v for k, v in DOCUMENT.items() if k != "timestamp"}),
        json.dumps({**DOCUMENT, "action": {"a": 1}}),
        json.dumps({**DOCUMENT, "id": "."}),
        json.dumps({**DOCUMENT, "id": ".."}),
        # Longer than any version of the app ever took (the first ones took 1,024).
        json.dumps({**DOCUMENT, "repository": "r" * (MAX_PARKED_REPOSITORY_LENGTH + 1)}),
    ],
)
def test_replay_refuses_what_is_not_an_event_document(message: str) -> None:
    with pytest.raises(InvalidQueuedEventError):
        replay_queued_event(message, FakeEventRepository(), FakeFallbackQueue(), CAP_S)


@pytest.mark.parametrize("with_queue", [True, False])
def test_an_event_neither_stored_nor_put_back_is_an_unavailable_decision_naming_it(
    caplog: pytest.LogCaptureFixture, with_queue: bool
) -> None:
    """The runtime retries such a message and then poisons it: the operator's queries must see
    which event, and why, not only the host's traceback."""
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    repository.unavailable = queue.unavailable = True
    with caplog.at_level(logging.INFO), pytest.raises(FallbackUnavailableError):
        replay_queued_event(
            ParkedEvent(DOCUMENT).to_message(), repository, queue if with_queue else None, CAP_S
        )
    [decision] = decisions(caplog)
    assert decision["decision"] == "unavailable"
    assert (decision["route"], decision["event_id"], decision["action"]) == ("replay", "e1", "push")
    assert decision["repository"] == "r"
    assert "fallback queue unavailable" in decision["reason"]


def test_a_message_that_is_not_an_event_is_a_rejected_replay_decision(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """operations.md: a poisoned message's cause is in the replay's `rejected` decision."""
    with caplog.at_level(logging.INFO), pytest.raises(InvalidQueuedEventError):
        replay_queued_event("not json", FakeEventRepository(), FakeFallbackQueue(), CAP_S)
    [decision] = decisions(caplog)
    assert (decision["decision"], decision["route"]) == ("rejected", "replay")
    assert decision["reason"].startswith("queued message is not JSON")


def test_a_replayed_event_is_a_replayed_decision_and_again_a_duplicate_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = FakeEventRepository()
    message = ParkedEvent(DOCUMENT).to_message()
    with caplog.at_level(logging.INFO):
        replay_queued_event(message, repository, FakeFallbackQueue(), CAP_S)
        replay_queued_event(message, repository, FakeFallbackQueue(), CAP_S)
    assert decisions(caplog) == [
        {
            "decision": decision,
            "route": "replay",
            "event_id": "e1",
            "action": "push",
            "repository": "r",
        }
        for decision in ("replayed", "duplicate")
    ]


def test_a_document_the_database_refuses_is_a_rejected_decision_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """operations.md: a poisoned message's cause is in the replay's `rejected` decision."""
    with caplog.at_level(logging.INFO), pytest.raises(InvalidQueuedEventError):
        replay_queued_event(
            ParkedEvent(DOCUMENT).to_message(), RefusingRepository(), FakeFallbackQueue(), CAP_S
        )
    [decision] = decisions(caplog)
    assert (decision["decision"], decision["route"], decision["event_id"]) == (
        "rejected",
        "replay",
        "e1",
    )
    assert "bad document" in decision["reason"]


@pytest.mark.parametrize("attempts", [-1, True, "2", 1.0, None])
def test_a_valid_document_with_an_unusable_attempt_count_is_refused(attempts: Any) -> None:
    message = json.dumps({"document": DOCUMENT, "attempts": attempts})
    with pytest.raises(InvalidQueuedEventError, match="no valid attempt count"):
        replay_queued_event(message, FakeEventRepository(), FakeFallbackQueue(), CAP_S)


def test_a_parked_timestamp_is_at_most_64_characters() -> None:
    at_the_limit = {**DOCUMENT, "timestamp": "t" * 64}
    assert parse_parked(json.dumps(at_the_limit)).document == at_the_limit
    with pytest.raises(InvalidQueuedEventError, match=r"document\.timestamp"):
        parse_parked(json.dumps({**DOCUMENT, "timestamp": "t" * 65}))


# --- the try number counts the runtime's deliveries ---------------------------------------------


@pytest.mark.parametrize("dequeue_count", [None, 0, -1])
def test_a_delivery_without_a_usable_dequeue_count_is_the_first(dequeue_count: int | None) -> None:
    """replay_queued_event: ``dequeue_count`` is how many times the runtime delivered the copy,
    "1 the first time"; the code takes anything less as 1 (``max(dequeue_count or 1, 1)``), so a
    try is never counted as none or as a step back. Mutants: ``max(..., 0)`` and no ``max``."""
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    repository.unavailable = True
    document = {
        "id": "e1",
        "repository": "r",
        "action": "push",
        "timestamp": "2026-11-23T10:00:00.000000Z",
    }
    message = ParkedEvent(document, attempts=2).to_message()
    assert replay_queued_event(message, repository, queue, 60, dequeue_count) == "requeued"
    assert queue.puts == [(3, replay_delay_s(3, 60))]
