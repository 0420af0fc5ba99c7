"""Reconcile, property-based: random ACR delivery histories in the forms the docs and the
reference describe (every recorded action, pings and unrecorded actions, empty tags, no user
agent, chart events without ``request``, 0-9 fractional digits and UTC offsets, unknown fields,
content serialised as a string), broken entries of every kind, the same event id repeated or
in two repositories, events the store already holds with or without who pushed, and a store
that refuses some documents or goes down part-way (a write that times out may still land).

Each run is checked against a model built from the docs, not from reconcile.py:

- docs/delivery.md "Reconcile from ACR's delivery history": every recorded event the record
  lacks is stored "through the webhook route's own validation and document mapping, with
  source: reconcile and receivedAt the time of the reconcile"; an event already stored is
  "rewritten only when it lacks a field the history has"; "running it again changes nothing";
  the counts ``recorded/already/skipped/invalid`` mean what the By-hand paragraph says (an id
  repeated counts recorded once, then already); invalid entries are listed "one line each" and
  "do not stop the run"; the database becoming unreachable stops it ("run it again later").
- README "Documents": the mapping of each field (the independent oracle below), and
  "never overwriting a value, never a second document" for a later delivery.
- README "Security and reliability" and delivery.md: the webhook URL (``?code=``) and the
  headers of a history entry never reach a log or a document.
- delivery.md (timer): one summary line per webhook, one ``reconciled`` decision per event
  stored; README "Logs": the already-recorded ones are counted in the summary instead of a
  ``duplicate`` each; operations.md: a ``rejected`` decision with its reason per invalid entry
  and an ``unavailable`` one for the event the run stopped at.
"""

from __future__ import annotations

import json
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Literal
from unittest import mock

from azure.cosmos.exceptions import CosmosHttpResponseError
from hypothesis import given, settings
from hypothesis import strategies as st

import acr_webhook.repository
from acr_webhook import __main__ as cli
from acr_webhook.config import ReconcileSettings, Settings
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import MAX_SIZE, MAX_USER_AGENT_LENGTH
from acr_webhook.reconcile import (
    InvalidEntry,
    ReconcileOutcome,
    reconcile_entries,
    reconcile_webhooks,
)
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.store import DocumentRejectedError, RepositoryUnavailableError
from tests.support.fakes import FakeEventRepository, store_or_fill_in
from tests.support.history import LEAKABLE, history_entry
from tests.support.logs import on_app_logger
from tests.support.properties import DETERMINISTIC

PROPERTIES = settings(DETERMINISTIC, max_examples=80)
# Runs and deliveries happen after the years drawn (up to 9998): no event is then dated ahead
# of its receipt, which the routes and reconcile refuse (models.dated_ahead).
NOW = datetime(9999, 12, 30, 12, 0, tzinfo=UTC)
SEEDED_AT = NOW - timedelta(hours=1)
LATER = NOW + timedelta(minutes=5, microseconds=250_000)
SUMMARY = re.compile(r"^recorded=(\d+) already=(\d+) skipped=(\d+) invalid=(\d+)$")
CONTENT = "eventRequestMessage.content"
TARGET = ReconcileSettings(
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/reg",
    ("acrwebhook", "acrwebhookeu"),
)
# A history entry also carries the secrets below in places reconcile must never read.
EXTRA_LEAKABLE = "history-response-header-must-not-leak"

# --- drawing histories ---------------------------------------------------------------------

# Few ids and repositories, so that ids repeat, within a repository and across two.
EVENT_IDS = (
    "cb8c3971-9adc-488b-aaaa-43cbb4974ff5",
    "afc359ce-df7f-4e32-bdde-1ff8aa80927b",
    "évènement 7",
    ".hidden",
    "x" * 255,
)
REPOSITORIES = ("hello-world", "team/api", "repo", "r" * 255)
MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.acr.helm.chart",
)
UNRECORDED_ACTIONS = ("testaction", "Push", "PUSH", "tag_delete", "chart_pull", " push", "pong")
TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=12)
SIZES = st.integers(0, MAX_SIZE) | st.sampled_from((0, 524, MAX_SIZE))
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | TEXT
UNKNOWN = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


