"""The reconcile timer's path: ACR's history read through the management SDK from a local
HTTPS stand-in for the management endpoint (endpoint and token audience from the settings, as
in a sovereign cloud), stored in the local Cosmos DB server."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import azure.identity
import pytest
from azure.core.credentials import AccessToken
from azure.functions.timer import TimerRequest

import function_app
from acr_webhook import runtime
from acr_webhook.acr_history import ManagementApiHistory
from acr_webhook.config import (
    ConfigurationError,
    ReconcileSettings,
    parse_registry_id,
    reconcile_settings,
)
from acr_webhook.identity import IDENTITY_TIMEOUTS
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.reconcile import ReconcileOutcome, reconcile_webhooks
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.results import utc_now
from tests.conftest import read_all
from tests.support import payloads
from tests.support.arm_stand_in import TOKEN, ListEventsStandIn
from tests.support.history import LEAKABLE, history_entry

REGISTRY_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/myResourceGroup"
    "/providers/Microsoft.ContainerRegistry/registries/myRegistry"
)
AUDIENCE = "https://management.sovereign.example"


def list_events_path(webhook: str) -> str:
    return f"{REGISTRY_ID}/webhooks/{webhook}/listEvents"


class FakeCredential:
    """A TokenCredential that hands out one token and remembers the scopes it was asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)


class CountingRepository(CosmosEventRepository):
    """The real repository, counting write attempts."""

    add_calls = 0

    def add(self, document: dict[str, Any]) -> bool:
        self.add_calls += 1
        return super().add(document)


def target_from_settings(stand_in: ListEventsStandIn) -> ReconcileSettings:
    target = reconcile_settings(
        {
            "ACR_REGISTRY_ID": REGISTRY_ID,
            "ACR_WEBHOOK_NAMES": "acrwebhook, acrwebhookeu",
            "ARM_ENDPOINT": stand_in.endpoint,
            "ARM_AUDIENCE": AUDIENCE,
        }
    )
    assert target is not None
    return target


def one_timer_run(
    stand_in: ListEventsStandIn, cosmos_settings: Any
) -> Mapping[str, ReconcileOutcome]:
    """The timer's run against the stand-in, with a fresh history reader and repository."""
    target = target_from_settings(stand_in)
    history = ManagementApiHistory(target, FakeCredential())
    return reconcile_webhooks(target, CosmosEventRepository(cosmos_settings), history)


def test_missed_events_are_read_page_by_page_and_stored_once(
    stand_in: ListEventsStandIn, cosmos_settings: Any
) -> None:
    repository = CountingRepository(cosmos_settings)
    delivered = payloads.with_new_id(payloads.PUSH, repository="team/api", tag="v1")
    assert repository.add(to_document(AcrEvent.model_validate(delivered), utc_now()))
    missed = [
        payloads.with_new_id(payloads.PUSH, repository="team/api", tag=f"v{n}") for n in (2, 3)
    ]
    missed_eu = payloads.with_new_id(payloads.DELETE, repository="team/web")
    stand_in.histories = {
        list_events_path("acrwebhook"): [
            history_entry(missed[0]),
            history_entry({**delivered, "actor": {"name": "ci-bot"}}, status_code="201"),
            history_entry({**payloads.PUSH, "id": "ping-1", "action": "ping"}, "200"),
            history_entry(missed[1]),
            history_entry(missed[1]),
        ],
        list_events_path("acrwebhookeu"): [history_entry(missed_eu)],
    }
    credential = FakeCredential()
    target = target_from_settings(stand_in)
    history = ManagementApiHistory(target, credential)
    calls_before = repository.add_calls

    outcomes = reconcile_webhooks(target, repository, history)

    assert {name: o.counts.summary() for name, o in outcomes.items()} == {
        "acrwebhook": "recorded=2 already=2 skipped=1 invalid=0",
        "acrwebhookeu": "recorded=1 already=0 skipped=0 invalid=0",
    }
    assert repository.add_calls - calls_before == 5  # one attempt per recorded entry
    stored = {d["id"]: d for d in read_all(cosmos_settings)}
    assert set(stored) == {delivered["id"], missed_eu["id"], *(e["id"] for e in missed)}
    assert {stored[e["id"]]["source"] for e in [*missed, missed_eu]} == {"reconcile"}
    assert stored[delivered["id"]]["source"] == "webhook"
    assert stored[delivered["id"]]["actor"] == "ci-bot"  # filled in from the history
    for secret in LEAKABLE:
        assert secret not in json.dumps(stored)

    # Three pages for five entries: the first a POST, the nextLinks GETs, all with the token.
    first_webhook = [r for r in stand_in.requests if "acrwebhook/" in r.path]
    assert [r.method for r in first_webhook] == ["POST", "GET", "GET"]
    assert {r.authorization for r in stand_in.requests} == {f"Bearer {TOKEN}"}
    assert all(r.query["api-version"] for r in stand_in.requests)
    assert set(credential.scopes) == {(f"{AUDIENCE}/.default",)}

    calls_before = repository.add_calls
    again = reconcile_webhooks(target, repository, history)

    assert again["acrwebhook"].counts.summary() == "recorded=0 already=4 skipped=1 invalid=0"
    assert repository.add_calls - calls_before == 5
    assert {d["id"]: d for d in read_all(cosmos_settings)} == stored  # _etag too: no rewrite


