"""The fallback queue and the local host's queue trigger against real Azurite and Cosmos."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import azure.functions as func
import pytest

from acr_webhook.config import QueueSettings, Settings
from acr_webhook.fallback import StorageQueueFallback, create_queue_client, provision_queue
from acr_webhook.local import queues
from acr_webhook.local.queues import QueueOptions, QueuePoller, queue_functions, resolve_queue
from acr_webhook.models import AcrEvent, ParkedEvent, parse_parked, to_document
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.store import FallbackUnavailableError
from tests.conftest import read_all
from tests.support import payloads
from tests.support.azurite import LocalAzurite, new_queue, raw_messages
from tests.support.fakes import FakeEventRepository
from tests.unit.test_models import worst_case_payload

FAST = QueueOptions(max_dequeue_count=2, visibility_timeout=0, max_polling_interval=0.2)


def document(payload: dict[str, object]) -> dict[str, object]:
    return to_document(AcrEvent.model_validate(payload), datetime.now(UTC))


def test_put_stores_the_document_base64_encoded_as_the_trigger_expects(
    azurite: LocalAzurite,
) -> None:
    queue = new_queue(azurite)
    StorageQueueFallback(queue).put(document(payloads.PUSH))
    [raw] = raw_messages(queue)
    parked = json.loads(base64.b64decode(raw))
    assert parked["document"]["id"] == payloads.PUSH["id"]
    assert parked["attempts"] == 0


def test_parked_messages_never_expire(azurite: LocalAzurite) -> None:
    """A Storage queue message lives 7 days unless told otherwise; an outage may be longer."""
    queue = new_queue(azurite)
    StorageQueueFallback(queue).put(document(payloads.PUSH))
    [message] = create_queue_client(queue, {}).peek_messages(max_messages=1)
    assert message.expires_on is not None
    assert message.expires_on.year >= 9999


def test_a_replay_during_an_outage_puts_the_event_back_hidden_for_the_delay(
    azurite: LocalAzurite,
) -> None:
    queue = new_queue(azurite)
    fallback = StorageQueueFallback(queue)
    down = FakeEventRepository()
    down.unavailable = True
    event = document(payloads.with_new_id(payloads.PUSH))
    message = ParkedEvent(event, attempts=2).to_message()
    assert replay_queued_event(message, down, fallback, max_delay_s=60) == "requeued"
    client = create_queue_client(queue, {})
    # There, with the attempt counted (the third), but hidden for its delay: 2 s doubled twice, 8 s.
    assert client.get_queue_properties().approximate_message_count == 1
    assert list(client.receive_messages(visibility_timeout=1)) == []


def test_provision_queue_twice_is_fine(azurite: LocalAzurite) -> None:
    queue = new_queue(azurite)
    provision_queue(queue)
    assert raw_messages(queue) == []


def test_put_fails_fast_when_the_queue_service_is_down(
    restartable_azurite: LocalAzurite,
) -> None:
    queue = new_queue(restartable_azurite)
    fallback = StorageQueueFallback(queue)
    restartable_azurite.stop()
    started = time.monotonic()
    with pytest.raises(FallbackUnavailableError):
        fallback.put(document(payloads.PUSH))
    assert time.monotonic() - started < 2.5


def app_with_queue_trigger(queue_name: str, handler: Callable[[bytes], object]) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="message", queue_name=queue_name, connection="AzureWebJobsStorage")
    def replay(message: func.QueueMessage) -> None:
        handler(message.get_body())

    return app


def poll_until(poller: QueuePoller, done: Callable[[], bool], rounds: int = 20) -> None:
    for _ in range(rounds):
        poller.poll_once()
        if done():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_queue_trigger_replays_into_cosmos_once(
    azurite: LocalAzurite, cosmos_settings: Settings
) -> None:
    queue = new_queue(azurite)
    repository = CosmosEventRepository(cosmos_settings)
    fallback = StorageQueueFallback(queue)
    pushes = [payloads.with_new_id(payloads.PUSH) for _ in range(3)]
    for push in pushes:
        fallback.put(document(push))
    fallback.put(document(pushes[0]))  # the same event queued twice

    app = app_with_queue_trigger(
        queue.queue_name, lambda body: replay_queued_event(body, repository, fallback, 60)
    )
    [function] = queue_functions(app)
    resolved = resolve_queue(function, {"AzureWebJobsStorage": azurite.connection_string})
    assert resolved == queue
    poller = QueuePoller(function, queue, FAST)
    poll_until(poller, lambda: raw_messages(queue) == [])

    stored = sorted(d["id"] for d in read_all(cosmos_settings))
    assert stored == sorted(p["id"] for p in pushes)


def test_a_message_that_keeps_failing_goes_to_the_poison_queue(azurite: LocalAzurite) -> None:
    queue = new_queue(azurite)
    StorageQueueFallback(queue).put({"id": "e1", "repository": "r"})
    attempts: list[bytes] = []

    def always_fail(body: bytes) -> None:
        attempts.append(body)
        raise RuntimeError("database still down")

    [function] = queue_functions(app_with_queue_trigger(queue.queue_name, always_fail))
    poller = QueuePoller(function, queue, FAST)
    poison = QueueSettings(f"{queue.queue_name}-poison", azurite.connection_string)
    poll_until(poller, lambda: raw_messages(poison) != [])

    assert len(attempts) == FAST.max_dequeue_count
    assert raw_messages(queue) == []
    [raw] = raw_messages(poison)
    assert json.loads(base64.b64decode(raw))["document"] == {"id": "e1", "repository": "r"}


def test_an_undecodable_message_goes_straight_to_poison(azurite: LocalAzurite) -> None:
    queue = new_queue(azurite)
    create_queue_client(queue, {}, base64_messages=False).send_message("not base64 !!")
    calls: list[bytes] = []
    [function] = queue_functions(app_with_queue_trigger(queue.queue_name, calls.append))
    poller = QueuePoller(function, queue, FAST)
    poison = QueueSettings(f"{queue.queue_name}-poison", azurite.connection_string)
    poll_until(poller, lambda: raw_messages(poison) != [])
    assert calls == []
    assert raw_messages(poison) == ["not base64 !!"]


def test_a_line_wrapped_message_is_decoded_as_the_runtime_decodes_it(
    azurite: LocalAzurite,
) -> None:
    """The `base64` command wraps at 76 characters; the runtime's decoder skips the breaks."""
    queue = new_queue(azurite)
    body = ParkedEvent(document(payloads.PUSH), 0).to_message().encode()
    encoded = base64.b64encode(body).decode()
    wrapped = "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    create_queue_client(queue, {}, base64_messages=False).send_message(wrapped)
    calls: list[bytes] = []
    [function] = queue_functions(app_with_queue_trigger(queue.queue_name, calls.append))
    poll_until(QueuePoller(function, queue, FAST), lambda: calls != [])
    assert calls == [body]


