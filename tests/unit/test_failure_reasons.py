"""A failure's kind as a decision's reason, its particulars in the message, on every route.

The rule (docs/operations.md "Telemetry", ``customDimensions.reason``; store.OneLineError): a
decision's ``reason`` is "the kind of failure, e.g. `database unavailable
(ServiceResponseTimeoutError); queued for replay`, the same for every event one fault hits; the
record's message adds what the SDK said". The fakes raise errors whose cause is their message,
so other unit tests cannot tell a reason built from causes from one built from messages; here
every failure has particulars (a read timeout, an activity id) that differ from event to event,
and the reasons must not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseTimeoutError,
)
from azure.cosmos.exceptions import CosmosHttpResponseError

from acr_webhook import fallback as fallback_module
from acr_webhook.config import QueueSettings, ReconcileSettings, Settings
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import handle_webhook, log_event_decision
from acr_webhook.models import EventQuery, ParkedEvent, parse_webhook_payload, to_document
from acr_webhook.reconcile import InvalidEntry, reconcile_entries, reconcile_webhooks
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventRepository, DatabaseHealth
from acr_webhook.store import (
    DocumentRejectedError,
    FallbackUnavailableError,
    OneLineError,
    RepositoryUnavailableError,
    StoreThrottledError,
    failure_kind,
    unavailable_reasons,
)
from tests.support import payloads
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.support.logs import decisions

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LOG = logging.getLogger("acr_webhook.test_failure_reasons")
SETTINGS = Settings("https://127.0.0.1:1/", "key", "acr", "events", None)
TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.ContainerRegistry/registries/myregistry"
)


def timed_out(n: int) -> RepositoryUnavailableError:
    """What repository.unavailable() makes of a read timeout: this request's own timeout in the
    message, the error type alone as the cause."""
    return RepositoryUnavailableError(
        f"ServiceResponseTimeoutError: Read timed out. (read timeout=1.99999{n})",
        cause="ServiceResponseTimeoutError",
    )


def refused(n: int) -> DocumentRejectedError:
    return DocumentRejectedError(
        f"refused by the database (400): Message: bad document ActivityId: activity-{n}",
        cause="refused by the database (CosmosHttpResponseError 400)",
    )


def queue_down(n: int) -> FallbackUnavailableError:
    return FallbackUnavailableError(
        f"ServiceRequestError: <urllib3 connection {n:x}>: Failed to establish a connection",
        cause="ServiceRequestError",
    )


class Failing(FakeEventRepository):
    """Each write fails with the next of ``errors`` (each event's own particulars)."""

    def __init__(self, errors: list[Exception]) -> None:
        super().__init__()
        self.errors: Iterator[Exception] = iter(errors)

    def add(self, document: dict[str, Any]) -> bool:
        self.add_calls += 1
        raise next(self.errors)


class DownQueue(FakeFallbackQueue):
    def __init__(self, errors: list[FallbackUnavailableError]) -> None:
        super().__init__()
        self.errors = iter(errors)

    def put(self, document: dict[str, Any], *, attempts: int = 0, delay_s: int = 0) -> None:
        raise next(self.errors)


def two_pushes() -> list[dict[str, Any]]:
    return [payloads.with_new_id(payloads.PUSH) for _ in range(2)]


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if hasattr(record, "decision")]


# --- store.py -----------------------------------------------------------------------------------


def test_failure_kind_is_the_type_with_the_status_and_a_non_zero_sub_status() -> None:
    """store.failure_kind: "An SDK failure's type and, for an answer, its status code (and
    Cosmos DB's sub-status)"; never its message."""
    answer = CosmosHttpResponseError(status_code=503, message="activity 1", sub_status=3200)  # type: ignore[no-untyped-call]
    assert failure_kind(answer) == "CosmosHttpResponseError 503/3200"
    no_sub_status = CosmosHttpResponseError(status_code=429, message="activity 2", sub_status=0)  # type: ignore[no-untyped-call]
    assert failure_kind(no_sub_status) == "CosmosHttpResponseError 429"
    # An Azure Storage answer has a status but no sub-status; a timeout has no answer at all.
    assert failure_kind(HttpResponseError("queue said no")) == "HttpResponseError"
    assert failure_kind(ServiceResponseTimeoutError("read timeout=2")) == (
        "ServiceResponseTimeoutError"
    )


