"""Reconcile without a database: the history file, the counts, what is stored, what is logged."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from acr_webhook import __main__ as cli
from acr_webhook import runtime
from acr_webhook.acr_history import _origin
from acr_webhook.config import ReconcileSettings, Settings
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.reconcile import (
    MAX_ID_CHARS,
    THROTTLED_PAUSE_S,
    THROTTLED_TRIES,
    HistoryFileError,
    InvalidEntry,
    StoredEvents,
    read_history_file,
    reconcile_entries,
    reconcile_webhooks,
)
from acr_webhook.store import (
    DocumentRejectedError,
    HistoryUnreadableError,
    StoreNotFoundError,
    StoreThrottledError,
)
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.history import LEAKABLE, history_entry
from tests.support.logs import decisions
from tests.support.serve import app_environment, run_python
from tests.unit.test_messages import WrongKeyRepository

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# Settings of an app whose database nobody listens for: for what the app makes, not what it stores.
NO_DATABASE = Settings("https://127.0.0.1:1/", None, "acr", "events", None)
TARGET = ReconcileSettings(
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/reg",
    ("acrwebhook", "acrwebhook2"),
)


def run(entries: list[Any], repository: FakeEventRepository) -> tuple[Any, list[InvalidEntry]]:
    invalid: list[InvalidEntry] = []
    outcome = reconcile_entries(entries, repository, received_at=NOW, report_invalid=invalid.append)
    return outcome, invalid


def all_logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


def no_record(_entry: object) -> None:
    pass


# --- the core ------------------------------------------------------------------------------


def test_a_missed_event_is_stored_as_the_webhook_would_with_source_reconcile() -> None:
    repository = FakeEventRepository()
    push = payloads.with_new_id(payloads.PUSH)
    outcome, invalid = run([history_entry(push)], repository)

    assert (outcome.counts.summary(), outcome.unavailable, invalid) == (
        "recorded=1 already=0 skipped=0 invalid=0",
        None,
        [],
    )
    expected = to_document(AcrEvent.model_validate(push), received_at=NOW, source="reconcile")
    assert repository.documents == {push["id"]: expected}
    assert expected["source"] == "reconcile"
    assert expected["receivedAt"] == "2026-11-23T12:00:00.000000Z"


def test_who_pushed_and_from_where_are_kept_when_the_history_carries_them() -> None:
    repository = FakeEventRepository()
    push = payloads.with_new_id(payloads.PUSH)
    push["actor"] = {"name": "ci-bot"}
    push["request"]["addr"] = "203.0.113.7:51234"
    push["source"] = {"addr": "registry-node:5000", "instanceID": "n-1"}
    run([history_entry(push)], repository)

    document = repository.documents[push["id"]]
    assert (document["actor"], document["clientAddress"]) == ("ci-bot", "203.0.113.7:51234")
    assert (document["location"], document["registryResourceId"]) == (None, None)


def test_every_recorded_action_is_stored_and_ping_and_others_are_skipped() -> None:
    repository = FakeEventRepository()
    recorded = [payloads.with_new_id(p) for p in payloads.RECORDED.values()]
    ping = {**payloads.with_new_id(payloads.PUSH), "action": "ping"}
    other = {**payloads.with_new_id(payloads.PUSH), "action": "testaction"}
    outcome, _ = run([history_entry(p) for p in [*recorded, ping, other]], repository)

    assert outcome.counts.summary() == f"recorded={len(recorded)} already=0 skipped=2 invalid=0"
    assert set(repository.documents) == {p["id"] for p in recorded}


def test_a_second_run_changes_nothing_and_costs_one_write_attempt_per_entry() -> None:
    repository = FakeEventRepository()
    entries = [history_entry(payloads.with_new_id(payloads.PUSH)) for _ in range(3)]
    run(entries, repository)
    stored = json.dumps(repository.documents, sort_keys=True)
    calls_before = repository.add_calls

    outcome, _ = run(entries, repository)

    assert outcome.counts.summary() == "recorded=0 already=3 skipped=0 invalid=0"
    assert repository.add_calls - calls_before == 3
    assert json.dumps(repository.documents, sort_keys=True) == stored


def test_an_id_repeated_in_the_history_counts_recorded_once_then_already() -> None:
    repository = FakeEventRepository()
    push = payloads.with_new_id(payloads.PUSH)
    outcome, _ = run([history_entry(push), history_entry(push, status_code="200")], repository)
    assert outcome.counts.summary() == "recorded=1 already=1 skipped=0 invalid=0"
    assert len(repository.documents) == 1


def test_invalid_entries_are_counted_and_named_and_never_stop_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    repository = FakeEventRepository()
    no_timestamp = payloads.with_new_id(payloads.PUSH)
    del no_timestamp["timestamp"]
    no_message = {"id": "no-message", "eventResponseMessage": {"statusCode": "504"}}
    no_action = payloads.with_new_id(payloads.PUSH)
    del no_action["action"]
    good = payloads.with_new_id(payloads.PUSH)
    entries = [
        history_entry(no_timestamp),
        no_message,
        history_entry(no_action),
        history_entry(["not", "an", "object"]),
        history_entry(good),
    ]
    outcome, invalid = run(entries, repository)

    assert outcome.counts.summary() == "recorded=1 already=0 skipped=0 invalid=4"
    assert [str(entry) for entry in invalid] == [
        f"entry 0 (id {no_timestamp['id']!r}): "
        "eventRequestMessage.content.timestamp: Field required",
        "entry 1 (id 'no-message'): eventRequestMessage: required, must be an object",
        f"entry 2 (id {no_action['id']!r}): "
        "eventRequestMessage.content.action: required, must be a non-empty string",
        "entry 3 (id 'entry-without-content-id'): "
        "eventRequestMessage.content: required, must be an object",
    ]
    assert list(repository.documents) == [good["id"]]
    for secret in LEAKABLE:
        assert secret not in json.dumps(repository.documents)
        assert secret not in all_logged(caplog)


def test_an_entry_dated_more_than_a_day_after_the_reconcile_is_invalid() -> None:
    """The routes' rule (models.dated_ahead): ACR dates an event when it sends it, and one
    dated later would head every newest-first page. Exactly a day ahead is kept (clock skew).
    Kills: reconcile storing what the routes refuse."""
    repository = FakeEventRepository()
    ahead = {**payloads.with_new_id(payloads.PUSH), "timestamp": "2026-11-24T12:00:00.000001Z"}
    a_day = {**payloads.with_new_id(payloads.PUSH), "timestamp": "2026-11-24T12:00:00Z"}
    outcome, invalid = run([history_entry(ahead), history_entry(a_day)], repository)
    assert outcome.counts.summary() == "recorded=1 already=0 skipped=0 invalid=1"
    assert [str(entry) for entry in invalid] == [
        f"entry 0 (id {ahead['id']!r}): eventRequestMessage.content.timestamp: "
        "2026-11-24T12:00:00.000001Z is more than a day after the event was received "
        "(2026-11-23T12:00:00.000000Z); ACR dates an event when it sends it"
    ]
    assert list(repository.documents) == [a_day["id"]]


def test_an_entry_that_is_not_an_object_or_whose_action_is_not_text_is_invalid() -> None:
    """Not skipped as an unrecorded action: reported, so that the operator sees it."""
    repository = FakeEventRepository()
    numbered = payloads.with_new_id(payloads.PUSH)
    numbered["action"] = 5
    outcome, invalid = run([7, history_entry(numbered)], repository)
    assert outcome.counts.summary() == "recorded=0 already=0 skipped=0 invalid=2"
    assert [str(entry) for entry in invalid] == [
        "entry 0: must be an object, not int",
        f"entry 1 (id {numbered['id']!r}): "
        "eventRequestMessage.content.action: required, must be a non-empty string",
    ]
    assert repository.add_calls == 0


def test_an_invalid_entrys_long_id_is_cut_in_the_report() -> None:
    def without_timestamp(entry_id: str) -> dict[str, Any]:
        entry = history_entry(payloads.with_new_id(payloads.PUSH))
        entry["id"] = entry_id
        del entry["eventRequestMessage"]["content"]["timestamp"]
        return entry

    at_the_limit, longer = "a" * MAX_ID_CHARS, "b" * (MAX_ID_CHARS + 1)
    _, invalid = run(
        [without_timestamp(at_the_limit), without_timestamp(longer)], FakeEventRepository()
    )
    assert [entry.entry_id for entry in invalid] == [at_the_limit, "b" * MAX_ID_CHARS + "..."]


class RefusingRepository(FakeEventRepository):
    def add(self, document: dict[str, Any]) -> bool:
        raise DocumentRejectedError("refused by the database (400): bad document")


def test_a_rejected_entry_is_logged_with_the_event_id_action_and_repository_it_has(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logs carry the event id, repository and action wherever they are known: a refused
    event was fully validated, an invalid one may still name them."""
    caplog.set_level(logging.INFO)
    refused = payloads.with_new_id(payloads.PUSH)
    no_timestamp = payloads.with_new_id(payloads.DELETE)
    del no_timestamp["timestamp"]
    entries = [history_entry(refused), history_entry(no_timestamp)]
    history = ListedHistory({"acrwebhook": entries, "acrwebhook2": []})
    reconcile_webhooks(TARGET, RefusingRepository(), history, now=lambda: NOW)

    rejected = [r for r in caplog.records if r.__dict__.get("decision") == "rejected"]
    assert [
        (r.__dict__.get("event_id"), r.__dict__.get("action"), r.__dict__.get("repository"))
        for r in rejected
    ] == [
        (refused["id"], "push", refused["target"]["repository"]),
        (no_timestamp["id"], "delete", no_timestamp["target"]["repository"]),
    ]
    assert f"repository={refused['target']['repository']!r}" in rejected[0].getMessage()