def test_queue_name_from_a_setting_is_resolved_like_the_runtime(azurite: LocalAzurite) -> None:
    app = app_with_queue_trigger("%MY_QUEUE%", lambda body: None)
    [function] = queue_functions(app)
    values = {"AzureWebJobsStorage": azurite.connection_string, "MY_QUEUE": "resolved"}
    resolved = resolve_queue(function, values)
    assert resolved is not None and resolved.queue_name == "resolved"
    assert resolve_queue(function, {"AzureWebJobsStorage": azurite.connection_string}) is None


def test_the_largest_valid_event_fits_a_real_queue_message(azurite: LocalAzurite) -> None:
    """Every field at its limit, in the characters JSON escapes longest: the fallback takes
    it (Storage refuses messages over 64 KiB), so no valid event is a 503 in an outage."""
    event = AcrEvent.model_validate(worst_case_payload())
    widest = to_document(event, datetime.now(UTC), "eventgrid", "\U0001f600" * 512)
    queue = new_queue(azurite)
    fallback = StorageQueueFallback(queue)
    fallback.put(widest, attempts=10**6)  # the attempt count a very long outage reaches
    [raw] = raw_messages(queue)
    assert parse_parked(base64.b64decode(raw)).document == widest


def test_a_lease_another_instance_took_over_is_left_to_it(
    azurite: LocalAzurite, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A call longer than the lease (renewed only between calls): another instance receives
    the batch meanwhile. The first instance's delete is refused (its pop receipt is stale) and
    the renewal of the message still waiting too; neither is the queue being unreachable, and
    the waiting message is left to the instance that holds it now."""
    monkeypatch.setattr(queues, "LEASE_SECONDS", 1)
    queue = new_queue(azurite)
    fallback = StorageQueueFallback(queue)
    for number in range(2):
        fallback.put({"id": f"e{number}", "repository": "r"})
    other = create_queue_client(queue, {}, base64_messages=False)
    handled: list[bytes] = []
    taken: list[str] = []

    def slow(body: bytes) -> None:
        handled.append(body)
        time.sleep(1.2)  # past the lease: the other instance receives both messages
        taken.extend(m.id for m in other.receive_messages(max_messages=2, visibility_timeout=30))

    [function] = queue_functions(app_with_queue_trigger(queue.queue_name, slow))
    with caplog.at_level(logging.INFO, logger=queues.__name__):
        assert QueuePoller(function, queue, FAST).poll_once() == 2  # no error raised
    assert len(handled) == 1 and len(taken) == 2
    lines = [record.getMessage() for record in caplog.records]
    assert any("was handled, but its lease had run out" in line for line in lines), lines
    assert any("is another instance's now" in line for line in lines), lines
