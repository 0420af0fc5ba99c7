"""The read side without a database: parameters, paging tokens, the handler, the route, the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import function_app
from acr_webhook import __main__ as cli
from acr_webhook.config import QUERY_BUDGET_S, Settings
from acr_webhook.local.host import LocalFunctionsHost
from acr_webhook.models import (
    DEFAULT_LIMIT,
    MAX_REPOSITORY_LENGTH,
    AcrEvent,
    EventQuery,
    filters_fingerprint,
    to_document,
)
from acr_webhook.queries import (
    MAX_LIMIT,
    SKIPPED_REASON,
    QueryError,
    fetch_page,
    handle_events_query,
    page_body,
    parse_event_query,
)
from acr_webhook.repository import CosmosEventRepository, events_sql
from acr_webhook.store import RepositoryUnavailableError
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.properties import DETERMINISTIC
from tests.support.stepped_calls import SteppedClock

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
KEY = "unit-function-key"


def event(
    repository: str = "team/api",
    *,
    tag: str | None = "v1",
    digest: str = DIGEST_A,
    action: str = "push",
    at: str = "2026-11-23T10:00:00Z",
    event_id: str | None = None,
) -> dict[str, Any]:
    """A document exactly as the webhook handler would have stored it."""
    payload = payloads.with_new_id(payloads.PUSH, repository=repository, tag=tag or "")
    payload["target"]["digest"] = digest
    payload.update(action=action, timestamp=at)
    if event_id is not None:
        payload["id"] = event_id
    return to_document(AcrEvent.model_validate(payload), NOW)


def call(params: dict[str, str], reader: FakeEventRepository) -> tuple[int, dict[str, Any]]:
    result = handle_events_query(params, reader, now=lambda: NOW)
    assert result.body is not None
    return result.status, result.body


def ids(body: dict[str, Any]) -> list[str]:
    return [document["id"] for document in body["events"]]


@pytest.fixture
def reader() -> FakeEventRepository:
    return FakeEventRepository()


def seed(reader: FakeEventRepository, *documents: dict[str, Any]) -> list[dict[str, Any]]:
    for document in documents:
        assert reader.add(document)
    return list(documents)


def test_the_read_api_answers_a_stored_lone_surrogate_as_u_fffd(
    reader: FakeEventRepository,
) -> None:
    """An earlier version stored a body's "\\udc00" as is; the page's JSON would carry that
    escape, which strict clients (jq, Go) refuse for the whole page."""
    seed(reader, {**event(), "userAgent": "curl\udc00"})
    status, body = call({}, reader)
    assert status == 200
    assert body["events"][0]["userAgent"] == "curl\ufffd"


# --- parameters ---------------------------------------------------------------------------


def test_no_parameters_means_everything_newest_fifty() -> None:
    query = parse_event_query({})
    assert query.limit == DEFAULT_LIMIT == 50
    assert (query.repository, query.tag, query.digest, query.action) == (None,) * 4
    assert (query.since, query.until, query.after) == (None, None, None)
    assert not query.single_partition


def test_every_parameter_is_parsed_and_code_is_ignored() -> None:
    query = parse_event_query(
        {
            "code": "the-function-key",
            "repository": "team/api",
            "tag": "v1",
            "digest": DIGEST_A,
            "action": "delete",
            "since": "2026-11-01T00:00:00Z",
            "until": "2026-11-02",
            "limit": "1000",
        }
    )
    assert query.repository == "team/api"
    assert query.single_partition
    assert (query.tag, query.digest, query.action) == ("v1", DIGEST_A, "delete")
    assert query.since == "2026-11-01T00:00:00.000000Z"
    assert query.until == "2026-11-02T00:00:00.000000Z"
    assert query.limit == MAX_LIMIT


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2024-05-02T08:15:42Z", "2024-05-02T08:15:42.000000Z"),
        ("2024-05-02T08:15:42.5Z", "2024-05-02T08:15:42.500000Z"),
        ("2024-05-02T08:15:42.123456789Z", "2024-05-02T08:15:42.123456Z"),  # ACR's nanoseconds
        ("2024-05-02T10:15:42+02:00", "2024-05-02T08:15:42.000000Z"),
        ("2024-05-02T03:15:42-05:00", "2024-05-02T08:15:42.000000Z"),
        ("2024-05-02T08:15:42", "2024-05-02T08:15:42.000000Z"),  # naive means UTC
        ("2024-05-02", "2024-05-02T00:00:00.000000Z"),
        ("PT1H", "2026-11-23T11:00:00.000000Z"),
        ("PT90M", "2026-11-23T10:30:00.000000Z"),
        ("P7D", "2026-11-16T12:00:00.000000Z"),
        ("P1DT12H", "2026-11-22T00:00:00.000000Z"),
        ("P2W", "2026-11-09T12:00:00.000000Z"),
    ],
)
def test_times_become_the_stored_fixed_width_utc_form(given: str, stored: str) -> None:
    assert parse_event_query({"since": given}, now=lambda: NOW).since == stored
    assert parse_event_query({"until": given}, now=lambda: NOW).until == stored


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("1000-01-01T00:00:00Z", "1000-01-01T00:00:00.000000Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_the_first_and_last_years_stored_are_accepted(given: str, stored: str) -> None:
    """The years a stored timestamp has (1000 to 9999, as the error says): both ends included."""
    assert parse_event_query({"since": given}).since == stored


@pytest.mark.usefixtures("host_in_another_time_zone")
def test_a_time_without_an_offset_is_utc_whatever_the_hosts_time_zone() -> None:
    query = parse_event_query({"since": "2024-05-02T08:15:42"}, now=lambda: NOW)
    assert query.since == "2024-05-02T08:15:42.000000Z"


def rejected(params: dict[str, str]) -> QueryError:
    with pytest.raises(QueryError) as caught:
        parse_event_query(params, now=lambda: NOW)
    return caught.value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "-1"),
        ("limit", "+5"),
        ("limit", " 5"),
        ("limit", "five"),
        ("limit", "1.5"),
        ("limit", "1e3"),
        ("limit", ""),
        ("limit", "99999999999999999999"),
        ("since", "yesterday"),
        ("since", ""),
        ("since", "2024-13-01"),
        ("since", "P"),
        ("since", "PT"),
        ("since", "-PT1H"),
        ("since", "P99999999999D"),  # too far back for a datetime
        ("since", "0999-12-31T00:00:00Z"),  # would not be fixed-width
        ("since", "0001-01-01T00:00:00+01:00"),  # before datetime.min in UTC
        ("until", "2024-05-02T25:00:00Z"),
        ("action", "pull"),
        ("action", "PUSH"),
        ("action", "ping"),
        ("action", ""),
        ("digest", "80f0d5c8786b"),  # a short digest without the algorithm
        ("digest", "sha256:"),
        ("digest", "SHA256:abc"),
        ("digest", ""),
        ("repository", ""),
        ("repository", "x" * 1025),
        ("tag", ""),
        ("continuation", ""),
        ("continuation", "not a token!"),
    ],
)
def test_each_bad_parameter_is_named(name: str, value: str) -> None:
    error = rejected({name: value})
    assert error.parameters == (name,)
    assert str(error).startswith(f"{name}: ")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tag": ""}, "tag: must not be empty"),
        ({"since": "P99999999999D"}, "since: is out of range"),  # before datetime.min
        (
            {"since": "yesterday"},
            "since: must be an ISO 8601 time such as 2024-05-01T12:00:00Z "
            "or a duration before now such as PT1H",
        ),
    ],
)
def test_a_bad_value_is_explained_with_what_to_send_instead(
    params: dict[str, str], message: str
) -> None:
    assert str(rejected(params)) == message


@pytest.mark.parametrize(
    ("name", "value_of_length"),
    [
        # The first versions stored repository names up to 1,024 characters, and tags and
        # digests of any length: documents the endpoint still reads.
        ("repository", lambda length: "r" * length),
        ("tag", lambda length: "t" * length),
        # An algorithm of no fixed length: sha256's and sha512's are refused at any other.
        ("digest", lambda length: "blake3:" + "a" * (length - 7)),
    ],
)
def test_filters_take_the_longest_value_any_version_stored(
    name: str, value_of_length: Callable[[int], str]
) -> None:
    longest = value_of_length(1024)
    assert getattr(parse_event_query({name: longest}), name) == longest
    error = rejected({name: value_of_length(1025)})
    assert str(error) == f"{name}: must be at most 1024 characters"


def test_a_repository_filter_longer_than_any_partition_key_is_refused() -> None:
    """1,024 characters may be 4 KB in UTF-8: no document has such a partition key (Cosmos DB's
    limit is 2 KB), and Cosmos DB refuses the query (a 503, were it sent)."""
    assert parse_event_query({"repository": "\u00e9" * 1024}).repository == "\u00e9" * 1024
    error = rejected({"repository": "\U0001f600" * 513})
    assert str(error) == "repository: must be at most 2048 bytes in UTF-8"


@pytest.mark.parametrize("name", ["Code", "CODE"])
def test_the_function_key_is_ignored_whatever_the_case_of_its_name(name: str) -> None:
    # The host takes ?CODE= as the key too (its name is case-insensitive).
    query = parse_event_query({name: KEY, "repository": "team/api"})
    assert query.repository == "team/api"
    assert rejected({name: KEY, "Repository": "team/api"}).parameters == ("Repository",)


def test_unknown_parameters_are_named_so_typos_do_not_widen_the_query() -> None:
    error = rejected({"repo": "team/api", "code": "key"})
    assert error.parameters == ("repo",)
    assert "repository" in str(error)  # says what is accepted


def test_every_problem_is_reported_at_once() -> None:
    error = rejected({"limit": "0", "action": "pull", "digest": "abc", "colour": "red"})
    assert set(error.parameters) == {"limit", "action", "digest", "colour"}
    # The 400's one line: each problem after its parameter's name, "; " between them and
    # nowhere else, so that the line splits back into its problems.
    assert str(error) == (
        "colour: unknown parameter (use registry, repository, tag, digest, action, since, until, "
        "view, limit, continuation); digest: must be a full digest such as sha256:<64 hex digits>; "
        "action: must be one of chart_delete, chart_push, delete, push, quarantine; "
        "limit: must be a whole number from 1 to 1000"
    )


def test_until_must_be_after_since() -> None:
    same = "2026-11-01T00:00:00Z"
    assert str(rejected({"since": same, "until": same})) == "until: must be later than since"
    later = {"since": "2026-11-02T00:00:00+00:00", "until": "2026-11-02T00:00:00+01:00"}
    assert rejected(later).parameters == ("until",)  # 23:00 the day before, in UTC


def test_sql_is_parameterised_single_ordered_and_bounded() -> None:
    query = parse_event_query({"repository": "x' OR 1=1 --", "tag": "v1", "since": "P1D"})
    sql, parameters = events_sql(query, 51)
    assert "x' OR" not in sql
    assert sql.startswith("SELECT TOP @limit * FROM c WHERE ")
    assert sql.endswith(" ORDER BY c.timestamp DESC")  # one property: no composite index needed
    values = {p["name"]: p["value"] for p in parameters}
    assert values["@limit"] == 51
    assert values["@repository"] == "x' OR 1=1 --"
    assert set(values) == {"@limit", "@repository", "@tag", "@since"}


# --- the handler --------------------------------------------------------------------------


def test_empty_store_is_an_empty_page(reader: FakeEventRepository) -> None:
    assert call({}, reader) == (200, {"events": [], "continuation": None})
    assert call({"repository": "nothing-here"}, reader) == (
        200,
        {"events": [], "continuation": None},
    )


def test_events_come_newest_first_as_stored(reader: FakeEventRepository) -> None:
    old, new, middle = seed(
        reader,
        event(at="2026-11-01T00:00:00Z"),
        event(at="2026-11-03T00:00:00Z"),
        event(at="2026-11-02T00:00:00.000001Z"),
    )
    status, body = call({}, reader)
    assert status == 200
    assert body["events"] == [new, middle, old]
    assert body["continuation"] is None


@pytest.fixture
def varied(reader: FakeEventRepository) -> dict[str, dict[str, Any]]:
    documents = {
        "api-v1": event("team/api", tag="v1", digest=DIGEST_A, at="2026-11-20T10:00:00Z"),
        "api-v2": event("team/api", tag="v2", digest=DIGEST_B, at="2026-11-21T10:00:00Z"),
        "api-untagged": event("team/api", tag=None, digest=DIGEST_B, at="2026-11-22T10:00:00Z"),
        "api-delete": event(
            "team/api", tag=None, digest=DIGEST_A, action="delete", at="2026-11-23T09:00:00Z"
        ),
        "web-v1": event("team/web", tag="v1", digest=DIGEST_A, at="2026-11-21T12:00:00Z"),
    }
    seed(reader, *documents.values())
    return documents


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"repository": "team/api"}, ["api-delete", "api-untagged", "api-v2", "api-v1"]),
        ({"tag": "v1"}, ["web-v1", "api-v1"]),
        ({"digest": DIGEST_A}, ["api-delete", "web-v1", "api-v1"]),
        ({"action": "delete"}, ["api-delete"]),
        ({"since": "2026-11-22T10:00:00Z"}, ["api-delete", "api-untagged"]),  # inclusive
        ({"until": "2026-11-21T12:00:00Z"}, ["api-v2", "api-v1"]),  # exclusive
        ({"repository": "team/api", "tag": "v1"}, ["api-v1"]),
        ({"repository": "team/api", "digest": DIGEST_B}, ["api-untagged", "api-v2"]),
        ({"digest": DIGEST_A, "action": "push"}, ["web-v1", "api-v1"]),
        ({"since": "2026-11-21", "until": "2026-11-22"}, ["web-v1", "api-v2"]),
        ({"repository": "team/web", "tag": "v2"}, []),
        ({"since": "PT3H"}, ["api-delete"]),  # NOW is 12:00; 09:00 is inclusive
    ],
)
def test_filters_alone_and_combined(
    reader: FakeEventRepository,
    varied: dict[str, dict[str, Any]],
    params: dict[str, str],
    expected: list[str],
) -> None:
    status, body = call(params, reader)
    assert status == 200
    assert ids(body) == [varied[name]["id"] for name in expected]


def test_limit_cuts_the_page_and_offers_a_continuation(
    reader: FakeEventRepository, varied: dict[str, dict[str, Any]]
) -> None:
    status, body = call({"limit": "2"}, reader)
    assert status == 200
    assert ids(body) == [varied["api-delete"]["id"], varied["api-untagged"]["id"]]
    assert isinstance(body["continuation"], str)
    assert reader.last_find is not None and reader.last_find[1] == 3  # one more, to know


def test_a_page_that_holds_the_rest_has_no_continuation(
    reader: FakeEventRepository, varied: dict[str, dict[str, Any]]
) -> None:
    _, body = call({"limit": str(len(varied))}, reader)
    assert len(body["events"]) == len(varied)
    assert body["continuation"] is None


def page_through(
    reader: FakeEventRepository,
    params: dict[str, str],
    rows: str = "events",
    tokens: list[str] | None = None,
) -> list[list[dict[str, Any]]]:
    """Every page of the query, following continuation tokens; ``rows``: the body's list;
    ``tokens`` collects the tokens."""
    pages: list[list[dict[str, Any]]] = []
    token: str | None = None
    while True:
        status, body = call({**params, **({"continuation": token} if token else {})}, reader)
        assert status == 200, body
        pages.append(body[rows])
        token = body["continuation"]
        if token is None:
            return pages
        if tokens is not None:
            tokens.append(token)
        assert len(pages) < 100, "paging does not end"


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 7, 50])
def test_paging_returns_each_event_once_even_with_equal_timestamps(
    reader: FakeEventRepository, limit: int
) -> None:
    # Ten events in three instants, one id recorded in two repositories at the same instant;
    # the fake returns equal timestamps in a new order on every call.
    documents = [
        event(f"repo-{i % 3}", at=f"2026-11-2{i % 3}T00:00:00Z", event_id=f"e{i}")
        for i in range(10)
    ]
    documents.append(event("repo-1", at="2026-11-21T00:00:00Z", event_id="e0"))
    for document in documents:
        reader.documents[f"{document['id']}/{document['repository']}"] = document

    pages = page_through(reader, {"limit": str(limit)})

    returned = [(d["id"], d["repository"]) for page in pages for d in page]
    assert sorted(returned) == sorted((d["id"], d["repository"]) for d in documents)
    stamps = [d["timestamp"] for page in pages for d in page]
    assert stamps == sorted(stamps, reverse=True)
    assert all(pages), "no empty page, not even the last"
    assert len(pages) == -(-len(documents) // limit)


def test_paging_keeps_the_filters(
    reader: FakeEventRepository, varied: dict[str, dict[str, Any]]
) -> None:
    pages = page_through(reader, {"repository": "team/api", "limit": "1"})
    assert [page[0]["id"] for page in pages] == [
        varied[name]["id"] for name in ("api-delete", "api-untagged", "api-v2", "api-v1")
    ]


def test_the_page_size_may_change_between_pages(
    reader: FakeEventRepository, varied: dict[str, dict[str, Any]]
) -> None:
    _, first = call({"limit": "1"}, reader)
    _, rest = call({"limit": "10", "continuation": first["continuation"]}, reader)
    assert ids(first) + ids(rest) == [
        d["id"] for d in sorted(varied.values(), key=lambda d: d["timestamp"], reverse=True)
    ]


def test_a_token_cannot_page_a_query_with_other_filters(
    reader: FakeEventRepository, varied: dict[str, dict[str, Any]]
) -> None:
    _, first = call({"repository": "team/api", "limit": "1"}, reader)
    status, body = call({"repository": "team/web", "continuation": first["continuation"]}, reader)
    assert (status, body) == (
        400,
        {"error": "continuation: belongs to a query with other filters; repeat the same filters"},
    )
    status, body = call({"continuation": first["continuation"]}, reader)
    assert status == 400


def test_a_page_ending_among_events_at_exactly_since_continues(
    reader: FakeEventRepository,
) -> None:
    """since is inclusive: a page may end among the events at that very time, and its token
    (whose position is then the window's lower bound) must carry on."""
    at_since = seed(reader, *(event(tag=f"v{n}", at="2026-11-23T10:00:00Z") for n in range(3)))
    seed(reader, event(tag="older", at="2026-11-23T09:59:59Z"))

    pages = page_through(reader, {"since": "2026-11-23T10:00:00Z", "limit": "1"})

    assert sorted(row["tag"] for page in pages for row in page) == sorted(
        document["tag"] for document in at_since
    )


def test_a_relative_since_keeps_its_window_across_pages(reader: FakeEventRepository) -> None:
    seed(reader, *(event(at=f"2026-11-23T11:0{i}:00Z") for i in range(3)))
    first = handle_events_query({"since": "PT1H", "limit": "1"}, reader, now=lambda: NOW)
    assert first.body is not None
    later = NOW + timedelta(minutes=5)  # 11:05 would drop two events if the window moved
    token = first.body["continuation"]
    query = parse_event_query({"since": "PT1H", "continuation": token}, now=lambda: later)
    assert query.since == "2026-11-23T11:00:00.000000Z"
    assert len(fetch_page(query, reader).events) == 2


# --- events that share a timestamp, and the size of tokens --------------------------------

# docs/queries.md: whatever the data, a token is at most this long.
TOKEN_CHARS: Final = 512
# docs/queries.md: at most this many events at one timestamp are listed; more are skipped.
TIED_EVENTS_LISTED: Final = 1000
LONG_REPOSITORY: Final = "😀" * MAX_REPOSITORY_LENGTH  # 4 bytes a character, 12 as JSON escapes


def long_keyed(count: int) -> list[dict[str, Any]]:
    """Events with the longest keys there are, in 4-byte characters, all at one instant."""
    return [
        event(LONG_REPOSITORY, tag=f"v{n}", event_id="😀" * 253 + f"{n:02d}") for n in range(count)
    ]


@pytest.mark.parametrize(("view", "limit"), [("events", 10), ("events", 3), ("pushes", 5)])
def test_many_ties_with_long_keys_give_short_tokens_that_page_through_them(
    reader: FakeEventRepository, view: str, limit: int
) -> None:
    # The audit's case: 12 events at one instant made an 81,475-character token at limit 10,
    # which page 2 refused.
    documents = seed(reader, *long_keyed(12))
    tokens: list[str] = []
    params = {"repository": LONG_REPOSITORY, "limit": str(limit), "view": view}

    pages = page_through(reader, params, view, tokens)

    assert tokens
    assert all(len(token) <= TOKEN_CHARS for token in tokens)
    assert all(len(page) == limit for page in pages[:-1])
    tags = [row["tag"] for page in pages for row in page]
    assert sorted(tags) == sorted(document["tag"] for document in documents)


@pytest.mark.parametrize("limit", [999, 1000])
def test_a_thousand_ties_at_the_largest_limit_give_a_short_token(
    reader: FakeEventRepository, limit: int
) -> None:
    # The audit's case: at limit=1000, a token for 1,000 tied uuid ids was 68,115 characters.
    # As many as are listed at one timestamp: none of them is skipped.
    tied = seed(reader, *(event(at="2026-11-23T10:00:00Z") for _ in range(TIED_EVENTS_LISTED)))
    older = seed(reader, event(at="2026-11-23T09:00:00Z"))
    tokens: list[str] = []

    pages = page_through(reader, {"limit": str(limit)}, tokens=tokens)

    assert [len(page) for page in pages] == [limit, len(tied) + len(older) - limit]
    assert len(tokens[0]) <= TOKEN_CHARS
    returned = [document["id"] for page in pages for document in page]
    assert returned[-1] == older[0]["id"]
    assert sorted(returned) == sorted(document["id"] for document in tied + older)


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 10, 29, 30, 31])
def test_ties_larger_than_a_page_fill_every_page_and_come_once(
    reader: FakeEventRepository, limit: int
) -> None:
    # 30 events at one instant (one id in two repositories) between others; the fake returns
    # equal timestamps in a new order on every call.
    tied = [
        event(f"repo-{n % 2}", at="2026-11-23T10:00:00Z", event_id=f"e{n // 2}") for n in range(30)
    ]
    others = [event(at=f"2026-11-23T{hour:02d}:00:00Z") for hour in (8, 9, 11, 12)]
    documents = [*tied, *others]
    for document in documents:
        reader.documents[f"{document['id']}/{document['repository']}"] = document
    tokens: list[str] = []

    pages = page_through(reader, {"limit": str(limit)}, tokens=tokens)

    assert all(len(token) <= TOKEN_CHARS for token in tokens)
    assert all(len(page) == limit for page in pages[:-1])
    returned = [(d["id"], d["repository"]) for page in pages for d in page]
    assert sorted(returned) == sorted((d["id"], d["repository"]) for d in documents)
    stamps = [d["timestamp"] for page in pages for d in page]
    assert stamps == sorted(stamps, reverse=True)


