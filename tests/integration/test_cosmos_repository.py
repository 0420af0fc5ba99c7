"""The Cosmos DB repository against the real local Cosmos DB API server."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.cosmos import ContainerProxy

from acr_webhook.config import Settings
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.repository import (
    CosmosEventRepository,
    DatabaseHealth,
    provision,
    without_system_fields,
)
from acr_webhook.store import DocumentRejectedError, RepositoryUnavailableError
from tests.conftest import fresh_settings, read_all
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer

# ACR gives up after 5 s; the whole answer must come well inside that.
ANSWER_BUDGET_S = 4.5
# The README: a write the database does not answer gives up after ~2 s (CLIENT_TIMEOUTS),
# leaving the rest of the answer budget for the fallback queue.
WRITE_GIVES_UP_S = 2.5
# How long these tests let a repository remember a failure (production: UNAVAILABLE_MEMORY_S).
SHORT_MEMORY_S = 0.5


def recovering(settings: Settings) -> CosmosEventRepository:
    """A repository whose memory of a failure is short, so recovery needs no long wait."""
    return CosmosEventRepository(settings, health=DatabaseHealth(memory_s=SHORT_MEMORY_S))


def after_the_memory() -> None:
    time.sleep(SHORT_MEMORY_S + 0.1)


def document_for(payload: dict[str, object]) -> dict[str, object]:
    return to_document(AcrEvent.model_validate(payload), datetime.now(UTC))


# What makes a duplicate of a webhook-stored document one that fills in: it came by Event Grid
# (models.FILLED_IN_BY). A webhook duplicate is neither read nor written
# (test_fill_in_sources, test_keyholder_writes).
BY_EVENT_GRID = {"source": "eventgrid"}


def test_add_writes_a_document_that_reads_back(cosmos_settings: Settings) -> None:
    repository = CosmosEventRepository(cosmos_settings)
    document = document_for(payloads.PUSH)
    assert repository.add(document) is True
    [stored] = read_all(cosmos_settings)
    assert {k: stored[k] for k in document} == document


def test_second_add_of_the_same_event_is_recognised_not_duplicated(
    cosmos_settings: Settings,
) -> None:
    repository = CosmosEventRepository(cosmos_settings)
    document = document_for(payloads.PUSH)
    assert repository.add(document) is True
    assert repository.add(dict(document, receivedAt="later")) is False
    stored = read_all(cosmos_settings)
    assert len(stored) == 1
    assert stored[0]["receivedAt"] == document["receivedAt"]  # the first write is kept


def test_same_id_in_another_repository_is_a_separate_partition(
    cosmos_settings: Settings,
) -> None:
    repository = CosmosEventRepository(cosmos_settings)
    assert repository.add(document_for(payloads.PUSH)) is True
    other = payloads.with_new_id(payloads.PUSH, repository="other")
    other["id"] = payloads.PUSH["id"]
    assert repository.add(document_for(other)) is True
    assert len(read_all(cosmos_settings)) == 2


def test_provision_twice_is_fine(cosmos_settings: Settings) -> None:
    provision(cosmos_settings)
    provision(cosmos_settings)
    assert read_all(cosmos_settings) == []


def test_missing_container_is_unavailable_not_a_crash(cosmos_server: LocalCosmosServer) -> None:
    settings = dataclasses.replace(fresh_settings(cosmos_server), cosmos_container="never-made")
    with pytest.raises(RepositoryUnavailableError):
        CosmosEventRepository(settings).add(document_for(payloads.PUSH))


def timed_add(repository: CosmosEventRepository, payload: dict[str, object]) -> float:
    started = time.monotonic()
    with pytest.raises(RepositoryUnavailableError):
        repository.add(document_for(payload))
    return time.monotonic() - started


def test_frozen_server_fails_within_budget_and_recovers(
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    repository = recovering(settings)
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True

    restartable_cosmos_server.freeze()
    try:
        assert timed_add(repository, payloads.with_new_id(payloads.PUSH)) < WRITE_GIVES_UP_S
        # Remembered: the next writer does not spend its budget on the same failure.
        assert timed_add(repository, payloads.with_new_id(payloads.PUSH)) < 0.1
        after_the_memory()  # then it is tried again, with the endpoint marked unavailable
        assert timed_add(repository, payloads.with_new_id(payloads.PUSH)) < WRITE_GIVES_UP_S
    finally:
        restartable_cosmos_server.thaw()

    after_the_memory()
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True


def test_stopped_server_fails_within_budget_and_recovers_after_restart(
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    repository = recovering(settings)
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True

    restartable_cosmos_server.stop()
    assert timed_add(repository, payloads.with_new_id(payloads.PUSH)) < WRITE_GIVES_UP_S

    restartable_cosmos_server.start()  # same port, but an empty in-memory server
    provision(settings)
    after_the_memory()
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True


def test_client_created_while_server_is_down_recovers_without_restart(
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    restartable_cosmos_server.stop()
    repository = recovering(settings)  # nothing is contacted yet
    assert timed_add(repository, payloads.with_new_id(payloads.PUSH)) < WRITE_GIVES_UP_S

    restartable_cosmos_server.start()
    provision(settings)
    after_the_memory()
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True


def test_client_created_while_server_is_frozen_fails_within_budget(
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    repository = recovering(settings)
    restartable_cosmos_server.freeze()
    try:
        assert timed_add(repository, payloads.with_new_id(payloads.PUSH)) < WRITE_GIVES_UP_S
    finally:
        restartable_cosmos_server.thaw()
    after_the_memory()
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True


def test_concurrent_first_writes_to_a_frozen_server_never_queue_behind_each_other(
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    """Issue 10: 16 first requests to a fresh process used to wait on one lock in turn (2 s
    each, 32.7 s for the last). Now one builds the client and the rest wait for that build
    only, then all fail together."""
    repository = CosmosEventRepository(fresh_settings(restartable_cosmos_server))
    elapsed: list[float] = []
    restartable_cosmos_server.freeze()
    try:
        threads = [
            threading.Thread(
                target=lambda: elapsed.append(
                    timed_add(repository, payloads.with_new_id(payloads.PUSH))
                )
            )
            for _ in range(16)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        restartable_cosmos_server.thaw()
    assert len(elapsed) == 16
    assert max(elapsed) < ANSWER_BUDGET_S


def test_a_duplicate_fills_in_what_the_stored_document_lacks_and_nothing_else(
    cosmos_settings: Settings,
) -> None:
    repository = CosmosEventRepository(cosmos_settings)
    document = document_for(payloads.with_new_id(payloads.PUSH))
    assert repository.add({**document, "actor": None, "location": "westeurope"}) is True
    later = {**document, "actor": "ci-bot", "location": "eastus", **BY_EVENT_GRID}
    assert repository.add(later) is False
    [stored] = read_all(cosmos_settings)
    assert stored["actor"] == "ci-bot"  # filled in
    assert stored["location"] == "westeurope"  # never overwritten
    assert stored["source"] == "webhook"  # the path that stored it first


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"digest": "sha256:" + "0" * 64}, "digest"),
        ({"tag": "v2", "action": "delete"}, "action and tag"),
    ],
)
def test_an_id_stored_for_another_event_is_a_duplicate_logged_and_nothing_is_filled_in(
    cosmos_settings: Settings,
    caplog: pytest.LogCaptureFixture,
    changed: dict[str, str],
    named: str,
) -> None:
    """An id used twice for different events was a silent duplicate, and the second event's
    actor filled in the first's."""
    repository = CosmosEventRepository(cosmos_settings)
    document = document_for(payloads.with_new_id(payloads.PUSH))
    assert repository.add(document) is True
    caplog.set_level(logging.WARNING, logger="acr_webhook")

    assert (
        repository.add({**document, **changed, "actor": "someone-else", **BY_EVENT_GRID}) is False
    )

    [stored] = read_all(cosmos_settings)
    assert without_system_fields(stored) == document
    [warning] = [r for r in caplog.records if r.name.startswith("acr_webhook")]
    assert warning.getMessage() == (
        f"event={document['id']!r} already stored with another {named}: the stored event is kept"
    )
    assert (warning.__dict__["event_id"], warning.__dict__["repository"]) == (
        document["id"],
        document["repository"],
    )


