from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from acr_webhook.handlers import MAX_BODY_BYTES, MAX_LOGGED_CLAIM, handle_webhook, loads_strictly
from acr_webhook.models import ENRICHMENT_FIELDS
from tests.support import payloads
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository
from tests.support.logs import decisions
from tests.support.payloads import HOSTILE, mutated

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def call(body: bytes, repository: FakeEventRepository) -> tuple[int, dict[str, object] | None]:
    result = handle_webhook(body, repository, now=lambda: NOW)
    return result.status, result.body


@pytest.fixture
def repository() -> FakeEventRepository:
    return FakeEventRepository()


def test_ping_is_204_with_no_body_and_no_write(repository: FakeEventRepository) -> None:
    assert call(payloads.body({"action": "ping"}), repository) == (204, None)
    # The ping payload is undocumented: anything beside the action is fine.
    assert call(payloads.body({"action": "ping", "id": 5, "target": []}), repository)[0] == 204
    assert repository.add_calls == 0


@pytest.mark.parametrize("name", sorted(payloads.RECORDED))
def test_every_recorded_action_is_written_once(name: str, repository: FakeEventRepository) -> None:
    payload = payloads.RECORDED[name]
    status, body = call(payloads.body(payload), repository)
    assert status == 201
    assert body == {"status": "recorded", "id": payload["id"]}
    document = repository.documents[payload["id"]]
    assert document["action"] == payload["action"]
    assert document["repository"] == payload["target"]["repository"]
    assert document["receivedAt"] == "2026-11-23T12:00:00.000000Z"


def test_second_delivery_is_200_without_a_second_document(
    repository: FakeEventRepository,
) -> None:
    assert call(payloads.body(payloads.PUSH), repository)[0] == 201
    status, body = call(payloads.body(payloads.PUSH), repository)
    assert status == 200
    assert body == {"status": "duplicate", "id": payloads.PUSH["id"]}
    assert len(repository.documents) == 1


def test_unknown_action_is_acknowledged_and_not_stored(repository: FakeEventRepository) -> None:
    payload = payloads.with_new_id(payloads.PUSH)
    payload["action"] = "tag_delete"
    status, body = call(payloads.body(payload), repository)
    assert status == 202
    assert body is not None and "tag_delete" in str(body["reason"])
    assert repository.add_calls == 0


def test_store_outage_is_503_json(repository: FakeEventRepository) -> None:
    repository.unavailable = True
    status, body = call(payloads.body(payloads.PUSH), repository)
    assert status == 503
    assert body is not None and "unavailable" in str(body["error"])


def push_without(*path: str) -> bytes:
    payload = payloads.with_new_id(payloads.PUSH)
    node = payload
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return payloads.body(payload)


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        (b"", 400, "empty"),
        (b"  \n", 400, "empty"),
        (b"{not json", 400, "not valid JSON"),
        (b'{"action": "push", "id": "\xff\xfe"}', 400, "UTF-8"),
        (b"[1, 2]", 400, "JSON object"),
        (b'"push"', 400, "JSON object"),
        (b"null", 400, "JSON object"),
        (b"{}", 400, "action"),
        (b'{"action": 5}', 400, "action"),
        (b'{"action": ""}', 400, "action"),
        # Explicit ids: each push has a new event id, and workers must collect the same names.
        pytest.param(push_without("target", "repository"), 400, "target.repository", id="no repo"),
        pytest.param(push_without("id"), 400, "id", id="no id"),
        pytest.param(push_without("timestamp"), 400, "timestamp", id="no timestamp"),
        (
            b'{"action": "push", "id": "x", "timestamp": "2020-01-01T00:00:00Z", "target": 3}',
            400,
            "target",
        ),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
        (b" " * (MAX_BODY_BYTES + 1), 413, str(MAX_BODY_BYTES)),
        (payloads.body(payloads.PUSH)[:-1] + b', "x": NaN}', 400, "NaN is not a JSON value"),
        (b'{"action": "ping", "x": [Infinity]}', 400, "Infinity is not a JSON value"),
        # A push that would take pydantic-core's fast path, which takes both words too.
        (payloads.body(payloads.PUSH)[:-1] + b', "x": Infinity}', 400, "Infinity is not a JSON"),
        (payloads.body(payloads.PUSH)[:-1] + b', "x": -Infinity}', 400, "-Infinity is not a"),
        # Valid JSON that Python will not turn into an int: said so, not "not valid JSON".
        pytest.param(
            b'{"action": "ping", "x": -' + b"9" * 5000 + b"}",
            400,
            "a number has 5000 digits",
            id="5000-digit number",
        ),
    ],
)
def test_bad_input_is_a_json_4xx_naming_the_problem_and_writes_nothing(
    body: bytes, status: int, mentions: str, repository: FakeEventRepository
) -> None:
    answer_status, answer = call(body, repository)
    assert answer_status == status
    assert answer is not None
    assert mentions in str(answer["error"])
    json.dumps(answer)  # serialisable as the HTTP body
    assert repository.add_calls == 0