@dataclass(frozen=True)
class Payload:
    """A valid recorded webhook payload and the stored timestamp the docs promise for it."""

    content: dict[str, Any]
    stored_timestamp: str

    @property
    def key(self) -> tuple[str, str]:
        """What a document is known by: its id within its partition (the repository)."""
        return (self.content["id"], self.content["target"]["repository"])


Kind = Literal["record", "skip", "invalid"]


@dataclass(frozen=True)
class Drawn:
    entry: Any
    kind: Kind
    payload: Payload | None = None
    # For an invalid entry: what its report line must name.
    problem: str = ""


def iso(moment: datetime) -> str:
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
    )


@st.composite
def timestamps(draw: st.DrawFn) -> tuple[str, str]:
    """An event time as ACR writes it (0-9 fractional digits, Z, an offset or none) and the
    stored form: UTC, microseconds, fixed width (README "Documents")."""
    moment = draw(st.datetimes(datetime(1001, 1, 2), datetime(9998, 12, 30))).replace(microsecond=0)
    digits = draw(st.text("0123456789", max_size=9))
    zone = draw(st.sampled_from(("Z", "naive", "offset", "offset")))
    minutes = draw(st.integers(-14 * 60, 14 * 60)) if zone == "offset" else 0
    local = moment + timedelta(minutes=minutes)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "")
    if zone == "Z":
        text += "Z"
    elif zone == "offset":
        sign = "-" if minutes < 0 else "+"
        text += f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    stored = moment.replace(microsecond=int(digits[:6].ljust(6, "0")))
    return text, iso(stored)


