"""The Cosmos DB repository against the real local Cosmos DB API server."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import pytest

from acr_webhook.config import Settings
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.repository import CosmosEventRepository, RepositoryUnavailableError, provision
from tests.conftest import fresh_settings, read_all
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer

# ACR gives up after 5 s; the whole answer must come well inside that.
ANSWER_BUDGET_S = 4.5


def document_for(payload: dict[str, object]) -> dict[str, object]:
    return to_document(AcrEvent.model_validate(payload), datetime.now(UTC))


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
    repository = CosmosEventRepository(settings)
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True

    restartable_cosmos_server.freeze()
    try:
        for _ in range(2):  # the second call runs with the endpoint marked unavailable
            assert timed_add(repository, payloads.with_new_id(payloads.PUSH)) < ANSWER_BUDGET_S
    finally:
        restartable_cosmos_server.thaw()

    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True


def test_stopped_server_fails_within_budget_and_recovers_after_restart(
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    repository = CosmosEventRepository(settings)
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True

    restartable_cosmos_server.stop()
    assert timed_add(repository, payloads.with_new_id(payloads.PUSH)) < ANSWER_BUDGET_S

    restartable_cosmos_server.start()  # same port, but an empty in-memory server
    provision(settings)
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True


def test_client_created_while_server_is_down_recovers_without_restart(
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    restartable_cosmos_server.stop()
    repository = CosmosEventRepository(settings)  # nothing is contacted yet
    assert timed_add(repository, payloads.with_new_id(payloads.PUSH)) < ANSWER_BUDGET_S

    restartable_cosmos_server.start()
    provision(settings)
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True


def test_client_created_while_server_is_frozen_fails_within_budget(
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    repository = CosmosEventRepository(settings)
    restartable_cosmos_server.freeze()
    try:
        assert timed_add(repository, payloads.with_new_id(payloads.PUSH)) < ANSWER_BUDGET_S
    finally:
        restartable_cosmos_server.thaw()
    assert repository.add(document_for(payloads.with_new_id(payloads.PUSH))) is True
