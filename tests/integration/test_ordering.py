"""Arrival order is not event order, against the local Cosmos DB API server.

Events reach the record late and out of order: a webhook delivery parked in the fallback queue
is replayed once the database is back, Event Grid retries for 24 hours, reconcile stores what
ACR's delivery history holds days later, and a delete can arrive before the push it undoes.
Every reader of the record (the read API, the ``events`` CLI, the Data Explorer queries of
docs/queries.md) must answer by the events' own time, whatever order they were written in; a
reader paging while late events are written sees each event once at most, and every event
older than where its page ended; the same event by two routes is one document, the first
delivery's, filled in by the later ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import ParkedEvent, iso_utc
from acr_webhook.queries import handle_events_query, tie_digest
from acr_webhook.reconcile import reconcile_entries
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.results import Result
from tests.conftest import container_for, fresh_settings, read_all
from tests.integration.test_event_queries import cli_on
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.support.interleave import InlineExecutor
from tests.unit.test_eventgrid import event_grid

QUERIES_MD = Path(__file__).resolve().parents[2] / "docs" / "queries.md"
# The example values docs/queries.md writes into its Data Explorer queries.
REPOSITORY = "team/api"
OTHER_REPOSITORY = "team/web"
D80 = payloads.PUSH["target"]["digest"]  # the README's "sha256:80f0..."
D4C = payloads.PUSH_BY_DIGEST_OCI["target"]["digest"]  # queries.md's full "sha256:4c9b..."
# The clocks of the routes, each its own: the webhook now, Event Grid's retry an hour later,
# reconcile the next day, the parked event's replay last of all.
WEBHOOK_AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
EVENTGRID_AT = WEBHOOK_AT + timedelta(hours=1)
RECONCILE_AT = WEBHOOK_AT + timedelta(days=1)


def acr_event(
    name: str,
    action: str,
    timestamp: str,
    digest: str,
    tag: str | None = None,
    repository: str = REPOSITORY,
    **extra: Any,
) -> dict[str, Any]:
    """An ACR payload with a readable id (``order-<name>``) and ACR's ``timestamp`` as given."""
    base = payloads.DELETE if action == "delete" else payloads.PUSH
    payload = payloads.with_new_id(base, repository=repository, digest=digest)
    payload["id"] = f"order-{name}"
    if tag is not None:
        payload["target"]["tag"] = tag
    payload.update(action=action, timestamp=timestamp, **extra)
    return payload


# One repository's story and a neighbour's, in event order, with the edges of a month, offsets
# either side of UTC, 0, 1, 7 and 9 fractional digits, and a leap day. The instant each is
# stored as is the comment.
E1 = acr_event("e1", "push", "2026-11-01T00:00:00+00:00", D80, "v1")  # 11-01 00:00 (edge)
E2 = acr_event(
    "e2", "push", "2026-11-10T09:00:00.5-08:00", D4C, "v1", actor={"name": "ci-bot"}
)  # 11-10 17:00:00.5, reported by the replica that took the push
E2["location"] = "westeurope"
E3 = acr_event(
    "e3", "push", "2026-11-10T17:00:09Z", D4C, "v1", actor={"name": "ci-bot"}, location="eastus"
)  # the same push as reported by a second replica, 9 s later
E4 = acr_event("e4", "delete", "2026-11-20T05:30:00+05:30", D80)  # 11-20 00:00
E5 = acr_event(
    "e5", "push", "2026-11-23T10:00:00.123456789Z", D80, "v1", actor={"name": "alice"}
)  # v1 rolled back to the image it had on 11-01
E6 = acr_event("e6", "push", "2026-11-30T23:59:59.9999999Z", D4C, "")  # by digest, last µs
E7 = acr_event("e7", "delete", "2026-12-01T00:30:00+01:00", D4C)  # 11-30 23:30: November
E8 = acr_event("e8", "push", "2026-12-01T00:00:00Z", D4C, "v1")  # December (edge)
W1 = acr_event(
    "w1", "delete", "2026-11-01T01:00:00+01:00", D80, repository=OTHER_REPOSITORY
)  # 11-01 00:00 (edge)
W2 = acr_event(
    "w2", "delete", "2026-12-01T00:00:00.000000Z", D80, repository=OTHER_REPOSITORY
)  # December (edge)
W3 = acr_event(
    "w3", "push", "2024-02-29T23:59:59-00:30", D4C, "v1", repository=OTHER_REPOSITORY
)  # a leap day that is 2024-03-01 in UTC
IN_EVENT_ORDER = [W3, E1, W1, E2, E3, E4, E5, E7, E6, W2, E8]
STORED_AT = {
    "e1": "2026-11-01T00:00:00.000000Z",
    "e2": "2026-11-10T17:00:00.500000Z",
    "e3": "2026-11-10T17:00:09.000000Z",
    "e4": "2026-11-20T00:00:00.000000Z",
    "e5": "2026-11-23T10:00:00.123456Z",
    "e6": "2026-11-30T23:59:59.999999Z",
    "e7": "2026-11-30T23:30:00.000000Z",
    "e8": "2026-12-01T00:00:00.000000Z",
    "w1": "2026-11-01T00:00:00.000000Z",
    "w2": "2026-12-01T00:00:00.000000Z",
    "w3": "2024-03-01T00:29:59.000000Z",
}