def maybe(draw: st.DrawFn, into: dict[str, Any], name: str, values: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        into[name] = draw(values)


@st.composite
def recorded_payloads(draw: st.DrawFn) -> Payload:
    action = draw(st.sampled_from(("push", "delete", "chart_push", "chart_delete", "quarantine")))
    timestamp, stored = draw(timestamps())
    target: dict[str, Any] = {"repository": draw(st.sampled_from(REPOSITORIES))}
    maybe(draw, target, "mediaType", st.sampled_from(MEDIA_TYPES))
    maybe(draw, target, "digest", st.just("sha256:" + "ab" * 32) | TEXT)
    maybe(draw, target, "size", SIZES)
    maybe(draw, target, "length", SIZES)
    # Push by digest: an empty tag; a delete: none at all.
    maybe(draw, target, "tag", st.sampled_from(("", "v1", "latest")) | TEXT)
    if action.startswith("chart_"):
        maybe(draw, target, "name", TEXT)
        maybe(draw, target, "version", TEXT)
    maybe(draw, target, "url", TEXT)  # unknown to the record
    content: dict[str, Any] = {
        "id": draw(st.sampled_from(EVENT_IDS)),
        "timestamp": timestamp,
        "action": action,
        "target": target,
    }
    # Legacy chart events come without a request; others may lack any of its fields.
    if (not action.startswith("chart_") or draw(st.booleans())) and draw(st.integers(0, 5)):
        request: dict[str, Any] = {}
        maybe(draw, request, "id", TEXT)
        maybe(draw, request, "host", st.just("myregistry.azurecr.io") | TEXT)
        maybe(draw, request, "method", st.sampled_from(("PUT", "DELETE")))
        maybe(
            draw,
            request,
            "useragent",
            st.just("docker/24.0.7 " * 40) | st.text(max_size=20),  # cut at 512
        )
        maybe(draw, request, "addr", st.just("203.0.113.7:51234") | st.just(""))
        maybe(draw, request, "future", UNKNOWN)
        content["request"] = request
    maybe(draw, content, "actor", st.just({}) | st.fixed_dictionaries({"name": TEXT}))
    maybe(draw, content, "source", st.just({"addr": "registry-node:5000", "instanceID": "n-1"}))
    maybe(draw, content, "newField", UNKNOWN)
    return Payload(content, stored)


def wrapped(content: Any, entry_id: Any = None) -> dict[str, Any]:
    """A history entry as ``az`` prints it, with secrets in its URL and headers."""
    entry = history_entry(content, status_code=str(504))
    if entry_id is not None:
        entry["id"] = entry_id
    entry["eventResponseMessage"]["headers"]["X-Echo"] = EXTRA_LEAKABLE
    return entry


@st.composite
def recorded_entries(draw: st.DrawFn) -> Drawn:
    payload = draw(recorded_payloads())
    # The spec types content as an object; a serialised one is the same payload.
    serialised = draw(st.integers(0, 4)) == 0
    content = json.dumps(payload.content) if serialised else payload.content
    entry = wrapped(content, payload.content["id"])
    return Drawn(entry, "record", payload)


@st.composite
def skipped_entries(draw: st.DrawFn) -> Drawn:
    """A ping (its payload undocumented: anything but its action) or an unrecorded action."""
    action = draw(st.just("ping") | st.sampled_from(UNRECORDED_ACTIONS))
    content = draw(st.dictionaries(st.sampled_from(("id", "target", "x", "timestamp")), UNKNOWN))
    if draw(st.booleans()):
        content = {**draw(recorded_payloads()).content}
    content["action"] = action
    return Drawn(wrapped(content), "skip")


def broken_payloads() -> st.SearchStrategy[tuple[dict[str, Any], str]]:
    """A recorded payload with one thing wrong with it, and the field its report names."""

    def without(path: str) -> Callable[[Payload], tuple[dict[str, Any], str]]:
        def remove(payload: Payload) -> tuple[dict[str, Any], str]:
            content = json.loads(json.dumps(payload.content))
            *parents, last = path.split(".")
            node = content
            for name in parents:
                node = node[name]
            del node[last]
            return content, f"{CONTENT}.{path}: Field required"

        return remove

    def setting(path: str, value: Any) -> Callable[[Payload], tuple[dict[str, Any], str]]:
        def put(payload: Payload) -> tuple[dict[str, Any], str]:
            content = json.loads(json.dumps(payload.content))
            *parents, last = path.split(".")
            node = content
            for name in parents:
                node = node.setdefault(name, {})
            node[last] = value
            return content, f"{CONTENT}.{path}:"

        return put

    nested: Any = "deep"
    for _ in range(60):
        nested = [nested]
    breakers = [
        without("id"),
        without("timestamp"),
        without("target"),
        without("target.repository"),
        setting("id", 5),
        setting("id", "a/b"),
        setting("id", "ends "),
        setting("id", ".."),
        setting("id", "tab\there"),
        setting("timestamp", "yesterday"),
        setting("timestamp", "0999-12-31T23:59:59Z"),
        setting("timestamp", "1000-01-01T00:30:00+01:00"),
        setting("target", ["repository", "hello-world"]),
        setting("target.repository", ""),
        setting("target.repository", {"deep": nested}),
        setting("target.size", "12"),
        setting("target.size", True),
        setting("target.size", -1),
        setting("target.length", 1.5),
        setting("target.size", MAX_SIZE + 1),
        setting("target.tag", "t" * 129),
        setting("target.digest", "sha256:\n"),
        setting("request", "PUT"),
        setting("request.useragent", 7),
        setting("actor", "ci-bot"),
    ]
    return st.tuples(recorded_payloads(), st.sampled_from(breakers)).map(
        lambda pair: pair[1](pair[0])
    )


@st.composite
def invalid_entries(draw: st.DrawFn, objects_only: bool) -> Drawn:
    kinds = ["message", "content", "string", "action", "payload", "payload"]
    if not objects_only:
        kinds.append("not-an-object")
    kind = draw(st.sampled_from(kinds))
    entry_id = draw(st.sampled_from(EVENT_IDS) | st.none())
    entry: Any
    if kind == "not-an-object":
        entry = draw(st.sampled_from((7, None, "entry", [1, 2], 1.5)))
        return Drawn(entry, "invalid", problem="must be an object")
    if kind == "message":
        entry = wrapped({})
        message: Any = draw(st.sampled_from((None, "POST", [], "missing")))
        if message == "missing":
            del entry["eventRequestMessage"]
        else:
            entry["eventRequestMessage"] = message
        return Drawn(entry, "invalid", problem="eventRequestMessage: required, must be an object")
    if kind == "content":
        unusable: Any = draw(st.sampled_from((None, 5, True, ["push"], "missing")))
        entry = wrapped(unusable, entry_id)
        if unusable == "missing":
            del entry["eventRequestMessage"]["content"]
        return Drawn(entry, "invalid", problem=f"{CONTENT}: required, must be an object")
    if kind == "string":
        text = draw(st.sampled_from(('{"action": "push", ', "not json", "[" * 50_000, "")))
        not_object = draw(st.sampled_from(("[1]", "5", '"push"', "null")))
        if draw(st.booleans()):
            problem = "nested too deeply" if text.startswith("[[") else "is a string but not JSON"
            return Drawn(wrapped(text, entry_id), "invalid", problem=problem)
        return Drawn(wrapped(not_object, entry_id), "invalid", problem="must be an object")
    if kind == "action":
        content: dict[str, Any] = {**draw(recorded_payloads()).content}
        action: Any = draw(st.sampled_from(("", 5, None, ["push"], {"push": 1}, "missing")))
        if action == "missing":
            del content["action"]
        else:
            content["action"] = action
        return Drawn(
            wrapped(content), "invalid", problem=f"{CONTENT}.action: required, must be a non-empty"
        )
    broken, problem = draw(broken_payloads())
    return Drawn(wrapped(broken), "invalid", problem=problem)


@st.composite
def histories(draw: st.DrawFn, objects_only: bool = False) -> list[Drawn]:
    drawn = draw(
        st.lists(
            st.one_of(
                recorded_entries(),
                recorded_entries(),
                skipped_entries(),
                invalid_entries(objects_only),
            ),
            max_size=10,
        )
    )
    # Deliveries repeated: the same entry again, or the same event with who pushed added.
    recorded = [d for d in drawn if d.kind == "record"]
    if recorded:
        for original in draw(st.lists(st.sampled_from(recorded), max_size=3)):
            assert original.payload is not None
            content = {**original.payload.content}
            if draw(st.booleans()):
                content["actor"] = {"name": "later-actor"}
                content["request"] = {**content.get("request", {}), "addr": "198.51.100.1:1"}
            payload = Payload(content, original.payload.stored_timestamp)
            drawn.insert(
                draw(st.integers(0, len(drawn))), Drawn(wrapped(content), "record", payload)
            )
    return drawn


# --- the store ------------------------------------------------------------------------------


@dataclass
class Script:
    """How the store behaves: what it already holds, which ids it refuses for good, and from
    which write on it is down (that write landing all the same when ``lands``)."""

    seeded: list[dict[str, Any]] = field(default_factory=list)
    refused: frozenset[str] = frozenset()
    down_from: int | None = None
    lands: bool = False


class ScriptedRepository:
    """An EventRepository keyed like Cosmos DB (id within the repository's partition) that
    follows a Script and keeps every write attempt."""

    def __init__(self, script: Script, refusal: Callable[[str], Exception] | None = None):
        self.script = script
        self.documents: dict[tuple[str, str], dict[str, Any]] = {
            (d["id"], d["repository"]): dict(d) for d in script.seeded
        }
        self.attempts: list[dict[str, Any]] = []
        self.creations: list[tuple[str, str]] = []
        self.refusal = refusal or (lambda event_id: DocumentRejectedError("fake refusal"))

    def add(self, document: dict[str, Any]) -> bool:
        self.attempts.append(json.loads(json.dumps(document)))
        down_from = self.script.down_from
        down = down_from is not None and len(self.attempts) > down_from
        if down and not (self.script.lands and len(self.attempts) == (down_from or 0) + 1):
            raise RepositoryUnavailableError("fake outage")
        if document["id"] in self.script.refused:
            # A refused write on the outage's first attempt gets no answer either (the model).
            raise (
                RepositoryUnavailableError("fake outage") if down else self.refusal(document["id"])
            )
        created = _store(self.documents, document)
        if created:
            self.creations.append((document["id"], document["repository"]))
        if down:  # it landed, but the answer never came
            raise RepositoryUnavailableError("fake outage after the write")
        return created

    def healed(self) -> ScriptedRepository:
        again = ScriptedRepository(replace(self.script, down_from=None), self.refusal)
        again.documents = self.documents
        again.creations = self.creations
        return again


def _store(documents: dict[tuple[str, str], dict[str, Any]], document: dict[str, Any]) -> bool:
    """The store protocol, documents known by their id within their repository."""
    return store_or_fill_in(documents, (document["id"], document["repository"]), document)


def shown(text: str) -> str:
    """Each control character (Unicode category Cc) as U+FFFD, as README's table says."""
    return "".join("\ufffd" if unicodedata.category(ch) == "Cc" else ch for ch in text)


def documented(payload: Payload, received_at: datetime, source: str) -> dict[str, Any]:
    """The document README's "Documents" table describes for a webhook payload."""
    content = payload.content
    target, request = content["target"], content.get("request")
    actor = content.get("actor") or {}
    agent = request.get("useragent") if request else None
    return {
        "id": content["id"],
        "action": content["action"],
        "source": source,
        "repository": target["repository"],
        "tag": target.get("tag") or None,
        "digest": target.get("digest"),
        "mediaType": target.get("mediaType"),
        "size": target["size"] if target.get("size") is not None else target.get("length"),
        "timestamp": payload.stored_timestamp,
        "registry": request.get("host") if request else None,
        "receivedAt": iso(received_at),
        "userAgent": shown(agent[:MAX_USER_AGENT_LENGTH]) if agent is not None else None,
        "requestId": request.get("id") if request else None,
        "requestMethod": request.get("method") if request else None,
        "chartName": target.get("name"),
        "chartVersion": target.get("version"),
        "actor": actor.get("name") or None,
        "clientAddress": (request.get("addr") or None) if request else None,
        "location": None,
        "connectedRegistry": None,
        "registryResourceId": None,
    }


@st.composite
def scripts(draw: st.DrawFn, history: list[Drawn]) -> Script:
    payloads = [d.payload for d in history if d.payload is not None]
    seeded: dict[tuple[str, str], dict[str, Any]] = {}
    for payload in draw(st.lists(st.sampled_from(payloads), max_size=3)) if payloads else []:
        document = documented(payload, SEEDED_AT, "webhook")
        if draw(st.booleans()):  # stored by the webhook: nobody said who pushed
            document["actor"] = document["clientAddress"] = None
        elif draw(st.booleans()):
            document["actor"] = "seeded-actor"
        seeded.setdefault(payload.key, document)
    refused = draw(st.sets(st.sampled_from(EVENT_IDS), max_size=1)) if draw(st.booleans()) else ()
    writes = len(payloads)
    down_from = draw(st.none() | st.integers(0, max(writes - 1, 0)))
    return Script(list(seeded.values()), frozenset(refused), down_from, draw(st.booleans()))


# --- the model: what the docs say a run does ------------------------------------------------


@dataclass
class Expected:
    counts: tuple[int, int, int, int] = (0, 0, 0, 0)
    documents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (index, what it names)
    reconciled: list[tuple[str, str, str]] = field(default_factory=list)
    stopped_at: int | None = None  # the entry whose write found the store down


def expected_run(
    history: list[Drawn],
    documents: dict[tuple[str, str], dict[str, Any]],
    script: Script,
    received_at: datetime,
) -> Expected:
    model = Expected(documents={k: dict(v) for k, v in documents.items()})
    recorded = already = skipped = invalid = writes = 0
    for index, drawn in enumerate(history):
        if drawn.kind == "skip":
            skipped += 1
            continue
        if drawn.kind == "invalid":
            invalid += 1
            model.invalid.append((index, drawn.problem))
            continue
        assert drawn.payload is not None
        writes += 1
        document = documented(drawn.payload, received_at, "reconcile")
        if script.down_from is not None and writes > script.down_from:
            landed = script.lands and writes == script.down_from + 1
            if landed and drawn.payload.content["id"] not in script.refused:
                _store(model.documents, document)
            model.stopped_at = index
            break
        if drawn.payload.content["id"] in script.refused:
            invalid += 1
            model.invalid.append((index, "refused by the store"))
        elif _store(model.documents, document):
            recorded += 1
            model.reconciled.append((document["id"], document["action"], document["repository"]))
        else:
            already += 1
    model.counts = (recorded, already, skipped, invalid)
    return model


# --- helpers --------------------------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def decisions(self) -> list[dict[str, Any]]:
        return [r.__dict__ for r in self.records if hasattr(r, "decision")]

    def text(self) -> str:
        return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in self.records)


