"""Paging through the read API, property-based: random events (few repositories, ids shared
between them, untagged ones, every recorded action, many events on one instant), random filters
and page sizes that change between pages, against the pages docs/queries.md promises
(tests/support/paging.py): every matching event once, newest first, ties in tie-digest order;
pushes grouped per page; a timestamp with too many events skipped and named."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acr_webhook import queries
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.queries import (
    MAX_LIMIT,
    MAX_TIED_EVENTS,
    PUSH_SCAN_BATCH,
    handle_events_query,
)
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.paging import (
    NOW,
    Filters,
    PageModel,
    Seeded,
    Skip,
    check_events_page,
    check_pushes_page,
    filters,
    follow,
    page_order,
    replicated_events,
    seeded_events,
)
from tests.support.properties import DETERMINISTIC

PROPERTIES = settings(DETERMINISTIC, max_examples=120)
LIMITS = st.integers(1, 4) | st.integers(5, 45) | st.just(MAX_LIMIT)
# How long the client takes before asking for the next page: the window must not move.
PAUSES = st.sampled_from(
    (timedelta(minutes=30), timedelta(days=2), timedelta(microseconds=1), timedelta(0))
)


def seeded(events: list[Seeded]) -> FakeEventRepository:
    reader = FakeEventRepository()
    for event in events:
        assert reader.add(event.document)
    return reader


def drawn(data: st.DataObject, strategy: st.SearchStrategy[int]) -> Iterator[int]:
    while True:
        yield data.draw(strategy)


def refused_when_empty_window(wanted: Filters, reader: FakeEventRepository) -> bool:
    """since at or after until is a 400 naming until, and reads nothing."""
    if wanted.valid:
        return False
    result = handle_events_query(wanted.params, reader, now=lambda: NOW)
    assert result.status == 400
    assert result.body is not None and result.body["error"].startswith("until: ")
    assert reader.find_calls == 0
    return True


@PROPERTIES
@given(seeded_events(max_size=40), filters(), st.data())
def test_paging_events_gives_every_matching_event_once_newest_first(
    events: list[Seeded], wanted: Filters, data: st.DataObject
) -> None:
    reader = seeded(events)
    if refused_when_empty_window(wanted, reader):
        return
    items = page_order([event for event in events if wanted.matches(event)], MAX_TIED_EVENTS)
    assert not any(isinstance(item, Skip) for item in items)  # 40 events never crowd
    model = PageModel(items)
    clock = [NOW]  # relative since/until resolve on the first page only
    returned = []
    for limit, body in follow(wanted.params, reader, drawn(data, LIMITS), lambda: clock[-1]):
        check_events_page(body, model.events_page(limit))
        assert body["events"] or not items, "no page is empty unless nothing matches"
        returned += body["events"]
        clock.append(clock[-1] + data.draw(PAUSES))
    assert model.at == len(items)
    assert [(d["repository"], d["id"]) for d in returned] == [
        item.key for item in items if isinstance(item, Seeded)
    ]


@PROPERTIES
@given(
    replicated_events(max_size=40) | seeded_events(max_size=40),
    filters(),
    st.sampled_from((1, 2, 3, PUSH_SCAN_BATCH)),
    st.sampled_from((1, 2, 5, 1000)),
    st.data(),
)
def test_paging_pushes_puts_every_event_on_exactly_one_page_grouped(
    events: list[Seeded], wanted: Filters, batch: int, max_scan: int, data: st.DataObject
) -> None:
    """docs/queries.md: up to `limit` pushes a page, ending just before the first event of one
    push more (or after 1,000 events, here `max_scan`); rows by each push's newest event; each
    row its first timestamp and every event's region, oldest first."""
    reader = seeded(events)
    if refused_when_empty_window(wanted, reader):
        return
    items = page_order([event for event in events if wanted.matches(event)], MAX_TIED_EVENTS)
    model = PageModel(items)
    clock = [NOW]
    params = {**wanted.params, "view": "pushes"}
    with (
        mock.patch.object(queries, "PUSH_SCAN_BATCH", batch),
        mock.patch.object(queries, "MAX_PUSH_SCAN", max_scan),
    ):
        for limit, body in follow(params, reader, drawn(data, LIMITS), lambda: clock[-1]):
            check_pushes_page(body, model.pushes_page(limit, max_scan))
            assert body["pushes"] or not items, "no page is empty unless nothing matches"
            clock.append(clock[-1] + data.draw(PAUSES))
    assert model.at == len(items)