def test_each_invalid_entry_is_a_rejected_decision_of_the_reconcile_route_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The fields operations.md queries; an entry without any id has no event_id at all."""
    caplog.set_level(logging.INFO)
    refused = payloads.with_new_id(payloads.PUSH)
    no_content = {"id": "no-content", "eventRequestMessage": None}
    no_id = {"eventRequestMessage": None}
    entries = [history_entry(refused), no_content, no_id]
    history = ListedHistory({"acrwebhook": entries, "acrwebhook2": []})
    reconcile_webhooks(TARGET, RefusingRepository(), history, now=lambda: NOW)

    assert decisions(caplog) == [
        {
            "decision": "rejected",
            "route": "reconcile",
            "event_id": refused["id"],
            "action": "push",
            "repository": refused["target"]["repository"],
            "reason": "refused by the store: refused by the database (400): bad document",
        },
        {
            "decision": "rejected",
            "route": "reconcile",
            "event_id": "no-content",  # the history entry's id: the content has none to claim
            "reason": "eventRequestMessage: required, must be an object",
        },
        {
            "decision": "rejected",
            "route": "reconcile",
            "reason": "eventRequestMessage: required, must be an object",
        },
    ]


def test_an_entry_the_store_refuses_is_counted_invalid_and_the_run_goes_on() -> None:
    refused, also_refused = (payloads.with_new_id(payloads.PUSH) for _ in range(2))
    outcome, invalid = run(
        [history_entry(refused), history_entry(also_refused)], RefusingRepository()
    )

    assert (outcome.counts.summary(), outcome.unavailable) == (
        "recorded=0 already=0 skipped=0 invalid=2",
        None,
    )
    assert [str(entry) for entry in invalid] == [
        f"entry {index} (id {payload['id']!r}): "
        "refused by the store: refused by the database (400): bad document"
        for index, payload in enumerate([refused, also_refused])
    ]


class RefusingWithActivityIds(FakeEventRepository):
    """Refuses as Cosmos DB words it: the service's activity id differs in every answer."""

    def add(self, document: dict[str, Any]) -> bool:
        raise DocumentRejectedError(
            f"refused by the database (400): bad document ActivityId: {document['id']}",
            cause="refused by the database (CosmosHttpResponseError 400)",
        )


