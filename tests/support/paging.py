"""Random events and queries for the read side's property tests, and a model of the pages that
docs/queries.md promises for them.

The model: the matching events in page order (newest first; events that share a timestamp in
the order of their tie digest, which the docs promise); a timestamp with more than
MAX_TIED_EVENTS matching events is skipped. ``view=events`` cuts that order into pages of
``limit`` events; ``view=pushes`` cuts it just before the first event of one push too many (or
after MAX_PUSH_SCAN events) and groups each page by (repository, digest, tag, action). A page
ends just before a skipped timestamp and names it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from hypothesis import strategies as st

from acr_webhook.models import RECORDED_ACTIONS, AcrEvent, iso_utc, to_document
from acr_webhook.queries import PUSH_KEY, SKIPPED_REASON, handle_events_query, tie_digest
from acr_webhook.store import EventReader
from tests.support import payloads

NOW: Final = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RECEIVED: Final = NOW
REPOSITORIES: Final = ("team/api", "team/web", "hello-world")
TAGS: Final = ("v1", "latest", None)  # None: a push by digest, a delete
DIGESTS: Final = tuple(f"sha256:{letter * 64}" for letter in "abc")
ACTIONS: Final = tuple(sorted(RECORDED_ACTIONS))
# Few ids for many events: the same id in two repositories is two events.
EVENT_IDS: Final = tuple(f"event-{n:02d}" for n in range(24))
LOCATIONS: Final = ("westeurope", "eastus", None)
ACTORS: Final = ("ci-bot", "alice", None)
REGISTRIES: Final = ("myregistry.azurecr.io", "other.azurecr.io", None)

_TEN: Final = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
# (as ACR sends it, the instant it is stored as): a small pool, so that many events tie; four
# ways of writing 10:00:00 and two of 10:00:00.5, nanoseconds included (stored truncated).
TIMESTAMPS: Final = (
    ("2026-11-23T10:00:00Z", _TEN),
    ("2026-11-23T10:00:00.000000Z", _TEN),
    ("2026-11-23T11:00:00+01:00", _TEN),
    ("2026-11-23T10:00:00.000000999Z", _TEN),
    ("2026-11-23T10:00:00.000001Z", _TEN + _MICROSECOND),
    ("2026-11-23T09:59:59.999999Z", _TEN - _MICROSECOND),
    ("2026-11-23T10:00:00.5Z", _TEN + timedelta(seconds=0.5)),
    ("2026-11-23T10:00:00.500000123Z", _TEN + timedelta(seconds=0.5)),
    ("2026-11-23T10:30:00.25Z", _TEN + timedelta(minutes=30, seconds=0.25)),
    ("2026-11-23T11:00:00Z", _TEN + timedelta(hours=1)),
    ("2026-11-22T12:00:00Z", NOW - timedelta(days=1)),
    ("2026-11-23T12:00:00.000001Z", NOW + _MICROSECOND),  # a clock ahead of ours
)
# Durations before NOW, and the instant each one means there: some fall on stored instants.
DURATIONS: Final = (
    ("PT1H", NOW - timedelta(hours=1)),
    ("PT2H", _TEN),
    ("PT90M", NOW - timedelta(minutes=90)),
    ("P1D", NOW - timedelta(days=1)),
    ("PT7199S", _TEN + timedelta(seconds=1)),
    ("PT0S", NOW),
)


@dataclass(frozen=True)
class Seeded:
    """One stored event: its document (as the webhook handler stores it) and its instant."""

    document: dict[str, Any]
    at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.document["repository"], self.document["id"])


PushKey = tuple[str, str | None, str, str]  # repository, tag, digest, action
PUSH_KEYS: Final = st.tuples(
    st.sampled_from(REPOSITORIES),
    st.sampled_from(TAGS),
    st.sampled_from(DIGESTS),
    st.sampled_from(ACTIONS),
)


@st.composite
def seeded_event(draw: st.DrawFn, keys: st.SearchStrategy[PushKey] = PUSH_KEYS) -> Seeded:
    sent, at = draw(st.sampled_from(TIMESTAMPS))
    repository, tag, digest, action = draw(keys)
    payload = copy.deepcopy(payloads.PUSH)
    payload.update(id=draw(st.sampled_from(EVENT_IDS)), action=action, timestamp=sent)
    payload["target"].update(repository=repository, tag=tag or "", digest=digest)
    registry = draw(st.sampled_from(REGISTRIES))
    if registry is None:
        del payload["request"]  # like a legacy chart event
    else:
        payload["request"]["host"] = registry
    actor = draw(st.sampled_from(ACTORS))
    if actor is not None:
        payload["actor"] = {"name": actor}
    payload["location"] = draw(st.sampled_from(LOCATIONS))
    return Seeded(to_document(AcrEvent.model_validate(payload), RECEIVED), at)


def _distinct(
    events: st.SearchStrategy[Seeded], min_size: int, max_size: int
) -> st.SearchStrategy[list[Seeded]]:
    """Events with distinct (repository, id): each one a document of its own."""
    return st.lists(events, min_size=min_size, max_size=max_size, unique_by=lambda event: event.key)


def seeded_events(max_size: int, min_size: int = 0) -> st.SearchStrategy[list[Seeded]]:
    """Events of any of 135 pushes: few of them the same push."""
    return _distinct(seeded_event(), min_size, max_size)


def replicated_events(max_size: int, min_size: int = 0) -> st.SearchStrategy[list[Seeded]]:
    """Events of one to four pushes, each reported several times (per region, per delivery)
    at instants that interleave with the others'."""
    pushes = st.lists(PUSH_KEYS, min_size=1, max_size=4, unique=True)
    return pushes.flatmap(
        lambda keys: _distinct(seeded_event(st.sampled_from(keys)), min_size, max_size)
    )