def test_an_errors_cause_is_kept_on_one_line_and_defaults_to_its_message() -> None:
    """store.OneLineError: the cause goes into a log record's reason, one line like the message."""
    error = RepositoryUnavailableError("first\nsecond", cause="Kind\n  503")
    assert (str(error), error.cause) == ("first second", "Kind 503")
    assert RepositoryUnavailableError("only a\nmessage").cause == "only a message"


def test_unavailable_reasons_are_the_causes_then_the_messages_store_first() -> None:
    """store.unavailable_reasons: "from each failure's cause (a decision's reason) and from its
    message (the detail)", the queue's failure after the store's."""
    assert unavailable_reasons([timed_out(1), queue_down(2)]) == (
        "database unavailable (ServiceResponseTimeoutError)"
        " and fallback queue unavailable (ServiceRequestError)",
        "database unavailable (ServiceResponseTimeoutError: Read timed out."
        " (read timeout=1.999991)) and fallback queue unavailable"
        " (ServiceRequestError: <urllib3 connection 2>: Failed to establish a connection)",
    )


# --- repository.py ------------------------------------------------------------------------------


def test_a_remembered_failure_keeps_its_kind_for_the_reason_and_its_text_for_the_message() -> None:
    """repository.DatabaseHealth.failed: ``cause`` "names its kind, as
    RepositoryUnavailableError's do"; by default the same as ``reason``."""
    health = DatabaseHealth()
    health.failed("ServiceResponseTimeoutError: Read timed out. (read timeout=2)", "Timeout")
    with pytest.raises(RepositoryUnavailableError) as raised:
        health.check()
    assert str(raised.value) == (
        "database unavailable moments ago (ServiceResponseTimeoutError: Read timed out."
        " (read timeout=2))"
    )
    assert raised.value.cause == "database unavailable moments ago (Timeout)"

    health.failed("only a message")
    with pytest.raises(RepositoryUnavailableError) as raised:
        health.check()
    assert raised.value.cause == "database unavailable moments ago (only a message)"


@pytest.mark.parametrize(
    ("status", "raised", "cause"),
    [
        (400, DocumentRejectedError, "refused by the database (CosmosHttpResponseError 400/3200)"),
        (503, RepositoryUnavailableError, "CosmosHttpResponseError 503/3200"),
        (429, StoreThrottledError, "CosmosHttpResponseError 429/3200"),
    ],
)
def test_a_failed_write_names_its_kind_as_the_cause_and_keeps_the_service_message(
    status: int, raised: type[OneLineError], cause: str
) -> None:
    """repository.CosmosEventRepository._failure; a remembered one answers the next writes with
    the same kind (a 429 is not remembered: throttled means reachable)."""
    health = DatabaseHealth()
    repository = CosmosEventRepository(SETTINGS, health=health)  # nothing is contacted
    sdk = CosmosHttpResponseError(  # type: ignore[no-untyped-call]
        status_code=status, message="ActivityId: 5f1e", sub_status=3200
    )
    error = repository._failure(sdk)
    assert type(error) is raised
    assert isinstance(error, OneLineError)
    assert error.cause == cause
    assert "ActivityId: 5f1e" in str(error)
    if status == 503:
        with pytest.raises(RepositoryUnavailableError) as remembered:
            health.check()
        assert remembered.value.cause == f"database unavailable moments ago ({cause})"
        assert "ActivityId: 5f1e" in str(remembered.value)
    else:
        health.check()