def test_refusals_of_one_kind_share_a_reason_and_the_report_keeps_the_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """operations.md groups decisions by reason: one row for one kind of refusal. The line the
    CLI prints (and the log message) still says what the database said."""
    caplog.set_level(logging.INFO)
    refused = [payloads.with_new_id(payloads.PUSH) for _ in range(2)]
    outcome, invalid = run([history_entry(p) for p in refused], RefusingWithActivityIds())
    assert outcome.counts.summary() == "recorded=0 already=0 skipped=0 invalid=2"
    assert {entry.reason for entry in invalid} == {
        "refused by the store: refused by the database (CosmosHttpResponseError 400)"
    }
    assert [str(entry).split("ActivityId: ")[1] for entry in invalid] == [p["id"] for p in refused]
    reconcile_webhooks(
        TARGET,
        RefusingWithActivityIds(),
        ListedHistory({"acrwebhook": [history_entry(p) for p in refused], "acrwebhook2": []}),
        now=lambda: NOW,
    )
    rejected = [r for r in caplog.records if r.__dict__.get("decision") == "rejected"]
    assert len({r.__dict__["reason"] for r in rejected}) == 1
    assert all("ActivityId: " in r.getMessage() for r in rejected)


def test_content_that_is_a_string_but_not_json_is_invalid_and_says_so() -> None:
    """The spec types content as an object; a serialised one is accepted, a broken one is not
    'missing': the report says what is wrong with it."""
    repository = FakeEventRepository()
    serialised = payloads.with_new_id(payloads.PUSH)
    broken = history_entry(payloads.with_new_id(payloads.PUSH))
    broken["eventRequestMessage"]["content"] = '{"action": "push", '
    entries = [history_entry(json.dumps(serialised)), broken]
    entries[0]["id"] = serialised["id"]
    outcome, invalid = run(entries, repository)

    assert outcome.counts.summary() == "recorded=1 already=0 skipped=0 invalid=1"
    assert list(repository.documents) == [serialised["id"]]
    assert [str(entry) for entry in invalid] == [
        f"entry 1 (id {broken['id']!r}): eventRequestMessage.content: is a string but not JSON:"
        " Expecting property name enclosed in double quotes: line 1 column 20 (char 19)"
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"action": "push", "target": {"size": NaN}}', "not JSON: NaN is not a JSON value"),
        ('{"action": "push", "n": ' + "9" * 4301 + "}", "not JSON: a number has 4301 digits"),
        ("[" * 100_000, "is a string nested too deeply"),
    ],
    ids=["NaN", "digits", "nesting"],
)
def test_content_as_a_string_is_read_as_a_webhook_body_is(content: str, problem: str) -> None:
    """Held to RFC 8259 as the webhook route and Event Grid's text data are, so the same text is
    the same verdict whichever way it arrives."""
    entry = history_entry(payloads.with_new_id(payloads.PUSH))
    entry["eventRequestMessage"]["content"] = content
    repository = FakeEventRepository()
    outcome, invalid = run([entry], repository)

    assert outcome.counts.summary() == "recorded=0 already=0 skipped=0 invalid=1"
    assert repository.documents == {}
    assert "eventRequestMessage.content: " in str(invalid[0])
    assert problem in str(invalid[0])


