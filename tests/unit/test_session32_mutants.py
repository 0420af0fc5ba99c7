"""Mutation audit of session 32's product changes: what the tests written with them left unpinned.

Each test below kills hand-made mutants that the earlier tests let through (named in its
docstring). Every one asserts what a doc, the SDK or the code's own comment says, not the mutant.
The strict xfails are defects found on the way: each says what happens today and what should.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceExistsError

from acr_webhook import __main__ as cli
from acr_webhook.config import QUERY_BUDGET_S, ConfigurationError, load_settings
from acr_webhook.eventgrid import BATCH_BUDGET_S, handle_eventgrid
from acr_webhook.local.host import STOP_GRACE_S
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.reconcile import StoredEvents, reconcile_entries, reconcile_webhooks
from acr_webhook.repository import (
    EVENTGRID_WRITE_OPTIONS,
    UNAVAILABLE_MEMORY_S,
    CosmosEventRepository,
    DatabaseHealth,
)
from acr_webhook.store import RepositoryUnavailableError, StoreSetUpError, unavailable_reasons
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.support.interleave import InlineExecutor
from tests.unit.test_database_health import SETTINGS, Clock, RecordingClient, RecordingContainer
from tests.unit.test_eventgrid import event_grid
from tests.unit.test_messages import NOTIFICATION, WrongKeyRepository
from tests.unit.test_reconcile import NOW, TARGET, ListedHistory

BUSY = "team/busy"  # a repository whose logical partition holds its 20 GB
# Cosmos DB's answer for a full logical partition (troubleshoot-forbidden.md, "Partition key
# exceeding storage"), and for an identity without its data role (403/5301), shortened.
PARTITION_FULL_TEXT = "Partition key reached maximum size of 20 GB"
NO_DATA_ROLE_TEXT = "Request blocked by Auth cosmos-acr : principal does not have required RBAC"


def no_record(_entry: object) -> None:
    pass


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


def cosmos_over(
    monkeypatch: pytest.MonkeyPatch, container: RecordingContainer, **options: Any
) -> CosmosEventRepository:
    """The real repository (its error mapping and memory) over a fake container."""
    monkeypatch.setattr(
        "acr_webhook.repository.create_cosmos_client", lambda *_a, **_k: RecordingClient(container)
    )
    return CosmosEventRepository(SETTINGS, health=DatabaseHealth(clock=Clock()), **options)


# --- repository.DatabaseHealth: the memory's end ------------------------------------------------


def test_a_failure_is_forgotten_exactly_five_seconds_later() -> None:
    """Mutant killed: check() remembering while ``clock > until`` instead of ``>=`` (one more
    instant). The memory is UNAVAILABLE_MEMORY_S long, as before session 32 (``clock < until``
    raised): at its end the database is tried again."""
    clock = Clock()
    health = DatabaseHealth(clock=clock)
    health.failed("ServiceResponseTimeoutError: read timed out")
    clock.now += UNAVAILABLE_MEMORY_S
    health.check()


# --- repository._fill_in: an id stored for another event ----------------------------------------


class DuplicateContainer(RecordingContainer):
    """Every create is a duplicate of ``stored``; replaces are recorded."""

    def __init__(self, stored: dict[str, Any]) -> None:
        super().__init__()
        self.stored = stored
        self.replaced: list[dict[str, Any]] = []

    def create_item(self, document: object, **options: Any) -> None:
        raise CosmosResourceExistsError(status_code=409, message="Conflict")  # type: ignore[no-untyped-call]

    def read_item(self, item: str, **options: Any) -> dict[str, Any]:
        return {**self.stored, "_etag": '"1"'}

    def replace_item(self, item: str, body: dict[str, Any], **options: Any) -> None:
        self.replaced.append(body)


def test_an_id_stored_for_another_event_is_warned_of_when_nothing_is_missing_too(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutant killed: the other-event check after the "nothing missing" return (then an id
    used twice whose stored event already has every field is silent again: "an id used twice
    is a sender's fault to be seen", repository._another_event)."""
    stored = {"id": "e1", "repository": "r", "action": "push", "tag": "v1", "actor": "ci-bot"}
    container = DuplicateContainer(stored)
    repository = cosmos_over(monkeypatch, container)
    caplog.set_level(logging.WARNING, logger="acr_webhook")

    assert repository.add({**stored, "action": "delete", "actor": "someone-else"}) is False

    assert [r.getMessage() for r in caplog.records] == [
        "event='e1' already stored with another action: the stored event is kept"
    ]
    assert container.replaced == []


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