@PROPERTIES
@given(
    seeded_events(max_size=30) | replicated_events(max_size=30),
    filters(),
    st.integers(1, 3),
    st.sampled_from(("events", "pushes")),
    st.data(),
)
def test_a_timestamp_with_too_many_events_is_skipped_and_named_in_both_views(
    events: list[Seeded], wanted: Filters, max_tied: int, view: str, data: st.DataObject
) -> None:
    """docs/queries.md: more matching events than MAX_TIED_EVENTS (here 1 to 3) at one
    timestamp are skipped; the page ends just before them, possibly empty, names the timestamp
    in `skipped`, and its token continues with the events after them."""
    reader = seeded(events)
    if refused_when_empty_window(wanted, reader):
        return
    items = page_order([event for event in events if wanted.matches(event)], max_tied)
    model = PageModel(items)
    # As the shipped constants make sure (test_no_read_batch_holds_more_events_than_may_tie):
    # a read batch never holds more than MAX_TIED_EVENTS events newer than its oldest one.
    limits = st.integers(1, max_tied)
    batch = data.draw(st.integers(1, max_tied + 1))
    with (
        mock.patch.object(queries, "MAX_TIED_EVENTS", max_tied),
        mock.patch.object(queries, "PUSH_SCAN_BATCH", batch),
    ):
        params = {**wanted.params, "view": view}
        for limit, body in follow(params, reader, drawn(data, limits), lambda: NOW):
            if view == "events":
                check_events_page(body, model.events_page(limit))
            else:
                check_pushes_page(body, model.pushes_page(limit, queries.MAX_PUSH_SCAN))
    assert model.at == len(items)


def test_no_read_batch_holds_more_events_than_may_tie() -> None:
    """A crowded timestamp is found only when a read batch holds nothing else. A batch is
    `limit` + 1 events (events view) or PUSH_SCAN_BATCH (pushes): were it more than
    MAX_TIED_EVENTS + 1, a crowded timestamp's events could fit in one batch beside older ones,
    and be listed in a page instead of skipped."""
    assert MAX_LIMIT <= MAX_TIED_EVENTS
    assert PUSH_SCAN_BATCH <= MAX_TIED_EVENTS + 1


def pushed(event_id: str, at: str) -> dict[str, Any]:
    """A push as the webhook handler stores it."""
    payload = {**payloads.PUSH, "id": event_id, "timestamp": at}
    return to_document(AcrEvent.model_validate(payload), NOW)


@pytest.mark.parametrize("view", ["events", "pushes"])
def test_a_page_that_skips_the_oldest_events_ends_the_paging(view: str) -> None:
    """More than MAX_TIED_EVENTS events at the oldest timestamp, one newer event: a token would
    lead to an empty page that skips nothing (docs/queries.md: a token means there are more
    events). Bulk-written events, the likeliest to crowd one timestamp, are often the oldest:
    an import of the history from before the webhook was set up. One older event: the token
    leads to it."""
    reader = FakeEventRepository()
    for n in range(MAX_TIED_EVENTS + 1):
        assert reader.add(pushed(f"imported-{n:04d}", "2026-11-23T10:00:00Z"))
    assert reader.add(pushed("newer", "2026-11-23T11:00:00Z"))
    rows = "events" if view == "events" else "pushes"

    def page(params: dict[str, str]) -> dict[str, Any]:
        body = handle_events_query({"view": view, **params}, reader, now=lambda: NOW).body
        assert body is not None
        return body

    first = page({})
    assert len(first[rows]) == 1
    assert first["skipped"]["timestamp"] == "2026-11-23T10:00:00.000000Z"
    assert first["continuation"] is None

    assert reader.add(pushed("older", "2026-11-23T09:00:00Z"))
    first = page({})
    assert first["skipped"]["timestamp"] == "2026-11-23T10:00:00.000000Z"
    second = page({"continuation": first["continuation"]})
    assert [row["timestamp"] for row in second[rows]] == ["2026-11-23T09:00:00.000000Z"]
    assert second["continuation"] is None
    assert "skipped" not in second
