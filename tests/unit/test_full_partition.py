"""A repository whose logical partition is full (Cosmos DB's 403, sub-status 1014, at 20 GB): said
as itself, neither as a refused set-up nor as an outage; the other repositories' events in the
same batch or reconcile run are still stored, the ones left are counted apart and tried again.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.cosmos.exceptions import CosmosHttpResponseError

from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.reconcile import reconcile_entries
from acr_webhook.repository import EVENTGRID_WRITE_OPTIONS
from acr_webhook.store import RepositoryUnavailableError, StoreSetUpError, unavailable_reasons
from tests.support import payloads
from tests.support.history import history_entry
from tests.support.interleave import InlineExecutor
from tests.unit.test_database_health import RecordingContainer, cosmos_over
from tests.unit.test_eventgrid import event_grid
from tests.unit.test_messages import NOTIFICATION
from tests.unit.test_reconcile import NOW, no_record

BUSY = "team/busy"  # a repository whose logical partition holds its 20 GB
# Cosmos DB's answer for a full logical partition (troubleshoot-forbidden.md, "Partition key
# exceeding storage"), and for an identity without its data role (403/5301), shortened.
PARTITION_FULL_TEXT = "Partition key reached maximum size of 20 GB"
NO_DATA_ROLE_TEXT = "Request blocked by Auth cosmos-acr : principal does not have required RBAC"


class StoringContainer(RecordingContainer):
    """Stores what is created; a create in BUSY's partition gets 403/1014, and with
    ``refused_sub_status`` every create gets a 403 with that sub-status."""

    def __init__(self, refused_sub_status: int | None = None) -> None:
        super().__init__()
        self.created: list[str] = []
        self.refused_sub_status = refused_sub_status

    def create_item(self, document: Any, **options: Any) -> None:
        self.calls.append(options)
        if self.refused_sub_status is not None:
            raise CosmosHttpResponseError(  # type: ignore[no-untyped-call]
                status_code=403, message=NO_DATA_ROLE_TEXT, sub_status=self.refused_sub_status
            )
        if document["repository"] == BUSY:
            raise CosmosHttpResponseError(  # type: ignore[no-untyped-call]
                status_code=403, message=PARTITION_FULL_TEXT, sub_status=1014
            )
        self.created.append(document["id"])


# --- repository._failure: a full partition, and any other 403 -----------------------------------


def test_another_403_is_still_a_refused_role_remembered_not_a_full_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutant killed: any 403 taken for a full partition (the sub-status test dropped): a
    missing data role (403/5301) would be told to delete old events, and every write would
    ask the database again instead of being refused from memory."""
    container = StoringContainer(refused_sub_status=5301)
    repository = cosmos_over(monkeypatch, container)
    document = {"id": "e1", "repository": "team/api", "action": "push"}

    with pytest.raises(StoreSetUpError, match="Data Contributor") as raised:
        repository.add(document)
    assert "partition" not in raised.value.cause
    with pytest.raises(StoreSetUpError, match="refused moments ago"):
        repository.add(document)
    assert len(container.calls) == 1


def test_a_full_partition_is_not_said_as_a_refused_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant killed: 403/1014 raised as a StoreSetUpError. That class is "the store refused
    the app's set-up (a key, an identity, a role, a database or container)" (store.py), and
    the read endpoint, the CLI and the timer say it so; one repository's partition is not."""
    repository = cosmos_over(monkeypatch, StoringContainer())

    with pytest.raises(RepositoryUnavailableError) as raised:
        repository.add({"id": "e1", "repository": BUSY, "action": "push"})

    assert not isinstance(raised.value, StoreSetUpError)
    reason, _ = unavailable_reasons([raised.value])
    # Said as itself, as a set-up is, not as the database's outage.
    assert reason.startswith("the repository's partition is full (20 GB)")


def test_reconcile_stores_other_repositories_events_past_a_full_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = StoringContainer()
    busy = payloads.with_new_id(payloads.PUSH, repository=BUSY)
    quiet = payloads.with_new_id(payloads.PUSH, repository="team/quiet")

    outcome = reconcile_entries(
        [history_entry(busy), history_entry(quiet)],
        cosmos_over(monkeypatch, container),
        received_at=NOW,
        report_invalid=no_record,
    )

    assert container.created == [quiet["id"]]
    # Counted apart, so that the command says it and exits 1: run again once there is room.
    assert outcome.counts.summary() == "recorded=1 already=0 skipped=0 invalid=0 unstored=1"
    assert outcome.unavailable is None
    assert outcome.unstored_reason is not None
    assert outcome.unstored_reason.startswith("the repository's partition is full")


def test_an_event_grid_batch_stores_other_repositories_events_past_a_full_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = StoringContainer()
    busy = payloads.with_new_id(payloads.PUSH, repository=BUSY)
    quiet = payloads.with_new_id(payloads.PUSH, repository="team/quiet")
    body = payloads.body([event_grid(busy), event_grid(quiet)])

    answer = handle_eventgrid(
        body,
        NOTIFICATION,
        cosmos_over(monkeypatch, container, write_options=EVENTGRID_WRITE_OPTIONS),
        now=lambda: NOW,
        executor=InlineExecutor(),
    )

    assert container.created == [quiet["id"]]
    assert answer.status == 503  # Event Grid delivers it again; the stored one is a duplicate
