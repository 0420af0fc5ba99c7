"""Which later copies of a stored event fill in its empty fields, counted at the local Cosmos DB
server (behind the counting proxy, ``FaultyCosmosProxy.seen``).

README: "a later Event Grid or reconcile delivery of the same event that carries them fills
them in ... A webhook delivery fills in nothing: ACR's webhook carries none of them". So a
webhook duplicate naming who pushed, from where and in which region is the create answered 409
and nothing more: no read, no write, the stored document as it was (its ``_etag`` and ``_ts``
too, which operations.md reads for what was written while a key was out). The same event from
reconcile then fills them in. test_keyholder_writes checks the fields through the route; this
counts what reaches the database and holds the whole document."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from acr_webhook.config import Settings
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import ENRICHMENT_FIELDS, AcrEvent, Source, to_document
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventRepository, without_system_fields
from acr_webhook.results import utc_now
from tests.conftest import read_all
from tests.integration.test_cost import calls, kinds
from tests.support import payloads
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.fakes import FakeEventRepository
from tests.unit.test_eventgrid import TOPIC


def named(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` naming who pushed, the client's address and the region."""
    copied = copy.deepcopy(payload)
    copied["actor"] = {"name": "mallory@evil.example"}
    copied["request"]["addr"] = "198.51.100.66:4444"
    copied["location"] = "antarctica"
    return copied


def test_a_webhook_duplicate_naming_who_pushed_costs_one_create_and_a_reconcile_copy_fills_in(
    through_proxy: Settings, proxy: FaultyCosmosProxy
) -> None:
    repository = CosmosEventRepository(through_proxy)
    container = through_proxy.cosmos_container
    real = payloads.with_new_id(payloads.PUSH)  # as ACR's webhook sends it: none of the three
    assert handle_webhook(payloads.body(real), repository).status == 201
    [before] = read_all(through_proxy)
    assert (before["actor"], before["clientAddress"], before["location"]) == (None, None, None)

    answers: list[int] = []
    sent = calls(
        proxy.seen,
        lambda: answers.append(handle_webhook(payloads.body(named(real)), repository).status),
    )
    assert answers == [200]
    assert kinds(sent, container) == {"create": 1}  # answered 409: no read, no replace
    assert read_all(through_proxy) == [before]  # _etag and _ts included: not written

    event = AcrEvent.model_validate(named(real))
    from_reconcile = to_document(event, utc_now(), "reconcile")
    added: list[bool] = []
    sent = calls(proxy.seen, lambda: added.append(repository.add(from_reconcile)))
    assert added == [False]
    assert kinds(sent, container) == {"create": 1, "read": 1, "replace": 1}
    [after] = read_all(through_proxy)
    assert (after["actor"], after["clientAddress"], after["location"]) == (
        "mallory@evil.example",
        "198.51.100.66:4444",
        "antarctica",
    )
    filled = {"actor", "clientAddress", "location", "_etag", "_ts"}
    assert {k: v for k, v in after.items() if k not in filled} == {
        k: v for k, v in before.items() if k not in filled
    }
    assert after["source"] == "webhook"  # the path that stored it first


def a_copy_from(source: Source | None, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload``'s document as ``source`` makes it, with the registry's ARM id (Event Grid's
    topic); ``None``: a parked document with no ``source`` key, which replay accepts."""
    document = to_document(AcrEvent.model_validate(payload), utc_now(), source or "webhook", TOPIC)
    if source is None:
        del document["source"]
    return document


@pytest.mark.parametrize("source", ["webhook", "eventgrid", "reconcile", None])
def test_the_fake_store_fills_in_from_the_same_sources_as_cosmos_db(
    cosmos_settings: Settings, source: Source | None
) -> None:
    """tests/support/fakes.py stands in for CosmosEventRepository in some forty test modules
    (the handlers', the concurrency models', privacy's): a duplicate naming all five fields, by
    each source, leaves the two stores' documents alike, filled in for Event Grid and reconcile
    alone.
    Kills: the fake's store_or_fill_in filling in from any source (1469 tests passed with it);
    CosmosEventRepository.add reading `document["source"]` (KeyError) or defaulting it to one
    that fills in."""
    real = payloads.with_new_id(payloads.PUSH)
    first = to_document(AcrEvent.model_validate(real), utc_now())
    duplicate = a_copy_from(source, {**named(real), "connectedRegistry": {"name": "edge01"}})
    cosmos, fake = CosmosEventRepository(cosmos_settings), FakeEventRepository()
    assert [cosmos.add(first), cosmos.add(duplicate)] == [True, False]
    assert [fake.add(first), fake.add(duplicate)] == [True, False]
    [stored] = [without_system_fields(document) for document in read_all(cosmos_settings)]
    assert fake.documents == {real["id"]: stored}
    fills_in = source in ("eventgrid", "reconcile")
    assert {name: stored[name] for name in ENRICHMENT_FIELDS} == (
        {name: duplicate[name] for name in ENRICHMENT_FIELDS}
        if fills_in
        else dict.fromkeys(ENRICHMENT_FIELDS)
    )


def test_a_parked_document_without_a_source_replays_over_its_stored_event_as_a_duplicate(
    cosmos_settings: Settings,
) -> None:
    """Replay checks four keys of a parked document, not `source`. Every version's documents
    and messages carry one (tests/fixtures/earlier_versions, back to 89721c0); one without is
    made by hand (the queue's or the master key's holder). Over a stored event it is a
    duplicate filling nothing in, not an error the runtime retries into the poison queue.
    Kills: CosmosEventRepository.add reading `document["source"]` (replay raised KeyError)."""
    repository = CosmosEventRepository(cosmos_settings)
    real = payloads.with_new_id(payloads.PUSH)
    assert repository.add(to_document(AcrEvent.model_validate(real), utc_now())) is True
    [before] = read_all(cosmos_settings)
    message = json.dumps({"document": a_copy_from(None, named(real)), "attempts": 0})
    assert replay_queued_event(message, repository, None, max_delay_s=60) == "duplicate"
    assert read_all(cosmos_settings) == [before]