def captured_logs() -> AbstractContextManager[Records]:
    return on_app_logger(Records(), logging.DEBUG)


def counts_of(outcome: ReconcileOutcome) -> tuple[int, int, int, int]:
    match = SUMMARY.match(outcome.counts.summary())
    assert match is not None, outcome.counts.summary()
    recorded, already, skipped, invalid = (int(n) for n in match.groups())
    return recorded, already, skipped, invalid


def reconciled(
    entries: list[Any], repository: ScriptedRepository, received_at: datetime
) -> tuple[ReconcileOutcome, list[InvalidEntry], Records]:
    reports: list[InvalidEntry] = []
    with captured_logs() as logs:
        outcome = reconcile_entries(
            entries, repository, received_at=received_at, report_invalid=reports.append
        )
    return outcome, reports, logs


def check_run(
    history: list[Drawn],
    model: Expected,
    outcome: ReconcileOutcome,
    reports: list[InvalidEntry],
    repository: ScriptedRepository,
) -> None:
    handled = len(history) if model.stopped_at is None else model.stopped_at
    assert sum(counts_of(outcome)) == handled
    assert counts_of(outcome) == model.counts
    assert (outcome.unavailable is not None) == (model.stopped_at is not None)
    assert repository.documents == model.documents
    # Invalid entries: reported once each, in order, on one line naming the problem.
    assert [r.index for r in reports] == [index for index, _ in model.invalid]
    for report, (_, problem) in zip(reports, model.invalid, strict=True):
        line = str(report)
        assert line.startswith(f"entry {report.index}")
        assert problem in line
        assert "\n" not in line and "\r" not in line
    # Nothing but recorded entries is ever written: one attempt each, up to the stop.
    written = [d.payload.content["id"] for d in history[:handled] if d.payload is not None]
    stop = [] if model.stopped_at is None else [history[model.stopped_at]]
    written += [d.payload.content["id"] for d in stop if d.payload is not None]
    assert [a["id"] for a in repository.attempts] == written


