"""What an operator or a caller reads when something has gone wrong, read as a platform engineer
at 3 a.m. reads it: each message names the thing and the problem (and the fix, where there is
one), shows no internal name the docs never mention, and the same fault gets the same words and
the same exit status on every route and command.

Each test drives the real path (the handler, the command's ``main``, the timer's run) with the
database's own answer built by the SDK's error class and mapped by ``repository.unavailable``,
as the Cosmos DB client would raise it.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos.exceptions import CosmosHttpResponseError

from acr_webhook import __main__ as cli
from acr_webhook.config import ReconcileSettings
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import handle_webhook
from acr_webhook.queries import handle_events_query
from acr_webhook.repository import unavailable
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.unit.test_eventgrid import event_grid

NOTIFICATION = {"aeg-event-type": "Notification"}
# Cosmos DB's 401 for a wrong key, as its gateway words it (aka.ms/cosmosdb-tsg-401).
WRONG_KEY_TEXT = (
    "(Unauthorized) The input authorization token can't serve the request. The wrong key is "
    "being used or the expected payload is not built as per the protocol."
)


def wrong_key() -> CosmosHttpResponseError:
    return CosmosHttpResponseError(status_code=401, message=WRONG_KEY_TEXT)  # type: ignore[no-untyped-call]


class WrongKeyRepository(FakeEventRepository):
    """A store whose every call gets Cosmos DB's 401, mapped as CosmosEventRepository maps it."""

    def add(self, document: dict[str, Any]) -> bool:
        self.add_calls += 1
        raise unavailable(wrong_key())

    def find_events(self, *_args: Any, **_kwargs: Any) -> list[dict[str, Any]]:
        self.find_calls += 1
        raise unavailable(wrong_key())


def webhook_error(payload: dict[str, Any]) -> str:
    answer = handle_webhook(payloads.body(payload), FakeEventRepository())
    assert answer.status == 400, answer
    assert isinstance(answer.body, dict)
    return str(answer.body["error"])


def eventgrid_error(payload: dict[str, Any]) -> str:
    """The Event Grid route's 400 for ``payload`` as the event's ``data`` (the envelope's
    subject from a valid push: only ``data`` is under test)."""
    envelope = {**event_grid(payloads.PUSH), "data": payload}
    with ThreadPoolExecutor(max_workers=1) as executor:
        answer = handle_eventgrid(
            payloads.body([envelope]),
            NOTIFICATION,
            FakeEventRepository(),
            executor=executor,
        )
    assert answer.status == 400, answer
    assert isinstance(answer.body, dict)
    return str(answer.body["error"])


# --- 400 answers: the field and the problem, in the app's words -----------------------------


@pytest.mark.parametrize("field", ["target", "request", "actor"])
def test_a_field_that_is_not_an_object_is_named_without_the_apps_class_names(field: str) -> None:
    payload = {**payloads.PUSH, field: "x"}

    answers = {"webhook": webhook_error(payload), "eventgrid": eventgrid_error(payload)}

    assert answers["webhook"] == f"{field}: must be a JSON object"
    assert answers["eventgrid"] == f"events[0].data.{answers['webhook']}"


def test_a_problem_the_app_words_itself_carries_no_pydantic_prefix() -> None:
    payload = {**payloads.PUSH, "timestamp": "0999-01-01T00:00:00Z"}

    answers = {"webhook": webhook_error(payload), "eventgrid": eventgrid_error(payload)}

    assert answers["webhook"] == "timestamp: year must be from 1000 to 9999 in UTC"
    assert answers["eventgrid"] == f"events[0].data.{answers['webhook']}"


def test_the_same_bad_field_is_worded_the_same_on_both_routes() -> None:
    """Event Grid's answer is the webhook's, with the place of the event in the batch first, so
    that the reason the documented queries group by reads the same whatever the route."""
    payload = {**payloads.PUSH, "target": {**payloads.PUSH["target"], "size": "12"}}

    webhook, grid = webhook_error(payload), eventgrid_error(payload)

    assert webhook.startswith("target.size: ")
    assert grid == f"events[0].data.{webhook}"


# --- a key the database refuses: the same words and status from every command -----------------


@pytest.fixture
def wrong_key_cli(monkeypatch: pytest.MonkeyPatch) -> WrongKeyRepository:
    """The commands with a store that refuses the key (COSMOS_KEY pasted from another account)."""
    repository = WrongKeyRepository()
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _s: repository)
    return repository


def test_the_events_command_names_the_refused_key_and_exits_2(
    wrong_key_cli: WrongKeyRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the other commands are held to below: docs/queries.md, "a key the database refuses
    (401: COSMOS_KEY) ... exit with status 2"."""

    status = cli.main(["events"])

    err = capsys.readouterr().err
    assert wrong_key_cli.find_calls == 1
    assert status == 2
    assert "COSMOS_KEY" in err and "unavailable" not in err


def test_reconcile_says_a_refused_key_as_the_events_command_does(
    wrong_key_cli: WrongKeyRepository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps([history_entry(payloads.with_new_id(payloads.PUSH))]))

    status = cli.main(["reconcile", "--events-file", str(events_file)])

    err = capsys.readouterr().err
    assert wrong_key_cli.add_calls == 1
    assert status == 2
    assert "COSMOS_KEY" in err
    assert "unavailable" not in err and "again when it is back" not in err
    assert "authorization token" not in err  # the service's own dump: the cause says it


def test_provision_says_a_refused_key_as_the_events_command_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class RefusingClient:
        def create_database_if_not_exists(self, *_args: Any, **_kwargs: Any) -> Any:
            raise wrong_key()

    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr(
        "acr_webhook.repository.create_cosmos_client", lambda *_a, **_k: RefusingClient()
    )

    status = cli.main(["provision"])

    err = capsys.readouterr().err
    assert status == 2
    assert "COSMOS_KEY" in err
    assert "unavailable" not in err and "authorization token" not in err


def test_the_reconcile_timer_names_a_refused_key_in_its_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from acr_webhook.reconcile import reconcile_webhooks

    caplog.set_level(logging.INFO, logger="acr_webhook")
    push = history_entry(payloads.with_new_id(payloads.PUSH))

    class History:
        def entries(self, _name: str) -> Any:
            yield push

    target = ReconcileSettings(
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/r",
        ("acrwebhook",),
    )
    reconcile_webhooks(
        target, WrongKeyRepository(), History(), now=lambda: datetime(2026, 1, 1, tzinfo=UTC)
    )

    [summary] = [r.getMessage() for r in caplog.records if "reconcile of webhook" in r.getMessage()]
    assert "COSMOS_KEY" in summary
    assert "database unavailable" not in summary


def test_the_read_endpoint_does_not_tell_its_caller_to_retry_a_refused_set_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It answered a refused key "the event store is unavailable; try again later", the words
    of an outage; the log names the fix (COSMOS_KEY), the answer says retrying will not help."""
    answer = handle_events_query({"repository": "team/api"}, WrongKeyRepository())

    assert (answer.status, answer.body) == (
        503,
        {"error": "the event store refuses this app's set-up; the app's log says what to fix"},
    )
    assert "COSMOS_KEY" in caplog.text
