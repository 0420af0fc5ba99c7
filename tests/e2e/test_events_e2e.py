"""End to end: events posted to the webhook come back from ``GET /api/acr/events``, over HTTP
from ``python -m acr_webhook serve``, with the real Cosmos DB repository behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from acr_webhook.repository import provision
from tests.conftest import fresh_settings
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.serve import ServeProcess

ROUTE = "acr/events"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def push(
    served: ServeProcess, repository: str, tag: str | None, digest: str, at: str
) -> dict[str, Any]:
    payload = payloads.with_new_id(payloads.PUSH, repository=repository, tag=tag or "")
    payload["target"]["digest"] = digest
    payload["timestamp"] = at
    answer = requests.post(served.url(), data=payloads.body(payload), timeout=10)
    assert answer.status_code == 201, answer.text
    return payload


def events(served: ServeProcess, key: str | None = None, **params: str) -> requests.Response:
    return requests.get(served.url(ROUTE, key), params=params, timeout=10)


@pytest.fixture
def pushed(served: ServeProcess) -> list[dict[str, Any]]:
    """Five pushes through the webhook, oldest first."""
    return [
        push(served, "team/api", "v1", DIGEST_A, "2026-11-20T10:00:00Z"),
        push(served, "team/api", "latest", DIGEST_A, "2026-11-20T10:00:00Z"),
        push(served, "team/web", "v1", DIGEST_B, "2026-11-21T10:00:00.123456789Z"),
        push(served, "team/api", None, DIGEST_B, "2026-11-22T10:00:00+02:00"),
        push(served, "team/api", "v2", DIGEST_B, "2026-11-23T10:00:00Z"),
    ]


def test_recorded_events_come_back_newest_first(
    served: ServeProcess, pushed: list[dict[str, Any]]
) -> None:
    answer = events(served)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["continuation"] is None
    assert [e["timestamp"] for e in body["events"]] == [
        "2026-11-23T10:00:00.000000Z",
        "2026-11-22T08:00:00.000000Z",
        "2026-11-21T10:00:00.123456Z",
        "2026-11-20T10:00:00.000000Z",
        "2026-11-20T10:00:00.000000Z",
    ]
    untagged = body["events"][1]
    assert untagged["id"] == pushed[3]["id"]
    assert untagged["tag"] is None
    assert untagged["repository"] == "team/api"
    assert not [name for e in body["events"] for name in e if name.startswith("_")]


def test_filters_over_http(served: ServeProcess, pushed: list[dict[str, Any]]) -> None:
    def found(**params: str) -> list[str]:
        answer = events(served, **params)
        assert answer.status_code == 200, answer.text
        return [e["id"] for e in answer.json()["events"]]

    ids = [p["id"] for p in pushed]
    assert found(repository="team/api", tag="v1") == [ids[0]]
    assert found(digest=DIGEST_B) == [ids[4], ids[3], ids[2]]
    assert found(repository="team/web") == [ids[2]]
    assert found(tag="v1", since="2026-11-21") == [ids[2]]
    # Equal timestamps come back in either order.
    assert sorted(found(action="push", until="2026-11-21T10:00:00.123456Z")) == sorted(ids[:2])
    assert found(repository="no/such/repository") == []


def test_paging_over_http_until_exhausted(
    served: ServeProcess, pushed: list[dict[str, Any]]
) -> None:
    seen: list[str] = []
    token: str | None = None
    for _ in range(len(pushed)):
        params = {"limit": "2", **({"continuation": token} if token else {})}
        answer = events(served, **params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert 1 <= len(body["events"]) <= 2
        seen += [e["id"] for e in body["events"]]
        token = body["continuation"]
        if token is None:
            break
    assert token is None
    assert sorted(seen) == sorted(p["id"] for p in pushed)
    assert len(seen) == len(pushed)


def test_bad_parameters_are_400_naming_them(served: ServeProcess) -> None:
    for params, name in [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"since": "tomorrow"}, "since"),
        ({"action": "pull"}, "action"),
        ({"continuation": "nonsense"}, "continuation"),
        ({"tagg": "v1"}, "tagg"),
    ]:
        answer = events(served, **params)
        assert answer.status_code == 400, params
        assert answer.json()["error"].startswith(f"{name}: ")


def test_function_key_is_required_and_only_get_is_served(served: ServeProcess) -> None:
    assert events(served, key="").status_code == 401
    assert events(served, key="wrong").status_code == 401
    assert requests.get(f"{served.base_url}/api/{ROUTE}", timeout=10).status_code == 401
    by_header = requests.get(
        f"{served.base_url}/api/{ROUTE}", headers={"x-functions-key": served.key}, timeout=10
    )
    assert by_header.status_code == 200
    assert by_header.json() == {"events": [], "continuation": None}
    # Like the Azure host: a method the route does not take is 404.
    assert requests.post(served.url(ROUTE), data=b"{}", timeout=10).status_code == 404


def test_stopped_database_is_503_json_and_recovers(
    restartable_cosmos_server: LocalCosmosServer, tmp_path: Path
) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    process = ServeProcess(settings, tmp_path)
    try:
        restartable_cosmos_server.stop()
        answer = events(process)
        assert answer.status_code == 503
        assert answer.json() == {"error": "the event store is unavailable; try again later"}
        restartable_cosmos_server.start()
        provision(settings)  # the local server keeps nothing across a restart
        assert events(process).json() == {"events": [], "continuation": None}
    finally:
        process.stop()


def test_pushes_view_answers_one_row_per_push(served: ServeProcess) -> None:
    # The same image pushed under one tag, delivered twice with two ids (two deliveries of one
    # push), and another tag: two rows, the first with both deliveries' times.
    push(served, "team/api", "v1", DIGEST_A, "2026-11-20T10:00:00Z")
    push(served, "team/api", "v1", DIGEST_A, "2026-11-20T10:00:05Z")
    push(served, "team/api", "v2", DIGEST_B, "2026-11-21T10:00:00Z")

    answer = events(served, view="pushes")

    assert answer.status_code == 200
    body = answer.json()
    assert body["continuation"] is None
    assert [(p["tag"], p["timestamp"], len(p["regions"])) for p in body["pushes"]] == [
        ("v2", "2026-11-21T10:00:00.000000Z", 1),
        ("v1", "2026-11-20T10:00:00.000000Z", 2),
    ]
    assert events(served, view="rows").json() == {"error": "view: must be one of events, pushes"}
