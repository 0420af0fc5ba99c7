"""What earlier versions of the app left behind, through the current code: the documents they
stored, the messages they parked (fallback and poison queues) and the continuation tokens their
read API handed out. An upgrade keeps the container and the queues, and clients keep tokens.

How the fixtures were made (tests/fixtures/earlier_versions/<commit>.json): each is the output
of that commit's own code, run from a git worktree of it by
``.venv/bin/python -m tests.fixtures.earlier_versions.generate /work/h-compat-old-`` (see its
docstring; old_side.py runs inside each worktree): documents written through its
CosmosEventRepository into the local Cosmos DB server and read back, messages parked in Azurite
through its StorageQueueFallback and peeked as stored (base64), tokens from paging its read API
over the documents in the file, each with the page that commit answered for it. The commits are
those that changed a shape: 89721c0 (first documents, no enrichment fields), 3ccf54c (the five
enrichment fields), f012627 (bare-document messages), 6e76088 (``{"document", "attempts"}``
messages), d097096 (tokens v1), 82e953b (v1 tokens with a view), 0ff15aa (tokens v2, current).
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

import function_app
from acr_webhook import __main__ as cli
from acr_webhook import runtime
from acr_webhook.config import QueueSettings, ReconcileSettings, Settings
from acr_webhook.fallback import create_queue_client, decode_message, provision_queue
from acr_webhook.models import ENRICHMENT_FIELDS
from acr_webhook.queries import PUSH_KEY, handle_events_query
from acr_webhook.redrive import RedriveReport, redrive
from acr_webhook.repository import CosmosEventRepository
from tests.conftest import container_for, fresh_settings, read_all
from tests.integration.test_event_queries import cli_on
from tests.support import payloads
from tests.support.azurite import LocalAzurite, new_queue, raw_messages
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.deployed import PROCESS_WIDE
from tests.support.history import history_entry
from tests.support.interleave import InlineExecutor
from tests.unit.test_eventgrid import TOPIC, event_grid

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "earlier_versions"
DOCUMENT_VERSIONS = ("89721c0", "3ccf54c")
MESSAGE_VERSIONS = ("f012627", "6e76088", "3ccf54c")
V1_TOKEN_VERSIONS = ("d097096", "82e953b")
# The clock the tokens' pages were made with (generate.NOW): a duration would resolve the same.
NOW = datetime(2026, 12, 1, tzinfo=UTC)
REGISTRY_ID = TOPIC
ALL_PAYLOADS = {p["id"]: p for p in [*payloads.RECORDED.values(), payloads.ENRICHED_PUSH]}


@cache
def fixture(commit: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{commit}.json").read_text())
    return loaded


def old_documents(commit: str) -> list[dict[str, Any]]:
    return copy.deepcopy(fixture(commit)["documents"])


def stored_by(settings: Settings) -> dict[str, dict[str, Any]]:
    return {doc["id"]: doc for doc in read_all(settings)}


def without_system(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in doc.items() if not name.startswith("_")}


@pytest.fixture(scope="module", params=DOCUMENT_VERSIONS)
def old_store(request: pytest.FixtureRequest, cosmos_server: LocalCosmosServer) -> Settings:
    """A container as the earlier version left it: its documents exactly as it stored them."""
    settings = fresh_settings(cosmos_server)
    events = container_for(settings)
    for doc in old_documents(request.param):
        events.create_item(doc)
    return settings


def get(params: dict[str, str], settings: Settings) -> tuple[int, Any]:
    result = handle_events_query(params, CosmosEventRepository(settings), now=lambda: NOW)
    return result.status, result.body


def page_through(params: dict[str, str], settings: Settings) -> list[dict[str, Any]]:
    """Every row of a query, one small page at a time, each page a 200 and never empty."""
    rows: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(50):
        status, body = get({**params, **({"continuation": token} if token else {})}, settings)
        assert status == 200, body
        page = body.get("events", body.get("pushes"))
        assert page or token is None, f"an empty page after a token: {body}"
        rows += page
        token = body["continuation"]
        if token is None:
            return rows
    raise AssertionError("paging did not end")


def expected(docs: list[dict[str, Any]], **filters: str) -> list[dict[str, Any]]:
    since, until = filters.pop("since", None), filters.pop("until", None)
    matches = [
        doc
        for doc in docs
        if all(doc.get(name) == value for name, value in filters.items())
        and (since is None or doc["timestamp"] >= since)
        and (until is None or doc["timestamp"] < until)
    ]
    return sorted(matches, key=lambda doc: doc["timestamp"], reverse=True)


PUSH_DIGEST = payloads.PUSH["target"]["digest"]
FILTER_CASES: list[dict[str, str]] = [
    {},
    {"repository": "hello-world"},
    {"repository": "repo", "action": "chart_delete"},
    {"tag": "v1"},
    {"digest": PUSH_DIGEST},
    {"digest": PUSH_DIGEST, "repository": "hello-world", "action": "push"},
    {"action": "push"},
    {"action": "chart_push"},
    {"since": "2018-01-01T00:00:00.000000Z"},
    {"until": "2019-01-01T00:00:00.000000Z"},
    {"since": "2017-11-17T16:52:01.343145Z", "until": "2019-03-05T23:50:10.123456Z"},
]


def test_read_api_pages_old_documents_under_every_filter_as_stored(old_store: Settings) -> None:
    """Both shapes of stored document come back, as stored, under each filter and page size;
    ties (the webhook's and Event Grid's copies of one push share a timestamp) included, with
    pages of 3 so that one ends between them."""
    docs = [without_system(doc) for doc in read_all(old_store)]
    for filters in FILTER_CASES:
        want = expected(docs, **filters)
        got = page_through({**filters, "limit": "3"}, old_store)
        assert [d["timestamp"] for d in got] == [d["timestamp"] for d in want], filters
        assert sorted(got, key=lambda d: d["id"]) == sorted(want, key=lambda d: d["id"])


def test_pushes_view_over_old_documents(old_store: Settings) -> None:
    docs = [without_system(doc) for doc in read_all(old_store)]
    rows = page_through({"view": "pushes", "limit": "1"}, old_store)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for doc in docs:
        groups.setdefault(tuple(doc.get(name) for name in PUSH_KEY), []).append(doc)
    assert sorted(len(row["regions"]) for row in rows) == sorted(len(g) for g in groups.values())
    assert {tuple(row[name] for name in PUSH_KEY) for row in rows} == set(groups)
    assert len(rows) == len(groups)
    by_key = {tuple(row[name] for name in PUSH_KEY): row for row in rows}
    for key, events in groups.items():
        carried = {e.get("location") for e in events}
        assert {region["location"] for region in by_key[key]["regions"]} == carried
        actors = [e.get("actor") for e in events if e.get("actor") is not None]
        assert by_key[key]["actor"] == (actors[0] if actors else None)


def test_cli_events_table_and_json_over_old_documents(
    old_store: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli_on(old_store, monkeypatch, tmp_path)
    docs = expected([without_system(doc) for doc in read_all(old_store)])

    assert cli.main(["events"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["TIMESTAMP", "ACTION", "REPOSITORY"]
    assert [line.split()[0] for line in table[1:]] == [doc["timestamp"] for doc in docs]

    assert cli.main(["events", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == get({}, old_store)[1]

    assert cli.main(["events", "--pushes"]) == 0
    pushes = capsys.readouterr().out.splitlines()
    assert len(pushes) - 1 == len(get({"view": "pushes"}, old_store)[1]["pushes"])


# --- new deliveries of the same events, through function_app ------------------------------


class History:
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries_ = entries

    def entries(self, webhook_name: str) -> Iterator[dict[str, Any]]:
        yield from copy.deepcopy(self.entries_)


def deployed(settings: Settings, history: History | None = None) -> ExitStack:
    """function_app's registered functions as runtime.py composes them, on ``settings``."""
    stack = ExitStack()
    for target, name, value in (
        (runtime, "settings", lambda: settings),
        (function_app, "settings", lambda: settings),
        (function_app, "batch_executor", InlineExecutor),
        (function_app, "webhook_history", lambda: history),
    ):
        stack.enter_context(mock.patch.object(target, name, value))
    for once in PROCESS_WIDE:
        once.cache_clear()
        stack.callback(once.cache_clear)
    return stack


