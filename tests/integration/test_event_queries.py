"""The read side against the real local Cosmos DB API server: SQL, partitions, paging, CLI."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.config import QUERY_BUDGET_S, Settings
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.queries import fetch_page, handle_events_query, parse_event_query
from acr_webhook.repository import CosmosEventRepository
from tests.conftest import fresh_settings
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer

RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64
SHARED_ID = "0b5e1f2c-shared-id"  # the same event id recorded in two repositories


def document(
    repository: str,
    action: str,
    tag: str | None,
    digest: str,
    at: str,
    event_id: str | None = None,
) -> dict[str, Any]:
    payload = payloads.with_new_id(payloads.PUSH, repository=repository, tag=tag or "")
    payload["target"]["digest"] = digest
    payload.update(action=action, timestamp=at)
    if event_id:
        payload["id"] = event_id
    return to_document(AcrEvent.model_validate(payload), RECEIVED)


# Three repositories (partitions), every recorded action, untagged pushes, deletes by digest,
# equal timestamps within and across partitions, and one id in two partitions.
SEED = [
    document("team/api", "push", "v1", DIGEST_A, "2026-11-01T08:00:00Z"),
    document("team/api", "push", "latest", DIGEST_A, "2026-11-01T08:00:00Z"),
    document("team/api", "push", "v2", DIGEST_B, "2026-11-02T09:30:00.5Z"),
    document("team/api", "push", "latest", DIGEST_B, "2026-11-02T09:30:00.5Z"),
    document("team/api", "push", None, DIGEST_C, "2026-11-03T10:00:00Z"),
    document("team/api", "delete", None, DIGEST_A, "2026-11-04T11:00:00Z"),
    document("team/api", "quarantine", "v3", DIGEST_C, "2026-11-05T00:00:00Z"),
    document("team/web", "push", "v1", DIGEST_A, "2026-11-02T09:30:00.5Z"),
    document("team/web", "push", "latest", DIGEST_A, "2026-11-02T12:00:00Z"),
    document("team/web", "delete", None, DIGEST_A, "2026-11-06T00:00:00.000001Z"),
    document("team/web", "push", "v2", DIGEST_B, "2026-11-06T00:00:00Z", SHARED_ID),
    document("hello-world", "push", "v2", DIGEST_B, "2026-11-06T00:00:00Z", SHARED_ID),
    document("hello-world", "push", "v1", DIGEST_C, "2026-10-31T23:59:59.999999Z"),
    document("hello-world", "chart_push", "chart-1.0.0.tgz", DIGEST_B, "2026-11-03T10:00:00Z"),
    document("hello-world", "chart_delete", "chart-1.0.0.tgz", DIGEST_B, "2026-11-07T00:00:00Z"),
    document("hello-world", "push", None, DIGEST_A, "2026-11-07T00:00:00Z"),
]


def key(doc: dict[str, Any]) -> tuple[str, str]:
    return (doc["repository"], doc["id"])


def expected(params: dict[str, str]) -> list[dict[str, Any]]:
    """What a query must return, worked out in Python from SEED (newest first)."""
    query = parse_event_query(params)
    matches = [
        doc
        for doc in SEED
        if all(
            getattr(query, name) is None or doc[name] == getattr(query, name)
            for name in ("repository", "tag", "digest", "action")
        )
        and (query.since is None or doc["timestamp"] >= query.since)
        and (query.until is None or doc["timestamp"] < query.until)
    ]
    return sorted(matches, key=lambda doc: doc["timestamp"], reverse=True)


def assert_same_events_newest_first(
    returned: list[dict[str, Any]], wanted: list[dict[str, Any]]
) -> None:
    assert sorted(map(key, returned)) == sorted(map(key, wanted))  # each once, none missing
    stamps = [doc["timestamp"] for doc in returned]
    assert stamps == sorted(stamps, reverse=True)
    by_key = {key(doc): doc for doc in wanted}
    for doc in returned:
        assert doc == by_key[key(doc)]  # exactly as written: no _rid, _ts, _etag ...


@pytest.fixture(scope="module")
def seeded_settings(cosmos_server: LocalCosmosServer) -> Settings:
    settings = fresh_settings(cosmos_server)
    writer = CosmosEventRepository(settings)
    for doc in SEED:
        assert writer.add(doc)
    return settings


@pytest.fixture
def repository(seeded_settings: Settings) -> CosmosEventRepository:
    return CosmosEventRepository(seeded_settings)


def get(params: dict[str, str], repository: CosmosEventRepository) -> tuple[int, Any]:
    result = handle_events_query(params, repository)
    return result.status, result.body


def test_everything_newest_first(repository: CosmosEventRepository) -> None:
    status, body = get({}, repository)
    assert status == 200
    assert body["continuation"] is None
    assert_same_events_newest_first(body["events"], expected({}))
    assert len(body["events"]) == len(SEED)


@pytest.mark.parametrize(
    "params",
    [
        {"repository": "team/api"},
        {"repository": "hello-world"},
        {"tag": "latest"},
        {"tag": "v2"},
        {"digest": DIGEST_A},
        {"digest": DIGEST_B},
        {"action": "push"},
        {"action": "delete"},
        {"action": "chart_delete"},
        {"since": "2026-11-06T00:00:00Z"},  # inclusive: the two events at exactly 00:00
        {"until": "2026-11-01T08:00:00Z"},  # exclusive: only the one before
        {"since": "2026-11-02T09:30:00.5+00:00", "until": "2026-11-03T10:00:00.000001Z"},
        {"repository": "team/api", "tag": "latest"},
        {"repository": "team/api", "action": "push", "digest": DIGEST_A},
        {"digest": DIGEST_B, "action": "push", "since": "2026-11-02"},
        {"repository": "hello-world", "since": "2026-11-03", "until": "2026-11-07"},
        {
            "repository": "team/web",
            "tag": "latest",
            "digest": DIGEST_A,
            "action": "push",
            "since": "2026-11-01",
            "until": "2026-11-03",
        },
    ],
)
def test_each_filter_alone_and_combined(
    repository: CosmosEventRepository, params: dict[str, str]
) -> None:
    wanted = expected(params)
    assert wanted, "a filter test needs something to find"
    assert len(wanted) < len(SEED), "and something to leave out"
    status, body = get(params, repository)
    assert status == 200
    assert_same_events_newest_first(body["events"], wanted)


@pytest.mark.parametrize(
    "params",
    [
        {"repository": "no-such-repository"},
        {"repository": "team/web", "tag": "v3"},
        {"digest": "sha256:" + "0" * 64},
        {"action": "quarantine", "repository": "hello-world"},
        {"since": "2027-01-01"},
        {"until": "2026-10-01"},
    ],
)
def test_no_match_is_an_empty_page(
    repository: CosmosEventRepository, params: dict[str, str]
) -> None:
    assert get(params, repository) == (200, {"events": [], "continuation": None})


def test_empty_container(cosmos_settings: Settings) -> None:
    repository = CosmosEventRepository(cosmos_settings)
    assert get({}, repository) == (200, {"events": [], "continuation": None})
    assert get({"repository": "team/api"}, repository) == (
        200,
        {"events": [], "continuation": None},
    )


def test_with_repository_the_query_is_single_partition(
    repository: CosmosEventRepository, query_calls: list[dict[str, Any]]
) -> None:
    assert get({"repository": "team/web", "action": "push"}, repository)[0] == 200
    [call] = query_calls
    assert call["partition_key"] == "team/web"
    assert not call.get("enable_cross_partition_query")


def test_without_repository_the_query_is_cross_partition(
    repository: CosmosEventRepository, query_calls: list[dict[str, Any]]
) -> None:
    assert get({"tag": "latest"}, repository)[0] == 200
    [call] = query_calls
    assert call["enable_cross_partition_query"] is True
    assert "partition_key" not in call


def test_limit_returns_that_many_newest(repository: CosmosEventRepository) -> None:
    status, body = get({"limit": "3"}, repository)
    assert status == 200
    assert [doc["timestamp"] for doc in body["events"]] == [
        doc["timestamp"] for doc in expected({})[:3]
    ]
    assert isinstance(body["continuation"], str)


def test_limit_equal_to_the_matches_has_no_continuation(
    repository: CosmosEventRepository,
) -> None:
    wanted = expected({"repository": "team/web"})
    _, body = get({"repository": "team/web", "limit": str(len(wanted))}, repository)
    assert len(body["events"]) == len(wanted)
    assert body["continuation"] is None


def page_through(
    repository: CosmosEventRepository, params: dict[str, str]
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    token: str | None = None
    while True:
        status, body = get({**params, **({"continuation": token} if token else {})}, repository)
        assert status == 200, body
        pages.append(body["events"])
        token = body["continuation"]
        if token is None:
            return pages
        assert len(pages) <= len(SEED), "paging does not end"


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 1000])
@pytest.mark.parametrize(
    "filters",
    [{}, {"repository": "team/api"}, {"action": "push"}, {"since": "2026-11-02"}],
    ids=["all", "one-partition", "cross-partition-filter", "since"],
)
def test_paging_with_continuation_until_exhausted(
    repository: CosmosEventRepository, limit: int, filters: dict[str, str]
) -> None:
    wanted = expected(filters)
    pages = page_through(repository, {**filters, "limit": str(limit)})
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit, "the last page is never empty"
    assert_same_events_newest_first([doc for page in pages for doc in page], wanted)


def test_a_page_boundary_inside_equal_timestamps_loses_nothing(
    repository: CosmosEventRepository,
) -> None:
    # The two 2026-11-06T00:00:00Z events share a timestamp and an id (in two partitions).
    params = {"since": "2026-11-06T00:00:00Z", "until": "2026-11-06T00:00:00.000001Z"}
    first = fetch_page(parse_event_query({**params, "limit": "1"}), repository)
    assert first.continuation is not None
    rest = fetch_page(
        parse_event_query({**params, "limit": "1", "continuation": first.continuation}),
        repository,
    )
    assert rest.continuation is None
    assert {key(doc) for doc in first.events + rest.events} == {
        ("team/web", SHARED_ID),
        ("hello-world", SHARED_ID),
    }


def test_bad_parameters_are_400_and_query_nothing(
    repository: CosmosEventRepository, query_calls: list[dict[str, Any]]
) -> None:
    for params, name in [
        ({"limit": "1001"}, "limit"),
        ({"limit": "zero"}, "limit"),
        ({"since": "last tuesday"}, "since"),
        ({"action": "pull"}, "action"),
        ({"digest": "aaaa"}, "digest"),
        ({"continuation": "garbage"}, "continuation"),
        ({"reposiotry": "team/api"}, "reposiotry"),
    ]:
        status, body = get(params, repository)
        assert status == 400
        assert body["error"].startswith(f"{name}: ")
    assert query_calls == []


# docs/queries.md: a stopped database answers within 1 s, a hung one within 7 s (each call is
# bounded at 5 s, the whole query at QUERY_BUDGET_S).
STOPPED_ANSWER_S = 1.0
HUNG_ANSWER_S = 7.0


def test_frozen_database_is_503_within_budget_and_recovers(
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    repository = CosmosEventRepository(settings)
    assert repository.add(SEED[0])
    assert get({}, repository)[0] == 200
    restartable_cosmos_server.freeze()
    try:
        for _ in range(2):  # the second runs with the endpoint marked unavailable
            started = time.monotonic()
            status, body = get({"repository": "team/api"}, repository)
            assert status == 503
            assert body == {"error": "the event store is unavailable; try again later"}
            assert time.monotonic() - started < HUNG_ANSWER_S
    finally:
        restartable_cosmos_server.thaw()
    status, body = get({}, repository)
    assert status == 200
    assert [doc["id"] for doc in body["events"]] == [SEED[0]["id"]]


def test_stopped_database_is_503_at_once(restartable_cosmos_server: LocalCosmosServer) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    restartable_cosmos_server.stop()
    started = time.monotonic()
    assert get({}, CosmosEventRepository(settings))[0] == 503
    assert time.monotonic() - started < STOPPED_ANSWER_S


def test_a_database_hung_before_the_first_read_is_503_within_budget(
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    """The slowest case: the client is built against a hung database (~6 s measured)."""
    settings = fresh_settings(restartable_cosmos_server)
    restartable_cosmos_server.freeze()
    try:
        started = time.monotonic()
        assert get({}, CosmosEventRepository(settings))[0] == 503
        assert time.monotonic() - started < HUNG_ANSWER_S < QUERY_BUDGET_S
    finally:
        restartable_cosmos_server.thaw()


def test_missing_container_is_503_not_a_crash(seeded_settings: Settings) -> None:
    settings = dataclasses.replace(seeded_settings, cosmos_container="never-made")
    assert get({}, CosmosEventRepository(settings))[0] == 503


# --- the CLI against the server -----------------------------------------------------------


def cli_on(settings: Settings, monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    """The CLI reads ``settings``, from the environment only (no local.settings.json)."""
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("COSMOS_ENDPOINT", settings.cosmos_endpoint)
    monkeypatch.setenv("COSMOS_KEY", settings.cosmos_key or "")
    monkeypatch.setenv("COSMOS_DATABASE", settings.cosmos_database)
    monkeypatch.setenv("COSMOS_CONTAINER", settings.cosmos_container)


@pytest.fixture
def cli_env(seeded_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cli_on(seeded_settings, monkeypatch, tmp_path)


@pytest.mark.parametrize("missing", ["cosmos_container", "cosmos_database"])
def test_the_cli_names_a_container_or_database_that_does_not_exist(
    seeded_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    missing: str,
) -> None:
    """A setting naming no container (a typo, provision not run) is exit 2 naming both, not
    exit 1 'unavailable', which tells a script to run again (docs/queries.md). The read API
    still answers 503 (test above): the deployed app has nothing else to say."""
    wrong = (
        dataclasses.replace(seeded_settings, cosmos_container="never-made")
        if missing == "cosmos_container"
        else dataclasses.replace(seeded_settings, cosmos_database="never-made")
    )
    cli_on(wrong, monkeypatch, tmp_path)
    for view in ([], ["--pushes"]):
        assert cli.main(["events", *view]) == 2
        err = capsys.readouterr().err
        assert "does not exist" in err and "never-made" in err and "run provision" in err


@pytest.mark.usefixtures("cli_env")
def test_cli_table_pages_through_a_repository(capsys: pytest.CaptureFixture[str]) -> None:
    wanted = expected({"repository": "team/api"})
    rows: list[str] = []
    args = ["events", "--repository", "team/api", "--limit", "3"]
    token: str | None = None
    for _ in range(len(wanted)):
        assert cli.main(args + (["--continuation", token] if token else [])) == 0
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["TIMESTAMP", "ACTION", "REPOSITORY"]
        table, _, more = out.partition("\n\n")
        rows += table.splitlines()[1:]
        token = more.split("--continuation ")[1].strip() if more else None
        if token is None:
            break
    assert [row.split()[0] for row in rows] == [doc["timestamp"] for doc in wanted]
    assert all(row.split()[2] == "team/api" for row in rows)


@pytest.mark.usefixtures("cli_env")
def test_cli_json_matches_the_endpoint(
    repository: CosmosEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["events", "--digest", DIGEST_B, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert_same_events_newest_first(printed["events"], expected({"digest": DIGEST_B}))
    assert printed["continuation"] is None


# --- one row per push, against the real server (it has no GROUP BY: the app groups) --------


def replicated_push(
    repository: str, tag: str, digest: str, regions: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """One push's events from a geo-replicated registry: one per replica, each its location."""
    documents = []
    for location, at in regions:
        doc = document(repository, "push", tag, digest, at)
        doc["location"] = location
        documents.append(doc)
    return documents