def test_a_client_that_cannot_be_built_is_remembered_by_its_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """repository._LazyContainer._build: a failed build is remembered in ``health`` like a
    failed write (its class docstring), so the writes that follow have its kind as cause."""

    def unreachable(*_args: object, **_kwargs: object) -> object:
        raise ServiceRequestError("<urllib3.connection.HTTPSConnection at 0x7f3a>: refused")

    monkeypatch.setattr("acr_webhook.repository.create_cosmos_client", unreachable)
    repository = CosmosEventRepository(SETTINGS)
    document = {"id": "x", "repository": "r", "action": "push"}
    with pytest.raises(RepositoryUnavailableError) as first:
        repository.add(document)
    assert first.value.cause == "ServiceRequestError"
    with pytest.raises(RepositoryUnavailableError) as next_write:
        repository.add(document)
    assert next_write.value.cause == "database unavailable moments ago (ServiceRequestError)"
    assert "0x7f3a" in str(next_write.value)


def test_a_failed_read_names_its_kind_as_the_cause() -> None:
    """repository.find_events raises repository.unavailable(error): the SDK's type as cause."""
    repository = CosmosEventRepository(SETTINGS)

    class Broken:
        def get(self, _deadline: float | None = None) -> Any:
            raise ServiceResponseTimeoutError("Read timed out. (read timeout=1.5)")

    repository._reads = Broken()  # type: ignore[assignment]
    with pytest.raises(RepositoryUnavailableError) as raised:
        repository.find_events(EventQuery(), 10)
    assert raised.value.cause == "ServiceResponseTimeoutError"
    assert "read timeout=1.5" in str(raised.value)


# --- handlers.py --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "decision", "reason"),
    [
        (None, "unavailable", "database unavailable (ServiceResponseTimeoutError)"),
        (
            "up",
            "queued",
            "database unavailable (ServiceResponseTimeoutError); queued for replay",
        ),
        (
            "down",
            "unavailable",
            "database unavailable (ServiceResponseTimeoutError)"
            " and fallback queue unavailable (ServiceRequestError)",
        ),
    ],
)
def test_a_webhook_outage_has_one_reason_for_every_event_and_the_particulars_in_the_message(
    caplog: pytest.LogCaptureFixture, queue: str | None, decision: str, reason: str
) -> None:
    """docs/operations.md's example reason, word for word, on route webhook."""
    caplog.set_level(logging.INFO)
    repository = Failing([timed_out(1), timed_out(2)])
    fallback = {
        None: None,
        "up": FakeFallbackQueue(),
        "down": DownQueue([queue_down(1), queue_down(2)]),
    }[queue]
    for payload in two_pushes():
        handle_webhook(payloads.body(payload), repository, fallback=fallback, now=lambda: NOW)
    logged = decisions(caplog)
    assert [(d["decision"], d["reason"]) for d in logged] == [(decision, reason)] * 2
    texts = messages(caplog)
    assert "read timeout=1.999991" in texts[0] and "read timeout=1.999992" in texts[1]
    if queue == "down":
        assert "urllib3 connection 1" in texts[0]
    if queue == "up":
        assert texts[0].endswith("; queued for replay")


def test_a_decision_without_more_to_say_has_its_reason_in_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """handlers.log_event_decision: "the message says ``detail`` instead where this event's
    failure had more to say": otherwise the reason (an Event Grid batch's, say)."""
    caplog.set_level(logging.INFO)
    event = parse_webhook_payload(payloads.PUSH)
    assert not isinstance(event, list)
    log_event_decision(LOG, logging.ERROR, "eventgrid", "unavailable", event, reason="why")
    log_event_decision(
        LOG, logging.ERROR, "eventgrid", "unavailable", event, reason="kind", detail="all of it"
    )
    assert [d["reason"] for d in decisions(caplog)] == ["why", "kind"]
    assert [m.rsplit(": ", 1)[1] for m in messages(caplog)] == ["why", "all of it"]


