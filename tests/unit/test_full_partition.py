"""A repository whose logical partition is full (Cosmos DB's 403, sub-status 1014, at 20 GB): said
as itself, neither as a refused set-up nor as an outage; the other repositories' events in the
same batch or reconcile run are still stored, the ones left are counted apart and tried again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.cosmos.exceptions import CosmosHttpResponseError

from acr_webhook import __main__ as cli
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.reconcile import StoredEvents, reconcile_entries, reconcile_webhooks
from acr_webhook.repository import EVENTGRID_WRITE_OPTIONS
from acr_webhook.store import (
    RepositoryUnavailableError,
    StorePartitionFullError,
    StoreSetUpError,
    store_failure_reason,
    unavailable_reasons,
)
from tests.support import payloads
from tests.support.history import history_entry
from tests.support.interleave import InlineExecutor
from tests.support.logs import decisions
from tests.unit.test_database_health import RecordingContainer, cosmos_over
from tests.unit.test_eventgrid import event_grid
from tests.unit.test_messages import NOTIFICATION
from tests.unit.test_reconcile import NOW, TARGET, ListedHistory, no_record

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


# --- __main__._reconcile: events a full partition left unstored ------------------------------


class PartlyDownContainer(StoringContainer):
    """A full partition for BUSY, and then the database gone for ``team/down``."""

    def create_item(self, document: Any, **options: Any) -> None:
        if document["repository"] == "team/down":
            raise ServiceRequestError("Connection refused")
        super().create_item(document, **options)


def reconcile_cli(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    container: StoringContainer,
    repositories: list[str],
) -> int:
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    repository = cosmos_over(monkeypatch, container)
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _s: repository)
    entries = [
        history_entry(payloads.with_new_id(payloads.PUSH, repository=name)) for name in repositories
    ]
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(entries))
    return cli.main(["reconcile", "--events-file", str(events_file)])


def test_reconcile_past_a_full_partition_says_what_it_left_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutants killed: exit 0 (or 2) for events left unstored, the stderr line dropped, sent
    to stdout, or counting another count. docs: exit 1 is "run it again" (a full partition
    once there is room); the summary is stdout's one line."""
    container = StoringContainer()

    status = reconcile_cli(monkeypatch, tmp_path, container, [BUSY, "team/quiet", BUSY])

    out, err = capsys.readouterr()
    assert status == 1
    assert out == "recorded=1 already=0 skipped=0 invalid=0 unstored=2\n"
    [line] = [line for line in err.splitlines() if "not stored" in line]
    assert line.startswith("2 event(s) not stored: the repository's partition is full (20 GB)")
    assert line.endswith("; run reconcile again once there is room")