def app_settings(base: Settings, queue: QueueSettings | None = None) -> Settings:
    return Settings(
        base.cosmos_endpoint,
        base.cosmos_key,
        base.cosmos_database,
        base.cosmos_container,
        None,
        fallback_queue=queue,
        reconcile=ReconcileSettings(REGISTRY_ID, ("acrwebhook",)),
    )


def webhook(payload: dict[str, Any]) -> func.HttpResponse:
    request = func.HttpRequest(
        "POST", "http://localhost/api/acr/webhook", headers={}, body=payloads.body(payload)
    )
    response: func.HttpResponse = function_app.acr_webhook(request)
    return response


@pytest.fixture(params=DOCUMENT_VERSIONS)
def fresh_old_store(request: pytest.FixtureRequest, cosmos_settings: Settings) -> str:
    """A container of the test's own with one earlier version's documents; its commit."""
    events = container_for(cosmos_settings)
    for doc in old_documents(request.param):
        events.create_item(doc)
    commit: str = request.param
    return commit


def assert_kept_and_filled(
    before: dict[str, Any], after: dict[str, Any], offered: dict[str, Any]
) -> None:
    """Every field stored before is unchanged; an enrichment field it lacked (absent, as
    before 3ccf54c, or null) is now the offered value, where offered; nothing else changes."""
    before, after = without_system(before), without_system(after)
    for name in set(before) | set(after) | set(offered):
        if name in ENRICHMENT_FIELDS and before.get(name) is None and offered.get(name):
            assert after.get(name) == offered[name], name
        else:
            assert after.get(name, "<absent>") == before.get(name, "<absent>"), name


