"""Mutation audit of session 31's product changes: what the tests written with them left unpinned.

Each test below kills hand-made mutants that the earlier tests let through (named in its
docstring). Every one asserts what a doc, the SDK or the code's own comment says, not the mutant.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceNotFoundError

from acr_webhook import __main__ as cli
from acr_webhook import config
from acr_webhook import redrive as redrive_module
from acr_webhook import repository as repository_module
from acr_webhook.acr_history import _SET_UP_FIXES as _HISTORY_FIXES
from acr_webhook.config import ConfigurationError, QueueSettings, Settings
from acr_webhook.models import EventQuery, ParkedEvent
from acr_webhook.queries import handle_events_query
from acr_webhook.redrive import RedriveReport
from acr_webhook.replay import replay_delay_s, replay_queued_event
from acr_webhook.repository import (
    _SET_UP_FIXES,
    LOOKUP_RETRIES_VARIABLE,
    STORE_MISSING,
    CosmosEventRepository,
    DatabaseHealth,
    create_cosmos_client,
    describe_error,
    provision,
    unavailable,
)
from acr_webhook.store import (
    FallbackUnavailableError,
    HistoryUnreadableError,
    RepositoryUnavailableError,
    StoreNotFoundError,
    StoreSetUpError,
    unavailable_reasons,
)
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository
from tests.support.logs import decisions
from tests.unit.test_acr_history import read_history
from tests.unit.test_database_health import REFUSING, SETTINGS_FIELDS, Clock, RecordingClient
from tests.unit.test_provision import ExistingContainer
from tests.unit.test_replay import CAP_S, DOCUMENT

# Cosmos DB's answer to an identity without its data role (403, sub-status 5301), shortened.
NO_DATA_ROLE = "Request blocked by Auth cosmos-acr : principal does not have required RBAC"


def refused(status: int, sub_status: int | None = None) -> CosmosHttpResponseError:
    return CosmosHttpResponseError(  # type: ignore[no-untyped-call]
        status_code=status, message=NO_DATA_ROLE, sub_status=sub_status
    )


# --- repository.unavailable: a set-up the database refuses, said with what to fix ---------------


@pytest.mark.parametrize(
    ("status", "sub_status", "kind"),
    [
        (403, 5301, "CosmosHttpResponseError 403/5301"),
        (401, None, "CosmosHttpResponseError 401"),
    ],
)
def test_a_refused_set_up_names_the_fix_then_the_answers_kind_then_its_words(
    status: int, sub_status: int | None, kind: str
) -> None:
    """repository.unavailable: "for a set-up the database refuses (401, 403), what to fix
    first", its kind as the cause (the sub-status tells a role not assigned from a firewall's
    403) and the SDK's words in the message, which the log's detail is. Kills the cause without
    the kind (`cause = fix`) and the message without the cause (the fix then missing from every
    log line's text)."""
    error = refused(status, sub_status)

    failure = unavailable(error)

    assert isinstance(failure, StoreSetUpError)
    assert failure.cause == f"{_SET_UP_FIXES[status]} ({kind})"
    assert str(failure) == f"{failure.cause}: {describe_error(error)}"
    assert NO_DATA_ROLE in str(failure)


def test_a_token_the_identity_endpoint_refuses_is_not_the_database_refusing_it() -> None:
    """Only Cosmos DB's own answers are its set-up refusals: a credential's failure to get a
    token (azure-identity's ClientAuthenticationError, an HttpResponseError with a status of
    its own) never reached the database, so "database refused the credentials" would send the
    person to the wrong place. Kills the status read from any AzureError."""
    error = ClientAuthenticationError("ManagedIdentityCredential authentication unavailable")
    error.status_code = 401

    failure = unavailable(error)

    assert type(failure) is RepositoryUnavailableError
    assert "database refused" not in str(failure)


# --- repository.DatabaseHealth: what it remembers is the latest failure, set-up or outage --------


def test_an_outage_after_a_refused_set_up_is_remembered_as_an_outage() -> None:
    """DatabaseHealth.failed: ``set_up`` says what the failure *being remembered* was. A role
    fixed, then a timeout: the next writes are answered "database unavailable moments ago", not
    as the set-up refusal the memory no longer holds. Kills `set_up` only ever turned on
    (`self._set_up = self._set_up or set_up`), and a refusal remembered without saying it was
    answered from memory."""
    clock = Clock()
    health = DatabaseHealth(clock=clock)
    health.failed("role missing: detail", "role missing", set_up=True)
    with pytest.raises(StoreSetUpError) as remembered:
        health.check()
    assert (str(remembered.value), remembered.value.cause) == (
        "role missing: detail (refused moments ago)",
        "role missing",
    )

    health.failed("ServiceResponseTimeoutError: read timed out")

    with pytest.raises(RepositoryUnavailableError) as outage:
        health.check()
    assert type(outage.value) is RepositoryUnavailableError
    assert outage.value.cause == (
        "database unavailable moments ago (ServiceResponseTimeoutError: read timed out)"
    )


# --- store.unavailable_reasons: the store's failure decides, whatever the queue's -----------------


def test_a_refused_set_up_with_the_queue_down_too_names_the_fix_and_the_queue() -> None:
    """unavailable_reasons: the store's failure comes first; a set-up it refused is said as
    such even when the fallback queue failed too (the webhook's 503, replay's put-back).
    Kills the kind read from the last failure (the queue's) instead of the store's."""
    store = StoreSetUpError("role missing: Forbidden", cause="role missing")
    queue = FallbackUnavailableError("QueueNotFound: detail", cause="QueueNotFound")

    assert unavailable_reasons([store, queue]) == (
        "role missing and fallback queue unavailable (QueueNotFound)",
        "role missing: Forbidden and fallback queue unavailable (QueueNotFound: detail)",
    )


# --- replay: a put-back for a refused set-up says so -------------------------------------------


class RefusedSetUp(FakeEventRepository):
    def add(self, document: dict[str, Any]) -> bool:
        raise StoreSetUpError("role missing (403): Forbidden, detail", cause="role missing (403)")


def test_a_replay_put_back_for_a_refused_set_up_gives_its_cause_and_its_detail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """replay: the put-back's reason is the set-up's cause (as the webhook's decision for the
    same refusal), its message the failure's detail. Kills the reason left "database
    unavailable", and the message given the cause or the old "database unavailable (...)"."""
    queue = FakeFallbackQueue()
    with caplog.at_level(logging.INFO, logger="acr_webhook"):
        outcome = replay_queued_event(
            ParkedEvent(DOCUMENT).to_message(), RefusedSetUp(), queue, CAP_S
        )

    assert outcome == "requeued"
    [decision] = decisions(caplog)
    assert (decision["decision"], decision["reason"]) == ("queued", "role missing (403)")
    [record] = caplog.records
    assert record.getMessage().endswith(
        f"replay attempt 1: role missing (403): Forbidden, detail; next try in"
        f" {replay_delay_s(1, CAP_S)} s"
    )


# --- redrive.RedriveReport.unseen: never below none --------------------------------------------


def test_unseen_is_never_negative_when_the_service_counts_fewer_than_were_kept() -> None:
    """RedriveReport.left is "approximate, as the service counts": another process deleting
    a kept message meanwhile makes it fewer than not_events, and unseen ("of left, those this
    run never received") is then none, not a negative count the command would print as
    "-2 of them were hidden". Kills `max(..., 0)` dropped."""
    assert RedriveReport(moved=0, not_events=3, left=1).unseen == 0
    assert RedriveReport(moved=5, not_events=1, left=4).unseen == 3


# --- repository.create_cosmos_client: the lookup's retries off unless an operator set them ----


@pytest.mark.parametrize(("before", "after"), [(None, "0"), ("2", "2")])
def test_the_lookup_retry_setting_is_turned_off_only_when_nobody_set_it(
    before: str | None, after: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_cosmos_client: the SDK reads AZURE_COSMOS_HEALTH_CHECK_MAX_RETRIES from the
    environment only, and the app sets it with setdefault: an operator's own value (an app
    setting) is kept. Kills the assignment that overrides it; the SDK is not contacted."""
    if before is None:
        monkeypatch.delenv(LOOKUP_RETRIES_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(LOOKUP_RETRIES_VARIABLE, before)
    monkeypatch.setattr(repository_module, "CosmosClient", lambda *_a, **_k: None)

    create_cosmos_client(REFUSING)

    assert os.environ[LOOKUP_RETRIES_VARIABLE] == after


# --- repository.provision: unique keys as Cosmos DB gives them --------------------------------


def test_provision_takes_a_container_whose_unique_key_policy_lists_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cosmos DB gives every container a uniqueKeyPolicy, ``{"uniqueKeys": []}`` when it has
    none (the local server leaves the property out): such a container is the app's own. Kills
    the check by the policy's presence instead of its keys."""
    existing = ExistingContainer(
        {
            "id": "events",
            "partitionKey": {"paths": ["/repository"], "kind": "Hash"},
            "uniqueKeyPolicy": {"uniqueKeys": []},
            "defaultTtl": None,
        }
    )
    monkeypatch.setattr(repository_module, "create_cosmos_client", lambda *_a: existing)

    provision(REFUSING)

    assert existing.replaced == []


def test_provision_names_every_unique_key_path_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """provision refuses a container with a unique key "as it refuses one with another
    partition key": every path of every key named, and refused before the retention is
    applied. Kills the paths of the first key only, and the check made after the replace."""
    existing = ExistingContainer(
        {
            "id": "events",
            "partitionKey": {"paths": ["/repository"], "kind": "Hash"},
            "uniqueKeyPolicy": {
                "uniqueKeys": [{"paths": ["/digest"]}, {"paths": ["/tag", "/actor"]}]
            },
            "defaultTtl": None,
        }
    )
    monkeypatch.setattr(repository_module, "create_cosmos_client", lambda *_a: existing)

    with pytest.raises(ConfigurationError) as refused_container:
        provision(Settings(*SETTINGS_FIELDS, retention_days=30))

    assert "exists with a unique key on /digest, /tag, /actor;" in str(refused_container.value)
    assert existing.replaced == []


# --- repository.find_events: a missing container is named with what to do, on the read route too


class MissingContainer:
    def query_items(self, **_options: Any) -> list[dict[str, Any]]:
        raise CosmosResourceNotFoundError(status_code=404, message="Resource Not Found")  # type: ignore[no-untyped-call]


def test_a_read_of_a_container_that_is_not_there_names_provision_and_the_settings(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """find_events: a database or container missing (404, no sub-status) is STORE_MISSING, as
    for a write: the read API's error log then says to run provision or check COSMOS_DATABASE
    and COSMOS_CONTAINER. Kills the read's StoreNotFoundError left with the SDK's words only."""
    monkeypatch.setattr(
        repository_module,
        "create_cosmos_client",
        lambda *_a, **_k: RecordingClient(MissingContainer()),  # type: ignore[arg-type]
    )
    repository = CosmosEventRepository(REFUSING)

    with pytest.raises(StoreNotFoundError) as missing:
        repository.find_events(EventQuery(), 10)
    assert missing.value.cause == f"{STORE_MISSING} (CosmosResourceNotFoundError 404)"

    with caplog.at_level(logging.ERROR, logger="acr_webhook"):
        assert handle_events_query({}, repository).status == 503
    assert STORE_MISSING in caplog.text


# --- __main__: the events command and redrive, one line each ---------------------------------


def test_the_events_command_says_a_refused_set_up_as_its_cause_alone(
    cli_reader: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`events` exits 2 on a StoreSetUpError with "one line with the cause": what to fix,
    not the SDK's message with its activity id (a person reads this line). Kills the error's
    full text printed in place of its cause, and exit 1 (an outage's)."""
    failure = unavailable(refused(403, 5301))

    def refuse(*_args: Any) -> list[dict[str, Any]]:
        raise failure

    monkeypatch.setattr(cli_reader, "find_events", refuse)

    assert cli.main(["events"]) == 2

    assert capsys.readouterr().err == f"the event store at https://127.0.0.1:1/: {failure.cause}\n"


@pytest.mark.parametrize(
    "error",
    [
        HttpResponseError("The specified queue is being deleted.\nRequestId:1\nTime:now"),
        ServiceRequestError("Connection refused\n<?xml ...>"),
    ],
    ids=["answered", "unreachable"],
)
def test_redrive_says_the_queue_services_refusal_on_one_line(
    error: AzureError,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """redrive: "The SDK's message runs on with the service's XML: its first line says it".
    Kills the whole message printed."""
    first = str(error).splitlines()[0]

    def fail(_queue: QueueSettings) -> RedriveReport:
        raise error

    monkeypatch.setattr(config, "queue_settings", lambda _values: QueueSettings("q"))
    monkeypatch.setattr(redrive_module, "redrive", fail)

    assert cli.main(["redrive"]) == 1

    assert capsys.readouterr().err == f"the queue service is unavailable or refused: {first}\n"


# --- acr_history: ARM's refusal, what to fix first --------------------------------------------


class Unreadable:
    """A history whose first page fails with ``error``."""

    def __init__(self, error: AzureError) -> None:
        self.error = error
        self.continuation_token: str | None = None

    def __iter__(self) -> Iterator[list[Any]]:
        raise self.error


def arm_refusal(status: int) -> HttpResponseError:
    """ARM's error as the SDK words it: its message, then the same again as Code and Message."""
    error = HttpResponseError(
        "(AuthorizationFailed) The client does not have authorization\n"
        "Code: AuthorizationFailed\nMessage: The client does not have authorization"
    )
    error.status_code = status
    return error


FIRST_LINE = "HttpResponseError: (AuthorizationFailed) The client does not have authorization"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (arm_refusal(403), f"{_HISTORY_FIXES[403]}; {FIRST_LINE}"),
        (arm_refusal(404), f"{_HISTORY_FIXES[404]}; {FIRST_LINE}"),
        (arm_refusal(500), FIRST_LINE),
        (
            ServiceRequestError("Failed to establish a new connection\nmore"),
            "ServiceRequestError: Failed to establish a new connection",
        ),
    ],
    ids=["403", "404", "500", "unreachable"],
)
def test_a_history_read_that_fails_names_the_fix_first_then_the_sdks_first_line(
    error: AzureError, said: str
) -> None:
    """acr_history._SET_UP_FIXES: "ARM's answers that a person must act on ...: what to fix,
    first", then the SDK's first line once; any other failure, an unreachable ARM included (an
    AzureError with no status code), its first line alone. Kills the fix put after ARM's
    message, the message whole, and the status read as ``error.status_code`` (an
    AttributeError, not HistoryUnreadableError, for a connection that failed)."""
    with pytest.raises(HistoryUnreadableError) as unreadable:
        read_history(Unreadable(error))  # type: ignore[arg-type]

    assert str(unreadable.value) == said
    assert "ACR webhook history reader" in _HISTORY_FIXES[403]
    assert "ACR_WEBHOOK_NAMES" in _HISTORY_FIXES[404]


# --- redrive: the queue that is missing is the one named ----------------------------------------


class GoneQueue:
    """A queue client whose queue does not exist, or (``held``) a poison queue holding them."""

    def __init__(self, held: list[str] | None = None) -> None:
        self.held = held

    def receive_messages(self, **_options: Any) -> list[SimpleNamespace]:
        if self.held is None:
            raise ResourceNotFoundError("The specified queue does not exist.")
        held, self.held = self.held, []
        return [SimpleNamespace(id=str(n), content=c) for n, c in enumerate(held)]

    def get_queue_properties(self) -> None:
        raise ResourceNotFoundError("The specified queue does not exist.")

    def send_message(self, *_args: Any, **_options: Any) -> None:
        raise ResourceNotFoundError("The specified queue does not exist.")


@pytest.mark.parametrize("poisoned", [False, True], ids=["neither queue", "main queue gone"])
def test_redrive_names_the_fallback_queue_as_the_one_missing(
    poisoned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redrive._missing: queue '<name>' is the fallback queue, the one provision makes and the
    one to check, in both cases (neither queue there; the main queue deleted mid-run). Kills
    the poison queue named instead, which the tests through Azurite pass as its name holds the
    other's."""
    queue = QueueSettings("acr-events-fallback", "UseDevelopmentStorage=true")
    event = base64.b64encode(ParkedEvent(DOCUMENT).to_message().encode()).decode()
    clients = {
        queue.queue_name: GoneQueue(),
        queue.poison.queue_name: GoneQueue([event] if poisoned else None),
    }
    monkeypatch.setattr(
        redrive_module,
        "create_queue_client",
        lambda settings, *_a, **_k: clients[settings.queue_name],
    )

    with pytest.raises(ConfigurationError) as missing:
        redrive_module.redrive(queue)

    assert str(missing.value) == (
        "queue 'acr-events-fallback' does not exist in the account AzureWebJobsStorage names: "
        "run provision, or check AzureWebJobsStorage"
    )


# --- queries: the read route says a refused set-up as the writers do ----------------------------


def test_the_read_route_logs_a_refused_set_up_as_its_cause_not_as_an_outage(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """store.unavailable_reasons: "A set-up the database refuses is said as such (its cause
    names what to fix), not as an outage" on the webhook, Event Grid and replay routes."""
    failure = unavailable(refused(403, 5301))
    reader = FakeEventRepository()

    def refuse(*_args: Any) -> list[dict[str, Any]]:
        raise failure

    monkeypatch.setattr(reader, "find_events", refuse)

    with caplog.at_level(logging.ERROR, logger="acr_webhook"):
        assert handle_events_query({}, reader).status == 503

    [record] = caplog.records
    assert _SET_UP_FIXES[403] in record.getMessage()
    assert "database unavailable" not in record.getMessage(), record.getMessage()


def test_an_sdk_error_with_no_message_is_said_by_its_kind_alone() -> None:
    """store.first_line: the redrive and reconcile lines take an SDK message's first line; an
    empty message (none seen from the SDKs, but AzureError allows it) was an IndexError."""
    from acr_webhook.store import first_line

    assert first_line("") == ""
    assert first_line("The specified queue does not exist.\nRequestId:1\n<?xml") == (
        "The specified queue does not exist."
    )