def test_a_webhook_refusal_has_one_reason_and_the_answer_and_message_keep_the_particulars(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    repository = Failing([refused(1), refused(2)])
    answers = [handle_webhook(payloads.body(p), repository, now=lambda: NOW) for p in two_pushes()]
    assert [d["reason"] for d in decisions(caplog)] == [
        "the event store refused this event: refused by the database (CosmosHttpResponseError 400)"
    ] * 2
    assert "activity-1" in messages(caplog)[0]
    assert answers[0].status == 400
    assert answers[0].body is not None and "activity-1" in str(answers[0].body["error"])


# --- eventgrid.py -------------------------------------------------------------------------------


def event_grid(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": data["id"] + "-eg",
        "topic": TOPIC,
        "subject": data["target"]["repository"],
        "eventType": "Microsoft.ContainerRegistry.ImagePushed",
        "eventTime": "2026-11-23T11:59:59Z",
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


def deliver(repository: FakeEventRepository, events: list[dict[str, Any]]) -> int:
    with ThreadPoolExecutor(max_workers=1) as one_writer:
        result = handle_eventgrid(
            payloads.body([event_grid(e) for e in events]),
            {},
            repository,
            now=lambda: NOW,
            executor=one_writer,
        )
    return result.status


def test_an_event_grid_write_that_fails_or_is_refused_has_the_kinds_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """eventgrid._write: each copy's decision as the webhook's, the particulars in its message."""
    caplog.set_level(logging.INFO)
    assert deliver(Failing([refused(1)]), two_pushes()[:1]) == 400
    assert deliver(Failing([timed_out(1)]), two_pushes()[:1]) == 503
    logged = decisions(caplog)
    assert [(d["decision"], d["reason"]) for d in logged] == [
        ("rejected", "refused by the database (CosmosHttpResponseError 400)"),
        ("unavailable", "database unavailable (ServiceResponseTimeoutError)"),
    ]
    texts = messages(caplog)
    assert "activity-1" in texts[0] and "read timeout=1.999991" in texts[1]


def test_the_events_a_failed_batch_never_wrote_have_the_kinds_reason_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """eventgrid._unavailable is given f"database unavailable ({error})", the message: every
    batch an outage fails gives its unwritten events another reason (the read timeout of the
    write that failed), where docs/operations.md says the same for every event one fault hits."""
    caplog.set_level(logging.INFO)
    for n in (1, 2):
        assert deliver(Failing([timed_out(n)]), two_pushes()) == 503
    batch_reasons = {
        d["reason"] for d in decisions(caplog) if str(d["reason"]).startswith("batch: ")
    }
    assert batch_reasons == {"batch: database unavailable (ServiceResponseTimeoutError)"}


# --- replay.py ----------------------------------------------------------------------------------


def test_a_replay_refused_or_unable_to_requeue_has_the_kinds_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """replay.replay_queued_event: "the runtime keeps the message and retries it, then poisons
    it": each try's record has the same reason, whatever this try's timeout was."""
    caplog.set_level(logging.INFO)
    document = to_document_of(payloads.with_new_id(payloads.PUSH))
    message = ParkedEvent(document).to_message()
    with pytest.raises(Exception, match="activity-1"):
        replay_queued_event(message, Failing([refused(1)]), None, 60)
    for n in (1, 2):
        with pytest.raises(FallbackUnavailableError):
            replay_queued_event(message, Failing([timed_out(n)]), DownQueue([queue_down(n)]), 60)
    logged = decisions(caplog)
    assert [(d["decision"], d["reason"]) for d in logged] == [
        ("rejected", "refused by the database (CosmosHttpResponseError 400)"),
        *[
            (
                "unavailable",
                "database unavailable (ServiceResponseTimeoutError)"
                " and fallback queue unavailable (ServiceRequestError)",
            )
        ]
        * 2,
    ]
    texts = messages(caplog)
    assert "activity-1" in texts[0]
    assert "read timeout=1.999992" in texts[2] and "urllib3 connection 2" in texts[2]


def to_document_of(payload: dict[str, Any]) -> dict[str, Any]:
    event = parse_webhook_payload(payload)
    assert not isinstance(event, list)
    return to_document(event, received_at=NOW)


# --- reconcile.py -------------------------------------------------------------------------------


def test_a_reconcile_stopped_by_an_outage_has_the_kinds_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    invalid: list[InvalidEntry] = []
    outcome = reconcile_entries(
        [history_entry(payloads.with_new_id(payloads.PUSH))],
        Failing([timed_out(1)]),
        received_at=NOW,
        report_invalid=invalid.append,
    )
    assert outcome.unavailable is not None and "read timeout=1.999991" in outcome.unavailable
    assert [(d["decision"], d["reason"]) for d in decisions(caplog)] == [
        ("unavailable", "ServiceResponseTimeoutError")
    ]
    assert "read timeout=1.999991" in messages(caplog)[0]


def test_entries_the_database_refuses_for_one_cause_have_one_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """reconcile_webhooks logs each refused entry as a rejected decision whose reason is
    f"refused by the store: {error}": the activity id of each refusal is in it, where the
    webhook, Event Grid and replay routes give error.cause. The report keeps the particulars."""
    caplog.set_level(logging.INFO)
    history = SimpleNamespace(entries=lambda _name: iter([history_entry(p) for p in two_pushes()]))
    target = ReconcileSettings(
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r",
        ("acrwebhook",),
    )
    reconcile_webhooks(target, Failing([refused(1), refused(2)]), history, now=lambda: NOW)
    rejected = [d for d in decisions(caplog) if d["decision"] == "rejected"]
    assert len(rejected) == 2
    assert "activity-1" in caplog.text and "activity-2" in caplog.text
    assert len({d["reason"] for d in rejected}) == 1, rejected


# --- fallback.py --------------------------------------------------------------------------------


def storage_busy() -> HttpResponseError:
    error = HttpResponseError("Server busy. RequestId:0a1b Time:2026-11-23T12:00:00.1234567Z")
    error.status_code = 503
    return error


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (
            ServiceResponseTimeoutError("Read timed out. (read timeout=1.23)"),
            "ServiceResponseTimeoutError",
        ),
        (storage_busy(), "HttpResponseError 503"),
    ],
)
def test_a_queue_that_fails_names_its_kind_as_the_cause(
    monkeypatch: pytest.MonkeyPatch, error: Exception, cause: str
) -> None:
    """fallback.StorageQueueFallback.put: FallbackUnavailableError's cause is failure_kind, the
    status of the queue service's answer included; the message keeps its request id and time."""

    class Refusing:
        def send_message(self, *args: Any, **kwargs: Any) -> None:
            raise error

    monkeypatch.setattr(fallback_module, "create_queue_client", lambda *_: Refusing())
    queue = fallback_module.StorageQueueFallback(QueueSettings("q", "UseDevelopmentStorage=true"))
    with pytest.raises(FallbackUnavailableError) as raised:
        queue.put({"id": "e1", "repository": "r"})
    assert raised.value.cause == cause
    assert str(error).split()[-1] in str(raised.value)


# --- store.first_line: an SDK message's first line ----------------------------------------------


def test_an_sdk_error_with_no_message_is_said_by_its_kind_alone() -> None:
    """store.first_line: the redrive and reconcile lines take an SDK message's first line; an
    empty message (none seen from the SDKs, but AzureError allows it) was an IndexError."""
    from acr_webhook.store import first_line

    assert first_line("") == ""
    assert first_line("The specified queue does not exist.\nRequestId:1\n<?xml") == (
        "The specified queue does not exist."
    )