def test_nan_and_infinity_as_text_are_stored_as_sent(repository: FakeEventRepository) -> None:
    """Only the bare tokens are refused: a body that names them in a string is JSON."""
    event = payloads.with_new_id(payloads.PUSH, repository="team/NaN", tag="Infinity")
    assert call(payloads.body(event), repository)[0] == 201
    [stored] = repository.documents.values()
    assert (stored["repository"], stored["tag"]) == ("team/NaN", "Infinity")


def test_body_at_the_limit_is_accepted(repository: FakeEventRepository) -> None:
    padded = payloads.padded_body(payloads.with_new_id(payloads.PUSH), MAX_BODY_BYTES)
    assert len(padded) == MAX_BODY_BYTES
    assert call(padded, repository)[0] == 201


def test_a_valid_event_one_byte_over_the_limit_is_413_and_not_stored(
    repository: FakeEventRepository,
) -> None:
    """The limit holds for a body that is a good event too, not only for one read slowly."""
    padded = payloads.padded_body(payloads.with_new_id(payloads.PUSH), MAX_BODY_BYTES + 1)
    assert len(padded) == 1024 * 1024 + 1  # the README: a body over 1 MiB is 413
    status, answer = call(padded, repository)
    assert (status, answer) == (413, {"error": f"body is larger than {MAX_BODY_BYTES} bytes"})
    assert repository.add_calls == 0


# --- issue 10: hostile input is a 400 naming the field, never a write or a 5xx ---


@pytest.mark.parametrize(("path", "value", "mentions"), HOSTILE)
def test_hostile_input_is_a_400_naming_the_field_and_writes_nothing(
    path: str, value: Any, mentions: str, repository: FakeEventRepository
) -> None:
    status, answer = call(payloads.body(mutated(path, value)), repository)
    assert status == 400
    assert answer is not None
    assert str(answer["error"]).startswith(f"{path}: ")
    assert mentions in str(answer["error"])
    assert repository.add_calls == 0


def test_a_document_the_store_refuses_is_a_400_not_a_500(repository: FakeEventRepository) -> None:
    repository.refused.add(payloads.PUSH["id"])
    status, answer = call(payloads.body(payloads.PUSH), repository)
    assert status == 400
    assert answer is not None and "refused" in str(answer["error"])
    assert repository.documents == {}


def test_an_action_outside_the_five_is_never_stored(repository: FakeEventRepository) -> None:
    payload = payloads.with_new_id(payloads.PUSH)
    payload["action"] = "testaction"
    assert call(payloads.body(payload), repository)[0] == 202
    assert repository.add_calls == 0


# --- issue 11: the webhook payload may carry what Event Grid carries ---


def test_actor_and_the_other_new_fields_are_kept_from_a_webhook_payload(
    repository: FakeEventRepository,
) -> None:
    assert call(payloads.body(payloads.ENRICHED_PUSH), repository)[0] == 201
    document = repository.documents[payloads.ENRICHED_PUSH["id"]]
    assert document["actor"] == "ci-bot@contoso.com"
    assert document["clientAddress"] == "203.0.113.7:51234"
    assert (document["location"], document["connectedRegistry"]) == ("westeurope", "edge01")
    assert document["registryResourceId"] is None  # only an Event Grid envelope names it
    assert set(ENRICHMENT_FIELDS) <= set(document)


# --- decision logs ------------------------------------------------------------------------


def test_each_decision_is_logged_with_its_fields_and_the_store_time(
    caplog: pytest.LogCaptureFixture, repository: FakeEventRepository
) -> None:
    caplog.set_level(logging.INFO)
    repository.write_delay_s = 0.02  # each write takes at least 20 ms
    call(payloads.body(payloads.PUSH), repository)
    call(payloads.body(payloads.PUSH), repository)
    repository.unavailable = True
    call(payloads.body(payloads.with_new_id(payloads.PUSH)), repository)
    logged = decisions(caplog)
    assert [(d["decision"], d["route"]) for d in logged] == [
        ("recorded", "webhook"),
        ("duplicate", "webhook"),
        ("unavailable", "webhook"),
    ]
    for entry in logged:
        assert isinstance(entry["store_ms"], float) and entry["store_ms"] >= 20  # milliseconds
        assert (entry["action"], entry["repository"]) == ("push", "hello-world")
    assert logged[0]["event_id"] == payloads.PUSH["id"]
    assert "fake outage" in logged[2]["reason"]
    assert "reason" not in logged[0]