@dataclass(frozen=True)
class Bound:
    """A ``since`` or ``until`` as sent, and the instant it means on the first page."""

    sent: str
    at: datetime


def _absolute(at: datetime, form: str) -> str:
    if form == "offset":
        return at.astimezone(timezone(timedelta(hours=1))).isoformat()
    if form == "negative offset":
        return at.astimezone(timezone(timedelta(hours=-5))).isoformat()
    if form == "naive":  # no offset means UTC
        return at.replace(tzinfo=None).isoformat()
    return iso_utc(at)


@st.composite
def bounds(draw: st.DrawFn) -> Bound:
    if draw(st.booleans()):
        sent, at = draw(st.sampled_from(DURATIONS))
        return Bound(sent, at)
    _, stored = draw(st.sampled_from(TIMESTAMPS))
    at = stored + draw(st.sampled_from((timedelta(0), _MICROSECOND, -_MICROSECOND)))
    form = draw(st.sampled_from(("utc", "offset", "negative offset", "naive")))
    return Bound(_absolute(at, form), at)


@dataclass(frozen=True)
class Filters:
    exact: dict[str, str]  # repository, tag, digest, action
    since: Bound | None
    until: Bound | None

    @property
    def params(self) -> dict[str, str]:
        params = dict(self.exact)
        if self.since is not None:
            params["since"] = self.since.sent
        if self.until is not None:
            params["until"] = self.until.sent
        return params

    @property
    def valid(self) -> bool:
        return self.since is None or self.until is None or self.since.at < self.until.at

    def matches(self, event: Seeded) -> bool:
        document = event.document
        return (
            all(document[name] == value for name, value in self.exact.items())
            and (self.since is None or event.at >= self.since.at)
            and (self.until is None or event.at < self.until.at)
        )


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | values


EXACT: Final = {
    "repository": (*REPOSITORIES, "team/none"),
    "tag": ("v1", "latest", "v9"),
    "digest": (*DIGESTS, f"sha256:{'d' * 64}"),
    "action": ACTIONS,
}


@st.composite
def filters(draw: st.DrawFn) -> Filters:
    """Up to two exact filters (more leave too few events to page through), each a value that
    matches some events or one that matches none; since and until or not."""
    names = draw(st.lists(st.sampled_from(sorted(EXACT)), max_size=2, unique=True))
    exact = {name: draw(st.sampled_from(EXACT[name])) for name in names}
    return Filters(exact, draw(_maybe(bounds())), draw(_maybe(bounds())))


@dataclass(frozen=True)
class Skip:
    """A timestamp with too many matching events: a page ends before it and names it."""

    timestamp: str


Item = Seeded | Skip


