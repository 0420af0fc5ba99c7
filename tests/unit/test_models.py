from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from acr_webhook.models import (
    ENRICHMENT_FIELDS,
    MAX_REPOSITORY_LENGTH,
    MAX_RESOURCE_ID_LENGTH,
    MAX_SIZE,
    MAX_USER_AGENT_LENGTH,
    AcrEvent,
    iso_utc,
    parse_webhook_payload,
    to_document,
)
from tests.support import payloads
from tests.support.payloads import HOSTILE, mutated

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
        "actor": None,
        "clientAddress": None,
        "location": None,
        "connectedRegistry": None,
        "registryResourceId": None,
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
        (lambda p: p.update(id="."), "id"),  # a dot segment in the item's URL path
        (lambda p: p.update(id=".."), "id"),
        (lambda p: p.update(request="PUT"), "request"),
        (lambda p: p.update(action="testaction"), "action"),
    ],
)
def test_invalid_recorded_events_name_the_field(mutate: object, field: str) -> None:
    payload = payloads.with_new_id(payloads.PUSH)
    mutate(payload)  # type: ignore[operator]
    with pytest.raises(ValidationError) as caught:
        AcrEvent.model_validate(payload)
    fields = {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}
    assert field in fields


# --- issue 11: who pushed, from where ------------------------------------------------------------

RESOURCE_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.ContainerRegistry/registries/myregistry"
)


def test_what_event_grid_and_the_history_carry_is_kept() -> None:
    event = AcrEvent.model_validate(payloads.ENRICHED_PUSH)
    document = to_document(event, RECEIVED, "eventgrid", registry_resource_id=RESOURCE_ID)
    assert {name: document[name] for name in ENRICHMENT_FIELDS} == {
        "actor": "ci-bot@contoso.com",
        "clientAddress": "203.0.113.7:51234",
        "location": "westeurope",
        "connectedRegistry": "edge01",
        "registryResourceId": RESOURCE_ID,
    }
    # registry stays the login server; the ARM id has a field of its own.
    assert document["registry"] == "myregistry.azurecr.io"
    assert document["source"] == "eventgrid"


@pytest.mark.parametrize("name", sorted(payloads.RECORDED))
def test_every_document_has_every_enrichment_field(name: str) -> None:
    document = to_document(AcrEvent.model_validate(payloads.RECORDED[name]), RECEIVED)
    assert {field: document[field] for field in ENRICHMENT_FIELDS} == dict.fromkeys(
        ENRICHMENT_FIELDS
    )


def test_empty_enrichment_values_are_stored_as_absent() -> None:
    payload = payloads.with_new_id(payloads.ENRICHED_PUSH)
    payload.update(actor={"name": ""}, location="", connectedRegistry={})
    payload["request"]["addr"] = ""
    document = to_document(AcrEvent.model_validate(payload), RECEIVED, "reconcile", "")
    assert {field: document[field] for field in ENRICHMENT_FIELDS} == dict.fromkeys(
        ENRICHMENT_FIELDS
    )
    assert document["source"] == "reconcile"


def test_the_reconcile_entry_point_returns_the_event_or_the_problems() -> None:
    event = parse_webhook_payload(payloads.ENRICHED_PUSH)
    assert isinstance(event, AcrEvent)
    assert event.actor is not None and event.actor.name == "ci-bot@contoso.com"
    bad = payloads.with_new_id(payloads.PUSH)
    bad["id"] = "tab\tinside"
    del bad["target"]["repository"]
    problems = parse_webhook_payload(bad, "eventRequestMessage.content")
    assert problems == [
        "eventRequestMessage.content.id: must not contain control characters, '/', '\\', "
        "'?' or '#', nor end with a space",
        "eventRequestMessage.content.target.repository: Field required",
    ]


# --- issue 10: what Cosmos DB or the queue would refuse is a validation problem -----------------


@pytest.mark.parametrize(("path", "value", "mentions"), HOSTILE)
def test_hostile_values_are_problems_naming_the_field(path: str, value: Any, mentions: str) -> None:
    problems = parse_webhook_payload(mutated(path, value))
    assert isinstance(problems, list)
    [problem] = problems
    assert problem.startswith(f"{path}: ")
    assert mentions in problem


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("target.size", MAX_SIZE),
        ("target.size", 0),
        ("target.tag", ""),
        ("target.tag", "t" * 128),
        ("target.repository", "\U0001f600" * MAX_REPOSITORY_LENGTH),
        ("id", " leading-space-is-fine"),
        ("id", "\u00e9v\u00e9nement-\U0001f600"),
        ("timestamp", "1000-01-01T00:00:00Z"),
        ("timestamp", "9999-12-31T23:59:59.999999Z"),
        ("timestamp", "2019-03-06T09:45:31+14:00"),
        ("timestamp", "2019-03-05T23:45:31.123456789Z"),
        ("request.useragent", "tab\tis allowed in a user agent"),
    ],
)
def test_values_at_the_limits_are_accepted(path: str, value: Any) -> None:
    assert isinstance(parse_webhook_payload(mutated(path, value)), AcrEvent)


