"""ACR event payloads that other public projects hold as samples or test data, through the app's
entry points: every one taken (or refused as README says) and stored field for field.

The corpus is tests/fixtures/public_corpus/, one file per sample: where it comes from
(repository, path, commit), the body exactly as it is delivered, and what README promises for
it (the answer, and each stored document, written out in full). The samples were not written
by this project: the ACR and Event Grid docs' examples, the REST API specs' examples, the Azure
SDKs' test data (one of them captured from a live registry), other projects' ACR receivers.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

import function_app
from acr_webhook import __main__ as cli
from acr_webhook.models import iso_utc
from tests.support.fakes import FakeEventRepository
from tests.support.interleave import InlineExecutor

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "public_corpus"


@dataclass(frozen=True)
class Sample:
    name: str
    provenance: dict[str, Any]
    route: str  # "webhook", "eventgrid" or "history" (reconcile --events-file)
    body: Any
    expected: dict[str, Any]


def load_corpus() -> list[Sample]:
    samples = []
    for path in sorted(CORPUS.glob("*.json")):
        fixture = json.loads(path.read_text(encoding="utf-8"))
        samples.append(
            Sample(
                path.stem,
                fixture["provenance"],
                fixture["route"],
                fixture["body"],
                fixture["expected"],
            )
        )
    return samples


SAMPLES = load_corpus()
BY_NAME = {sample.name: sample for sample in SAMPLES}

# What the webhook carries of an Event Grid event's data: all of it but these (reference: event
# sources; the webhook has no actor, client address, replica, region or manifest URL).
EVENT_GRID_ONLY = ("actor", "source", "location", "connectedRegistry")


def params(*routes: str, storable_only: bool = False) -> list[Any]:
    """The samples of ``routes`` as pytest params named after their files."""
    return [
        pytest.param(sample, id=sample.name)
        for sample in SAMPLES
        if sample.route in routes and (sample.expected["documents"] or not storable_only)
    ]


# --- delivering a body through the app's entry points ---------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int  # the HTTP status, or reconcile's exit status
    body: Any  # the JSON body (None when empty), or reconcile's summary line


def deliver(route: str, body: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Answer:
    """``body`` through function_app's route for ``route``, or, for ``history``, through
    ``python -m acr_webhook reconcile --events-file`` (in this process) as the file az writes."""
    if route == "history":
        events_file = tmp_path / "list-events.json"
        events_file.write_text(json.dumps(body, indent=2), encoding="utf-8")
        code = cli.main(["reconcile", "--events-file", str(events_file)])
        out, _ = capsys.readouterr()
        return Answer(code, out.splitlines()[-1] if out else None)
    url = f"http://localhost:7071/api/acr/{route}"
    request = func.HttpRequest(
        "POST",
        url,
        body=json.dumps(body, separators=(",", ":")).encode(),  # as ACR sends it: compact
        headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
    )
    endpoint = function_app.acr_webhook if route == "webhook" else function_app.acr_eventgrid
    response = endpoint(request)
    raw = response.get_body()
    return Answer(response.status_code, json.loads(raw) if raw else None)


def stored(repository: FakeEventRepository, since: str) -> list[dict[str, Any]]:
    """The store's documents without ``receivedAt``, each checked to be this app's clock, in
    fixed-width ISO 8601 UTC, no earlier than ``since`` and no later than now."""
    documents = []
    for document in repository.documents.values():
        received = dict(document)
        received_at = received.pop("receivedAt")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", received_at)
        assert since <= received_at <= iso_utc(datetime.now(UTC))
        documents.append(received)
    return sorted(documents, key=lambda document: (document["id"], document["repository"]))


def reconcile_summary(sample: Sample, recorded: int, already: int) -> str:
    """Reconcile's last line for a history sample whose events are ``recorded`` and ``already``
    stored (its pings and other actions are skipped whatever is stored)."""
    skipped = re.search(r"skipped=(\d+)", sample.expected["summary"])
    assert skipped is not None
    return f"recorded={recorded} already={already} skipped={skipped[1]} invalid=0"


def duplicate_answer(sample: Sample) -> Any:
    """The answer README gives a second delivery of a stored sample."""
    count = len(sample.expected["documents"])
    if sample.route == "webhook":
        return {"status": "duplicate", "id": sample.body["id"]}
    if sample.route == "eventgrid":
        return {"recorded": 0, "duplicate": count, "ignored": 0}
    return reconcile_summary(sample, 0, count)


@pytest.fixture
def store(
    monkeypatch: pytest.MonkeyPatch, app_repository: FakeEventRepository
) -> FakeEventRepository:
    """Every route's store is one in-memory repository: the webhook's and Event Grid's in
    function_app, and the one the reconcile CLI builds from its settings."""
    monkeypatch.setattr(function_app, "eventgrid_repository", lambda: app_repository)
    monkeypatch.setattr(function_app, "batch_executor", InlineExecutor)
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr(
        "acr_webhook.repository.CosmosEventRepository", lambda _settings: app_repository
    )
    return app_repository


# --- the corpus itself ------------------------------------------------------------------------


def test_the_corpus_covers_every_route_and_says_where_each_sample_comes_from() -> None:
    assert {sample.route for sample in SAMPLES} == {"webhook", "eventgrid", "history"}
    for sample in SAMPLES:
        provenance = sample.provenance
        assert provenance["repository"].count("/") == 1, sample.name
        assert provenance["path"] and provenance["note"], sample.name
        # A file is named by its commit; the one sample quoted in a pull request by its URL.
        commit = provenance["commit"]
        assert (commit and re.fullmatch(r"[0-9a-f]{40}", commit)) or (
            commit is None and "https://github.com/" in provenance["path"]
        ), sample.name


# --- 1 and 2: each sample through its route, stored field for field ---------------------------


@pytest.mark.parametrize("sample", params("webhook", "eventgrid"))
def test_a_sample_is_answered_as_documented_and_stored_field_for_field(
    sample: Sample,
    store: FakeEventRepository,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    since = iso_utc(datetime.now(UTC))
    answer = deliver(sample.route, sample.body, tmp_path, capsys)

    expected = sample.expected
    assert answer.status == expected["status"], answer.body
    if "errors" in expected:
        for problem in expected["errors"]:
            assert problem in answer.body["error"]
    else:
        assert answer.body == expected["body"]
    assert stored(store, since) == expected["documents"]


@pytest.mark.parametrize("sample", params("webhook", "eventgrid", storable_only=True))
def test_a_stored_sample_delivered_again_is_a_duplicate_and_changes_nothing(
    sample: Sample,
    store: FakeEventRepository,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    since = iso_utc(datetime.now(UTC))
    deliver(sample.route, sample.body, tmp_path, capsys)
    first = copy.deepcopy(store.documents)

    again = deliver(sample.route, sample.body, tmp_path, capsys)

    assert again.status == 200
    assert again.body == duplicate_answer(sample)
    assert store.documents == first
    assert stored(store, since) == sample.expected["documents"]


# --- 3: ACR's delivery history (the REST API's listEvents example) ----------------------------


@pytest.mark.parametrize("sample", params("history"))
def test_a_history_sample_is_reconciled_field_for_field_and_only_once(
    sample: Sample, store: FakeEventRepository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    since = iso_utc(datetime.now(UTC))

    first = deliver("history", sample.body, tmp_path, capsys)
    again = deliver("history", sample.body, tmp_path, capsys)

    assert (first.status, first.body) == (sample.expected["exit"], sample.expected["summary"])
    assert (again.status, again.body) == (0, duplicate_answer(sample))
    # The REST example's actor is {}: no name, so null; its client address is request.addr.
    assert stored(store, since) == sample.expected["documents"]


def test_the_list_events_response_as_the_rest_api_returns_it_is_not_the_file_reconcile_reads(
    store: FakeEventRepository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The REST response wraps the entries in {"value": [...]}; README and docs/delivery.md
    take the file `az acr webhook list-events --output json` writes (the array) and exit 2 for
    anything else: pinned, so that a change to it is a decision."""
    sample = BY_NAME["history-spec-webhook-list-events"]
    events_file = tmp_path / "response.json"
    events_file.write_text(json.dumps({"value": sample.body}), encoding="utf-8")

    code = cli.main(["reconcile", "--events-file", str(events_file)])

    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert "must be a JSON array of webhook events" in err
    assert store.add_calls == 0