def stamp(document: dict[str, Any]) -> str:
    return str(document["timestamp"])


def name_of(document: dict[str, Any]) -> str:
    return str(document["id"]).removeprefix("order-")


def webhook(repository: Any, payload: dict[str, Any], **kwargs: Any) -> Result:
    return handle_webhook(payloads.body(payload), repository, now=lambda: WEBHOOK_AT, **kwargs)


def eventgrid(repository: Any, *events: dict[str, Any]) -> Result:
    body = payloads.body([event_grid(event) for event in events])
    return handle_eventgrid(
        body, {}, repository, now=lambda: EVENTGRID_AT, executor=InlineExecutor()
    )


def reconcile(repository: Any, *events: dict[str, Any], status: str = "504") -> str:
    outcome = reconcile_entries(
        [history_entry(event, status) for event in events],
        repository,
        received_at=RECONCILE_AT,
        report_invalid=lambda entry: pytest.fail(str(entry)),
    )
    assert outcome.unavailable is None
    return outcome.counts.summary()


def park(payload: dict[str, Any]) -> str:
    """What the webhook parks while the database is down: the queue message replay gets."""
    queue = FakeFallbackQueue()
    down = FakeEventRepository()
    down.unavailable = True
    assert webhook(down, payload, fallback=queue).status == 202
    [parked] = queue.messages
    return ParkedEvent(parked).to_message()


@pytest.fixture(scope="module")
def out_of_order(cosmos_server: LocalCosmosServer) -> Any:
    """The story written in an order of its own, by every route: each delete before the push
    it undoes, the rollback before the push it rolls back, a replica's report before the
    region that took the push, and the first push of all replayed from the fallback queue
    last, after reconcile stored the newest one."""
    settings = fresh_settings(cosmos_server)
    repository = CosmosEventRepository(settings)
    parked_e1 = park(E1)  # the database was down when ACR delivered the first push
    assert webhook(repository, E7).status == 201
    assert webhook(repository, E4).status == 201
    assert webhook(repository, W2).status == 201
    assert eventgrid(repository, E3).status == 200
    assert webhook(repository, E8).status == 201
    assert webhook(repository, E6).status == 201
    assert reconcile(repository, E5, W1) == "recorded=2 already=0 skipped=0 invalid=0"
    assert eventgrid(repository, E2).status == 200
    assert webhook(repository, W3).status == 201
    assert replay_queued_event(parked_e1, repository, None, max_delay_s=60) == "recorded"
    assert {name_of(d): d["timestamp"] for d in read_all(settings)} == STORED_AT
    return settings


# --- The Data Explorer queries of docs/queries.md --------------------------------------------


def documented_queries() -> dict[str, list[str]]:
    """Each ``sql`` block of docs/queries.md under the heading it follows."""
    found: dict[str, list[str]] = {}
    heading = ""
    for part in re.split(
        r"(^#+ [^\n]*$|^```sql\n.*?^```$)", QUERIES_MD.read_text(), flags=re.M | re.S
    ):
        if part.startswith("#"):
            heading = part.lstrip("#").strip()
        elif part.startswith("```sql"):
            found.setdefault(heading, []).append(part.removeprefix("```sql\n").rstrip("`\n"))
    return found


def by_time(names: list[str], descending: bool = True) -> list[str]:
    return sorted(names, key=STORED_AT.__getitem__, reverse=descending)