def leaks(*texts: str) -> list[str]:
    return [s for s in (*LEAKABLE, EXTRA_LEAKABLE) for text in texts if s in text]


# --- the properties -------------------------------------------------------------------------


@PROPERTIES
@given(st.data())
def test_a_run_stores_what_the_docs_say_and_a_second_run_changes_nothing(
    data: st.DataObject,
) -> None:
    history = data.draw(histories())
    script = data.draw(scripts(history))
    repository = ScriptedRepository(script)
    before = {k: dict(v) for k, v in repository.documents.items()}
    entries = [d.entry for d in history]

    outcome, reports, logs = reconciled(entries, repository, NOW)
    model = expected_run(history, before, script, NOW)
    check_run(history, model, outcome, reports, repository)
    # One reconciled decision per event stored, the unavailable one where it stopped, and no
    # decision for an event already recorded (the summary counts those).
    assert [
        (d["event_id"], d["action"], d["repository"])
        for d in logs.decisions()
        if d["decision"] == "reconciled"
    ] == model.reconciled
    assert {d["decision"] for d in logs.decisions()} <= {"reconciled", "unavailable"}
    assert [d["route"] for d in logs.decisions()] == ["reconcile"] * len(logs.decisions())
    assert sum(d["decision"] == "unavailable" for d in logs.decisions()) == (
        model.stopped_at is not None
    )
    assert not leaks(logs.text(), json.dumps(repository.attempts), *map(str, reports))

    # Run it again once the store is back: what the outage left is stored now, nothing else
    # changes, and a third run finds everything already recorded.
    healthy = repository.healed()
    after_first = {k: dict(v) for k, v in healthy.documents.items()}
    again, again_reports, _ = reconciled(entries, healthy, LATER)
    model_again = expected_run(history, after_first, healthy.script, LATER)
    check_run(history, model_again, again, again_reports, healthy)
    everything = expected_run(history, before, replace(script, down_from=None), NOW)
    for key, document in everything.documents.items():
        assert key in healthy.documents
        stored = healthy.documents[key]
        if key not in after_first:  # stored by the second run: its own receivedAt
            document = {**document, "receivedAt": iso(LATER)}
        assert stored == document
    assert len(healthy.creations) == len(set(healthy.creations))  # never a second document

    third = healthy.healed()
    settled = {k: dict(v) for k, v in third.documents.items()}
    last, _, _ = reconciled(entries, third, LATER + timedelta(minutes=5))
    recorded, already, skipped, invalid = counts_of(last)
    assert (recorded, skipped, invalid) == (0, model_again.counts[2], model_again.counts[3])
    assert already == model_again.counts[0] + model_again.counts[1]
    assert third.documents == settled