def test_an_unreadable_history_is_logged_and_the_next_webhook_still_runs(
    stand_in: ListEventsStandIn, cosmos_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    missed = payloads.with_new_id(payloads.PUSH)
    # The first webhook is unknown to the endpoint (renamed, say): a 404.
    stand_in.histories = {list_events_path("acrwebhookeu"): [history_entry(missed)]}

    outcomes = one_timer_run(stand_in, cosmos_settings)

    assert outcomes["acrwebhook"].counts.summary() == "recorded=0 already=0 skipped=0 invalid=0"
    assert "reconcile of webhook 'acrwebhook': history unreadable" in caplog.text
    assert outcomes["acrwebhookeu"].counts.summary() == "recorded=1 already=0 skipped=0 invalid=0"
    assert [d["id"] for d in read_all(cosmos_settings)] == [missed["id"]]


@pytest.mark.parametrize(
    "answer",
    [[], {"value": None}, {"value": "abc"}, {"value": [1, 2]}, {"nextLink": 7, "value": []}],
    ids=["a list", "value null", "value text", "value numbers", "link a number"],
)
def test_a_malformed_history_is_logged_and_the_next_webhook_still_runs(
    stand_in: ListEventsStandIn,
    cosmos_settings: Any,
    caplog: pytest.LogCaptureFixture,
    answer: Any,
) -> None:
    """Each of these ended the timer's run with a traceback: no summary, no later webhook."""
    missed = payloads.with_new_id(payloads.PUSH)
    stand_in.verbatim = {list_events_path("acrwebhook"): answer}
    stand_in.histories = {list_events_path("acrwebhookeu"): [history_entry(missed)]}

    outcomes = one_timer_run(stand_in, cosmos_settings)

    assert "reconcile of webhook 'acrwebhook': history unreadable" in caplog.text
    assert outcomes["acrwebhookeu"].counts.summary() == "recorded=1 already=0 skipped=0 invalid=0"
    assert [d["id"] for d in read_all(cosmos_settings)] == [missed["id"]]


def test_a_next_page_link_that_comes_round_again_ends_the_read(
    stand_in: ListEventsStandIn, cosmos_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """It looped: 201 requests and 201 writes in 5 s, for as long as the timer may run."""
    missed = payloads.with_new_id(payloads.PUSH)
    path = list_events_path("acrwebhook")
    stand_in.verbatim = {
        path: {"value": [history_entry(missed)], "nextLink": f"{stand_in.endpoint}{path}?skip=0"}
    }

    outcomes = one_timer_run(stand_in, cosmos_settings)

    assert "reconcile of webhook 'acrwebhook': history unreadable" in caplog.text
    # The first page, then the page its link names, whose link is the same: there it stops.
    assert outcomes["acrwebhook"].counts.summary() == "recorded=1 already=1 skipped=0 invalid=0"
    assert len([seen for seen in stand_in.requests if seen.path == path]) == 2
    assert [d["id"] for d in read_all(cosmos_settings)] == [missed["id"]]


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST"])
def test_a_next_page_link_to_another_host_is_not_followed_with_the_token(
    stand_in: ListEventsStandIn, cosmos_settings: Any, caplog: pytest.LogCaptureFixture, host: str
) -> None:
    """The client sent its management token wherever an answer's nextLink pointed. Here the
    other host is the stand-in under another name, so a request that follows the link is seen."""
    missed = payloads.with_new_id(payloads.PUSH)
    path = list_events_path("acrwebhook")
    elsewhere = stand_in.endpoint.replace("127.0.0.1", host)
    assert elsewhere != stand_in.endpoint
    stand_in.verbatim = {
        path: {"value": [history_entry(missed)], "nextLink": f"{elsewhere}{path}?skip=1"}
    }

    outcomes = one_timer_run(stand_in, cosmos_settings)

    assert "history unreadable" in caplog.text
    assert "leads away from the management endpoint ('localhost')" in caplog.text
    assert outcomes["acrwebhook"].counts.summary() == "recorded=1 already=0 skipped=0 invalid=0"
    assert len([seen for seen in stand_in.requests if seen.path == path]) == 1


def test_a_throttled_history_read_is_tried_again_up_to_3_times_after_the_wait_arm_asks_for(
    stand_in: ListEventsStandIn, cosmos_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """listEvents is a POST, which azure-core retries only when the answer says when to: ARM's
    429 does (Retry-After), so a throttled read waits and goes on within the run."""
    missed = payloads.with_new_id(payloads.PUSH)
    path = list_events_path("acrwebhook")
    stand_in.histories = {path: [history_entry(missed)]}

    stand_in.throttled_requests = 3
    started = time.monotonic()
    outcomes = one_timer_run(stand_in, cosmos_settings)
    assert time.monotonic() - started >= 3  # Retry-After: 1 s, three times
    assert outcomes["acrwebhook"].counts.summary() == "recorded=1 already=0 skipped=0 invalid=0"
    assert [seen.method for seen in stand_in.requests if seen.path == path] == ["POST"] * 4
    assert [d["id"] for d in read_all(cosmos_settings)] == [missed["id"]]

    stand_in.requests.clear()
    stand_in.throttled_requests = 4
    one_timer_run(stand_in, cosmos_settings)
    assert "reconcile of webhook 'acrwebhook': history unreadable" in caplog.text
    assert [seen.method for seen in stand_in.requests if seen.path == path] == ["POST"] * 4


def test_a_refused_token_stores_nothing(
    stand_in: ListEventsStandIn, cosmos_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in.histories = {
        list_events_path(name): [history_entry(payloads.with_new_id(payloads.PUSH))]
        for name in ("acrwebhook", "acrwebhookeu")
    }
    stand_in.token = "a-token-the-credential-does-not-have"

    outcomes = one_timer_run(stand_in, cosmos_settings)

    assert len(outcomes) == 2
    assert caplog.text.count("history unreadable (ClientAuthenticationError") == 2
    assert read_all(cosmos_settings) == []


def test_timer_runs_share_one_credential_and_token_and_recover_from_a_refused_one(
    stand_in: ListEventsStandIn, cosmos_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """function_app's timer as the runtime calls it, through the app's own webhook_history()."""
    app_settings = replace(cosmos_settings, reconcile=target_from_settings(stand_in))
    repository = CosmosEventRepository(cosmos_settings)
    credentials: list[FakeCredential] = []

    def default_azure_credential(**options: Any) -> FakeCredential:
        assert options == IDENTITY_TIMEOUTS  # its token requests bounded, as every client's
        credentials.append(FakeCredential())
        return credentials[-1]

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", default_azure_credential)
    monkeypatch.setattr(runtime, "settings", lambda: app_settings)
    monkeypatch.setattr(function_app, "settings", lambda: app_settings)
    monkeypatch.setattr(function_app, "event_repository", lambda: repository)
    missed = payloads.with_new_id(payloads.PUSH)
    stand_in.histories = {
        list_events_path(name): [history_entry(missed)] for name in ("acrwebhook", "acrwebhookeu")
    }
    runtime.webhook_history.cache_clear()
    runtime.reconciled_events.cache_clear()
    try:
        stand_in.token = "a-token-the-credential-does-not-have"  # ARM answers 401
        function_app.reconcile_history(TimerRequest())
        assert read_all(cosmos_settings) == []

        stand_in.token = TOKEN
        function_app.reconcile_history(TimerRequest())
        assert [d["id"] for d in read_all(cosmos_settings)] == [missed["id"]]
        tokens_fetched, calls_made = len(credentials[0].scopes), len(stand_in.requests)

        function_app.reconcile_history(TimerRequest())
    finally:
        runtime.webhook_history.cache_clear()
        runtime.reconciled_events.cache_clear()

    assert len(credentials) == 1  # one credential for the process, not one per run
    assert len(stand_in.requests) - calls_made == 2  # the last run read both histories...
    assert len(credentials[0].scopes) == tokens_fetched  # ...with the token it already had
    assert tokens_fetched == 3  # a 401 drops the token: one per refused call, then one


def test_the_registry_id_names_subscription_group_and_registry() -> None:
    registry = parse_registry_id(REGISTRY_ID.replace("resourceGroups", "resourcegroups"))
    assert (registry.subscription_id, registry.resource_group, registry.name) == (
        "00000000-0000-0000-0000-000000000000",
        "myResourceGroup",
        "myRegistry",
    )
    with pytest.raises(ConfigurationError, match="ACR_REGISTRY_ID"):
        parse_registry_id("/subscriptions/s/providers/Microsoft.ContainerRegistry/registries/r")