PUSHES = ["e1", "e2", "e3", "e5", "e6", "e8"]
# What each documented query must answer from the story, in its ORDER BY: computed from the
# events' own times, never from the order they arrived in.
ANSWERS: dict[str, list[list[str]]] = {
    "Latest pushes to a repository": [by_time(PUSHES)],
    # Its first query is the tag's own history; the second adds the deletes of its digests.
    "History of a tag (`repository:tag`)": [
        by_time(["e1", "e2", "e3", "e5", "e8"]),
        by_time(["e1", "e2", "e3", "e4", "e5", "e7", "e8"]),
    ],
    # The bounds are dates: midnight UTC, the first included, the second not.
    "Deletes in a period": [by_time(["w1", "e4", "e7"])],
    "Who pushed (actor)": [by_time(["e2", "e3"])],
    "When did each region get it": [by_time(["e2", "e3", "e6", "e8"], descending=False)],
    "Events by delivery path": [by_time(["e5", "w1"])],
    "Pushes by digest only (no tag)": [["e6"]],
}
# The documented queries the local server cannot run: its own docs say so.
AZURE_ONLY = re.compile(r"\bGROUP BY\b|GetCurrentDateTimeStatic")


def test_every_documented_query_the_local_server_can_run_is_checked_here() -> None:
    runnable = {
        heading
        for heading, queries in documented_queries().items()
        if any(not AZURE_ONLY.search(sql) for sql in queries)
    }
    assert runnable == set(ANSWERS)


@pytest.mark.parametrize("heading", sorted(ANSWERS))
def test_documented_queries_answer_by_event_time_whatever_the_arrival_order(
    out_of_order: Any, heading: str
) -> None:
    container = container_for(out_of_order)
    queries = [sql for sql in documented_queries()[heading] if not AZURE_ONLY.search(sql)]
    assert len(queries) == len(ANSWERS[heading])
    for sql, wanted in zip(queries, ANSWERS[heading], strict=True):
        # The docs shorten two digests in one example ("sha256:80f0..."): the full ones.
        sql = sql.replace('"sha256:80f0..."', f'"{D80}"').replace('"sha256:4c9b..."', f'"{D4C}"')
        rows = list(container.query_items(sql, enable_cross_partition_query=True))
        by_stamp = {STORED_AT[name]: name for name in wanted}
        assert len(by_stamp) == len(wanted), "the answer must not depend on a tie"
        assert [by_stamp.get(row["timestamp"], row["timestamp"]) for row in rows] == wanted, sql


# --- The read API and the CLI ----------------------------------------------------------------


def read(settings: Any, **params: str) -> dict[str, Any]:
    result = handle_events_query(params, CosmosEventRepository(settings))
    assert result.status == 200 and result.body is not None, result.body
    return result.body


# November's first UTC midnight, written four ways.
NOVEMBER_FIRST = (
    "2026-11-01",
    "2026-11-01T00:00:00Z",
    "2026-11-01T05:30:00+05:30",
    "2026-10-31T16:00:00.000000000-08:00",
)


def test_the_read_api_lists_by_event_time_and_since_with_an_offset_selects_the_same_events(
    out_of_order: Any,
) -> None:
    every = read(out_of_order, limit="1000")["events"]
    # Newest first by the events' own time; events that share one in the order of their tie
    # digest, as docs/queries.md says: never in the order they arrived.
    in_page_order = sorted(sorted(read_all(out_of_order), key=tie_digest), key=stamp, reverse=True)
    assert [name_of(d) for d in every] == [name_of(d) for d in in_page_order]
    assert [d["timestamp"] for d in every] == sorted(STORED_AT.values(), reverse=True)
    # One instant written four ways: the same events.
    for since in NOVEMBER_FIRST:
        november = read(out_of_order, since=since, until="2026-12-01T01:00:00+01:00")["events"]
        assert sorted(name_of(d) for d in november) == sorted(
            ["e1", "w1", "e2", "e3", "e4", "e5", "e6", "e7"]
        ), since


