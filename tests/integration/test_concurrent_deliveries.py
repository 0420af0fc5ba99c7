"""The most telling interleavings of test_concurrency_properties, against the local Cosmos DB
API server: the same deliveries through function_app, their database calls forced into the
same order (interleave.Turns around the real container), give the same answers, decisions and
stored document as the fake client, so the unit properties speak for the real store."""

from __future__ import annotations

import time
from typing import Any

import pytest

from acr_webhook.config import Settings
from acr_webhook.models import ENRICHMENT_FIELDS
from acr_webhook.repository import create_cosmos_client, without_system_fields
from tests.conftest import container_for
from tests.support.interleave import (
    FakeHistory,
    GatedCosmosClient,
    GatedHealth,
    GatedQueue,
    Turns,
    deployed,
)
from tests.unit.test_concurrency_properties import (
    CARRIED,
    EVENT_ID,
    REPOSITORY,
    Delivery,
    Overlap,
    Records,
    app_settings,
    call,
    logged,
    names,
    prestored_document,
    run_overlap,
)

ALL = frozenset(CARRIED)


def run_real(overlap: Overlap, settings: Settings) -> tuple[Turns, dict[str, Any], Records]:
    """``run_overlap`` with the local server's container in place of the fake client."""
    actors = names(overlap)
    turns = Turns(actors, [actors[index] for index in overlap.order])
    container = container_for(settings)
    if overlap.prestored:
        container.create_item(prestored_document("bare"))
    local = {
        name: getattr(settings, name)
        for name in ("cosmos_endpoint", "cosmos_key", "cosmos_database", "cosmos_container")
    }
    wired = Settings(**{**vars(app_settings(None)), **local})
    histories = [
        FakeHistory(turns, [d.history_entry()])
        for d in overlap.deliveries
        if d.route == "reconcile"
    ]

    def gated_client(settings: Settings, options: dict[str, Any]) -> GatedCosmosClient:
        return GatedCosmosClient(create_cosmos_client(settings, options), turns)

    with (
        deployed(
            wired,
            GatedHealth(turns, time.monotonic),
            gated_client,
            clock=time.monotonic,
            queue=GatedQueue(turns),
            history=histories[0] if histories else None,
        ),
        logged() as records,
    ):
        actions = {
            actor: call(delivery, None)
            for actor, delivery in zip(actors, overlap.deliveries, strict=True)
        }
        outcomes = turns.run(actions)
    stored = [without_system_fields(d) for d in container.read_all_items()]
    return turns, {"outcomes": outcomes, "stored": stored}, records


def summary(outcomes: dict[str, Any], records: Records) -> dict[str, Any]:
    """Per delivery: its answer (status, body) or return value, and its decisions."""
    decided: dict[str, list[str]] = {actor: [] for actor in outcomes}
    for record, thread in zip(records.records, records.threads, strict=True):
        if hasattr(record, "decision"):
            decided[thread.removeprefix("actor-")].append(record.decision)
    answers = {
        actor: (outcome.status_code, outcome.get_body())
        if hasattr(outcome, "status_code")
        else outcome
        for actor, outcome in outcomes.items()
    }
    return {"answers": answers, "decisions": decided}


def essentials(document: dict[str, Any]) -> dict[str, Any]:
    return {name: document[name] for name in ("id", "repository", "source", *ENRICHMENT_FIELDS)}


OVERLAPS = {
    # Both duplicates (reconcile's and Event Grid's, the copies that fill in) read the stored
    # document before either fills it in: the second replace is refused for its stale ETag
    # (412), reads again and adds what is still missing.
    "fill-ins race on one ETag": Overlap(
        (
            Delivery("reconcile", frozenset({"actor", "clientAddress"})),
            Delivery("eventgrid", frozenset({"actor", "location", "registryResourceId"})),
        ),
        (0, 1, 0, 1, 0, 1, 0, 1, 0),  # reconcile reads ACR's history first
        (),
        "up",
        True,
    ),
    # Webhook and Event Grid create at once: one 201, one duplicate that fills in Event Grid's
    # fields on the webhook's document.
    "two first deliveries": Overlap(
        (Delivery("webhook", frozenset()), Delivery("cloudevents", ALL)),
        (0, 1, 0, 1),
        (),
        "up",
        False,
    ),
    # Replay, reconcile and Event Grid of one event, each step in turn: Event Grid creates; the
    # replay (the webhook's copy) is a duplicate that reads nothing, so its clientAddress,
    # which no other copy carries, stays empty; reconcile fills in its actor.
    "replay, reconcile and Event Grid": Overlap(
        (
            Delivery("replay", frozenset({"clientAddress"})),
            Delivery("reconcile", frozenset({"actor"})),
            Delivery("eventgrid", frozenset({"location", "connectedRegistry"})),
        ),
        (2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0),
        (),
        "up",
        False,
    ),
}


# Fill-ins refused for a stale ETag (412) in each case: the trace being the same, the real
# server refused them too. The replay's case had one while a webhook copy filled in (it raced
# reconcile's); now reconcile's fill-in is the only one there.
CONFLICTS = {
    "fill-ins race on one ETag": 1,
    "two first deliveries": 0,
    "replay, reconcile and Event Grid": 0,
}


@pytest.mark.parametrize("name", list(OVERLAPS))
def test_the_real_store_answers_and_stores_as_the_fake_does(
    name: str, cosmos_settings: Settings
) -> None:
    overlap = OVERLAPS[name]
    fake = run_overlap(overlap)
    turns, real, records = run_real(overlap, cosmos_settings)
    assert turns.trace == fake.turns.trace
    steps = [label for _, label in turns.trace]
    # The interleaving each case is named for did happen.
    assert fake.client.conflicts == CONFLICTS[name]
    assert steps.count("cosmos.create_item") == len(overlap.deliveries)
    expected = summary(fake.outcomes, fake.records)
    got = summary(real["outcomes"], records)
    # The answers carry the event id only; the bodies are the same.
    assert got == expected
    [document] = real["stored"]
    assert (document["id"], document["repository"]) == (EVENT_ID, REPOSITORY)
    [stored] = fake.client.documents.values()
    assert essentials(document) == essentials(without_system_fields(stored))
    # The fields of the copy that created it and of each Event Grid or reconcile copy are on it
    # (none failed here); a field only a webhook copy's duplicate carried is not.
    supplied: set[str] = set()
    for actor, delivery in zip(names(overlap), overlap.deliveries, strict=True):
        if actor == fake.client.creator or delivery.fills_in:
            supplied |= delivery.offered
    assert {name: document[name] for name in ENRICHMENT_FIELDS} == {
        name: CARRIED[name] if name in supplied else None for name in ENRICHMENT_FIELDS
    }