def test_pushes_view_groups_replica_events_and_pages_every_event_once(
    cosmos_settings: Settings,
) -> None:
    repository = CosmosEventRepository(cosmos_settings)
    documents = [
        *replicated_push(
            "team/api",
            "v1",
            DIGEST_A,
            [("westeurope", "2026-11-23T10:00:00Z"), ("eastus", "2026-11-23T10:00:42Z")],
        ),
        *replicated_push(
            "team/web",
            "v1",
            DIGEST_B,
            [("westeurope", "2026-11-23T10:00:10Z"), ("eastus", "2026-11-23T10:00:42Z")],
        ),
        *replicated_push("team/api", "v2", DIGEST_C, [("eastus", "2026-11-23T09:00:00Z")]),
    ]
    for doc in documents:
        assert repository.add(doc)

    result = handle_events_query({"view": "pushes"}, repository)
    body = result.body
    assert result.status == 200
    assert body is not None and body["continuation"] is None
    rows = {(row["repository"], row["tag"]): row for row in body["pushes"]}
    assert set(rows) == {("team/api", "v1"), ("team/web", "v1"), ("team/api", "v2")}
    assert rows[("team/api", "v1")]["timestamp"] == "2026-11-23T10:00:00.000000Z"
    assert [r["location"] for r in rows[("team/api", "v1")]["regions"]] == ["westeurope", "eastus"]

    # One push per page: every event still lands on exactly one page.
    seen, token = [], None
    for _ in range(10):
        params = {"view": "pushes", "limit": "1", **({"continuation": token} if token else {})}
        page = handle_events_query(params, repository).body
        assert page is not None
        seen += [
            (row["repository"], row["tag"], region["location"], region["timestamp"])
            for row in page["pushes"]
            for region in row["regions"]
        ]
        token = page["continuation"]
        if token is None:
            break
    assert token is None
    assert sorted(seen) == sorted(
        (d["repository"], d["tag"], d["location"], d["timestamp"]) for d in documents
    )

    # "When did each region get it": filter by digest, one complete row.
    result = handle_events_query({"view": "pushes", "digest": DIGEST_B}, repository)
    assert result.body is not None
    [row] = result.body["pushes"]
    assert [(r["location"], r["timestamp"]) for r in row["regions"]] == [
        ("westeurope", "2026-11-23T10:00:10.000000Z"),
        ("eastus", "2026-11-23T10:00:42.000000Z"),
    ]


