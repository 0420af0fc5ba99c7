"""`redrive` run before the cause of the poisoning is fixed (operations.md, "Re-driving poison
messages": "Find the cause first"), against Azurite, the local Cosmos DB server behind a proxy
that refuses every document write as Cosmos DB refuses an invalid one (400), and the local host's
queue trigger with host.json's retry rule (maxDequeueCount 5; no wait between tries here).

What it costs: each event is replayed 5 more times, refused each time, and lands in the poison
queue again, unchanged, with the service's 7 days counted from then; nothing is lost, and a
redrive once the cause is fixed stores each event once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func

from acr_webhook.config import QueueSettings, Settings
from acr_webhook.fallback import StorageQueueFallback, create_queue_client
from acr_webhook.local.queues import QueueOptions, QueuePoller, queue_functions
from acr_webhook.redrive import redrive
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventRepository
from tests.conftest import read_all
from tests.integration.test_redrive import drain, queued_pushes
from tests.support.azurite import LocalAzurite, new_queue, raw_messages
from tests.support.cosmos_proxy import FaultyCosmosProxy, Refusal

HOST_JSON_TRIES = QueueOptions.from_host_json(
    Path(__file__).resolve().parents[2] / "host.json"
).max_dequeue_count
# Cosmos DB's answer to a document it will never take (the cause not fixed yet).
INVALID_DOCUMENT = Refusal(
    400, 0, "BadRequest", "One of the specified inputs is invalid", paths=r".*/docs/?$"
)
SEVEN_DAYS = timedelta(days=7)


def replaying(
    queue: QueueSettings, repository: CosmosEventRepository
) -> tuple[QueuePoller, list[int]]:
    """The app's queue trigger on ``queue`` with host.json's tries, counting its calls."""
    app = func.FunctionApp()
    calls: list[int] = []

    @app.queue_trigger(arg_name="message", queue_name=queue.queue_name, connection="Storage")
    def replay(message: func.QueueMessage) -> None:
        calls.append(1)
        replay_queued_event(message.get_body(), repository, None, 60)

    [function] = queue_functions(app)
    options = QueueOptions(
        max_dequeue_count=HOST_JSON_TRIES, visibility_timeout=0, max_polling_interval=0.1
    )
    return QueuePoller(function, queue, options), calls


def test_a_redrive_before_the_fix_costs_five_refused_replays_and_loses_nothing(
    azurite: LocalAzurite,
    cosmos_settings: Settings,
    through_proxy: Settings,
    proxy: FaultyCosmosProxy,
) -> None:
    queue = new_queue(azurite)
    documents = queued_pushes(2)
    for document in documents:
        StorageQueueFallback(queue).put(document)
    proxy.refusal = INVALID_DOCUMENT
    poller, calls = replaying(queue, CosmosEventRepository(through_proxy))
    drain(poller, queue, polls=100, pause_s=0.02)
    first_poisoned = sorted(raw_messages(queue.poison))
    assert len(first_poisoned) == 2 and len(calls) == 2 * HOST_JSON_TRIES

    # The mistake: moved back while the store still refuses them.
    assert redrive(queue).moved == 2
    calls.clear()
    redriven_at = datetime.now(UTC)
    drain(poller, queue, polls=100, pause_s=0.02)

    assert len(calls) == 2 * HOST_JSON_TRIES  # 5 more refused replays each
    assert sorted(raw_messages(queue.poison)) == first_poisoned  # back, unchanged
    peeked = create_queue_client(queue.poison, {}, base64_messages=False).peek_messages(32)
    for message in peeked:
        assert message.expires_on is not None
        assert message.expires_on >= redriven_at + SEVEN_DAYS - timedelta(minutes=1)
    assert read_all(cosmos_settings) == []

    # Once fixed: a redrive stores each event once.
    proxy.refusal = None
    assert redrive(queue).moved == 2
    drain(poller, queue, polls=100, pause_s=0.02)
    stored = sorted(document["id"] for document in read_all(cosmos_settings))
    assert stored == sorted(str(document["id"]) for document in documents)
    assert raw_messages(queue.poison) == []