class ThrottledFor(FakeEventRepository):
    """Cosmos DB throttling the first ``tries`` writes past the client's own retries."""

    def __init__(self, tries: int) -> None:
        super().__init__()
        self.tries = tries

    def add(self, document: dict[str, Any]) -> bool:
        if self.add_calls < self.tries:
            self.add_calls += 1
            raise StoreThrottledError("429 Too Many Requests", cause="throttled")
        return super().add(document)


def test_a_throttled_write_is_tried_again_a_second_later_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr("acr_webhook.reconcile.time.sleep", pauses.append)
    repository = ThrottledFor(tries=THROTTLED_TRIES - 1)
    entries = [history_entry(payloads.with_new_id(payloads.PUSH)) for _ in range(2)]
    outcome, _ = run(entries, repository)
    assert (outcome.counts.summary(), outcome.unavailable) == (
        "recorded=2 already=0 skipped=0 invalid=0",
        None,
    )
    assert pauses == [THROTTLED_PAUSE_S] * (THROTTLED_TRIES - 1)


def test_a_write_throttled_on_every_try_stops_the_run_as_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("acr_webhook.reconcile.time.sleep", lambda _seconds: None)
    repository = ThrottledFor(tries=10**6)
    outcome, _ = run([history_entry(payloads.with_new_id(payloads.PUSH))] * 2, repository)
    assert outcome.unavailable == "429 Too Many Requests"
    assert repository.add_calls == THROTTLED_TRIES  # then the run stops