# --- events that share a timestamp: short tokens, against the server's SQL -----------------

# docs/queries.md: whatever the data, a token is at most this long.
TOKEN_CHARS = 512
# The longest repository name (models.MAX_REPOSITORY_LENGTH), in 4-byte characters.
LONG_REPOSITORY = "😀" * 255
TIED_AT = "2026-11-23T10:00:00Z"


def follow_pages(
    params: dict[str, str], repository: CosmosEventRepository, rows: str = "events"
) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """Every page of the query through the handler, and the tokens it issued."""
    pages: list[list[dict[str, Any]]] = []
    tokens: list[str] = []
    while len(pages) < 50:
        token = {"continuation": tokens[-1]} if tokens else {}
        status, body = get({**params, **token}, repository)
        assert status == 200, body
        pages.append(body[rows])
        if body["continuation"] is None:
            return pages, tokens
        tokens.append(body["continuation"])
    raise AssertionError("paging does not end")


@pytest.mark.parametrize(
    ("params", "rows"),
    [
        ({"repository": LONG_REPOSITORY, "limit": "10"}, "events"),
        ({"repository": LONG_REPOSITORY, "limit": "4"}, "events"),
        ({"limit": "3"}, "events"),  # cross-partition
        ({"repository": LONG_REPOSITORY, "limit": "5", "view": "pushes"}, "pushes"),
        ({"limit": "4", "view": "pushes"}, "pushes"),
    ],
)
def test_ties_with_the_longest_keys_page_through_with_short_tokens(
    cosmos_settings: Settings, params: dict[str, str], rows: str
) -> None:
    # The audit's case (12 events at one instant, the longest keys in 4-byte characters: page 2
    # refused an 81,475-character token), with events before and after them, some tied ones in
    # another partition.
    repository = CosmosEventRepository(cosmos_settings)
    tied = [
        document(LONG_REPOSITORY, "push", f"v{n}", DIGEST_A, TIED_AT, "😀" * 253 + f"{n:02d}")
        for n in range(12)
    ]
    tied += [document("team/api", "push", f"v{n}", DIGEST_A, TIED_AT) for n in range(12, 15)]
    around = [
        document(LONG_REPOSITORY, "push", f"other{n}", DIGEST_B, at)
        for n, at in enumerate(["2026-11-23T11:00:00Z", "2026-11-23T09:00:00Z", "2026-11-22"])
    ]
    for doc in tied + around:
        assert repository.add(doc)
    wanted = [doc for doc in tied + around if params.get("repository") in (None, doc["repository"])]

    pages, tokens = follow_pages(params, repository, rows)

    assert tokens
    assert all(len(token) <= TOKEN_CHARS for token in tokens)
    assert all(len(page) == int(params["limit"]) for page in pages[:-1])
    returned = [(row["repository"], row["tag"]) for page in pages for row in page]
    assert sorted(returned) == sorted((doc["repository"], doc["tag"]) for doc in wanted)
    stamps = [row["timestamp"] for page in pages for row in page]
    assert stamps == sorted(stamps, reverse=True)


def test_a_timestamp_with_too_many_events_is_skipped_against_the_server(
    cosmos_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("acr_webhook.queries.MAX_TIED_EVENTS", 3)  # 1,000 in the unit tests
    repository = CosmosEventRepository(cosmos_settings)
    newer = document("team/api", "push", "new", DIGEST_A, "2026-11-23T11:00:00Z")
    crowded = [document("team/api", "push", f"t{n}", DIGEST_A, TIED_AT) for n in range(4)]
    older = document("team/web", "push", "old", DIGEST_B, "2026-11-23T09:00:00Z")
    for doc in [newer, *crowded, older]:
        assert repository.add(doc)

    status, first = get({"limit": "2"}, repository)
    assert status == 200
    assert [doc["id"] for doc in first["events"]] == [newer["id"]]
    assert first["skipped"]["timestamp"] == "2026-11-23T10:00:00.000000Z"
    status, second = get({"limit": "2", "continuation": first["continuation"]}, repository)
    assert (status, second) == (200, {"events": [older], "continuation": None})

    cli_on(cosmos_settings, monkeypatch, tmp_path)  # --json prints what the endpoint answers
    assert cli.main(["events", "--json", "--limit", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == first
