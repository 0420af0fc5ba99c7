"""Facts about Azure that the code or its local stand-ins rely on, pinned to Microsoft's own text.

Each test names its source. Facts that other modules already pin against their source are not
repeated here (the host's key precedence, test_local_host.py; the poison queue's name,
test_config.py; an undecodable message going straight to poison and parked messages that never
expire, tests/integration/test_fallback_queue.py; Cosmos DB's largest time-to-live,
tests/infra/test_main_template.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from acr_webhook import fallback
from acr_webhook.config import QueueSettings, load_settings
from acr_webhook.eventgrid import (
    BATCH_BUDGET_S,
    EVENT_TYPE_ACTIONS,
    MAX_BATCH_EVENTS,
    SUBSCRIPTION_VALIDATION,
)
from acr_webhook.local.host import HOST_JSON
from acr_webhook.local.queues import QueueOptions
from acr_webhook.replay import replay_delay_s

SEVEN_DAYS_S = 7 * 24 * 3600


def test_the_queue_runner_defaults_are_the_documented_host_json_defaults() -> None:
    """A setting host.json leaves out keeps the runtime's default, locally too. Source: the
    host.json table of learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue
    (MicrosoftDocs/azure-docs, articles/azure-functions/functions-bindings-storage-queue.md):
    maxPollingInterval "00:01:00", visibilityTimeout "00:00:00", batchSize 16,
    maxDequeueCount 5."""
    defaults = QueueOptions()
    assert defaults.max_polling_interval == 60.0
    assert defaults.visibility_timeout == 0.0
    assert defaults.batch_size == 16
    assert defaults.max_dequeue_count == 5


def test_host_json_queue_settings_are_inside_the_documented_ranges() -> None:
    """Same source: "The maximum batchSize is 32"; "maxPollingInterval must be greater than or
    equal to 00:00:00.100 (100 ms)"."""
    options = QueueOptions.from_host_json(HOST_JSON)
    assert 1 <= options.batch_size <= 32
    assert options.max_polling_interval >= 0.1
    assert options.max_dequeue_count >= 1
    assert options.visibility_timeout >= 0


def test_the_event_grid_types_are_the_four_that_the_registry_emits() -> None:
    """learn.microsoft.com/azure/event-grid/event-schema-container-registry, "Available event
    types": ImagePushed, ImageDeleted, ChartPushed, ChartDeleted; the handshake's event type is
    Microsoft.EventGrid.SubscriptionValidationEvent (event-grid/webhook-event-delivery)."""
    assert set(EVENT_TYPE_ACTIONS) == {
        "Microsoft.ContainerRegistry.ImagePushed",
        "Microsoft.ContainerRegistry.ImageDeleted",
        "Microsoft.ContainerRegistry.ChartPushed",
        "Microsoft.ContainerRegistry.ChartDeleted",
    }
    assert SUBSCRIPTION_VALIDATION == "Microsoft.EventGrid.SubscriptionValidationEvent"


def test_the_event_grid_limits_match_event_grids_own() -> None:
    """learn.microsoft.com/azure/event-grid/delivery-and-retry: max events per batch "Must be
    between 1 and 5,000"; "Event Grid waits 30 seconds for a response after delivering a
    message". The batch budget must end before Event Grid stops waiting, or a stored batch is
    redelivered for nothing."""
    assert MAX_BATCH_EVENTS == 5000
    assert BATCH_BUDGET_S < 30


class _RecordingQueueClient:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, content: str, **options: Any) -> None:
        self.sent.append({"content": content, **options})


def test_a_parked_event_is_sent_with_the_ttl_that_never_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """learn.microsoft.com/rest/api/storageservices/put-message, messagettl: "any positive
    number, as well as -1 indicating that the message does not expire. If this parameter is
    omitted, the default time-to-live is 7 days." Omitting it would lose an event parked through
    a database outage longer than a week."""
    client = _RecordingQueueClient()
    monkeypatch.setattr(fallback, "create_queue_client", lambda *_args, **_kw: client)
    queue = fallback.StorageQueueFallback(QueueSettings("q", "UseDevelopmentStorage=true"))
    queue.put({"id": "e"}, attempts=1, delay_s=3600)
    (sent,) = client.sent
    assert sent["time_to_live"] == -1
    assert 0 < sent["visibility_timeout"] <= SEVEN_DAYS_S


def test_the_longest_replay_delay_is_a_visibility_timeout_the_queue_accepts(
    tmp_path: Path,
) -> None:
    """Same page, visibilitytimeout: "must be larger than or equal to 0, and cannot be larger
    than 7 days". The replay sends each retry with its delay as the visibility timeout; the
    largest delay a setting allows (REPLAY_MAX_DELAY_SECONDS=3600) is inside that."""
    settings = load_settings(
        {
            "COSMOS_ENDPOINT": "https://a.documents.azure.com:443/",
            "REPLAY_MAX_DELAY_SECONDS": "3600",
        },
        tmp_path / "absent.json",
    )
    longest = max(replay_delay_s(tries, settings.replay_max_delay_s) for tries in range(1, 64))
    assert longest == 3600 <= SEVEN_DAYS_S
