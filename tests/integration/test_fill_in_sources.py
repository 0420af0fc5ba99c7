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
from typing import Any

from acr_webhook.config import Settings
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.results import utc_now
from tests.conftest import read_all
from tests.integration.test_cost import calls, kinds
from tests.support import payloads
from tests.support.cosmos_proxy import FaultyCosmosProxy


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