CARRIED_BY_ENRICHED_PUSH = {
    "actor": "ci-bot@contoso.com",
    "clientAddress": "203.0.113.7:51234",
    "location": "westeurope",
    "connectedRegistry": "edge01",
}


def event_grid_request(data: dict[str, Any]) -> func.HttpRequest:
    return func.HttpRequest(
        "POST",
        "http://localhost/api/acr/eventgrid",
        headers={"aeg-event-type": "Notification"},
        body=payloads.body([event_grid(data)]),
    )


def test_a_webhook_redelivery_is_a_duplicate_that_fills_in_nothing_and_an_event_grid_copy_does(
    fresh_old_store: str, cosmos_settings: Settings
) -> None:
    """README: "A webhook delivery fills in nothing", not even where an earlier version's
    document lacks the fields (89721c0: absent) and the redelivery carries them
    (ENRICHED_PUSH): every document stays as it was, not written (its _etag too). The Event
    Grid copy of that event then fills them in."""
    before = stored_by(cosmos_settings)
    with deployed(app_settings(cosmos_settings)):
        for event_id, payload in ALL_PAYLOADS.items():
            response = webhook(payload)
            assert response.status_code == 200, (event_id, response.get_body())
            assert json.loads(response.get_body()) == {"status": "duplicate", "id": event_id}
    assert stored_by(cosmos_settings) == before

    with deployed(app_settings(cosmos_settings)):
        response = function_app.acr_eventgrid(event_grid_request(payloads.ENRICHED_PUSH))
    assert response.status_code == 200, response.get_body()
    after = stored_by(cosmos_settings)
    assert set(after) == set(before)
    for event_id in before:
        offered = {}
        if event_id == payloads.ENRICHED_PUSH["id"]:
            offered = {**CARRIED_BY_ENRICHED_PUSH, "registryResourceId": TOPIC}
        assert_kept_and_filled(before[event_id], after[event_id], offered)


def test_an_event_grid_redelivery_fills_in_who_pushed_and_the_registry(
    fresh_old_store: str, cosmos_settings: Settings
) -> None:
    """With other values than a 3ccf54c document holds: those must stay as they are."""
    before = stored_by(cosmos_settings)
    data = copy.deepcopy(payloads.ENRICHED_PUSH)
    data.update(location="eastus", actor={"name": "someone-else@contoso.com"})
    with deployed(app_settings(cosmos_settings)):
        response = function_app.acr_eventgrid(event_grid_request(data))
    assert response.status_code == 200, response.get_body()
    after = stored_by(cosmos_settings)
    assert set(after) == set(before)
    offered = {
        **CARRIED_BY_ENRICHED_PUSH,
        "location": "eastus",
        "actor": "someone-else@contoso.com",
        "registryResourceId": TOPIC,
    }
    assert_kept_and_filled(before[data["id"]], after[data["id"]], offered)
    assert after[data["id"]]["registryResourceId"] == TOPIC


