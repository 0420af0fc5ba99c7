"""End to end for ``/api/acr/eventgrid``: ``serve`` over HTTP, documents checked in the database."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from acr_webhook.config import Settings
from acr_webhook.models import ENRICHMENT_FIELDS
from acr_webhook.repository import provision
from tests.conftest import fresh_settings, read_all
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.payloads import mutated
from tests.support.serve import ServeProcess, post_json
from tests.unit.test_eventgrid import (
    ENRICHED_BY_EVENT_GRID,
    cloud_event,
    event_grid,
    validation_event,
)

ROUTE = "acr/eventgrid"
# Event Grid waits 30 s; the store's own timeouts keep a failing batch far below that.
ANSWER_BUDGET_S = 4.5
EVENT_GRID_WAIT_S = 30
EVENT_GRID_JSON = "application/json"
CLOUDEVENT = "application/cloudevents+json; charset=utf-8"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json; charset=utf-8"


def deliver(
    url: str, events: Any, content_type: str = EVENT_GRID_JSON, **headers: str
) -> requests.Response:
    """POST like Event Grid: the events as JSON, its delivery headers."""
    return requests.post(
        url,
        data=events if isinstance(events, bytes) else payloads.body(events),
        headers={
            "Content-Type": content_type,
            "aeg-event-type": "Notification",
            "aeg-subscription-name": "ACRHOOK-EVENTGRID",
            "aeg-delivery-count": "0",
            **headers,
        },
        # As long as Event Grid waits: a batch of 1,000 duplicates, each read back to fill in
        # fields, took over 10 s on a loaded CI machine and is still answered in time.
        timeout=EVENT_GRID_WAIT_S,
    )


def documents(settings: Settings) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in read_all(settings)}


def test_subscription_validation_handshake(served: ServeProcess, cosmos_settings: Settings) -> None:
    answer = deliver(
        served.url(ROUTE),
        [validation_event("code-123")],
        **{"aeg-event-type": "SubscriptionValidation"},
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == {"validationResponse": "code-123"}
    assert read_all(cosmos_settings) == []


def test_cloudevents_abuse_protection_handshake(served: ServeProcess) -> None:
    origin = {"WebHook-Request-Origin": "eventgrid.azure.net", "WebHook-Request-Rate": "120"}
    answer = requests.options(served.url(ROUTE), headers=origin, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert answer.headers["WebHook-Allowed-Rate"] == "*"

    without = requests.options(served.url(ROUTE), timeout=10)
    assert without.status_code == 400
    assert "WebHook-Request-Origin" in without.json()["error"]
    assert "WebHook-Allowed-Origin" not in without.headers

    keyless = requests.options(served.url(ROUTE, key="wrong"), headers=origin, timeout=10)
    assert keyless.status_code == 401
    assert "WebHook-Allowed-Origin" not in keyless.headers


def test_event_grid_batch_with_every_type_and_a_duplicate(
    served: ServeProcess, cosmos_settings: Settings
) -> None:
    acr_events = [payloads.PUSH, payloads.DELETE, payloads.CHART_PUSH, payloads.CHART_DELETE]
    batch = [event_grid(p) for p in acr_events] + [event_grid(payloads.PUSH)]
    answer = deliver(served.url(ROUTE), batch)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"recorded": 4, "duplicate": 1, "ignored": 0}

    # Event Grid delivers at least once: the same batch again changes nothing.
    again = deliver(served.url(ROUTE), batch, **{"aeg-delivery-count": "1"})
    assert again.json() == {"recorded": 0, "duplicate": 5, "ignored": 0}

    stored = documents(cosmos_settings)
    assert set(stored) == {p["id"] for p in acr_events}
    assert {d["source"] for d in stored.values()} == {"eventgrid"}
    push = stored[payloads.PUSH["id"]]
    assert (push["action"], push["repository"], push["tag"]) == ("push", "hello-world", "v1")
    assert push["registry"] == "myregistry.azurecr.io"
    assert push["timestamp"] == "2017-11-17T16:52:01.343145Z"
    chart = stored[payloads.CHART_DELETE["id"]]
    assert (chart["action"], chart["chartName"], chart["chartVersion"]) == (
        "chart_delete",
        "wordpress",
        "5.4.0",
    )


def test_cloudevents_single_and_batch(served: ServeProcess, cosmos_settings: Settings) -> None:
    single = cloud_event(payloads.PUSH_BY_DIGEST_OCI)
    answer = deliver(served.url(ROUTE), single, CLOUDEVENT)
    assert (answer.status_code, answer.json()["recorded"]) == (200, 1)

    batch = [cloud_event(payloads.DELETE), cloud_event(payloads.PUSH_BY_DIGEST_OCI)]
    answer = deliver(served.url(ROUTE), batch, CLOUDEVENTS_BATCH)
    assert answer.status_code == 200
    assert answer.json() == {"recorded": 1, "duplicate": 1, "ignored": 0}

    stored = documents(cosmos_settings)
    assert set(stored) == {payloads.PUSH_BY_DIGEST_OCI["id"], payloads.DELETE["id"]}
    assert stored[payloads.PUSH_BY_DIGEST_OCI["id"]]["tag"] is None
    assert {d["source"] for d in stored.values()} == {"eventgrid"}


def test_one_invalid_event_rejects_the_batch_and_nothing_is_written(
    served: ServeProcess, cosmos_settings: Settings
) -> None:
    no_repository = event_grid(payloads.with_new_id(payloads.PUSH))
    del no_repository["data"]["target"]["repository"]
    batch = [event_grid(payloads.PUSH), event_grid(payloads.DELETE), no_repository]
    answer = deliver(served.url(ROUTE), batch)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("events[2].data.target.repository: ")

    bad_cloudevent = cloud_event(payloads.PUSH)
    bad_cloudevent["data"] = "not an event"
    for body, content_type, status in [
        ([cloud_event(payloads.DELETE), bad_cloudevent], CLOUDEVENTS_BATCH, 400),
        (b"", EVENT_GRID_JSON, 400),
        (b"[{", EVENT_GRID_JSON, 400),
        (payloads.body(event_grid(payloads.PUSH)), EVENT_GRID_JSON, 400),  # not in an array
        (b"[" + b" " * (1024 * 1024) + b"]", EVENT_GRID_JSON, 413),
    ]:
        answer = deliver(served.url(ROUTE), body, content_type)
        assert answer.status_code == status
        assert answer.json()["error"]
    assert read_all(cosmos_settings) == []


def test_unknown_event_types_are_acknowledged_and_not_stored(
    served: ServeProcess, cosmos_settings: Settings
) -> None:
    batch = [
        event_grid(payloads.PUSH, event_type="Microsoft.ContainerRegistry.ImageQuarantined"),
        {"id": "x", "eventType": "Microsoft.EventGrid.SubscriptionDeletedEvent", "data": {}},
    ]
    answer = deliver(served.url(ROUTE), batch)
    assert (answer.status_code, answer.json()) == (
        200,
        {"recorded": 0, "duplicate": 0, "ignored": 2},
    )
    single = cloud_event(payloads.PUSH, event_type="Contoso.Something.Happened")
    assert deliver(served.url(ROUTE), single, CLOUDEVENT).json()["ignored"] == 1
    assert read_all(cosmos_settings) == []


def test_the_same_push_by_webhook_and_by_event_grid_is_one_document(
    served: ServeProcess, cosmos_settings: Settings
) -> None:
    by_webhook = payloads.with_new_id(payloads.PUSH)
    webhook = post_json(served.url("acr/webhook"), payloads.body(by_webhook))
    assert webhook.status_code == 201
    answer = deliver(served.url(ROUTE), [event_grid(by_webhook)])
    assert answer.json() == {"recorded": 0, "duplicate": 1, "ignored": 0}

    by_event_grid = payloads.with_new_id(payloads.DELETE)
    assert deliver(served.url(ROUTE), [event_grid(by_event_grid)]).json()["recorded"] == 1
    late_webhook = post_json(served.url("acr/webhook"), payloads.body(by_event_grid))
    assert late_webhook.status_code == 200  # duplicate

    stored = documents(cosmos_settings)
    assert len(stored) == 2
    assert stored[by_webhook["id"]]["source"] == "webhook"
    assert stored[by_event_grid["id"]]["source"] == "eventgrid"


def test_function_key_is_required(served: ServeProcess, cosmos_settings: Settings) -> None:
    batch = [event_grid(payloads.PUSH)]
    assert deliver(served.url(ROUTE, key="wrong"), batch).status_code == 401
    assert deliver(f"{served.base_url}/api/{ROUTE}", batch).status_code == 401
    assert read_all(cosmos_settings) == []
    by_header = deliver(f"{served.base_url}/api/{ROUTE}", batch, **{"x-functions-key": served.key})
    assert by_header.status_code == 200


def test_stopped_database_is_503_in_time_and_the_retried_batch_is_stored(
    restartable_cosmos_server: LocalCosmosServer, tmp_path: Path
) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    process = ServeProcess(settings, tmp_path)
    batch = [event_grid(payloads.PUSH), event_grid(payloads.DELETE)]
    try:
        restartable_cosmos_server.stop()
        started = time.monotonic()
        answer = deliver(process.url(ROUTE), batch)
        assert (answer.status_code, time.monotonic() - started < ANSWER_BUDGET_S) == (503, True)
        assert "unavailable" in answer.json()["error"]

        restartable_cosmos_server.start()
        provision(settings)  # the local server keeps nothing across a restart
        # Event Grid redelivers until it gets a 200; the app remembers the outage for a few
        # seconds (repository.UNAVAILABLE_MEMORY_S) before it tries the database again.
        deadline = time.monotonic() + 30
        attempt = 0
        while True:
            attempt += 1
            retry = deliver(process.url(ROUTE), batch, **{"aeg-delivery-count": str(attempt)})
            if retry.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert retry.status_code == 200
        assert retry.json() == {"recorded": 2, "duplicate": 0, "ignored": 0}
        assert set(documents(settings)) == {payloads.PUSH["id"], payloads.DELETE["id"]}
    finally:
        process.stop()


def test_a_batch_of_a_thousand_events_is_stored_once_each(
    served: ServeProcess, cosmos_settings: Settings
) -> None:
    # Written concurrently on the bounded pool; bench/ measures how long it takes.
    batch = [event_grid(payloads.with_new_id(payloads.PUSH)) for _ in range(1000)]
    answer = deliver(served.url(ROUTE), batch)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"recorded": 1000, "duplicate": 0, "ignored": 0}
    again = deliver(served.url(ROUTE), batch, **{"aeg-delivery-count": "1"})
    assert again.json() == {"recorded": 0, "duplicate": 1000, "ignored": 0}
    stored = documents(cosmos_settings)
    assert set(stored) == {event["data"]["id"] for event in batch}


def test_a_mixed_batch_with_one_unstorable_event_is_400_and_writes_nothing(
    served: ServeProcess, cosmos_settings: Settings
) -> None:
    # Issue 10: [good, bad id, good] was a 500 with one good event stored, retried for 24 h.
    bad_id = payloads.with_new_id(payloads.PUSH)
    bad_id["id"] = "tab\tinside"
    good = [payloads.with_new_id(payloads.PUSH) for _ in range(20)]
    batch = [event_grid(good[0]), event_grid(bad_id), *[event_grid(p) for p in good[1:]]]
    batch.append(event_grid(payloads.PUSH, event_type="Microsoft.Storage.BlobCreated"))
    answer = deliver(served.url(ROUTE), batch)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("events[1].data.id: ")
    assert read_all(cosmos_settings) == []


@pytest.mark.parametrize(("path", "value", "mentions"), payloads.HOSTILE)
def test_hostile_input_is_a_400_naming_the_field_over_http(
    served_for_hostile_input: tuple[ServeProcess, Settings], path: str, value: Any, mentions: str
) -> None:
    served, settings = served_for_hostile_input
    answer = deliver(served.url(ROUTE), [event_grid(mutated(path, value))])
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(f"events[0].data.{path}: ")
    assert mentions in answer.json()["error"]
    assert read_all(settings) == []


def test_event_grid_adds_who_pushed_to_the_document_the_webhook_stored(
    served: ServeProcess, cosmos_settings: Settings
) -> None:
    """Issue 11: the repository fills in the missing ENRICHMENT_FIELDS on a duplicate."""
    enriched = payloads.with_new_id(payloads.ENRICHED_PUSH)
    by_webhook = {
        key: value
        for key, value in enriched.items()
        if key not in ("actor", "location", "connectedRegistry")
    }
    by_webhook["request"] = {k: v for k, v in enriched["request"].items() if k != "addr"}
    webhook = post_json(served.url("acr/webhook"), payloads.body(by_webhook))
    assert webhook.status_code == 201
    assert documents(cosmos_settings)[enriched["id"]]["actor"] is None

    answer = deliver(served.url(ROUTE), [event_grid(enriched)])
    assert answer.json() == {"recorded": 0, "duplicate": 1, "ignored": 0}
    stored = documents(cosmos_settings)
    assert list(stored) == [enriched["id"]]  # still one document
    document = stored[enriched["id"]]
    assert document["source"] == "webhook"  # the path that stored it first
    assert {name: document[name] for name in ENRICHMENT_FIELDS} == ENRICHED_BY_EVENT_GRID


def test_a_contradicting_action_is_stored_as_the_event_type_names(
    served: ServeProcess, cosmos_settings: Settings
) -> None:
    # As in the Azure SDK's own test data: ImagePushed with action "testaction".
    event = event_grid(payloads.with_new_id(payloads.PUSH))
    event["data"]["action"] = "testaction"
    assert deliver(served.url(ROUTE), [event]).status_code == 200
    assert documents(cosmos_settings)[event["data"]["id"]]["action"] == "push"


def test_without_the_shared_secret_the_answer_is_an_empty_401(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    process = ServeProcess(cosmos_settings, tmp_path, extra_env={"WEBHOOK_SECRET": "eg-secret"})
    try:
        batch = payloads.body([event_grid(payloads.PUSH)])
        huge = b"[" + b" " * (1024 * 1024 - 2) + b"]"
        for body in (batch, huge):
            answer = deliver(process.url(ROUTE), body)
            assert (answer.status_code, answer.content) == (401, b"")
        # The handshake is exempt from the secret (the function key still guards it).
        handshake = deliver(
            process.url(ROUTE),
            [validation_event("code-9")],
            **{"aeg-event-type": "SubscriptionValidation"},
        )
        assert handshake.json() == {"validationResponse": "code-9"}
        authorised = deliver(process.url(ROUTE), batch, Authorization="Bearer eg-secret")
        assert authorised.status_code == 200
        assert set(documents(cosmos_settings)) == {payloads.PUSH["id"]}
    finally:
        process.stop()