def test_the_cli_prints_the_story_by_event_time(
    out_of_order: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    cli_on(out_of_order, monkeypatch, tmp_path)
    assert cli.main(["events", "--repository", REPOSITORY]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    wanted = by_time([name for name in STORED_AT if name.startswith("e")])
    assert [row.split()[0] for row in rows] == [STORED_AT[name] for name in wanted]
    action = {name_of(payload): payload["action"] for payload in IN_EVENT_ORDER}
    assert [row.split()[1] for row in rows] == [action[name] for name in wanted]


def test_a_push_of_an_image_a_tag_had_before_joins_its_first_push_row(out_of_order: Any) -> None:
    """What view=pushes claims of v1 after a rollback (docs/queries.md, view=pushes): the
    rollback (e5) joins the row of the first push of that image under that tag (e1), which
    keeps e1's time and takes the first actor any of its events carries (e5's); the rows come
    in the order of their newest event, so the current image of a tag is the first row that
    has the tag, not the row with the latest ``timestamp``."""
    pushes = read(out_of_order, repository=REPOSITORY, action="push", view="pushes")["pushes"]
    assert [(row["digest"], row["tag"]) for row in pushes] == [
        (D4C, "v1"),
        (D4C, None),
        (D80, "v1"),
    ]
    current, _, rolled_back = pushes
    assert current["timestamp"] == STORED_AT["e2"]
    assert current["actor"] == "ci-bot"
    assert current["regions"] == [
        {"location": "westeurope", "timestamp": STORED_AT["e2"]},
        {"location": "eastus", "timestamp": STORED_AT["e3"]},
        {"location": None, "timestamp": STORED_AT["e8"]},  # pushed again on 12-01
    ]
    assert rolled_back["timestamp"] == STORED_AT["e1"]  # the first push, not the rollback
    assert rolled_back["actor"] == "alice"  # who rolled back; e1 came by webhook, no actor
    assert [region["timestamp"] for region in rolled_back["regions"]] == [
        STORED_AT["e1"],
        STORED_AT["e5"],
    ]
    # Asked by digest, the rolled-back image's row is the same: arrival order plays no part.
    assert read(out_of_order, repository=REPOSITORY, digest=D80, action="push", view="pushes")[
        "pushes"
    ] == [rolled_back]


# --- Paging while late events are written ----------------------------------------------------


def at(second: float) -> str:
    return f"2026-11-23T10:00:{second:09.6f}Z"


def late_id_at_tie(prefix: str, below: str | None, above: str | None) -> str:
    """An event id whose tie digest (in REPOSITORY) is below ``below`` or above ``above``."""
    for number in range(1000):
        event_id = f"{prefix}-{number}"
        digest = tie_digest({"id": event_id, "repository": REPOSITORY})
        if (below is None or digest < below) and (above is None or digest > above):
            return event_id
    raise AssertionError("no such id")  # pragma: no cover


def page_through(
    settings: Any, token: str | None, after_page: Callable[[int], object]
) -> list[dict[str, Any]]:
    """The pages after ``token``, two events each; ``after_page(n)`` runs after the n-th."""
    events: list[dict[str, Any]] = []
    number = 1
    while token:
        page = read(settings, repository=REPOSITORY, limit="2", continuation=token)
        events += page["events"]
        token = page["continuation"]
        number += 1
        after_page(number)
    return events


def test_a_reader_paging_while_late_events_arrive_sees_each_once_and_every_older_one(
    cosmos_server: LocalCosmosServer,
) -> None:
    """docs/queries.md: "Tokens hold a position, not a snapshot: events recorded later with
    newer timestamps are not added to pages already passed". An event recorded later that is
    older than where the page ended (replayed, retried, reconciled) is on a later page; none is
    ever listed twice, a duplicate delivery that fills in a listed event included. An event
    recorded later at the very timestamp where the page ended is listed when its tie digest
    comes after the page's last one, and not otherwise: what the token's position says."""
    settings = fresh_settings(cosmos_server)
    repository = CosmosEventRepository(settings)
    seeded = [
        acr_event("a1", "push", at(5), D80, "v1"),
        acr_event("a2", "push", at(4), D80, "v2"),
        *(acr_event(f"t{n}", "push", at(3), D4C, f"t{n}") for n in range(3)),
        acr_event("a4", "delete", at(2), D80),
        acr_event("a5", "push", at(1), D80, "v0"),
    ]
    for payload in seeded:
        assert webhook(repository, payload).status == 201
    first = read(settings, repository=REPOSITORY, limit="4")
    listed = [name_of(d) for d in first["events"]]
    assert listed[:2] == ["a1", "a2"]
    last = first["events"][-1]
    assert last["timestamp"] == at(3)  # the page ended among the tied events
    tied_through = tie_digest(last)
    late_tie_before = late_id_at_tie("order-late-tie", below=tied_through, above=None)
    late_tie_after = late_id_at_tie("order-late-tie", below=None, above=tied_through)

    newer = acr_event("n-new", "push", at(6), D80, "v9")
    older = acr_event("n-old", "push", at(2.5), D4C, "v8")
    tie_before = {**acr_event("x", "push", at(3), D4C, "v7"), "id": late_tie_before}
    tie_after = {**acr_event("y", "push", at(3), D4C, "v6"), "id": late_tie_after}
    # Between the first and second page: a push newer than any listed, one replayed from the
    # fallback queue that is older than the page's end, two at the page's last timestamp.
    assert webhook(repository, newer).status == 201
    assert replay_queued_event(park(older), repository, None, max_delay_s=60) == "recorded"
    assert eventgrid(repository, tie_before, tie_after).status == 200
    a1_again = {**seeded[0], "actor": {"name": "ci-bot"}, "location": "westeurope"}
    a4_again = {**seeded[5], "actor": {"name": "ci-bot"}}

    def after_page(number: int) -> None:
        if number == 2:  # later deliveries of an event listed and of one not listed yet
            assert eventgrid(repository, a1_again).status == 200
            assert reconcile(repository, a4_again) == "recorded=0 already=1 skipped=0 invalid=0"

    rest = page_through(settings, first["continuation"], after_page)
    names = listed + [name_of(d) for d in rest]
    assert len(names) == len(set(names)), f"an event listed twice: {names}"
    seeded_names = {name_of(payload) for payload in seeded}
    assert set(names) == {*seeded_names, "n-old", name_of(tie_after)}
    assert [d["timestamp"] for d in rest] == sorted((d["timestamp"] for d in rest), reverse=True)
    assert next(d for d in rest if name_of(d) == "a4")["actor"] == "ci-bot"
    # Started again without a token, the reader sees every event once, the late ones too.
    again = [name_of(d) for d in read(settings, repository=REPOSITORY, limit="1000")["events"]]
    assert sorted(again) == sorted([*names, "n-new", name_of(tie_before)])


# --- The same event by several routes, at different times ------------------------------------


@pytest.mark.parametrize("replayed_first", [True, False])
def test_a_parked_event_is_one_document_the_first_writers_whichever_of_replay_and_reconcile(
    cosmos_settings: Any, replayed_first: bool
) -> None:
    """The webhook parks a push while the database is down (202); once it is back, the
    fallback's replay and reconcile (ACR's history shows the 202) race, and Event Grid's retry
    comes last. One document either way, whose ``source`` and ``receivedAt`` are the first
    writer's (README, Documents): "reconcile" and the reconcile's time when reconcile won,
    though the app had answered ACR; the later deliveries only fill in what it lacks."""
    repository = CosmosEventRepository(cosmos_settings)
    payload = acr_event("p1", "push", "2026-11-23T10:00:00.123456789+05:30", D80, "v1")
    parked = park(payload)
    history = {**payload, "actor": {"name": "alice"}}
    history["request"] = {**payload["request"], "addr": "203.0.113.7:51234"}
    if replayed_first:
        assert replay_queued_event(parked, repository, None, max_delay_s=60) == "recorded"
        assert reconcile(repository, history, status="202") == (
            "recorded=0 already=1 skipped=0 invalid=0"
        )
    else:
        assert reconcile(repository, history, status="202") == (
            "recorded=1 already=0 skipped=0 invalid=0"
        )
        assert replay_queued_event(parked, repository, None, max_delay_s=60) == "duplicate"
    grid = {**history, "actor": {"name": "someone-else"}, "location": "westeurope"}
    assert eventgrid(repository, grid).status == 200

    [stored] = read_all(cosmos_settings)
    first = ("webhook", WEBHOOK_AT) if replayed_first else ("reconcile", RECONCILE_AT)
    assert (stored["source"], stored["receivedAt"]) == (first[0], iso_utc(first[1]))
    assert stored["timestamp"] == "2026-11-23T04:30:00.123456Z"
    assert stored["actor"] == "alice"  # the first value, never overwritten
    assert stored["clientAddress"] == "203.0.113.7:51234"
    assert stored["location"] == "westeurope"  # filled in by the last delivery