def test_reconcile_stopped_by_an_outage_still_says_what_a_full_partition_left(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutant killed: the unstored line as an ``elif`` of the stop's. A run that went past a
    full partition and then lost the database says both: running it again stores the one
    once the database is back, the other once there is room."""
    status = reconcile_cli(monkeypatch, tmp_path, PartlyDownContainer(), [BUSY, "team/down"])

    out, err = capsys.readouterr()
    assert status == 1
    assert out == "recorded=0 already=0 skipped=0 invalid=0 unstored=1\n"
    assert "is unavailable" in err and "run reconcile again when it is back" in err
    assert "1 event(s) not stored: the repository's partition is full" in err


# --- store_failure_reason: a replay put back for a full partition -------------------------------


def test_a_full_partition_s_replay_put_back_is_said_as_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutant killed: store_failure_reason back to set-ups only (a replayed event put back
    for a full partition then says "database unavailable", and nothing says what to do)."""
    [full] = partition_full_errors(monkeypatch)

    assert store_failure_reason(full) == full.cause
    assert full.cause.startswith("the repository's partition is full (20 GB)")


def partition_full_errors(monkeypatch: pytest.MonkeyPatch) -> list[StorePartitionFullError]:
    """What the real repository raises for a create in a full partition (403/1014)."""
    repository = cosmos_over(monkeypatch, StoringContainer())
    try:
        repository.add({"id": "e1", "repository": BUSY, "action": "push"})
    except StorePartitionFullError as error:
        return [error]
    raise AssertionError("no StorePartitionFullError")


# --- eventgrid: a full partition in a batch ---------------------------------------------------


class RefusingContainer(StoringContainer):
    """As StoringContainer, and a 413 (too large: refused) for ``team/refused``."""

    def create_item(self, document: Any, **options: Any) -> None:
        if document["repository"] == "team/refused":
            raise CosmosHttpResponseError(  # type: ignore[no-untyped-call]
                status_code=413, message="Request size is too large"
            )
        super().create_item(document, **options)


def eventgrid_batch(
    monkeypatch: pytest.MonkeyPatch, container: StoringContainer, *events: dict[str, Any]
) -> int:
    answer = handle_eventgrid(
        payloads.body([event_grid(e) for e in events]),
        NOTIFICATION,
        cosmos_over(monkeypatch, container, write_options=EVENTGRID_WRITE_OPTIONS),
        now=lambda: NOW,
        executor=InlineExecutor(),
    )
    return answer.status


def test_each_copy_a_full_partition_left_gets_an_unavailable_decision_and_the_id_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutants killed: no decision for the unstored copies, one for the first copy only, a
    warning (the decisions metric and the alert count errors), "rejected" (that says the
    event is bad), and ``break`` for ``continue`` (the same id's document in another
    repository then neither written nor decided). Each copy gets exactly one decision
    (eventgrid._BatchProgress)."""
    caplog.set_level(logging.INFO, logger="acr_webhook")
    busy = payloads.with_new_id(payloads.PUSH, repository=BUSY)
    elsewhere = payloads.with_new_id(payloads.PUSH, repository="team/quiet")
    elsewhere["id"] = busy["id"]  # the same id in another repository: another document
    container = StoringContainer()

    status = eventgrid_batch(monkeypatch, container, busy, busy, elsewhere)

    assert status == 503
    assert container.created == [busy["id"]]
    said = [(d["decision"], d["repository"], d.get("reason", "")[:33]) for d in decisions(caplog)]
    full = "the repository's partition is ful"
    assert said == [
        ("unavailable", BUSY, full),
        ("unavailable", BUSY, full),
        ("recorded", "team/quiet", ""),
    ]
    levels = [r.levelno for r in caplog.records if hasattr(r, "decision")]
    assert levels == [logging.ERROR, logging.ERROR, logging.INFO]


def test_a_batch_with_a_refused_event_and_a_full_partition_is_400(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutant killed: 503 before 400. A refused event is refused on every delivery: a 503
    would have Event Grid deliver the batch again for 24 hours to the same answer; the
    400 is what a refusal gets alone (eventgrid: "one the store refuses → 400")."""
    busy = payloads.with_new_id(payloads.PUSH, repository=BUSY)
    refused = payloads.with_new_id(payloads.PUSH, repository="team/refused")

    assert eventgrid_batch(monkeypatch, RefusingContainer(), busy, refused) == 400


# --- reconcile: the timer past a full partition -----------------------------------------------


def test_the_timer_says_a_full_partition_and_goes_on_to_the_next_webhook(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutants killed: the webhook's summary logged as info without the cause (the alert on
    errors would not see events left unstored), and the timer stopping at it (a full
    partition is one repository's: the other webhooks' events still get stored)."""
    entries = [
        history_entry(payloads.with_new_id(payloads.PUSH, repository=name))
        for name in (BUSY, "team/quiet")
    ]
    history = ListedHistory({"acrwebhook": entries, "acrwebhook2": []})
    repository = cosmos_over(monkeypatch, StoringContainer())

    reconcile_webhooks(TARGET, repository, history, now=lambda: NOW)

    assert history.asked == ["acrwebhook", "acrwebhook2"]
    [summary] = [
        r for r in caplog.records if r.getMessage().startswith("reconcile of webhook 'acrwebhook'")
    ]
    assert summary.levelno == logging.ERROR
    message = summary.getMessage()
    assert message.startswith("reconcile of webhook 'acrwebhook': the repository's partition is")
    assert message.endswith("; recorded=1 already=0 skipped=0 invalid=0 unstored=1")


def test_an_event_a_full_partition_left_is_tried_again_by_the_next_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutant killed: the unstored event remembered as stored (every later timer run would
    count it already=1 and never write it, even once there is room)."""
    container = StoringContainer()
    repository = cosmos_over(monkeypatch, container)
    entries = [history_entry(payloads.with_new_id(payloads.PUSH, repository=BUSY))]
    stored = StoredEvents()
    for _run in range(2):
        outcome = reconcile_entries(
            entries, repository, received_at=NOW, report_invalid=no_record, stored=stored
        )

    assert len(container.calls) == 2
    assert outcome.counts.summary() == "recorded=0 already=0 skipped=0 invalid=0 unstored=1"