# Ids the validation accepts next to the dot segments it refuses ("." and ".."): as the last
# part of the item's URL path, none may be resolved into another resource by the HTTP client.
# Those with a %XX escape are stored but not filled in: Cosmos DB's gateway decodes them once
# more than the SDK encodes them ("%2e" becomes a dot segment) and refuses a read or replace
# by id; this server decodes once and would take them.
@pytest.mark.parametrize(
    ("event_id", "filled_in"),
    [
        *((event_id, True) for event_id in ["...", ".a", "a.", "a..", "% 2e", "50%", " ."]),
        *((event_id, False) for event_id in ["%2e", "%2e%2e", "%2F", "a%41b"]),
    ],
)
def test_a_duplicate_of_any_accepted_id_is_stored_once_and_no_outage(
    cosmos_settings: Settings, event_id: str, filled_in: bool
) -> None:
    health = DatabaseHealth()
    repository = CosmosEventRepository(cosmos_settings, health=health)
    document = {**document_for(payloads.PUSH), "id": event_id, "actor": None}
    assert repository.add(document) is True
    assert repository.add({**document, "actor": "ci-bot", **BY_EVENT_GRID}) is False
    [stored] = read_all(cosmos_settings)
    assert (stored["id"], stored["actor"]) == (event_id, "ci-bot" if filled_in else None)
    health.check()  # nothing was taken for an outage