def test_a_decision_record_is_located_where_the_route_decided(
    caplog: pytest.LogCaptureFixture, repository: FakeEventRepository
) -> None:
    """The file, line and function a log viewer shows for a decision are the route's, not
    those of the helper that formats every decision."""
    caplog.set_level(logging.INFO)
    refused = payloads.with_new_id(payloads.PUSH)
    repository.refused.add(refused["id"])
    call(payloads.body(payloads.with_new_id(payloads.PUSH)), repository)
    call(payloads.body(refused), repository)
    logged = [record for record in caplog.records if hasattr(record, "decision")]
    assert [(record.filename, record.funcName) for record in logged] == [
        ("handlers.py", "handle_webhook"),  # recorded: no reason
        ("handlers.py", "handle_webhook"),  # rejected: with the reason
    ]


def test_rejections_are_logged_with_the_reason_and_what_the_event_claims_to_be(
    caplog: pytest.LogCaptureFixture, repository: FakeEventRepository
) -> None:
    """The README: every decision, rejected included, with event id, action and repository;
    the client's values repr()'d in the message, so that they cannot forge a line."""
    caplog.set_level(logging.INFO)
    forged = payloads.with_new_id(payloads.PUSH)
    forged["target"]["repository"] = "x\nFAKE recorded"
    call(payloads.body(forged), repository)
    [entry] = decisions(caplog)
    assert (entry["decision"], entry["route"]) == ("rejected", "webhook")
    assert "target.repository" in entry["reason"]
    assert (entry["event_id"], entry["action"]) == (forged["id"], "push")
    assert entry["repository"] == "x\nFAKE recorded"
    assert "\n" not in caplog.text.strip()
    assert repr("x\nFAKE recorded") in caplog.text