@pytest.mark.parametrize("view", ["events", "pushes"])
def test_a_timestamp_with_too_many_events_is_skipped_with_a_note(
    reader: FakeEventRepository, view: str, caplog: pytest.LogCaptureFixture
) -> None:
    seed(reader, *(event(tag=f"new{n}", at=f"2026-11-23T11:00:0{n}Z") for n in range(3)))
    crowded = "2026-11-23T10:00:00.000000Z"
    too_many = [event(tag=f"t{n}", at=crowded) for n in range(TIED_EVENTS_LISTED + 1)]
    seed(reader, *too_many)
    older = seed(reader, *(event(tag=f"old{n}", at=f"2026-11-23T09:00:0{n}Z") for n in range(3)))

    status, first = call({"limit": "50", "view": view}, reader)

    assert status == 200
    # The page ends before them, says so, and the next page carries on after them.
    assert [row["tag"] for row in first[view]] == ["new2", "new1", "new0"]
    assert first["skipped"] == {"timestamp": crowded, "reason": SKIPPED_REASON}
    assert f"more than {TIED_EVENTS_LISTED} events at {crowded} match" in caplog.text
    status, second = call(
        {"limit": "50", "view": view, "continuation": first["continuation"]}, reader
    )
    assert status == 200
    assert [row["tag"] for row in second[view]] == [d["tag"] for d in reversed(older)]
    assert second["continuation"] is None
    assert "skipped" not in second