@PROPERTIES
@given(st.lists(st.one_of(recorded_entries(), skipped_entries(), invalid_entries(False))))
def test_reconcile_stores_exactly_what_the_webhook_route_would(history: list[Drawn]) -> None:
    """Through the webhook route's own validation and document mapping (delivery.md): the
    same content posted to the webhook is stored alike (201/200), skipped alike (204/202) and
    refused alike (400)."""
    for drawn in history:
        repository = ScriptedRepository(Script())
        outcome, reports, _ = reconciled([drawn.entry], repository, NOW)
        content = None
        if isinstance(drawn.entry, dict) and isinstance(
            drawn.entry.get("eventRequestMessage"), dict
        ):
            content = drawn.entry["eventRequestMessage"].get("content")
        if content is None or isinstance(content, bool | int | float | list):
            assert counts_of(outcome) == (0, 0, 0, 1)
            continue
        body = content.encode() if isinstance(content, str) else json.dumps(content).encode()
        webhook = FakeEventRepository()
        answer = handle_webhook(body, webhook, now=lambda: NOW)
        expected_status = {"record": {201}, "skip": {202, 204}, "invalid": {400}}[drawn.kind]
        assert answer.status in expected_status
        assert (
            counts_of(outcome)
            == {
                "record": (1, 0, 0, 0),
                "skip": (0, 0, 1, 0),
                "invalid": (0, 0, 0, 1),
            }[drawn.kind]
        )
        stored = [{**d, "source": "webhook"} for d in repository.documents.values()]
        assert stored == list(webhook.documents.values())
        if drawn.payload is not None:
            assert stored == [documented(drawn.payload, NOW, "webhook")]
        if drawn.kind == "invalid" and reports[0].reason.startswith(f"{CONTENT}."):
            # A payload's problems are named alike; reconcile's say where the payload sits.
            assert answer.body is not None
            assert reports[0].reason.replace(f"{CONTENT}.", "") == answer.body["error"]