@pytest.mark.parametrize(
    "body", [b"", b"{not json", b'{"\xff": 1}', b"[" * 100_000 + b"]" * 100_000]
)
def test_a_body_that_cannot_be_read_is_a_rejected_decision_of_the_webhook_route(
    body: bytes, repository: FakeEventRepository, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert call(body, repository)[0] == 400
    [entry] = decisions(caplog)
    assert (entry["decision"], entry["route"]) == ("rejected", "webhook")


def test_a_rejected_events_claims_are_clipped_and_only_text_is_kept(
    caplog: pytest.LogCaptureFixture, repository: FakeEventRepository
) -> None:
    caplog.set_level(logging.INFO)
    huge = {**payloads.with_new_id(payloads.PUSH), "id": "a" * 100_000, "target": {"repository": 7}}
    assert call(payloads.body(huge), repository)[0] == 400
    [entry] = decisions(caplog)
    assert entry["event_id"] == "a" * MAX_LOGGED_CLAIM
    assert "repository" not in entry  # not text: nothing is claimed


def test_an_ignored_action_is_logged_with_the_events_id_and_repository(
    caplog: pytest.LogCaptureFixture, repository: FakeEventRepository
) -> None:
    caplog.set_level(logging.INFO)
    other = {"id": "ign-1", "action": "testaction", "target": {"repository": "team/api"}}
    assert call(payloads.body(other), repository)[0] == 202
    [entry] = decisions(caplog)
    assert entry == {
        "decision": "ignored",
        "route": "webhook",
        "event_id": "ign-1",
        "action": "testaction",
        "repository": "team/api",
    }


def test_log_arguments_are_not_formatted_when_the_level_is_off(
    caplog: pytest.LogCaptureFixture, repository: FakeEventRepository
) -> None:
    caplog.set_level(logging.WARNING)
    assert call(payloads.body(payloads.PUSH), repository)[0] == 201
    assert caplog.records == []


# --- the answers and decisions of the less common paths ----------------------------------------


@pytest.mark.parametrize(
    ("payload", "status"),
    [({"action": "ping"}, 204), ({"action": "tag_delete", "id": "x"}, 202), ({"action": 5}, 400)],
)
def test_a_body_at_the_limit_that_is_not_a_recorded_event_is_read_not_413(
    payload: dict[str, Any], status: int, repository: FakeEventRepository
) -> None:
    """The limit is the same for every body: one that takes the checks one at a time (ping,
    an unrecorded action, a bad one) is read up to MAX_BODY_BYTES too."""
    body = payloads.padded_body(payload, MAX_BODY_BYTES)
    assert len(body) == MAX_BODY_BYTES
    assert call(body, repository)[0] == status


def test_an_unrecorded_action_is_answered_ignored_with_the_reason(
    repository: FakeEventRepository,
) -> None:
    payload = payloads.with_new_id(payloads.PUSH)
    payload["action"] = "tag_delete"
    assert call(payloads.body(payload), repository) == (
        202,
        {"status": "ignored", "reason": "action 'tag_delete' is not recorded"},
    )


def test_a_ping_is_a_ping_decision_of_the_webhook_route(
    caplog: pytest.LogCaptureFixture, repository: FakeEventRepository
) -> None:
    caplog.set_level(logging.INFO)
    assert call(payloads.body({"action": "ping"}), repository)[0] == 204
    assert decisions(caplog) == [{"decision": "ping", "route": "webhook"}]


def test_an_event_the_store_refuses_is_a_rejected_decision_naming_it(
    caplog: pytest.LogCaptureFixture, repository: FakeEventRepository
) -> None:
    caplog.set_level(logging.INFO)
    repository.refused.add(payloads.PUSH["id"])
    assert call(payloads.body(payloads.PUSH), repository)[0] == 400
    [entry] = decisions(caplog)
    assert (entry["decision"], entry["route"], entry["event_id"]) == (
        "rejected",
        "webhook",
        payloads.PUSH["id"],
    )
    assert (entry["action"], entry["repository"]) == ("push", "hello-world")
    assert "fake refusal" in entry["reason"]


def test_an_event_lost_to_both_outages_is_an_unavailable_decision_naming_both(
    caplog: pytest.LogCaptureFixture, repository: FakeEventRepository
) -> None:
    caplog.set_level(logging.INFO)
    queue = FakeFallbackQueue()
    repository.unavailable = queue.unavailable = True
    result = handle_webhook(payloads.body(payloads.PUSH), repository, fallback=queue)
    assert result.status == 503
    [entry] = decisions(caplog)
    assert (entry["decision"], entry["route"], entry["event_id"]) == (
        "unavailable",
        "webhook",
        payloads.PUSH["id"],
    )
    assert "fake outage" in entry["reason"] and "fake queue outage" in entry["reason"]
    assert isinstance(entry["store_ms"], float) and entry["store_ms"] >= 0


def test_a_queued_event_is_a_queued_decision_with_the_outage_and_the_store_time(
    caplog: pytest.LogCaptureFixture, repository: FakeEventRepository
) -> None:
    caplog.set_level(logging.INFO)
    repository.unavailable = True
    result = handle_webhook(payloads.body(payloads.PUSH), repository, fallback=FakeFallbackQueue())
    assert result.status == 202
    [entry] = decisions(caplog)
    assert (entry["decision"], entry["route"]) == ("queued", "webhook")
    assert "fake outage" in entry["reason"] and "queued for replay" in entry["reason"]
    assert isinstance(entry["store_ms"], float) and entry["store_ms"] >= 0


# --- handlers._bounded_int: refused exactly where int() would refuse ---------------------------


@contextmanager
def int_digit_limit(limit: int) -> Iterator[None]:
    """Python's limit set as PYTHONINTMAXSTRDIGITS (or -X int_max_str_digits) sets it; 0 is
    none at all."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(limit)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(before)


@pytest.mark.parametrize("limit", [4300, 640, 5000, 0])
def test_a_number_is_refused_exactly_when_python_could_not_read_it(limit: int) -> None:
    """handlers._bounded_int: "Python refuses an integer of more than
    sys.get_int_max_str_digits() digits": the client is told so in its place, never for a
    number Python reads. Kills: `>=` for `>` (the limit's own length refused), the limit
    hard-coded to 4,300, and `limit and` dropped (with no limit, every number refused)."""
    with int_digit_limit(limit):
        for digits in sorted({1, max(limit - 1, 1), limit or 1, limit + 1, 5001}):
            for literal in ("7" * digits, "-" + "7" * digits):
                try:
                    expected = int(literal)
                except ValueError:
                    with pytest.raises(ValueError) as raised:
                        loads_strictly(f"[{literal}]")
                    assert str(raised.value) == (
                        f"a number has {digits} digits; at most {limit} are taken"
                    )
                else:
                    assert loads_strictly(f"[{literal}]") == [expected]
