"""Shared secret and fallback queue decisions, with fakes (replay: test_replay.py)."""

from __future__ import annotations

import logging

import pytest

from acr_webhook.config import FALLBACK_QUEUE_NAME, QueueSettings, queue_settings
from acr_webhook.handlers import MAX_BODY_BYTES, SharedSecret, handle_webhook
from acr_webhook.local.queues import QueueOptions
from tests.support import payloads
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository

SECRET = "s3cret-value"
PUSH = payloads.body(payloads.PUSH)


@pytest.mark.parametrize(
    ("secret", "headers", "status"),
    [
        (SharedSecret(SECRET), {"Authorization": f"Bearer {SECRET}"}, 201),
        (SharedSecret(SECRET), {"authorization": f"Bearer {SECRET}"}, 201),
        (SharedSecret(SECRET), {}, 401),
        (SharedSecret(SECRET), {"Authorization": SECRET}, 401),  # Bearer scheme missing
        (SharedSecret(SECRET), {"Authorization": "Bearer wrong"}, 401),
        (SharedSecret(SECRET), {"X-Webhook-Secret": f"Bearer {SECRET}"}, 401),  # wrong header
        (SharedSecret(SECRET, "X-Webhook-Secret"), {"x-webhook-secret": SECRET}, 201),
        (SharedSecret(SECRET, "X-Webhook-Secret"), {"Authorization": f"Bearer {SECRET}"}, 401),
        (SharedSecret(SECRET), {"Authorization": "Bearer \ud800"}, 401),  # a lone surrogate
        (None, {}, 201),
    ],
)
def test_shared_secret(secret: SharedSecret | None, headers: dict[str, str], status: int) -> None:
    repository = FakeEventRepository()
    result = handle_webhook(PUSH, repository, headers=headers, secret=secret)
    assert result.status == status
    if status == 401:
        # Empty, like Azure's answer to a wrong key: the same whatever was wrong.
        assert (result.body, result.headers) == (None, {})
        assert repository.add_calls == 0


@pytest.mark.parametrize("body", [b"{broken", b"{" + b" " * MAX_BODY_BYTES + b"}"])
def test_secret_is_checked_before_the_body_is_read(body: bytes) -> None:
    result = handle_webhook(body, FakeEventRepository(), secret=SharedSecret(SECRET))
    assert (result.status, result.body) == (401, None)


def test_outage_with_fallback_queues_the_validated_document() -> None:
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    repository.unavailable = True
    result = handle_webhook(PUSH, repository, fallback=queue)
    assert (result.status, result.body) == (202, {"status": "queued", "id": payloads.PUSH["id"]})
    [queued] = queue.messages
    assert queued["id"] == payloads.PUSH["id"]
    assert queued["repository"] == "hello-world"
    assert queued["receivedAt"].endswith("Z")


def test_outage_with_fallback_down_too_is_503() -> None:
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    repository.unavailable = queue.unavailable = True
    assert handle_webhook(PUSH, repository, fallback=queue).status == 503


def test_bad_input_never_reaches_the_fallback() -> None:
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    repository.unavailable = True
    assert handle_webhook(b'{"action": "push"}', repository, fallback=queue).status == 400
    assert queue.messages == []


def test_decisions_are_logged_with_event_fields_and_never_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    secret = SharedSecret(SECRET)
    headers = {"Authorization": f"Bearer {SECRET}"}
    handle_webhook(PUSH, repository, headers=headers, secret=secret)
    handle_webhook(PUSH, repository, headers=headers, secret=secret)
    repository.unavailable = True
    other = payloads.body(payloads.with_new_id(payloads.PUSH))
    handle_webhook(other, repository, headers=headers, secret=secret, fallback=queue)
    handle_webhook(PUSH, repository, headers={"Authorization": "Bearer nope"}, secret=secret)
    decisions = [getattr(r, "decision", None) for r in caplog.records]
    assert decisions == ["recorded", "duplicate", "queued", "rejected"]
    recorded = caplog.records[0]
    assert getattr(recorded, "event_id", None) == payloads.PUSH["id"]
    assert getattr(recorded, "repository", None) == "hello-world"
    assert getattr(recorded, "action", None) == "push"
    # The 401 has no event to name; operations.md's by-reason query counts it by its reason.
    refused = caplog.records[3]
    assert (getattr(refused, "route", None), getattr(refused, "reason", None)) == (
        "webhook",
        "shared secret",
    )
    assert SECRET not in caplog.text


def test_fallback_is_off_without_a_storage_setting() -> None:
    assert queue_settings({}) is None
    assert queue_settings({"AzureWebJobsStorage": "  "}) is None


def test_fallback_uses_the_functions_storage_connection() -> None:
    assert queue_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}) == QueueSettings(
        FALLBACK_QUEUE_NAME, connection_string="UseDevelopmentStorage=true"
    )
    # Identity-based, as deployed on Flex Consumption.
    assert queue_settings({"AzureWebJobsStorage__accountName": "st123"}) == QueueSettings(
        FALLBACK_QUEUE_NAME, queue_service_uri="https://st123.queue.core.windows.net"
    )
    uri = "https://st123.queue.core.usgovcloudapi.net"
    assert queue_settings({"AzureWebJobsStorage__queueServiceUri": uri}) == QueueSettings(
        FALLBACK_QUEUE_NAME, queue_service_uri=uri
    )


def test_queue_options_come_from_host_json() -> None:
    from acr_webhook.local.host import HOST_JSON

    options = QueueOptions.from_host_json(HOST_JSON)
    assert options.max_dequeue_count == 5
    assert options.max_polling_interval == 2.0
    assert options.visibility_timeout == 5.0