class ListedHistory:
    def __init__(self, by_webhook: dict[str, list[Any]]) -> None:
        self.by_webhook = by_webhook
        self.asked: list[str] = []

    def entries(self, webhook_name: str) -> Iterator[dict[str, Any]]:
        self.asked.append(webhook_name)
        yield from self.by_webhook[webhook_name]


@settings(PROPERTIES, max_examples=100)
@given(st.data())
def test_the_timer_logs_one_summary_per_webhook_and_one_decision_per_stored_or_invalid_entry(
    data: st.DataObject,
) -> None:
    first = data.draw(histories(objects_only=True))
    second = data.draw(histories(objects_only=True))
    script = data.draw(scripts(first + second))
    repository = ScriptedRepository(script)
    before = {k: dict(v) for k, v in repository.documents.items()}
    history = ListedHistory(
        {"acrwebhook": [d.entry for d in first], "acrwebhookeu": [d.entry for d in second]}
    )
    with captured_logs() as logs:
        outcomes = reconcile_webhooks(TARGET, repository, history, now=lambda: NOW)

    model_first = expected_run(first, before, script, NOW)
    models = {"acrwebhook": model_first}
    if model_first.stopped_at is None:
        # The store counts writes across both webhooks: the first one's all happened.
        writes = sum(d.payload is not None for d in first)
        down_from = None if script.down_from is None else script.down_from - writes
        second_script = replace(script, down_from=down_from)
        models["acrwebhookeu"] = expected_run(second, model_first.documents, second_script, NOW)
    # The run stops at the first webhook that found the database unavailable.
    assert list(outcomes) == list(models) == history.asked
    assert {name: counts_of(o) for name, o in outcomes.items()} == {
        name: m.counts for name, m in models.items()
    }
    assert repository.documents == list(models.values())[-1].documents

    summaries = [r.getMessage() for r in logs.records if "reconcile of webhook" in r.getMessage()]
    assert [s.split("'")[1] for s in summaries] == list(models)
    for summary, outcome in zip(summaries, outcomes.values(), strict=True):
        assert summary.endswith(outcome.counts.summary())
    expected_decisions: list[tuple[str, Any]] = []
    for model in models.values():
        expected_decisions += [("rejected", index) for index, _ in model.invalid]
        expected_decisions += [("reconciled", key) for key in model.reconciled]
        if model.stopped_at is not None:
            expected_decisions.append(("unavailable", model.stopped_at))
    got = logs.decisions()
    assert sorted(d["decision"] for d in got) == sorted(d for d, _ in expected_decisions)
    assert {d["route"] for d in got} <= {"reconcile"}
    for record in got:
        if record["decision"] == "rejected":
            assert record["reason"] and "\n" not in record["reason"]
    assert not leaks(logs.text(), json.dumps(repository.attempts))