def duplicates_at_once(
    repository: CosmosEventRepository, document: dict[str, object], fields: dict[str, str]
) -> list[bool]:
    """``repository.add`` of one Event Grid copy of ``document`` per field, each with that
    field, at once."""
    start = threading.Barrier(len(fields))
    created: list[bool] = []

    def duplicate(name: str, value: str) -> None:
        start.wait()
        created.append(repository.add({**document, name: value, **BY_EVENT_GRID}))

    threads = [threading.Thread(target=duplicate, args=field) for field in fields.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return created


def test_concurrent_duplicates_each_fill_in_their_field(cosmos_settings: Settings) -> None:
    """Five copies at once, each with another enrichment field: fill-in gave up after three
    changed ETags (a 503, its field lost for good), in 4 of 10 trials."""
    repository = CosmosEventRepository(cosmos_settings)
    offered = {
        "actor": "ci-bot",
        "clientAddress": "203.0.113.7",
        "location": "westeurope",
        "connectedRegistry": "edge01",
        "registryResourceId": "/subscriptions/s/resourceGroups/g/providers/r",
    }
    for _ in range(5):
        document = document_for(payloads.with_new_id(payloads.PUSH))
        assert repository.add(document) is True
        assert duplicates_at_once(repository, document, offered) == [False] * len(offered)
        [stored] = [d for d in read_all(cosmos_settings) if d["id"] == document["id"]]
        assert {name: stored[name] for name in offered} == offered


def test_concurrent_first_writes_wait_for_the_one_client_and_use_it(
    cosmos_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build woke its waiters before it kept the client: a waiter that ran at once found
    none ("database client is not ready"). A pause after the wake-up makes that moment long."""

    class SlowToReturnEvent(threading.Event):
        def set(self) -> None:
            super().set()
            time.sleep(0.05)

    monkeypatch.setattr("acr_webhook.repository.threading.Event", SlowToReturnEvent)
    repository = CosmosEventRepository(cosmos_settings)
    start = threading.Barrier(8)
    created: list[bool] = []

    def first_write() -> None:
        start.wait()
        created.append(repository.add(document_for(payloads.with_new_id(payloads.PUSH))))

    threads = [threading.Thread(target=first_write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert created == [True] * 8


def then_expire(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """After each call of ContainerProxy.``method``, answered or refused, the server really
    deletes the document it named, as its time to live running out at that moment would."""
    real = getattr(ContainerProxy, method)

    def call_then_expire(self: ContainerProxy, item: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return real(self, item, *args, **kwargs)
        finally:
            if isinstance(item, dict):  # create_item's document
                self.delete_item(item["id"], partition_key=item["repository"])
            else:  # read_item's id
                self.delete_item(item, partition_key=kwargs["partition_key"])

    monkeypatch.setattr(ContainerProxy, method, call_then_expire)


# create_item: gone before the fill-in's read; read_item: gone before its replace.
@pytest.mark.parametrize("expires_after", ["create_item", "read_item"])
def test_a_duplicate_whose_stored_document_expired_stays_a_duplicate_not_an_outage(
    cosmos_settings: Settings, monkeypatch: pytest.MonkeyPatch, expires_after: str
) -> None:
    """The fill-in's 404 was taken for an unreachable database: a 503 for this duplicate, and
    every writer of the instance sent to the fallback for 5 s."""
    health = DatabaseHealth()
    repository = CosmosEventRepository(cosmos_settings, health=health)
    document = {**document_for(payloads.with_new_id(payloads.PUSH)), "actor": None}
    assert repository.add(document) is True
    then_expire(monkeypatch, expires_after)
    assert repository.add({**document, "actor": "ci-bot", **BY_EVENT_GRID}) is False
    health.check()  # not taken for an outage
    assert read_all(cosmos_settings) == []  # and not written back: it has expired


@pytest.mark.parametrize(
    ("route", "actor_after"),
    [(BY_EVENT_GRID, "ci-bot"), ({"source": "webhook"}, None)],
    ids=["filled in by Event Grid", "webhook: nothing read"],
)
def test_a_duplicate_answered_by_the_database_ends_a_remembered_outage(
    cosmos_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    route: dict[str, str],
    actor_after: str | None,
) -> None:
    """As a new write does: another writer's failure, remembered while this duplicate was on
    its way, no longer sends every writer to the fallback once the database has answered.
    A webhook duplicate fills nothing in (models.FILLED_IN_BY), but its 409 is the database's
    answer all the same: without it every writer of the instance parks its events in the
    fallback queue for 5 s more. Kills: `self._health.succeeded()` moved under the
    FILLED_IN_BY check in add."""
    health = DatabaseHealth()
    repository = CosmosEventRepository(cosmos_settings, health=health)
    document = {**document_for(payloads.with_new_id(payloads.PUSH)), "actor": None}
    assert repository.add(document) is True
    real_create = ContainerProxy.create_item

    def create_while_another_writer_fails(self: ContainerProxy, *args: Any, **kwargs: Any) -> Any:
        health.failed("another writer's write timed out")
        return real_create(self, *args, **kwargs)

    monkeypatch.setattr(ContainerProxy, "create_item", create_while_another_writer_fails)
    assert repository.add({**document, "actor": "ci-bot", **route}) is False
    health.check()
    [stored] = read_all(cosmos_settings)
    assert stored["actor"] == actor_after


def test_a_duplicate_with_nothing_new_is_not_rewritten(cosmos_settings: Settings) -> None:
    repository = CosmosEventRepository(cosmos_settings)
    document = {**document_for(payloads.with_new_id(payloads.PUSH)), "actor": "ci-bot"}
    assert repository.add(document) is True
    [before] = read_all(cosmos_settings)
    assert repository.add({**document, **BY_EVENT_GRID}) is False
    [after] = read_all(cosmos_settings)
    assert after["_etag"] == before["_etag"]


@pytest.mark.parametrize("bad_id", ["", "tab\tinside", "ends-with-space "])
def test_a_document_the_database_refuses_is_rejected_not_unavailable(
    cosmos_settings: Settings, bad_id: str
) -> None:
    """Refused for good (the service's 400, or the SDK's own ValueError for the id), so
    nothing retries it or reports the database as down. The models reject these ids first;
    this is the store's own answer, should anything slip through."""
    repository = CosmosEventRepository(cosmos_settings)
    document = {**document_for(payloads.with_new_id(payloads.PUSH)), "id": bad_id}
    with pytest.raises(DocumentRejectedError):
        repository.add(document)
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True
