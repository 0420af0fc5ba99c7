"""Differential: the same random events in the real local Cosmos DB API server and in
FakeEventRepository, the same random queries paged through the handler. Every page must be the
same from both, and the one docs/queries.md promises (tests/support/paging.py): the fake
models the store, and events_sql means what the docs say."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import cycle
from unittest import mock

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from acr_webhook import queries
from acr_webhook.queries import MAX_TIED_EVENTS
from acr_webhook.repository import CosmosEventRepository
from tests.conftest import fresh_settings
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.fakes import FakeEventRepository
from tests.support.paging import (
    NOW,
    Filters,
    PageModel,
    Seeded,
    check_events_page,
    check_pushes_page,
    filters,
    follow,
    page_order,
    replicated_events,
    seeded_events,
)
from tests.support.properties import DETERMINISTIC

# A fresh container and a few dozen writes per example: few examples, many queries each. No
# shrinking: against the server it takes many minutes, and the unit properties shrink the same
# paging against the fake.
DIFFERENTIAL = settings(DETERMINISTIC, max_examples=12, phases=(Phase.explicit, Phase.generate))


@dataclass(frozen=True)
class Asked:
    """One query, paged to the end: its filters, view and page sizes, and MAX_TIED_EVENTS
    (patched small, so that crowded timestamps are skipped too)."""

    wanted: Filters
    view: str
    limits: tuple[int, ...]
    max_tied: int


@st.composite
def asked(draw: st.DrawFn) -> Asked:
    wanted = draw(filters().filter(lambda wanted: wanted.valid))
    max_tied = draw(st.sampled_from((2, 3, MAX_TIED_EVENTS)))
    most = min(max_tied, 50)  # a batch never holds more events than may tie (unit tests)
    limits = draw(st.lists(st.integers(1, most), min_size=1, max_size=4))
    return Asked(wanted, draw(st.sampled_from(("events", "pushes"))), tuple(limits), max_tied)


@DIFFERENTIAL
@given(
    seeded_events(max_size=40, min_size=16) | replicated_events(max_size=40, min_size=16),
    st.lists(asked(), min_size=6, max_size=6),
)
def test_the_server_and_the_fake_page_every_query_alike(
    cosmos_server: LocalCosmosServer, events: list[Seeded], questions: list[Asked]
) -> None:
    server = CosmosEventRepository(fresh_settings(cosmos_server))
    fake = FakeEventRepository()
    for event in events:
        assert server.add(event.document)
        assert fake.add(event.document)

    for question in questions:
        matching = [event for event in events if question.wanted.matches(event)]
        model = PageModel(page_order(matching, question.max_tied))
        params = {**question.wanted.params, "view": question.view}
        with (
            mock.patch.object(queries, "MAX_TIED_EVENTS", question.max_tied),
            mock.patch.object(queries, "PUSH_SCAN_BATCH", min(question.max_tied + 1, 200)),
        ):
            from_server = list(follow(params, server, cycle(question.limits), lambda: NOW))
            from_fake = list(follow(params, fake, cycle(question.limits), lambda: NOW))
        assert from_server == from_fake, question
        for limit, body in from_server:
            if question.view == "events":
                check_events_page(body, model.events_page(limit))
            else:
                check_pushes_page(body, model.pushes_page(limit, queries.MAX_PUSH_SCAN))
        assert model.at == len(model.items)