def test_reconcile_of_the_same_events_is_all_duplicates(
    fresh_old_store: str, cosmos_settings: Settings
) -> None:
    before = stored_by(cosmos_settings)
    history = History([history_entry(payload) for payload in ALL_PAYLOADS.values()])
    with deployed(app_settings(cosmos_settings), history):
        function_app.reconcile_history(TimerRequest())
    after = stored_by(cosmos_settings)
    assert set(after) == set(before)
    for event_id in before:
        offered = CARRIED_BY_ENRICHED_PUSH if event_id == payloads.ENRICHED_PUSH["id"] else {}
        assert_kept_and_filled(before[event_id], after[event_id], offered)


# --- parked messages: replay through the queue trigger, redrive from poison ----------------


def parked_documents(commit: str) -> list[dict[str, Any]]:
    """What each of the commit's messages holds: the document (bare or in its envelope)."""
    documents = []
    for content in fixture(commit)["messages"]:
        parked = json.loads(decode_message(content))
        documents.append(parked.get("document", parked))
    return documents


@pytest.mark.parametrize("commit", MESSAGE_VERSIONS)
def test_old_parked_messages_replay_through_the_queue_trigger(
    commit: str, cosmos_settings: Settings, azurite: LocalAzurite
) -> None:
    """Each message as the trigger hands it (decoded from the stored base64), twice: the first
    stores the document as parked, the second is a duplicate; none raises (no poison)."""
    queue = new_queue(azurite)
    with deployed(app_settings(cosmos_settings, queue)):
        for _ in range(2):
            for content in fixture(commit)["messages"]:
                message = func.QueueMessage(id=str(uuid.uuid4()), body=decode_message(content))
                function_app.replay_fallback(message)
    stored = stored_by(cosmos_settings)
    parked = parked_documents(commit)
    assert {doc["id"]: without_system(stored[doc["id"]]) for doc in parked} == {
        doc["id"]: doc for doc in parked
    }
    assert raw_messages(queue) == []  # nothing was put back


@pytest.mark.parametrize("commit", MESSAGE_VERSIONS)
def test_an_old_message_replayed_onto_an_old_document_changes_nothing(
    commit: str, cosmos_settings: Settings, azurite: LocalAzurite
) -> None:
    """The webhook parked an event and an earlier version stored it meanwhile (or the other
    way round): the replay is a duplicate of the webhook's copy, which fills in nothing, even
    what 3ccf54c's message carries (ENRICHED_PUSH's actor, address, region and connected
    registry) and the 89721c0 document lacks: every document stays as it was, not written
    (its _etag too)."""
    events = container_for(cosmos_settings)
    for doc in old_documents("89721c0"):
        events.create_item(doc)
    before = stored_by(cosmos_settings)
    with deployed(app_settings(cosmos_settings, new_queue(azurite))):
        for content in fixture(commit)["messages"]:
            function_app.replay_fallback(func.QueueMessage(body=decode_message(content)))
    assert stored_by(cosmos_settings) == before
    parked = parked_documents(commit)
    assert {doc["id"] for doc in parked} <= set(before)
    # What this replay carried and left out: 3ccf54c's message has ENRICHED_PUSH's fields.
    carried = {name for doc in parked for name in ENRICHMENT_FIELDS if doc.get(name)}
    assert carried == (set(CARRIED_BY_ENRICHED_PUSH) if commit == "3ccf54c" else set())


def test_old_poison_messages_redrive_unchanged_and_then_replay(
    cosmos_settings: Settings, azurite: LocalAzurite
) -> None:
    queue = new_queue(azurite)
    provision_queue(queue)
    poison = create_queue_client(queue.poison, {}, base64_messages=False)
    contents = list(itertools.chain.from_iterable(fixture(c)["messages"] for c in MESSAGE_VERSIONS))
    for content in contents:
        poison.send_message(content)  # as the runtime copies a message: unchanged

    assert redrive(queue) == RedriveReport(moved=len(contents), not_events=0, left=0)
    moved = raw_messages(queue)
    assert sorted(moved) == sorted(contents)

    with deployed(app_settings(cosmos_settings, queue)):
        for content in moved:
            function_app.replay_fallback(func.QueueMessage(body=decode_message(content)))
    ids = {doc["id"] for c in MESSAGE_VERSIONS for doc in parked_documents(c)}
    assert set(stored_by(cosmos_settings)) == ids


# --- continuation tokens a client kept from an earlier version -----------------------------


def token_store(commit: str, server: LocalCosmosServer) -> Settings:
    settings = fresh_settings(server)
    events = container_for(settings)
    for doc in old_documents(commit):
        events.create_item(doc)
    return settings