def forged(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


STAMP = "2026-11-23T00:00:00.000000Z"
UNFILTERED = parse_event_query({}).fingerprint()


@pytest.mark.parametrize(
    "token",
    [
        forged([1, 2]),
        forged({"v": 0, "q": UNFILTERED, "t": STAMP, "k": None, "w": [None, None]}),
        forged({"v": True, "q": UNFILTERED, "t": STAMP, "k": None, "w": [None, None]}),
        forged({"v": 2, "q": UNFILTERED, "t": "yesterday", "k": None, "w": [None, None]}),
        forged({"v": 2, "q": UNFILTERED, "t": STAMP, "w": [None, None]}),
        forged({"v": 2, "q": UNFILTERED, "t": STAMP, "k": "e1/r", "w": [None, None]}),
        forged({"v": 2, "q": UNFILTERED, "t": STAMP, "k": ["0" * 32], "w": [None, None]}),
        forged({"v": 2, "q": UNFILTERED, "t": STAMP, "k": None, "w": ["x", None]}),
        forged({"v": 2, "q": UNFILTERED, "t": STAMP, "k": None}),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        forged({"v": 2, "q": UNFILTERED, "t": STAMP, "k": None, "w": [None, None], "x": "x" * 400}),
    ],
)
def test_malformed_tokens_are_400_naming_continuation(
    reader: FakeEventRepository, token: str
) -> None:
    status, body = call({"continuation": token}, reader)
    assert (status, body) == (
        400,
        {"error": "continuation: is not a continuation token from this endpoint; start without it"},
    )
    assert reader.find_calls == 0


def test_a_token_from_an_earlier_version_says_so(reader: FakeEventRepository) -> None:
    """Version 1 tokens listed the keys already seen (before 0ff15aa): a client that held one
    across an upgrade is told why it no longer pages, not that it never was a token."""
    token = forged({"v": 1, "q": UNFILTERED, "t": STAMP, "s": [], "w": [None, None]})
    status, body = call({"continuation": token}, reader)
    assert (status, body) == (
        400,
        {"error": "continuation: is from an earlier version of this endpoint; start without it"},
    )
    assert reader.find_calls == 0


def test_a_token_cannot_move_its_position_out_of_its_time_window(
    reader: FakeEventRepository,
) -> None:
    seed(reader, event(at="2026-11-22T12:00:00Z"), event(at="2026-11-23T12:00:00Z"))
    params = {"until": "2026-11-23"}
    window = [None, "2026-11-23T00:00:00.000000Z"]
    fingerprint = parse_event_query(params).fingerprint()

    def token(position: str) -> str:
        return forged({"v": 2, "q": fingerprint, "t": position, "k": None, "w": window})

    status, body = call({**params, "continuation": token("2026-11-24T00:00:00.000000Z")}, reader)
    assert (status, body["error"][:14]) == (400, "continuation: ")
    status, body = call({**params, "continuation": token("2026-11-22T12:00:00.000001Z")}, reader)
    assert (status, [d["timestamp"] for d in body["events"]]) == (
        200,
        ["2026-11-22T12:00:00.000000Z"],
    )


@pytest.mark.parametrize(
    ("params", "window"),
    [
        ({"since": "2026-11-23T11:00:00Z"}, [None, None]),
        ({"until": "2026-11-23T13:00:00Z"}, [None, None]),
        ({}, ["2026-11-23T11:00:00.000000Z", None]),
    ],
)
def test_a_token_cannot_drop_or_add_a_bound_of_its_time_window(
    reader: FakeEventRepository, params: dict[str, str], window: list[str | None]
) -> None:
    """Tokens are not signed: one whose window lacks the query's since (or until) would
    widen the query beyond its filter."""
    seed(reader, event(at="2026-11-23T10:00:00Z"), event(at="2026-11-23T11:30:00Z"))
    fingerprint = parse_event_query(params).fingerprint()
    position = "2026-11-23T12:00:00.000000Z"
    token = forged({"v": 2, "q": fingerprint, "t": position, "k": None, "w": window})
    status, body = call({**params, "continuation": token}, reader)
    assert (status, body["error"][:14]) == (400, "continuation: ")


def test_bad_parameters_are_400_without_reading(reader: FakeEventRepository) -> None:
    status, body = call({"limit": "0"}, reader)
    assert status == 400
    assert body == {"error": "limit: must be a whole number from 1 to 1000"}
    assert reader.find_calls == 0


def test_store_outage_is_503_with_a_plain_message(
    reader: FakeEventRepository, caplog: pytest.LogCaptureFixture
) -> None:
    reader.unavailable = True
    status, body = call({"repository": "team/api"}, reader)
    assert status == 503
    assert body == {"error": "the event store is unavailable; try again later"}
    assert "unavailable" in caplog.text


def test_logs_never_carry_the_function_key(
    reader: FakeEventRepository, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed(reader, event())
    for params in ({"code": KEY}, {"code": KEY, "limit": "0"}, {"code": KEY, "x": "1"}):
        call(params, reader)
    reader.unavailable = True
    call({"code": KEY}, reader)
    assert caplog.records
    assert KEY not in caplog.text


# --- the route, as function_app.py registers it ------------------------------------------


@pytest.fixture
def route_reader(app_repository: FakeEventRepository) -> FakeEventRepository:
    """function_app's own route, with the fake as its reader."""
    return app_repository


@pytest.fixture
def host(route_reader: FakeEventRepository) -> LocalFunctionsHost:
    return LocalFunctionsHost(function_app.app, KEY)


def get(host: LocalFunctionsHost, target: str, **headers: str) -> tuple[int, Any]:
    reply = host.dispatch("GET", target, headers, b"", "http://h")
    return reply.status, json.loads(reply.body)


def test_route_answers_json_with_the_key(
    host: LocalFunctionsHost, route_reader: FakeEventRepository
) -> None:
    pushed = event("team/api")
    route_reader.add(pushed)
    status, body = get(host, f"/api/acr/events?code={KEY}&repository=team%2Fapi&limit=5")
    assert (status, body) == (200, {"events": [pushed], "continuation": None})
    status, body = get(host, "/api/acr/events?tag=v1", **{"x-functions-key": KEY})
    assert status == 200 and len(body["events"]) == 1


@pytest.mark.parametrize("name", ["Code", "CODE"])
def test_route_takes_the_key_parameter_in_any_case(
    host: LocalFunctionsHost, route_reader: FakeEventRepository, name: str
) -> None:
    pushed = seed(route_reader, event("team/api"))
    status, body = get(host, f"/api/acr/events?{name}={KEY}&repository=team%2Fapi")
    assert (status, body) == (200, {"events": pushed, "continuation": None})


def test_route_names_the_bad_parameter(host: LocalFunctionsHost) -> None:
    status, body = get(host, f"/api/acr/events?code={KEY}&limit=5000")
    assert status == 400
    assert body["error"].startswith("limit: ")


def test_route_needs_the_key_and_get(host: LocalFunctionsHost) -> None:
    for target in ("/api/acr/events", "/api/acr/events?code=wrong"):
        assert host.dispatch("GET", target, {}, b"", "http://h").status == 401
    reply = host.dispatch("POST", f"/api/acr/events?code={KEY}", {}, b"{}", "http://h")
    assert reply.status == 404


def test_route_outage_is_503_json(
    host: LocalFunctionsHost, route_reader: FakeEventRepository
) -> None:
    route_reader.unavailable = True
    status, body = get(host, f"/api/acr/events?code={KEY}")
    assert status == 503
    assert "unavailable" in body["error"]


# --- the CLI ------------------------------------------------------------------------------


def test_table_shortens_digests_and_marks_missing_values() -> None:
    pushed = event("team/api", tag="v1", digest=DIGEST_A, at="2026-11-23T10:00:00Z")
    untagged = dict(event("alpine", tag=None, digest=DIGEST_B), size=None, registry=None)
    lines = cli.format_table([pushed, untagged]).splitlines()
    assert lines[0].split() == [
        "TIMESTAMP",
        "ACTION",
        "REPOSITORY",
        "TAG",
        "DIGEST",
        "SIZE",
        "REGISTRY",
    ]
    assert lines[1].split() == [
        "2026-11-23T10:00:00.000000Z",
        "push",
        "team/api",
        "v1",
        "sha256:aaaaaaaaaaaa",
        "524",
        "myregistry.azurecr.io",
    ]
    assert lines[2].split()[2:] == ["alpine", "<none>", "sha256:bbbbbbbbbbbb", "-", "-"]
    assert lines[1].index("push") == lines[0].index("ACTION")  # columns line up


def pushes_by(*actors: str) -> list[dict[str, Any]]:
    """One push of team/api:v1 to westeurope per actor, as the pushes view lists them."""
    return [
        {
            "timestamp": "2026-11-23T10:00:00.000000Z",
            "action": "push",
            "repository": "team/api",
            "tag": "v1",
            "digest": DIGEST_A,
            "registry": "myregistry.azurecr.io",
            "actor": actor,
            "regions": [{"location": "westeurope", "timestamp": "2026-11-23T10:00:00.000000Z"}],
        }
        for actor in actors
    ]


def test_the_pushes_table_lines_up_after_wide_and_combining_characters() -> None:
    """An actor's name in CJK takes two terminal columns a character, and a combining mark
    none: padding by code points shifted every later column of such a row."""
    pushes = pushes_by("\u5f20\u4f1f", "bob", "Zoe\u0308", "\uff21\uff22")
    lines = cli.format_pushes_table(pushes).splitlines()
    assert lines[0].endswith("ACTOR  REGIONS")
    assert [line.split("myregistry.azurecr.io  ", 1)[1] for line in lines[1:]] == [
        "\u5f20\u4f1f   westeurope",  # 4 columns + 1 to ACTOR's 5 + 2 between columns
        "bob    westeurope",
        "Zoe\u0308    westeurope",  # 3 columns
        "\uff21\uff22   westeurope",  # fullwidth Latin letters: 2 columns each too
    ]


def test_cli_prints_a_table_and_the_next_token(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(cli_reader, event(at="2026-11-01T00:00:00Z"), event(at="2026-11-02T00:00:00Z"))
    assert cli.main(["events", "--repository", "team/api", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "2026-11-02T00:00:00.000000Z" in out
    assert "2026-11-01" not in out
    token = out.split("--continuation ")[1].strip()

    assert cli.main(["events", "--repository", "team/api", "--continuation", token]) == 0
    out = capsys.readouterr().out
    assert "2026-11-01T00:00:00.000000Z" in out
    assert "--continuation" not in out


def test_cli_json_prints_the_documents(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    pushed = seed(cli_reader, event())[0]
    assert cli.main(["events", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"events": [pushed], "continuation": None}


def test_cli_says_when_there_is_nothing(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["events", "--action", "delete"]) == 0
    assert capsys.readouterr().out.strip() == "No events."


def test_cli_bad_parameters_exit_2_naming_the_option_without_a_database(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["events", "--limit", "0", "--since", "soon"]) == 2
    err = capsys.readouterr().err
    assert "--limit: " in err
    assert "--since: " in err
    assert cli_reader.find_calls == 0


def test_cli_outage_exits_1_with_a_message(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_reader.unavailable = True
    assert cli.main(["events"]) == 1
    err = capsys.readouterr().err
    assert "unavailable" in err
    assert "Traceback" not in err


def test_cli_without_endpoint_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COSMOS_ENDPOINT", raising=False)
    assert cli.main(["events", "--repository", "team/api"]) == 2
    assert "COSMOS_ENDPOINT" in capsys.readouterr().err


# --- one row per push (view=pushes, events --pushes) ---------------------------------------


def replicated(
    repository: str, tag: str | None, digest: str, regions: Sequence[tuple[str | None, str]]
) -> list[dict[str, Any]]:
    """The events of one push to a geo-replicated registry: one per replica, with its location
    and the time it had the image (None: a webhook delivery, which carries no location)."""
    documents = []
    for location, at in regions:
        document = event(repository, tag=tag, digest=digest, at=at)
        document["location"] = location
        documents.append(document)
    return documents


def test_one_row_per_push_with_the_first_time_and_each_regions_time(
    reader: FakeEventRepository,
) -> None:
    seed(
        reader,
        *replicated(
            "team/api",
            "v1",
            DIGEST_A,
            [
                ("eastus", "2026-11-23T10:00:09Z"),
                ("westeurope", "2026-11-23T10:00:00Z"),
                ("southeastasia", "2026-11-23T10:00:31Z"),
            ],
        ),
        *replicated("team/api", None, DIGEST_B, [(None, "2026-11-23T09:00:00Z")]),
    )
    status, body = call({"view": "pushes"}, reader)

    assert status == 200
    assert body["continuation"] is None
    first, by_digest = body["pushes"]
    assert {k: first[k] for k in ("repository", "tag", "digest", "action", "timestamp")} == {
        "repository": "team/api",
        "tag": "v1",
        "digest": DIGEST_A,
        "action": "push",
        "timestamp": "2026-11-23T10:00:00.000000Z",
    }
    assert first["regions"] == [
        {"location": "westeurope", "timestamp": "2026-11-23T10:00:00.000000Z"},
        {"location": "eastus", "timestamp": "2026-11-23T10:00:09.000000Z"},
        {"location": "southeastasia", "timestamp": "2026-11-23T10:00:31.000000Z"},
    ]
    assert (by_digest["tag"], by_digest["digest"]) == (None, DIGEST_B)
    assert by_digest["regions"] == [{"location": None, "timestamp": "2026-11-23T09:00:00.000000Z"}]


def test_a_push_rows_actor_comes_from_its_first_event_that_has_it(
    reader: FakeEventRepository,
) -> None:
    """A webhook delivery carries no actor: the row takes it from a replica's event."""
    webhook, first_replica, second_replica = replicated(
        "team/api",
        "v1",
        DIGEST_A,
        [
            (None, "2026-11-23T10:00:00Z"),
            ("westeurope", "2026-11-23T10:00:01Z"),
            ("eastus", "2026-11-23T10:00:09Z"),
        ],
    )
    webhook.update(actor=None)
    first_replica.update(actor="ci-bot")
    second_replica.update(actor="someone-else")
    seed(reader, webhook, first_replica, second_replica)

    status, body = call({"view": "pushes"}, reader)

    assert status == 200
    [row] = body["pushes"]
    assert (row["actor"], row["registry"]) == ("ci-bot", webhook["registry"])


def test_a_replica_naming_a_regional_host_of_the_registry_reports_the_same_push(
    reader: FakeEventRepository,
) -> None:
    """Which host a replica's event names is not documented: the login server, a regional
    endpoint of it, or either in capitals are one registry, so one push."""
    events = replicated(
        "team/api",
        "v1",
        DIGEST_A,
        [
            ("westeurope", "2026-11-23T10:00:00Z"),
            ("eastus", "2026-11-23T10:00:09Z"),
            ("japaneast", "2026-11-23T10:00:12Z"),
        ],
    )
    hosts = ("myregistry.azurecr.io", "myregistry.eastus.data.azurecr.io", "MyRegistry.azurecr.io")
    for event, host in zip(events, hosts, strict=True):
        event.update(registry=host)
    seed(reader, *events)

    status, body = call({"view": "pushes"}, reader)

    assert status == 200
    [row] = body["pushes"]
    assert row["registry"] == "myregistry.azurecr.io"  # as the first event recorded it
    assert [region["location"] for region in row["regions"]] == [
        "westeurope",
        "eastus",
        "japaneast",
    ]


def test_one_image_pushed_to_two_registries_is_a_push_row_in_each(
    reader: FakeEventRepository,
) -> None:
    """The registry is part of a push: a promotion from dev to prod was one row, the dev
    push "replicated" to prod's region, and the prod push never shown."""
    dev, prod = replicated(
        "team/api",
        "v1",
        DIGEST_A,
        [("westeurope", "2026-11-23T10:00:00Z"), ("eastus", "2026-11-23T10:05:00Z")],
    )
    dev.update(registry="contosodev.azurecr.io")
    prod.update(registry="contosoprod.azurecr.io")
    seed(reader, dev, prod)

    status, body = call({"view": "pushes"}, reader)

    assert status == 200
    assert [(row["registry"], row["timestamp"]) for row in body["pushes"]] == [
        ("contosoprod.azurecr.io", prod["timestamp"]),
        ("contosodev.azurecr.io", dev["timestamp"]),
    ]


def test_pushes_keep_the_filters(reader: FakeEventRepository) -> None:
    seed(
        reader,
        *replicated("team/api", "v1", DIGEST_A, [("westeurope", "2026-11-23T10:00:00Z")]),
        *replicated("team/web", "v1", DIGEST_A, [("westeurope", "2026-11-23T10:00:00Z")]),
    )
    status, body = call({"view": "pushes", "repository": "team/web"}, reader)
    assert status == 200
    assert [push["repository"] for push in body["pushes"]] == ["team/web"]


def test_paging_pushes_puts_every_event_on_exactly_one_page(reader: FakeEventRepository) -> None:
    # Three pushes whose replica events interleave in time, and ties on one timestamp.
    documents = seed(
        reader,
        *replicated(
            "team/api",
            "v1",
            DIGEST_A,
            [("westeurope", "2026-11-23T10:00:00Z"), ("eastus", "2026-11-23T10:05:00Z")],
        ),
        *replicated(
            "team/api",
            "v2",
            DIGEST_B,
            [("westeurope", "2026-11-23T10:01:00Z"), ("eastus", "2026-11-23T10:05:00Z")],
        ),
        *replicated(
            "team/web",
            "v1",
            DIGEST_A,
            [("westeurope", "2026-11-23T10:02:00Z"), ("eastus", "2026-11-23T10:05:00Z")],
        ),
    )
    pages = page_through(reader, {"view": "pushes", "limit": "1"}, "pushes")

    assert all(len(page) == 1 for page in pages)
    seen = [
        (push["repository"], push["tag"], region["location"], region["timestamp"])
        for page in pages
        for push in page
        for region in push["regions"]
    ]
    assert sorted(seen) == sorted(
        (d["repository"], d["tag"], d["location"], d["timestamp"]) for d in documents
    )
    whole = page_through(reader, {"view": "pushes", "limit": "3"}, "pushes")
    assert len(whole) == 1
    assert len(whole[0]) == 3  # with room for them, each push is one complete row
    assert all(len(push["regions"]) == 2 for push in whole[0])


def test_a_push_of_many_events_pages_without_repeating_one(reader: FakeEventRepository) -> None:
    many = [(f"region{n:04d}", f"2026-11-23T10:{n // 60:02d}:{n % 60:02d}Z") for n in range(1200)]
    seed(reader, *replicated("team/api", "v1", DIGEST_A, many))
    pages = page_through(reader, {"view": "pushes"}, "pushes")
    regions = [r["location"] for page in pages for push in page for r in push["regions"]]
    # docs/queries.md: a page holds at most 1,000 events; it holds that many when there are more.
    assert [len(push["regions"]) for page in pages for push in page] == [1000, 200]
    assert sorted(regions) == sorted(location for location, _ in many)


def test_a_push_whose_events_share_a_timestamp_beyond_a_read_batch_is_one_row(
    reader: FakeEventRepository,
) -> None:
    """250 replicas reporting at one instant: more than the pushes view reads at a time
    (PUSH_SCAN_BATCH, 200), so they are read whole, and reading goes on after them."""
    at_once = [(f"region{n:03d}", "2026-11-23T10:00:00Z") for n in range(250)]
    seed(
        reader,
        *replicated("team/api", "v1", DIGEST_A, at_once),
        *replicated("team/api", "v0", DIGEST_B, [("westeurope", "2026-11-23T09:00:00Z")]),
    )
    status, body = call({"view": "pushes"}, reader)

    assert (status, body["continuation"]) == (200, None)
    assert [(row["tag"], len(row["regions"])) for row in body["pushes"]] == [("v1", 250), ("v0", 1)]
    assert sorted(r["location"] for r in body["pushes"][0]["regions"]) == [
        name for name, _ in at_once
    ]


def test_tokens_do_not_cross_between_views(reader: FakeEventRepository) -> None:
    seed(reader, event(at="2026-11-01T00:00:00Z"), event(at="2026-11-02T00:00:00Z", tag="v2"))
    _, events_page = call({"limit": "1"}, reader)
    _, pushes_page = call({"limit": "1", "view": "pushes"}, reader)

    status, body = call(
        {"limit": "1", "view": "pushes", "continuation": events_page["continuation"]}, reader
    )
    assert (status, body["error"]) == (
        400,
        "continuation: belongs to another view; repeat view=events",
    )
    status, body = call({"limit": "1", "continuation": pushes_page["continuation"]}, reader)
    assert (status, body["error"]) == (
        400,
        "continuation: belongs to another view; repeat view=pushes",
    )


def test_a_tokens_view_is_one_of_the_views_before_it_is_named(
    reader: FakeEventRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens are not signed: a forged view must not reach the answer or the log verbatim."""
    forged_view = "x\nERROR acr_webhook.handlers: webhook event='forged' recorded"
    token = forged(
        {"v": 2, "q": UNFILTERED, "t": STAMP, "k": None, "w": [None, None], "view": forged_view}
    )
    with caplog.at_level(logging.INFO):
        status, body = call({"continuation": token}, reader)
    assert status == 400
    assert body["error"].startswith("continuation: ")
    assert "forged" not in body["error"]
    assert all("forged" not in record.getMessage() for record in caplog.records)


def test_an_unknown_view_is_named() -> None:
    error = rejected({"view": "rows"})
    assert error.parameters == ("view",)
    assert str(error) == "view: must be one of events, pushes"


def test_cli_pushes_prints_one_line_per_push_with_its_regions(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(
        cli_reader,
        *replicated(
            "team/api",
            "v1",
            DIGEST_A,
            [
                ("westeurope", "2026-11-23T10:00:00Z"),
                ("eastus", "2026-11-23T10:00:09Z"),
                (None, "2026-11-23T10:00:01Z"),
            ],
        ),
    )
    assert cli.main(["events", "--pushes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "TIMESTAMP",
        "ACTION",
        "REPOSITORY",
        "TAG",
        "DIGEST",
        "REGISTRY",
        "ACTOR",
        "REGIONS",
    ]
    assert lines[1].split() == [
        "2026-11-23T10:00:00.000000Z",
        "push",
        "team/api",
        "v1",
        "sha256:aaaaaaaaaaaa",
        "myregistry.azurecr.io",
        "-",
        "westeurope,?,eastus",
    ]
    assert len(lines) == 2

    assert cli.main(["events", "--pushes", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert [r["location"] for r in body["pushes"][0]["regions"]] == ["westeurope", None, "eastus"]
    assert body["continuation"] is None


# --- find_events: a page's items within the query budget ----------------------------------------

SETTINGS = Settings("https://127.0.0.1:1/", "key", "acr", "events", None)


class _UncheckedQuery:
    """A container whose query answers one item every ``item_s`` and never checks its
    ``timeout`` itself, as the SDK does not between the items of a page it has (and checks on
    the wall clock when it does)."""

    def __init__(self, clock: SteppedClock, item_s: float) -> None:
        self.clock = clock
        self.item_s = item_s

    def get(self, _deadline: float | None = None) -> _UncheckedQuery:  # as _LazyContainer.get
        return self

    def query_items(self, **_: Any) -> Iterator[dict[str, Any]]:
        for number in range(100):
            self.clock.now += self.item_s
            yield {"id": f"e{number}", "repository": "team/api"}


def test_a_pages_items_stop_at_the_query_budget(monotonic: SteppedClock) -> None:
    """docs/queries.md: "a whole page at 8 s (QUERY_BUDGET_S), all of its reads together";
    find_events checks the page's deadline between items too. Items 3 s apart: the third
    (at 9 s) ends the page with a RepositoryUnavailableError. Kills: the check between items
    made against a later deadline."""
    reader = CosmosEventRepository(SETTINGS)
    reader._reads = _UncheckedQuery(monotonic, item_s=3.0)  # type: ignore[assignment]
    start = monotonic.now
    with pytest.raises(RepositoryUnavailableError):
        reader.find_events(EventQuery(), 50)
    assert monotonic.now - start <= QUERY_BUDGET_S + 3.0


# --- queries.page_body: valid Unicode whatever was stored ---------------------------------------


# Any text, lone surrogates included (an earlier version stored a body's "\udc00" as is).
_TEXT = st.text(st.characters(exclude_categories=()), max_size=6)
_VALUES = st.recursive(
    st.none() | st.integers() | st.booleans() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=10,
)


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with each code point of the surrogate range as U+FFFD."""
    if isinstance(value, str):
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value


@given(rows=st.lists(st.dictionaries(_TEXT, _VALUES, max_size=4), max_size=3))
@example(rows=[{"userAgent": "a\udc00b\ud800c"}])  # two in one string
@example(rows=[{"tag\ud800": "v1"}])  # in a name
@example(rows=[{"regions": [{"location": "\udfff"}]}])
@settings(DETERMINISTIC, max_examples=40)
def test_a_page_is_valid_unicode_and_otherwise_as_stored(rows: list[dict[str, Any]]) -> None:
    """page_body: "valid Unicode whatever an earlier version stored", each lone surrogate as
    U+FFFD and every other character as stored. Kills: the first lone surrogate only
    replaced (count=1) and the names of a row's fields left as they are."""
    body = page_body("events", rows, "token", None)
    text = json.dumps(body, ensure_ascii=False)
    text.encode("utf-8")  # strict: no lone surrogate is left anywhere
    assert body["events"] == [_without_lone_surrogates(row) for row in rows]
    assert body["continuation"] == "token"


# --- models.filters_fingerprint: tokens from before the registry filter ------------------------


# What 6661807's filters_fingerprint gave for {repository: team/api} (sha256 of the six values
# as JSON, first 16 hex digits): a token a client held across the upgrade carries it.
EARLIER_FINGERPRINT = "47ec53df6dc80721"


def test_a_token_from_before_the_registry_filter_still_pages() -> None:
    """Mutants killed: the registry always appended (null when not given), or every filter
    hashed in FILTERS' new order: either changes every fingerprint, and a client paging
    across the upgrade gets a 400 (models.filters_fingerprint: "a token handed out before it
    existed still pages its query")."""
    reader = FakeEventRepository()
    older, newer = seed(reader, event(at="2026-11-23T09:00:00Z"), event(at="2026-11-23T11:00:00Z"))
    assert (
        hashlib.sha256(json.dumps(["team/api", None, None, None, None, None]).encode()).hexdigest()[
            :16
        ]
        == EARLIER_FINGERPRINT
    )
    token = forged(
        {"v": 2, "q": EARLIER_FINGERPRINT, "t": newer["timestamp"], "k": None, "w": [None, None]}
    )

    status, body = call({"repository": "team/api", "continuation": token}, reader)

    assert (status, [d["id"] for d in body["events"]]) == (200, [older["id"]])


def test_a_token_for_one_registry_does_not_page_another() -> None:
    """Mutant killed: the registry left out of the fingerprint (a dev token then pages prod,
    from dev's position)."""
    reader = FakeEventRepository()
    seed(reader, event(at="2026-11-23T09:00:00Z"))
    dev = {"registry": "contosodev.azurecr.io"}
    prod = {"registry": "contosoprod.azurecr.io"}
    assert filters_fingerprint(dev) != filters_fingerprint(prod) != filters_fingerprint({})
    token = forged(
        {
            "v": 2,
            "q": filters_fingerprint(dev),
            "t": "2026-11-23T10:00:00.000000Z",
            "k": None,
            "w": [None, None],
        }
    )

    status, body = call({**prod, "continuation": token}, reader)

    assert (status, body["error"][:14]) == (400, "continuation: ")
