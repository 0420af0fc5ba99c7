"""A set-up the database refuses (a missing data role, a wrong key, a container that is not there):
said with what to fix first, then the answer's kind, then the SDK's words; never as an outage to
wait out, on the write routes, the read route and the CLI alike.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceNotFoundError

from acr_webhook import __main__ as cli
from acr_webhook import repository as repository_module
from acr_webhook.models import EventQuery, ParkedEvent
from acr_webhook.queries import handle_events_query
from acr_webhook.replay import replay_delay_s, replay_queued_event
from acr_webhook.repository import (
    _SET_UP_FIXES,
    STORE_MISSING,
    CosmosEventRepository,
    DatabaseHealth,
    describe_error,
    unavailable,
)
from acr_webhook.store import (
    FallbackUnavailableError,
    RepositoryUnavailableError,
    StoreNotFoundError,
    StoreSetUpError,
    store_failure_reason,
    unavailable_reasons,
)
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository
from tests.support.logs import decisions
from tests.unit.test_database_health import REFUSING, RecordingClient
from tests.unit.test_replay import CAP_S, DOCUMENT

# Cosmos DB's answer to an identity without its data role (403, sub-status 5301), shortened.
NO_DATA_ROLE = "Request blocked by Auth cosmos-acr : principal does not have required RBAC"


def refused(status: int, sub_status: int | None = None) -> CosmosHttpResponseError:
    return CosmosHttpResponseError(  # type: ignore[no-untyped-call]
        status_code=status, message=NO_DATA_ROLE, sub_status=sub_status
    )


# --- repository._failure: a missing container is StoreNotFoundError, not an outage --------------


@pytest.mark.parametrize(
    ("sub_status", "raised"),
    [
        (None, StoreNotFoundError),
        (0, StoreNotFoundError),
        (1003, StoreNotFoundError),  # the owner resource (database or container) does not exist
        (1002, RepositoryUnavailableError),  # a session not yet readable: not "run provision"
    ],
)
def test_a_writes_404_for_a_missing_container_is_store_not_found_and_not_remembered(
    sub_status: int | None, raised: type[Exception]
) -> None:
    """_failure: "The container or its database is missing: answered at once, so nothing to
    remember"; 1002 "passes" (_MISSING_SUB_STATUS). Kills the 404 branch dropped, its
    sub-status check dropped or inverted, a plain RepositoryUnavailableError for it, and it
    remembered."""
    health = DatabaseHealth()
    repository = CosmosEventRepository(REFUSING, health=health)  # nothing is contacted
    answer = CosmosHttpResponseError(status_code=404, message="NotFound", sub_status=sub_status)  # type: ignore[no-untyped-call]
    error = repository._failure(answer)
    assert type(error) is raised
    if raised is StoreNotFoundError:
        health.check()


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


def test_a_refused_set_up_is_said_as_itself_not_as_an_outage() -> None:
    """Mutant killed: _said_as_itself without StoreSetUpError (then a wrong COSMOS_KEY is
    "database unavailable (...)" in every decision, as if waiting would help)."""
    refused = StoreSetUpError("401: the key was refused", cause="COSMOS_KEY refused")

    assert unavailable_reasons([refused]) == ("COSMOS_KEY refused", "401: the key was refused")
    assert store_failure_reason(refused) == "COSMOS_KEY refused"


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


# --- find_events: a missing container named with what to do, on the read route too --------------


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


# --- __main__: the events command says a refused set-up by its cause ----------------------------


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