def page_order(events: Sequence[Seeded], max_tied: int) -> list[Item]:
    """``events`` newest first, those that share a timestamp by tie digest; each timestamp
    with more than ``max_tied`` of them as one Skip instead."""
    by_digest = sorted(events, key=lambda event: tie_digest(event.document))
    ordered = sorted(by_digest, key=lambda event: event.at, reverse=True)
    items: list[Item] = []
    index = 0
    while index < len(ordered):
        same = [event for event in ordered[index:] if event.at == ordered[index].at]
        if len(same) > max_tied:
            items.append(Skip(same[0].document["timestamp"]))
        else:
            items.extend(same)
        index += len(same)
    return items


@dataclass
class Expected:
    """The page the docs promise: its events (pushes: grouped), the timestamp it skipped, and
    whether a continuation follows."""

    events: list[Seeded] = field(default_factory=list)
    groups: dict[tuple[Any, ...], list[Seeded]] = field(default_factory=dict)
    skipped: str | None = None
    more: bool = False


def push_key(event: Seeded) -> tuple[Any, ...]:
    return tuple(event.document[name] for name in PUSH_KEY)


class PageModel:
    """Where paging through ``items`` has got to, page by page."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.at = 0

    def _finish(self, page: Expected) -> Expected:
        # A token only when something follows, a skipped timestamp included (docs/queries.md).
        page.more = self.at < len(self.items)
        return page

    def events_page(self, limit: int) -> Expected:
        page = Expected()
        while self.at < len(self.items) and len(page.events) < limit:
            item = self.items[self.at]
            self.at += 1
            if isinstance(item, Skip):
                page.skipped = item.timestamp
                break
            page.events.append(item)
        return self._finish(page)

    def pushes_page(self, limit: int, max_scan: int) -> Expected:
        page = Expected()
        while self.at < len(self.items):
            item = self.items[self.at]
            if isinstance(item, Skip):
                self.at += 1
                page.skipped = item.timestamp
                break
            key = push_key(item)
            one_push_too_many = key not in page.groups and len(page.groups) == limit
            if page.events and (one_push_too_many or len(page.events) == max_scan):
                break  # the next page starts with this event
            page.groups.setdefault(key, []).append(item)
            page.events.append(item)
            self.at += 1
        return self._finish(page)


def check_events_page(body: Mapping[str, Any], expected: Expected) -> None:
    assert [document["id"] for document in body["events"]] == [
        event.document["id"] for event in expected.events
    ]
    assert body["events"] == [event.document for event in expected.events]
    _check_skipped(body, expected)


def _candidates(events: Sequence[Seeded], name: str) -> set[Any]:
    """What "the first event that has it" may be: ties in any order."""
    having = [event for event in events if event.document[name] is not None]
    if not having:
        return {None}
    first = min(event.at for event in having)
    return {event.document[name] for event in having if event.at == first}


def check_pushes_page(body: Mapping[str, Any], expected: Expected) -> None:
    rows = body["pushes"]
    assert [tuple(row[name] for name in PUSH_KEY) for row in rows] == list(expected.groups)
    for row, events in zip(rows, expected.groups.values(), strict=True):
        oldest = min(events, key=lambda event: event.at)
        assert row["timestamp"] == oldest.document["timestamp"]
        regions = [(region["location"], region["timestamp"]) for region in row["regions"]]
        assert sorted(regions, key=str) == sorted(
            ((event.document["location"], event.document["timestamp"]) for event in events),
            key=str,
        )
        stamps = [timestamp for _, timestamp in regions]
        assert stamps == sorted(stamps), "regions oldest first"
        assert row["actor"] in _candidates(events, "actor")
        assert row["registry"] in _candidates(events, "registry")
    _check_skipped(body, expected)


def _check_skipped(body: Mapping[str, Any], expected: Expected) -> None:
    if expected.skipped is None:
        assert "skipped" not in body
    else:
        assert body["skipped"] == {"timestamp": expected.skipped, "reason": SKIPPED_REASON}
    assert (body["continuation"] is not None) == expected.more


def follow(
    params: Mapping[str, str],
    reader: EventReader,
    limits: Iterator[int],
    clock: Callable[[], datetime],
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Pages of the query through the handler, each with the limit it was asked with: the
    next one is asked for only once the previous one has been looked at."""
    token: str | None = None
    while True:
        limit = next(limits)
        sent = {**params, "limit": str(limit), **({"continuation": token} if token else {})}
        result = handle_events_query(sent, reader, now=clock)
        assert result.status == 200, result.body
        assert result.body is not None
        yield limit, result.body
        token = result.body["continuation"]
        if token is None:
            return