def test_extreme_accepted_timestamps_stay_fixed_width() -> None:
    for timestamp, stored in [
        ("1000-01-01T00:00:00Z", "1000-01-01T00:00:00.000000Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
        ("1000-01-01T00:00:00-01:00", "1000-01-01T01:00:00.000000Z"),
    ]:
        event = AcrEvent.model_validate(mutated("timestamp", timestamp))
        assert iso_utc(event.timestamp) == stored


def test_a_long_user_agent_is_cut_not_refused() -> None:
    event = AcrEvent.model_validate(mutated("request.useragent", "u" * 10_000))
    assert event.request is not None
    assert event.request.useragent == "u" * MAX_USER_AGENT_LENGTH


def test_the_partition_key_fits_cosmos_db_whatever_the_characters() -> None:
    longest = "\U0001f600" * MAX_REPOSITORY_LENGTH
    event = AcrEvent.model_validate(mutated("target.repository", longest))
    assert len(event.target.repository.encode("utf-8")) <= 2048


# --- any valid event fits the fallback queue ------------------------------------------------------

# The character whose JSON escape is longest: outside the BMP, json.dumps writes a surrogate
# pair, "\\ud83d\\ude00", 12 bytes for one character.
WIDEST = "\U0001f600"
# Longer than any limit: a field without a maxLength is cut (user agent) or the test fails.
UNBOUNDED_PROBE = 100_000


def _string_fields(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Each string field of the model filled to its maximum length with WIDEST; submodels
    recursively (from the JSON schema, so a field added later is covered too)."""
    filled: dict[str, Any] = {}
    for name, spec in node["properties"].items():
        options = spec.get("anyOf", [spec])
        for option in options:
            if "$ref" in option:
                filled[name] = _string_fields(
                    schema, schema["$defs"][option["$ref"].split("/")[-1]]
                )
            elif option.get("type") == "string" and option.get("format") != "date-time":
                filled[name] = WIDEST * option.get("maxLength", UNBOUNDED_PROBE)
    return filled


def worst_case_payload() -> dict[str, Any]:
    schema = AcrEvent.model_json_schema()
    payload = _string_fields(schema, schema)
    payload.update(action="chart_delete", timestamp="2026-11-23T12:00:00.123456Z")
    payload["target"].update(size=MAX_SIZE, length=MAX_SIZE)
    return payload


def test_any_valid_event_fits_a_fallback_queue_message() -> None:
    event = AcrEvent.model_validate(worst_case_payload())
    document = to_document(event, RECEIVED, "reconcile", WIDEST * MAX_RESOURCE_ID_LENGTH)
    assert all(document[name] for name in ENRICHMENT_FIELDS)  # every field is at its widest
    # As the fallback queue sends it: json.dumps (ASCII escapes), UTF-8, base64.
    message = json.dumps(document).encode("utf-8")
    assert len(message) < 48 * 1024
    assert len(base64.b64encode(message)) < 64 * 1024
    # Cosmos DB's own encoding of the same document is smaller still.
    assert len(json.dumps(document, ensure_ascii=False).encode("utf-8")) < len(message)


@pytest.mark.parametrize("digits", range(10))
def test_zero_to_nine_fractional_digits_are_accepted(digits: int) -> None:
    fraction = "." + "123456789"[:digits] if digits else ""
    event = AcrEvent.model_validate(mutated("timestamp", f"2024-05-02T08:15:42{fraction}Z"))
    expected = ("123456789"[:digits] + "000000")[:6]
    assert iso_utc(event.timestamp) == f"2024-05-02T08:15:42.{expected}Z"


@pytest.mark.usefixtures("host_in_another_time_zone")
def test_a_timestamp_without_an_offset_is_utc_whatever_the_hosts_time_zone() -> None:
    event = AcrEvent.model_validate(mutated("timestamp", "2019-03-05T23:45:31"))
    assert iso_utc(event.timestamp) == "2019-03-05T23:45:31.000000Z"


# --- AcrEvent._iso_8601_text: a timestamp given as a datetime -----------------------------------


def test_an_event_built_in_python_may_carry_its_timestamp_as_a_datetime() -> None:
    """models.AcrEvent._iso_8601_text: numbers and digit strings are refused (Unix time), and
    ``isinstance(value, datetime)`` passes: an aware datetime is a timestamp already.
    Kills: the datetime check dropped (every datetime refused)."""
    payload = payloads.with_new_id(payloads.PUSH)
    payload["timestamp"] = datetime(2026, 11, 23, 16, 52, 1, 343145, tzinfo=UTC)
    event = AcrEvent.model_validate(payload)
    assert event.timestamp == datetime(2026, 11, 23, 16, 52, 1, 343145, tzinfo=UTC)
