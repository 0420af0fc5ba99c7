from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from acr_webhook.models import AcrEvent, iso_utc, to_document
from tests.support import payloads

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_documented_push_maps_to_the_contract_fields() -> None:
    document = to_document(AcrEvent.model_validate(payloads.PUSH), RECEIVED)
    assert document == {
        "id": "cb8c3971-9adc-488b-aaaa-43cbb4974ff5",
        "action": "push",
        "source": "webhook",
        "repository": "hello-world",
        "tag": "v1",
        "digest": "sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d",
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "size": 524,
        "timestamp": "2017-11-17T16:52:01.343145Z",
        "registry": "myregistry.azurecr.io",
        "receivedAt": "2026-01-02T03:04:05.678901Z",
        "userAgent": payloads.PUSH["request"]["useragent"],
        "requestId": "3cbb6949-7549-4fa1-aaaa-a6d5451dffc7",
        "requestMethod": "PUT",
        "chartName": None,
        "chartVersion": None,
    }


def test_push_by_digest_has_null_tag_and_no_user_agent() -> None:
    document = to_document(AcrEvent.model_validate(payloads.PUSH_BY_DIGEST_OCI), RECEIVED)
    assert document["tag"] is None
    assert document["userAgent"] is None
    assert document["mediaType"] == "application/vnd.oci.image.index.v1+json"
    # Nine fractional digits are accepted and kept to the microsecond.
    assert document["timestamp"] == "2024-05-02T08:15:42.123456Z"


def test_missing_tag_is_the_same_as_empty_tag() -> None:
    payload = payloads.with_new_id(payloads.PUSH)
    del payload["target"]["tag"]
    assert to_document(AcrEvent.model_validate(payload), RECEIVED)["tag"] is None


def test_chart_event_without_request_keeps_chart_name_and_version() -> None:
    document = to_document(AcrEvent.model_validate(payloads.CHART_PUSH), RECEIVED)
    assert document["registry"] is None
    assert document["requestId"] is None
    assert (document["chartName"], document["chartVersion"]) == ("wordpress", "5.4.0")
    assert document["tag"] == "wordpress-5.4.0.tgz"


def test_delete_without_size_falls_back_to_length_or_none() -> None:
    document = to_document(AcrEvent.model_validate(payloads.DELETE), RECEIVED)
    assert document["size"] is None
    payload = payloads.with_new_id(payloads.PUSH)
    del payload["target"]["size"]
    assert to_document(AcrEvent.model_validate(payload), RECEIVED)["size"] == 524


def test_unknown_fields_are_tolerated() -> None:
    payload = payloads.with_new_id(payloads.PUSH, annotations={"x": 1}, newField="v")
    payload["request"]["clientIp"] = "10.0.0.1"
    payload["source"] = {"addr": "x"}
    assert AcrEvent.model_validate(payload).target.repository == "hello-world"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2019-03-05T23:45:31.2614267Z", "2019-03-05T23:45:31.261426Z"),
        ("2019-03-05T23:45:31Z", "2019-03-05T23:45:31.000000Z"),
        ("2019-03-06T01:45:31.5+02:00", "2019-03-05T23:45:31.500000Z"),
        ("2019-03-05T23:45:31", "2019-03-05T23:45:31.000000Z"),
    ],
)
def test_timestamps_are_stored_as_fixed_width_utc(timestamp: str, expected: str) -> None:
    payload = payloads.with_new_id(payloads.PUSH)
    payload["timestamp"] = timestamp
    event = AcrEvent.model_validate(payload)
    assert iso_utc(event.timestamp) == expected


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.pop("id"), "id"),
        (lambda p: p["target"].pop("repository"), "target.repository"),
        (lambda p: p.pop("target"), "target"),
        (lambda p: p.update(timestamp="yesterday"), "timestamp"),
        (lambda p: p["target"].update(size="big"), "target.size"),
        (lambda p: p["target"].update(size=-1), "target.size"),
        (lambda p: p["target"].update(repository=""), "target.repository"),
        (lambda p: p["target"].update(repository=7), "target.repository"),
        (lambda p: p.update(id="a/b"), "id"),
        (lambda p: p.update(request="PUT"), "request"),
    ],
)
def test_invalid_recorded_events_name_the_field(mutate: object, field: str) -> None:
    payload = payloads.with_new_id(payloads.PUSH)
    mutate(payload)  # type: ignore[operator]
    with pytest.raises(ValidationError) as caught:
        AcrEvent.model_validate(payload)
    fields = {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}
    assert field in fields
