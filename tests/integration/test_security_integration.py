"""Security audit against servers: the read API's parameters through the local Functions host
into the local Cosmos DB API server, and the reconcile timer's management token against a
next-page link that leads elsewhere (the HTTPS management API stand-in).

Each defect the audit found failed one of these tests until fixed (session 27).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import function_app
from acr_webhook.acr_history import ManagementApiHistory
from acr_webhook.config import Settings
from acr_webhook.local.host import LocalFunctionsHost
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.store import HistoryUnreadableError
from tests.integration.test_reconcile_timer import (
    FakeCredential,
    list_events_path,
    target_from_settings,
)
from tests.support import payloads
from tests.support.arm_stand_in import TOKEN, ListEventsStandIn
from tests.support.history import history_entry

KEY = "security-audit-key"
RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# --- injection: every read API value reaches Cosmos DB SQL as a @parameter -----------------

# SQL that would widen the query, or name other fields, if any value were joined into the text.
INJECTIONS = [
    "x' OR 1=1 --",
    "x' OR 'a' = 'a",
    'x" OR "a" = "a',
    'x" OR true --',
    "x\" OR c.repository != 'x",
    "hello-world OR 1=1",
    "@repository",
    "c.repository",
    "1; SELECT * FROM c",
    "x' UNION SELECT * FROM c --",
    "*/ OR 1=1 /*",
]


def _forged_token(timestamp: str) -> str:
    payload = {"v": 2, "q": "0" * 16, "t": timestamp, "k": None, "w": [None, None]}
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
def seeded_host(
    cosmos_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalFunctionsHost]:
    """The app's read route on the local host, reading a container with one event in each of
    two repositories (partitions)."""
    repository = CosmosEventRepository(cosmos_settings)
    for name in ("hello-world", "secret/team"):
        event = AcrEvent.model_validate(payloads.with_new_id(payloads.PUSH, repository=name))
        assert repository.add(to_document(event, RECEIVED))
    monkeypatch.setattr(function_app, "event_reader", lambda: repository)
    yield LocalFunctionsHost(function_app.app, KEY)


def _get(host: LocalFunctionsHost, query: str) -> tuple[int, Any]:
    reply = host.dispatch("GET", f"/api/acr/events?code={KEY}&{query}", {}, b"", "http://h")
    return reply.status, json.loads(reply.body)


def test_crafted_values_in_every_read_parameter_never_widen_the_query(
    seeded_host: LocalFunctionsHost,
) -> None:
    """Each crafted value in each parameter: a 400 naming that parameter, or a 200 that
    matches nothing (no event has such a name or tag); never a 5xx, never the other
    partition's event. The same query without the crafted value finds it, so a widened query
    would show."""
    status, body = _get(seeded_host, "repository=secret%2Fteam")
    assert status == 200
    assert [event["repository"] for event in body["events"]] == ["secret/team"]
    parameters = ("repository", "tag", "digest", "action", "since", "until", "limit", "view")
    for value in INJECTIONS:
        for name in parameters:
            status, body = _get(seeded_host, f"{name}={quote(value, safe='')}")
            assert (status, name) in ((200, name), (400, name)), (name, value, status, body)
            if status == 200:
                assert body["events"] == [], (name, value)
            else:
                assert body["error"].startswith(f"{name}: "), (name, value, body)
        # A continuation token is ours only if it decodes to our shape: the value as a token,
        # and a token whose position carries the value.
        for token in (value, _forged_token(value)):
            status, body = _get(seeded_host, f"continuation={quote(token, safe='')}")
            assert status == 400, (value, body)
            assert body["error"].startswith("continuation: ")


# --- the reconcile timer's token stays on the management endpoint ---------------------------


@pytest.fixture
def two_stand_ins(tmp_path: Path) -> Iterator[tuple[ListEventsStandIn, ListEventsStandIn]]:
    """The management endpoint's stand-in, and another HTTPS host that would take its token."""
    (tmp_path / "arm").mkdir()
    (tmp_path / "elsewhere").mkdir()
    arm = ListEventsStandIn(tmp_path / "arm", TOKEN)
    elsewhere = ListEventsStandIn(tmp_path / "elsewhere", TOKEN)
    arm.start()
    elsewhere.start()
    yield arm, elsewhere
    elsewhere.stop()
    arm.stop()


def test_a_next_page_link_with_a_backslash_does_not_take_the_token_elsewhere(
    two_stand_ins: tuple[ListEventsStandIn, ListEventsStandIn],
) -> None:
    arm, elsewhere = two_stand_ins
    path = list_events_path("acrwebhook")
    arm_authority = arm.endpoint.removeprefix("https://")
    other_authority = elsewhere.endpoint.removeprefix("https://")
    # urlsplit: host and port after the "@", the management endpoint's own. urllib3 (requests):
    # the authority ends at the backslash, so the host and port before it.
    link = f"https://{other_authority}\\@{arm_authority}{path}?skip=1"
    arm.verbatim = {path: {"value": [history_entry(payloads.PUSH)], "nextLink": link}}
    history = ManagementApiHistory(target_from_settings(arm), FakeCredential())

    with pytest.raises(HistoryUnreadableError):
        list(history.entries("acrwebhook"))

    assert [seen.authorization for seen in elsewhere.requests] == []