@settings(DETERMINISTIC, max_examples=40)
@given(st.data())
def test_the_cli_prints_one_line_per_invalid_entry_and_the_summary_last(
    data: st.DataObject,
) -> None:
    history = data.draw(histories(objects_only=True))
    script = data.draw(scripts(history))
    repository = ScriptedRepository(script)
    model = expected_run(history, repository.documents, script, NOW)
    with (
        TemporaryDirectory() as directory,
        mock.patch.dict(os.environ, {"COSMOS_ENDPOINT": "https://127.0.0.1:1/"}),
        mock.patch.object(
            acr_webhook.repository, "CosmosEventRepository", lambda _settings: repository
        ),
        captured_logs(),
        # The run's time is the model's, after every year drawn (see NOW).
        mock.patch("acr_webhook.results.utc_now", lambda: NOW),
        mock.patch("sys.stdout") as stdout,
        mock.patch("sys.stderr") as stderr,
    ):
        path = Path(directory) / "events.json"
        path.write_text(json.dumps([d.entry for d in history]))
        code = cli.main(["reconcile", "--events-file", str(path)])
    out = "".join(str(call.args[0]) for call in stdout.write.call_args_list)
    err = "".join(str(call.args[0]) for call in stderr.write.call_args_list)

    if history and not any("eventRequestMessage" in drawn.entry for drawn in history):
        # Not one history entry: another command's array, refused before anything is stored.
        assert (code, out, err.count("\n")) == (2, "", 1)
        assert "none of its" in err
        return
    assert code == (0 if model.stopped_at is None else 1)
    assert out.splitlines()[-1] == "recorded={} already={} skipped={} invalid={}".format(
        *model.counts
    )
    lines = err.splitlines()
    invalid = [line for line in lines if line.startswith("invalid entry ")]
    assert [int(line.split()[2].rstrip(":")) for line in invalid] == [i for i, _ in model.invalid]
    assert len(lines) == len(invalid) + (model.stopped_at is not None)
    assert not leaks(out, err)


# --- what a real store's refusal looks like --------------------------------------------------

NO_DATABASE = Settings("https://127.0.0.1:1/", None, "acr", "events", None)


def cosmos_refusal(event_id: str) -> Exception:
    """The DocumentRejectedError the Cosmos DB repository raises for a 400 (the SDK's message,
    as azure-cosmos formats it: ``Status code: 400`` on a line of its own)."""
    error = CosmosHttpResponseError(  # type: ignore[no-untyped-call]
        status_code=400,
        message='Message: {"Errors":["One of the specified inputs is invalid"]}\r\n'
        "ActivityId: 00000000-0000-0000-0000-000000000000, Request URI: /apps/x",
    )
    return CosmosEventRepository(NO_DATABASE)._failure(error)


def test_a_document_cosmos_db_refuses_is_still_one_report_line() -> None:
    """delivery.md: invalid entries are listed on stderr "one line each"; a document the store
    refuses counts as invalid. The Cosmos DB repository's refusal carries the SDK's message,
    which azure-cosmos always starts with "Status code: 400" and a newline."""
    push = Payload(
        {
            "id": EVENT_IDS[0],
            "timestamp": "2026-11-23T16:52:01.343145347Z",
            "action": "push",
            "target": {"repository": "hello-world", "tag": "v1"},
        },
        "2026-11-23T16:52:01.343145Z",
    )
    repository = ScriptedRepository(Script(refused=frozenset({EVENT_IDS[0]})), cosmos_refusal)
    outcome, reports, _ = reconciled([wrapped(push.content)], repository, NOW)

    assert counts_of(outcome) == (0, 0, 0, 1)
    assert "refused by the database (400)" in str(reports[0])
    assert len(str(reports[0]).splitlines()) == 1
