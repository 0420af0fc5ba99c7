"""Rolling back, against the local Cosmos DB server and Azurite: this version re-delivers events
a newer version stored, and redrives and replays the messages a newer version parked or that
were poisoned under it. Unit side, and what older commits' code did with this version's
documents, messages and tokens: tests/unit/test_rollback.py.
"""

from __future__ import annotations

import copy
from typing import Any

from acr_webhook.config import Settings
from acr_webhook.fallback import create_queue_client, decode_message
from acr_webhook.models import ENRICHMENT_FIELDS, AcrEvent, to_document
from acr_webhook.redrive import RedriveReport, redrive
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventRepository, without_system_fields
from tests.conftest import container_for, read_all
from tests.support import payloads
from tests.support.azurite import LocalAzurite, new_queue, raw_messages
from tests.unit.test_eventgrid import TOPIC
from tests.unit.test_rollback import RECEIVED, as_queued, newer_document


def delivered(payload: dict[str, Any], event_id: str, **route: Any) -> dict[str, Any]:
    """The document this version makes of ``payload`` under ``event_id`` (route: source and
    registry_resource_id, as Event Grid's copies have them)."""
    event = AcrEvent.model_validate({**copy.deepcopy(payload), "id": event_id})
    return to_document(event, RECEIVED, **route)


def stored(settings: Settings) -> dict[str, dict[str, Any]]:
    return {doc["id"]: without_system_fields(doc) for doc in read_all(settings)}


def test_a_redelivery_fills_in_only_what_a_newer_document_lacks(
    cosmos_settings: Settings,
) -> None:
    """Event Grid's copy of a push a newer version stored from the webhook fills in the
    enrichment fields that are null there or left out, and nothing else: the newer fields,
    a value the newer version wrote otherwise (its userAgent) and a document whose action this
    version does not know stay as they were; the webhook's copy of an enriched one adds
    nothing."""
    from_webhook = {
        **newer_document(payloads.PUSH, "newer-webhook", userAgent="newer-normalised/1.0"),
        "location": None,  # stored as null
    }
    del from_webhook["connectedRegistry"]  # left out: a newer version that stores no nulls
    enriched = {**delivered(payloads.ENRICHED_PUSH, "newer-enriched"), "platform": "linux/arm64"}
    untag = newer_document(payloads.DELETE, "newer-untag", action="untag")
    container = container_for(cosmos_settings)
    for document in (from_webhook, enriched, untag):
        container.create_item(document)
    repository = CosmosEventRepository(cosmos_settings)

    event_grid = {"source": "eventgrid", "registry_resource_id": TOPIC}
    assert not repository.add(delivered(payloads.ENRICHED_PUSH, "newer-webhook", **event_grid))
    assert not repository.add(delivered(payloads.PUSH, "newer-enriched"))
    assert not repository.add(delivered(payloads.DELETE, "newer-untag"))

    after = stored(cosmos_settings)
    offered = delivered(payloads.ENRICHED_PUSH, "newer-webhook", **event_grid)
    filled = {name: offered[name] for name in ENRICHMENT_FIELDS if from_webhook.get(name) is None}
    assert set(filled) == {
        "actor",
        "clientAddress",
        "location",
        "connectedRegistry",
        "registryResourceId",
    }
    assert after["newer-webhook"] == {**from_webhook, **filled}
    assert after["newer-enriched"] == enriched
    assert after["newer-untag"] == untag


def test_newer_messages_in_both_queues_are_redriven_and_replayed_whole(
    azurite: LocalAzurite, cosmos_settings: Settings
) -> None:
    """A newer envelope (a format marker, keys this version does not know) around a document
    with newer fields, parked in the fallback queue or poisoned: redrive moves the poisoned one
    back unchanged, and replay stores both documents with every field."""
    queue = new_queue(azurite)
    parked = newer_document(payloads.PUSH, "newer-parked")
    poisoned = newer_document(payloads.CHART_PUSH, "newer-poisoned")
    in_queue = as_queued({"v": 3, "document": parked, "attempts": 1, "parkedAt": "2026-12-08"})
    in_poison = as_queued({"v": 3, "document": poisoned, "attempts": 4})
    create_queue_client(queue, {}, base64_messages=False).send_message(in_queue)
    create_queue_client(queue.poison, {}, base64_messages=False).send_message(in_poison)

    assert redrive(queue) == RedriveReport(moved=1, not_events=0, left=0)
    messages = raw_messages(queue)
    assert sorted(messages) == sorted([in_queue, in_poison])

    repository = CosmosEventRepository(cosmos_settings)
    for content in messages:
        assert replay_queued_event(decode_message(content), repository, None, 60) == "recorded"
    assert stored(cosmos_settings) == {"newer-parked": parked, "newer-poisoned": poisoned}
