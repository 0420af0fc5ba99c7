"""Mutation audit of the erase command's store side (repository.CosmosEventEraser.delete)
against the local Cosmos DB server, where the server decides: a document deleted since it was
found is answered 404, and what a delete sends for each kind of id (the unit side:
tests/unit/test_session34_mutants.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

from acr_webhook.config import Settings
from acr_webhook.models import Person
from acr_webhook.repository import CosmosEventEraser
from tests.conftest import container_for, read_all
from tests.support.cosmos_proxy import FaultyCosmosProxy, Refusal

ALICE = "alice@contoso.com"
# "a%41b": an id a delete by id cannot address in Azure (repository._NOT_ADDRESSABLE_ID).
IDS = ["e1", "a%41b"]
# Azure's answer to a delete by id of such a document (85b904d: "a delete by id is refused
# 401 in Azure"); the local server takes it, so the proxy answers as Azure does.
DELETE_BY_ID_REFUSED = Refusal(
    401,
    0,
    "Unauthorized",
    "The input authorization token can't serve the request. The wrong key is being used or "
    "the expected payload is not built as per the protocol.",
    paths=r".*/docs/a%(25)?41b/?$",
)


def _store(settings: Settings) -> None:
    """IDS stored in one repository, each naming ALICE."""
    container = container_for(settings)
    for event_id in IDS:
        container.upsert_item({"id": event_id, "repository": "team/api", "actor": ALICE})


def test_an_event_deleted_since_it_was_found_is_gone_whatever_its_id(
    cosmos_settings: Settings,
) -> None:
    """Mutants killed: the delete's 404 raised as an outage (erase would stop, exit 1, "run
    erase again", where erasure.Erasure.gone is "deleted by someone else between the finding
    and the deleting"), and an id with %XX whose link is no longer found deleted anyway
    (delete_item(None)), counted deleted, or failing on found[0]."""
    _store(cosmos_settings)
    eraser = CosmosEventEraser(cosmos_settings)
    found = sorted(eraser.events_naming(Person("actor", ALICE)), key=lambda event: event.id)
    assert [event.id for event in found] == sorted(IDS)
    container = container_for(cosmos_settings)
    for event_id in IDS:
        container.delete_item(event_id, partition_key="team/api")  # the local server takes %XX

    assert [eraser.delete(event) for event in found] == [False, False]


def test_an_id_with_percent_xx_is_deleted_by_its_link_and_any_other_by_its_id(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy, query_calls: list[dict[str, Any]]
) -> None:
    """Mutants killed: every id deleted by id (Azure refuses a%41b's with 401: erase stopped,
    exit 2, at the first such event), every id deleted through a query for its link (two
    requests per event where one does), the link's query sent to every partition (it knows
    the event's), and the find not allowed across partitions (it looks "in every repository",
    and the SDK's enable_cross_partition_query: "More than one request is necessary if the
    query is not scoped to single partition key value")."""
    _store(cosmos_settings)
    proxy.refusal = DELETE_BY_ID_REFUSED
    eraser = CosmosEventEraser(dataclasses.replace(cosmos_settings, cosmos_endpoint=proxy.endpoint))
    found = {event.id: event for event in eraser.events_naming(Person("actor", ALICE))}
    [find] = query_calls
    assert find["enable_cross_partition_query"] is True and "partition_key" not in find

    proxy.seen.clear()
    assert eraser.delete(found["e1"]) is True
    # Requests on documents: the SDK's own start-up check of the account (a GET / on a thread
    # of its own) may land here on a busy machine.
    assert [request.split()[0] for request in proxy.seen if "/docs/" in request] == ["DELETE"]
    assert eraser.delete(found["a%41b"]) is True
    [_, link] = query_calls
    assert link["partition_key"] == "team/api" and "enable_cross_partition_query" not in link

    assert read_all(cosmos_settings) == []
    assert proxy.refused == 0