def test_an_unreachable_store_stops_the_run_with_the_counts_so_far(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = FakeEventRepository()
    first, second = (history_entry(payloads.with_new_id(payloads.PUSH)) for _ in range(2))
    run([first], repository)
    repository.unavailable = True
    caplog.clear()

    outcome, _ = run(
        [first, second, history_entry(payloads.with_new_id(payloads.PUSH))], repository
    )

    assert outcome.unavailable == "fake outage"
    assert outcome.counts.summary() == "recorded=0 already=0 skipped=0 invalid=0"
    assert repository.add_calls == 2  # the first failure ends it
    # The event the run stopped at is an unavailable decision (operations.md counts them).
    content = first["eventRequestMessage"]["content"]
    assert decisions(caplog) == [
        {
            "decision": "unavailable",
            "route": "reconcile",
            "event_id": content["id"],
            "action": "push",
            "repository": content["target"]["repository"],
            "reason": "fake outage",
        }
    ]


# --- the events file -----------------------------------------------------------------------


def test_the_file_az_writes_is_read_in_any_encoding_windows_writes(tmp_path: Path) -> None:
    entries = [history_entry(payloads.with_new_id(payloads.PUSH))]
    for encoding in ("utf-8", "utf-8-sig", "utf-16"):
        path = tmp_path / f"{encoding}.json"
        path.write_text(json.dumps(entries), encoding=encoding)
        assert read_history_file(path) == entries


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no such file"),
        (b"", "is not JSON"),
        (b"[{", "is not JSON"),
        (b"\xff\x00\xfe", "is not UTF-8 text (byte 0)"),
        (b"\xff\xfe[\x00]", "byte order mark but is not UTF-16 text (byte 4)"),
        (b"\xff\xfe[\x00\x00\xd8]\x00", "is not UTF-16 text (byte 4)"),  # an unpaired surrogate
        (b'{"value": []}', "must be a JSON array of webhook events"),
        (b"[1]", "item 0 is a int"),
        (b"{}", "must be a JSON array of webhook events"),
        (b"5", "not a JSON int"),
        (b"[" * 100_000, "is nested too deeply"),
        # What az never writes, read as a webhook body is: RFC 8259, the digit limit named.
        (b'[{"id": NaN}]', "is not JSON (NaN is not a JSON value)"),
        (b"[" + b"1" * 5000 + b"]", "is not JSON (a number has 5000 digits; at most 4300"),
    ],
    ids=lambda value: value[:16] if isinstance(value, bytes) else None,
)
def test_an_unusable_file_is_one_line_saying_why(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "events.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(HistoryFileError) as raised:
        read_history_file(path)
    message = str(raised.value)
    assert reason in message
    assert message.startswith(str(path))
    assert "\n" not in message


def test_a_file_that_cannot_be_read_is_one_line_saying_why(tmp_path: Path) -> None:
    with pytest.raises(HistoryFileError) as raised:
        read_history_file(tmp_path)  # a directory
    assert str(raised.value).startswith(f"{tmp_path}: cannot be read (")


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing-file", "events.json: no such file"),
        ("no-settings", "configuration error: COSMOS_ENDPOINT is not set"),
    ],
)
def test_cli_exit_2_with_a_one_line_reason(
    setup: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if setup == "no-settings":
        (tmp_path / "events.json").write_text("[]")
    code = cli.main(["reconcile", "--events-file", str(tmp_path / "events.json")])
    out, err = capsys.readouterr()
    assert code == 2
    assert (out, err.count("\n")) == ("", 1)
    assert expected in err


def test_ctrl_c_stops_a_command_with_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(_path: Path) -> list[dict[str, object]]:
        raise KeyboardInterrupt

    monkeypatch.setattr("acr_webhook.reconcile.read_history_file", interrupted)
    code = cli.main(["reconcile", "--events-file", str(tmp_path / "events.json")])
    assert (code, capsys.readouterr()) == (130, ("", "interrupted\n"))


# --- the timer's run -----------------------------------------------------------------------


class ListedHistory:
    """A WebhookHistory over lists, failing after ``fail_after`` entries when set."""

    def __init__(self, by_webhook: dict[str, list[dict[str, Any]]], fail_after: int = -1):
        self.by_webhook = by_webhook
        self.fail_after = fail_after
        self.asked: list[str] = []

    def entries(self, webhook_name: str) -> Iterator[dict[str, Any]]:
        self.asked.append(webhook_name)
        for index, entry in enumerate(self.by_webhook[webhook_name]):
            if index == self.fail_after:
                raise HistoryUnreadableError("HttpResponseError: ARM said 429")
            yield entry


def test_not_configured_logs_so_and_does_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    repository = FakeEventRepository()
    assert reconcile_webhooks(None, repository, None) == {}
    assert repository.add_calls == 0
    assert "reconcile is not configured" in caplog.text


def test_each_webhook_is_reconciled_with_one_summary_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    repository = FakeEventRepository()
    shared = history_entry(payloads.with_new_id(payloads.PUSH))
    history = ListedHistory(
        {
            "acrwebhook": [shared, history_entry({**payloads.PUSH, "action": "ping"})],
            "acrwebhook2": [shared, history_entry(payloads.with_new_id(payloads.DELETE))],
        }
    )
    outcomes = reconcile_webhooks(TARGET, repository, history, now=lambda: NOW)

    assert {name: o.counts.summary() for name, o in outcomes.items()} == {
        "acrwebhook": "recorded=1 already=0 skipped=1 invalid=0",
        "acrwebhook2": "recorded=1 already=1 skipped=0 invalid=0",
    }
    summaries = [r.getMessage() for r in caplog.records if "reconcile of webhook" in r.getMessage()]
    assert summaries == [
        "reconcile of webhook 'acrwebhook': recorded=1 already=0 skipped=1 invalid=0",
        "reconcile of webhook 'acrwebhook2': recorded=1 already=1 skipped=0 invalid=0",
    ]
    decisions = [r.__dict__.get("decision") for r in caplog.records]
    assert decisions.count("reconciled") == 2
    assert all(
        r.__dict__["route"] == "reconcile" for r in caplog.records if r.__dict__.get("decision")
    )


def test_a_history_that_fails_midway_keeps_what_was_read_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = FakeEventRepository()
    entries = [history_entry(payloads.with_new_id(payloads.PUSH)) for _ in range(3)]
    history = ListedHistory({"acrwebhook": entries, "acrwebhook2": entries}, fail_after=2)
    outcomes = reconcile_webhooks(TARGET, repository, history, now=lambda: NOW)

    assert len(repository.documents) == 2
    assert outcomes["acrwebhook2"].counts.summary() == "recorded=0 already=2 skipped=0 invalid=0"
    assert "history unreadable (HttpResponseError: ARM said 429)" in caplog.text


def test_an_unreachable_store_ends_the_timer_run(caplog: pytest.LogCaptureFixture) -> None:
    repository = FakeEventRepository()
    repository.unavailable = True
    entries = [history_entry(payloads.with_new_id(payloads.PUSH))]
    history = ListedHistory({"acrwebhook": entries, "acrwebhook2": entries})
    outcomes = reconcile_webhooks(TARGET, repository, history, now=lambda: NOW)

    assert list(outcomes) == ["acrwebhook"]
    assert history.asked == ["acrwebhook"]
    assert "stopped: database unavailable" in caplog.text


def test_the_timer_s_later_runs_skip_what_an_earlier_run_found_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each run wrote every entry of the history again (a create answered 409, and a read when
    the entry carries who pushed), every 5 minutes: the process now remembers what is stored."""
    import function_app

    repository = FakeEventRepository()
    entries = [history_entry(payloads.with_new_id(payloads.PUSH)) for _ in range(3)]
    history = ListedHistory({"acrwebhook": entries, "acrwebhook2": []})
    configured = dataclasses.replace(NO_DATABASE, reconcile=TARGET)
    monkeypatch.setattr(function_app, "settings", lambda: configured)
    monkeypatch.setattr(function_app, "event_repository", lambda: repository)
    monkeypatch.setattr(function_app, "webhook_history", lambda: history)
    runtime.reconciled_events.cache_clear()
    try:
        function_app.reconcile_history(TimerRequest())
        assert (len(repository.documents), repository.add_calls) == (3, 3)
        entries.append(history_entry(payloads.with_new_id(payloads.PUSH)))  # one more push

        function_app.reconcile_history(TimerRequest())
    finally:
        runtime.reconciled_events.cache_clear()

    assert (len(repository.documents), repository.add_calls) == (4, 4)


def test_what_is_remembered_is_what_the_store_holds_and_the_oldest_goes_first() -> None:
    stored = StoredEvents(limit=2)
    kept, refused, lost = (payloads.with_new_id(payloads.PUSH) for _ in range(3))
    outcome = reconcile_entries(
        [history_entry(kept)],
        FakeEventRepository(),
        received_at=NOW,
        report_invalid=lambda _entry: None,
        stored=stored,
    )
    assert outcome.counts.summary() == "recorded=1 already=0 skipped=0 invalid=0"
    for payload, repository in ((refused, RefusingRepository()), (lost, FakeEventRepository())):
        if payload is lost:
            repository.unavailable = True
        reconcile_entries(
            [history_entry(payload)],
            repository,
            received_at=NOW,
            report_invalid=lambda _entry: None,
            stored=stored,
        )
    key = (payloads.PUSH["target"]["repository"], kept["id"])
    assert [k in stored for k in (key, (key[0], refused["id"]), (key[0], lost["id"]))] == [
        True,
        False,  # refused: counted invalid on every run, as the first time
        False,  # not stored: the next run tries it again
    ]
    stored.add((key[0], "second"))
    stored.add((key[0], "third"))
    assert key not in stored and (key[0], "second") in stored and (key[0], "third") in stored


def test_the_apps_history_is_one_per_process_and_its_sdks_wait_for_the_first_read(
    tmp_path: Path,
) -> None:
    """In a fresh process, as the worker imports function_app: neither the management SDK nor
    azure.identity is imported by the app or by making its history, only by reading one."""
    probe = (
        "import json, sys; import function_app; from acr_webhook import runtime; "
        "heavy = ('azure.mgmt', 'azure.identity', 'acr_webhook.acr_history'); "
        "loaded = lambda: sorted({m for m in sys.modules if m.startswith(heavy)}); "
        "at_import = loaded(); history = runtime.webhook_history(); "
        "print(json.dumps([at_import, loaded(), history is runtime.webhook_history()]))"
    )
    env = {
        **app_environment(NO_DATABASE, "APPLICATIONINSIGHTS_", "ACR_"),
        "ACR_REGISTRY_ID": TARGET.registry_id,
        "ACR_WEBHOOK_NAMES": ",".join(TARGET.webhook_names),
    }
    result = run_python(["-c", probe], tmp_path, env)

    assert result.returncode == 0, result.stderr
    at_import, after_making, same = json.loads(result.stdout.splitlines()[-1])
    assert at_import == []
    assert after_making == ["acr_webhook.acr_history"]
    assert same is True


def test_without_reconcile_settings_the_app_has_no_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "settings", lambda: NO_DATABASE)
    runtime.webhook_history.cache_clear()
    try:
        assert runtime.webhook_history() is None
    finally:
        runtime.webhook_history.cache_clear()


def test_a_link_with_the_default_port_spelled_out_is_on_the_management_endpoint() -> None:
    """ARM may write the port of its own address in a nextLink: still the same endpoint, while
    another port or scheme is not (tests/integration: links to another host are not followed)."""
    endpoint = _origin("https://Management.Azure.com/")
    assert _origin("https://management.azure.com:443/subscriptions/s?api-version=1") == endpoint
    assert _origin("https://management.azure.com:8443/") != endpoint
    assert _origin("http://management.azure.com/") != endpoint


# --- a missing container: the run stops, and the command exits 2 --------------------------------


class MissingStore(FakeEventRepository):
    """A store whose container does not exist: every write is answered 404."""

    def add(self, document: dict[str, Any]) -> bool:
        self.add_calls += 1
        raise StoreNotFoundError("CosmosResourceNotFoundError: 404", cause="404")


def test_the_outcome_says_the_store_is_missing_only_when_it_is() -> None:
    """ReconcileOutcome.store_missing: "The store answered that the database or container
    does not exist". Kills it always False, always True, True by default, and `unavailable`
    left None for it (the timer stops on `unavailable`)."""
    entries = [history_entry(payloads.with_new_id(payloads.PUSH)) for _ in range(2)]

    def outcome(repository: FakeEventRepository) -> tuple[bool, str | None, int]:
        result = reconcile_entries(entries, repository, received_at=NOW, report_invalid=print)
        return result.store_missing, result.unavailable, repository.add_calls

    assert outcome(FakeEventRepository()) == (False, None, 2)
    unreachable = FakeEventRepository()
    unreachable.unavailable = True
    assert outcome(unreachable) == (False, "fake outage", 1)
    assert outcome(MissingStore()) == (True, "CosmosResourceNotFoundError: 404", 1)


def test_the_timer_stops_at_a_missing_store_as_at_an_unreachable_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """reconcile_webhooks "stops at the first webhook whose run found the database
    unreachable": a missing container is answered for every webhook alike."""
    entries = [history_entry(payloads.with_new_id(payloads.PUSH))]
    history = ListedHistory({"acrwebhook": entries, "acrwebhook2": entries})
    outcomes = reconcile_webhooks(TARGET, MissingStore(), history, now=lambda: NOW)
    assert list(outcomes) == ["acrwebhook"]
    assert history.asked == ["acrwebhook"]
    stopped = caplog.records[-1]
    assert stopped.levelno == logging.ERROR
    assert "does not exist" in stopped.getMessage()  # a setting, not "database unavailable"


def test_reconcile_into_a_missing_container_is_exit_2_naming_both_after_the_summary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs: exit 2 is a setting to fix; the summary line is still printed (stdout, last).
    Kills the exit 2 dropped (exit 1), the 'run again' message kept for it, and the summary
    left out."""
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("COSMOS_CONTAINER", "evnets")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _s: MissingStore())
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps([history_entry(payloads.with_new_id(payloads.PUSH))]))

    code = cli.main(["reconcile", "--events-file", str(events_file)])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == "recorded=0 already=0 skipped=0 invalid=0\n"
    assert "database 'acr' or container 'evnets' does not exist at https://127.0.0.1:1/" in err
    assert "run provision" in err
    assert "run reconcile again" not in err


# --- reconcile: what the timer's runs remember --------------------------------------------------


def test_a_later_run_counts_what_it_skips_as_already_stored() -> None:
    """Mutants killed: a remembered event skipped without being counted, or counted as
    recorded. The summary said already=N for an unchanged history before; it still should."""
    stored = StoredEvents()
    entries = [history_entry(payloads.with_new_id(payloads.PUSH)) for _ in range(2)]
    repository = FakeEventRepository()
    for _run in range(2):
        outcome = reconcile_entries(
            entries, repository, received_at=NOW, report_invalid=no_record, stored=stored
        )

    assert outcome.counts.summary() == "recorded=0 already=2 skipped=0 invalid=0"
    assert repository.add_calls == 2


def test_events_a_run_finds_stored_are_remembered_too() -> None:
    """Mutant killed: only created events remembered. Those the webhook stored first are most
    of a history, and each cost a create answered 409 (and a read) on every run."""
    push = payloads.with_new_id(payloads.PUSH)
    repository = FakeEventRepository()
    repository.add(to_document(AcrEvent.model_validate(push), received_at=NOW, source="webhook"))
    stored = StoredEvents()
    for _run in range(2):
        reconcile_entries(
            [history_entry(push)],
            repository,
            received_at=NOW,
            report_invalid=no_record,
            stored=stored,
        )

    assert repository.add_calls == 2  # the webhook's, and the first run's


def test_a_refused_set_up_ends_the_timer_s_run(caplog: pytest.LogCaptureFixture) -> None:
    """Mutant killed: the timer going on to the next webhook after a refused key. Every
    webhook's run would be refused the same (a setting to fix), each costing a history read
    and a write; an outage ends the run the same way (test_an_unreachable_store_ends_...)."""
    entries = [history_entry(payloads.with_new_id(payloads.PUSH))]
    history = ListedHistory({"acrwebhook": entries, "acrwebhook2": entries})

    outcomes = reconcile_webhooks(TARGET, WrongKeyRepository(), history, now=lambda: NOW)

    assert list(outcomes) == history.asked == ["acrwebhook"]
    assert "COSMOS_KEY" in caplog.text