@pytest.mark.parametrize("commit", V1_TOKEN_VERSIONS)
def test_a_v1_token_is_a_400_naming_the_continuation(
    commit: str, cosmos_server: LocalCosmosServer
) -> None:
    """docs/queries.md: a token not from this endpoint is a 400 naming the parameter; never a
    500, never a page (v1 held the keys seen, v2 one digest: reading it as v2 would mislead)."""
    settings = token_store(commit, cosmos_server)
    tokens = fixture(commit)["tokens"]
    assert tokens
    for kept in tokens:
        status, body = get({**kept["params"], "continuation": kept["continuation"]}, settings)
        assert status == 400, (kept["params"], body)
        assert body["error"].startswith("continuation: "), body
        assert "start without it" in body["error"]


def test_a_v2_token_gives_the_page_its_own_version_gave(
    cosmos_server: LocalCosmosServer,
) -> None:
    """Tokens of 0ff15aa (the current version number) continue where they did, in both views,
    over the documents that commit paged (ties at one timestamp in two partitions)."""
    settings = token_store("0ff15aa", cosmos_server)
    tokens = fixture("0ff15aa")["tokens"]
    assert {kept["params"].get("view", "events") for kept in tokens} == {"events", "pushes"}
    for kept in tokens:
        status, body = get({**kept["params"], "continuation": kept["continuation"]}, settings)
        assert status == 200, (kept["params"], body)
        assert without_fields_added_since(body, kept["page"]) == kept["page"], kept["params"]


# Row fields added after 0ff15aa: a client of that version ignores them.
FIELDS_ADDED_SINCE_0FF15AA = {"pushes": {"mediaType"}, "events": set()}


def without_fields_added_since(page: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """``page`` with the row fields added since 0ff15aa left out, and only those."""
    view = "pushes" if "pushes" in kept else "events"
    added = FIELDS_ADDED_SINCE_0FF15AA[view]
    for row, kept_row in zip(page[view], kept[view], strict=False):
        assert set(row) - set(kept_row) <= added, set(row) - set(kept_row)
    rows = [{k: v for k, v in row.items() if k not in added} for row in page[view]]
    return {**page, view: rows}


# --- what the first versions accepted and the current one refuses ---------------------------


def test_paging_past_an_old_document_with_a_year_before_1000(cosmos_settings: Settings) -> None:
    """89721c0 took any year and wrote it unpadded: '999-...' sorts before every 4-digit
    year, so it is the first row; its page's token must lead on, not to a 400."""
    events = container_for(cosmos_settings)
    [old] = [d for d in fixture("89721c0")["edge"]["documents"] if d["id"] == "edge-year-999"]
    assert old["timestamp"] == "999-06-01T00:00:00.000000Z"
    docs = [*old_documents("89721c0"), old]
    for doc in docs:
        events.create_item(doc)
    got = page_through({"limit": "1"}, cosmos_settings)
    assert sorted(d["id"] for d in got) == sorted(d["id"] for d in docs)


def test_old_parked_events_with_a_long_tag_or_an_early_year_replay(
    cosmos_settings: Settings, azurite: LocalAzurite
) -> None:
    contents = {
        json.loads(decode_message(c))["document"]["id"]: c
        for c in fixture("6e76088")["edge"]["messages"]
    }
    with deployed(app_settings(cosmos_settings, new_queue(azurite))):
        for event_id in ("edge-long-tag", "edge-year-999"):
            message = func.QueueMessage(body=decode_message(contents[event_id]))
            function_app.replay_fallback(message)
    assert set(stored_by(cosmos_settings)) == {"edge-long-tag", "edge-year-999"}


def test_an_old_parked_event_with_a_long_repository_is_stored_by_replay(
    cosmos_settings: Settings, azurite: LocalAzurite
) -> None:
    [content] = [
        c
        for c in fixture("6e76088")["edge"]["messages"]
        if json.loads(decode_message(c))["document"]["id"] == "edge-long-repository"
    ]
    assert len(json.loads(decode_message(content))["document"]["repository"]) == 300
    with deployed(app_settings(cosmos_settings, new_queue(azurite))):
        function_app.replay_fallback(func.QueueMessage(body=decode_message(content)))
    assert set(stored_by(cosmos_settings)) == {"edge-long-repository"}