# --- 4: the same event by two paths is one document, whichever comes first --------------------


def webhook_form(sample: Sample) -> tuple[dict[str, Any], str]:
    """The webhook payload of the sample's (only) event: what ACR posts to a webhook for it,
    i.e. Event Grid's data without what only Event Grid carries, or the history entry's content
    as it is; and the route that delivers the sample itself."""
    if sample.route == "history":
        return copy.deepcopy(sample.body[0]["eventRequestMessage"]["content"]), "history"
    (event,) = sample.body if isinstance(sample.body, list) else [sample.body]
    data = event["data"]
    payload = copy.deepcopy(json.loads(data) if isinstance(data, str) else data)
    for name in EVENT_GRID_ONLY:
        payload.pop(name, None)
    payload.get("request", {}).pop("addr", None)
    payload["target"].pop("url", None)
    # The event type names the action (the SDKs' test data says "testaction" in data).
    payload["action"] = sample.expected["documents"][0]["action"]
    return payload, "eventgrid"


def in_order(
    first: str, second: str, sample: Sample, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Answer]:
    payload, route = webhook_form(sample)
    bodies = {"webhook": payload, route: sample.body}
    for path in (first, second):
        yield deliver(path, bodies[path], tmp_path, capsys)


@pytest.mark.parametrize("sample", params("eventgrid", "history", storable_only=True))
@pytest.mark.parametrize("webhook_first", [True, False], ids=["webhook-first", "other-first"])
def test_the_same_event_by_webhook_and_by_its_other_path_is_one_document(
    sample: Sample,
    webhook_first: bool,
    store: FakeEventRepository,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README: one document per event id; `source` is the path that stored it first; a later
    Event Grid or reconcile delivery fills in the fields the document lacks (who pushed, from
    where, the replica, the registry's id) and overwrites none; the webhook carries none. So
    the document is the other path's own, field for field, but for `source` (and
    `receivedAt`), whichever order the two arrive in."""
    other = "history" if sample.route == "history" else "eventgrid"
    order = ("webhook", other) if webhook_first else (other, "webhook")
    since = iso_utc(datetime.now(UTC))

    first, second = in_order(*order, sample, tmp_path, capsys)

    (expected,) = sample.expected["documents"]
    webhook_answers = (
        Answer(201, {"status": "recorded", "id": expected["id"]}),
        Answer(200, {"status": "duplicate", "id": expected["id"]}),
    )
    recorded = sample.expected.get("body") or sample.expected["summary"]
    other_answers = (
        Answer(sample.expected.get("status", 0), recorded),
        Answer(0 if other == "history" else 200, duplicate_answer(sample)),
    )
    assert (first, second) == (
        (webhook_answers[0], other_answers[1])
        if webhook_first
        else (other_answers[0], webhook_answers[1])
    )
    source = "webhook" if webhook_first else expected["source"]
    assert stored(store, since) == [{**expected, "source": source}]


# --- samples that share an event id: documented, pinned ---------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # The REST spec's chart examples: ChartDeleted repeats ChartPushed's data.id.
        ("eventgrid-spec-chart-pushed", "eventgrid-spec-chart-deleted"),
        # kobold's two test pushes: one id, one repository, two digests.
        ("webhook-kobold-test-a", "webhook-kobold-test-b"),
    ],
)
def test_two_samples_that_share_an_event_id_and_repository_are_one_document(
    first: str,
    second: str,
    store: FakeEventRepository,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README: each event is keyed on its id, so a second delivery never makes a second
    document; two different events that claim one id (as these public samples do, by copying)
    keep the first one's fields: the second is answered as a duplicate."""
    since = iso_utc(datetime.now(UTC))
    deliver(BY_NAME[first].route, BY_NAME[first].body, tmp_path, capsys)

    answer = deliver(BY_NAME[second].route, BY_NAME[second].body, tmp_path, capsys)

    assert answer.status == 200
    assert answer.body == duplicate_answer(BY_NAME[second])
    assert stored(store, since) == BY_NAME[first].expected["documents"]


def test_an_event_grid_schema_event_outside_its_array_is_refused_as_documented(
    store: FakeEventRepository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The REST specs' example files hold one Event Grid schema event, bare; Event Grid
    delivers that schema as an array (the corpus wraps them so). docs/delivery.md: an object
    that is not a CloudEvent is a 400. Pinned, so that taking bare events is a decision."""
    (event,) = BY_NAME["eventgrid-spec-image-pushed"].body

    answer = deliver("eventgrid", event, tmp_path, capsys)

    assert answer.status == 400
    assert "this object has no specversion" in answer.body["error"]
    assert store.add_calls == 0