# --- config._https_url ---------------------------------------------------------------------------


def test_a_scheme_without_its_separator_is_refused_as_no_https_url(tmp_path: Path) -> None:
    """Mutant killed: the "://" test dropped (then "https" alone became "https://" and was
    refused for its missing host, a message about another mistake)."""
    with pytest.raises(ConfigurationError, match=r"^COSMOS_ENDPOINT must be an https:// URL$"):
        load_settings({"COSMOS_ENDPOINT": "HTTPS"}, tmp_path / "absent.json")


# --- reconcile: what the timer's runs remember --------------------------------------------------


def test_a_later_run_counts_what_it_skips_as_already_stored() -> None:
    """Mutants killed: a remembered event skipped without being counted, or counted as
    recorded. The summary said already=N for an unchanged history before; it still should."""
    stored = StoredEvents()
    entries = [history_entry(payloads.with_new_id(payloads.PUSH)) for _ in range(2)]
    repository = FakeEventRepository()
    for _run in range(2):
        outcome = reconcile_entries(
            entries, repository, received_at=NOW, report_invalid=no_record, stored=stored
        )

    assert outcome.counts.summary() == "recorded=0 already=2 skipped=0 invalid=0"
    assert repository.add_calls == 2


def test_events_a_run_finds_stored_are_remembered_too() -> None:
    """Mutant killed: only created events remembered. Those the webhook stored first are most
    of a history, and each cost a create answered 409 (and a read) on every run."""
    push = payloads.with_new_id(payloads.PUSH)
    repository = FakeEventRepository()
    repository.add(to_document(AcrEvent.model_validate(push), received_at=NOW, source="webhook"))
    stored = StoredEvents()
    for _run in range(2):
        reconcile_entries(
            [history_entry(push)],
            repository,
            received_at=NOW,
            report_invalid=no_record,
            stored=stored,
        )

    assert repository.add_calls == 2  # the webhook's, and the first run's


def test_a_refused_set_up_ends_the_timer_s_run(caplog: pytest.LogCaptureFixture) -> None:
    """Mutant killed: the timer going on to the next webhook after a refused key. Every
    webhook's run would be refused the same (a setting to fix), each costing a history read
    and a write; an outage ends the run the same way (test_an_unreachable_store_ends_...)."""
    entries = [history_entry(payloads.with_new_id(payloads.PUSH))]
    history = ListedHistory({"acrwebhook": entries, "acrwebhook2": entries})

    outcomes = reconcile_webhooks(TARGET, WrongKeyRepository(), history, now=lambda: NOW)

    assert list(outcomes) == history.asked == ["acrwebhook"]
    assert "COSMOS_KEY" in caplog.text


# --- __main__.provision: an outage is no set-up ------------------------------------------------


class UnreachableClient:
    def create_database_if_not_exists(self, *_args: Any, **_kwargs: Any) -> Any:
        raise ServiceRequestError("Connection refused")


def test_provision_says_an_outage_is_unavailable_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutant killed: every AzureError said as a refused set-up (exit 2). A server still
    starting is worth running provision again for (exit 1, "unavailable")."""
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr(
        "acr_webhook.repository.create_cosmos_client", lambda *_a, **_k: UnreachableClient()
    )

    status = cli.main(["provision"])

    assert status == 1
    assert "is unavailable or refused: ServiceRequestError: Connection refused" in (
        capsys.readouterr().err
    )


# --- local/host.STOP_GRACE_S ---------------------------------------------------------------------


def test_the_stop_grace_outlasts_every_route_s_budget() -> None:
    """Mutants killed: STOP_GRACE_S back to 5 s, min for max, no second for the answer. The
    grace is "the longest route's budget ... and a second for the answer to go out"
    (host.py): an Event Grid batch throttled for its 20 s lost its answer at 5 s."""
    assert STOP_GRACE_S > BATCH_BUDGET_S
    assert STOP_GRACE_S > QUERY_BUDGET_S
