"""The read side: query parameters in, a page of events (newest first) and a continuation out.

Framework-free like ``handlers``: ``function_app.py`` passes ``req.params`` to
``handle_events_query`` and the CLI calls ``parse_event_query`` and ``fetch_page`` itself.

Paging is keyset paging with a token of our own rather than the SDK's continuation: the SDK's
cross-partition ORDER BY tokens are not portable between real Cosmos DB and the local server, and a
tie-breaking second ORDER BY property would need a composite index that a container created by
``provision`` does not have. A token holds the timestamp of the last event returned and the
keys (``<id>/<repository>``) of the events returned at exactly that timestamp, so the next page
is "timestamp <= t, minus those keys", whatever order the store puts equal timestamps in.

``view=pushes`` answers "what was pushed" with one row per push: the events, read newest first
with the same filters and the same keyset position, grouped by (repository, digest, tag,
action) in the app (the local server has no GROUP BY). Each row has the push's first timestamp
and, per event, ``{location, timestamp}``: when each geo-replica had it. A page ends just before
the first event of the push that would be one too many, so every event lands on exactly one
page; a push whose events straddle that boundary (replication still completing, or interleaved
with other pushes) continues on the next page as a row with the same key. Filtering by digest
gives one complete row.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeGuard

from acr_webhook.models import (
    DEFAULT_LIMIT,
    FILTERS,
    MAX_YEAR,
    MIN_YEAR,
    RECORDED_ACTIONS,
    EventQuery,
    Position,
    filters_fingerprint,
    iso_utc,
)
from acr_webhook.repository import EventReader, RepositoryUnavailableError
from acr_webhook.results import Result, utc_now

log = logging.getLogger(__name__)

MAX_LIMIT: Final = 1000
VIEWS: Final = ("events", "pushes")
PARAMETERS: Final = (*FILTERS, "view", "limit", "continuation")
# What makes events one push: the same image (digest) under the same name and tag, same action.
PUSH_KEY: Final = ("repository", "digest", "tag", "action")
# The pushes view reads events in batches of this many, and at most MAX_PUSH_SCAN per page (the
# page then ends early, with a continuation): a page's cost stays bounded.
PUSH_SCAN_BATCH: Final = 200
MAX_PUSH_SCAN: Final = 1000
# The function key when it is sent as ?code=; the host checks it, the query ignores it.
IGNORED_PARAMETERS: Final = frozenset({"code"})
# Longer than any stored value (models: repository 255, tag 128): only bounds what a client can
# make the server send to the database.
MAX_VALUE_CHARS: Final = 1024
# A token normally holds one key; ties on a microsecond timestamp are rare. This only bounds
# what a client can make the server decode and send to the database.
MAX_CONTINUATION_CHARS: Final = 64 * 1024
TOKEN_VERSION: Final = 1

# OCI image spec: algorithm ":" encoded, e.g. sha256:<64 hex>.
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
# What models.iso_utc writes (years 1000-9999), so string order is time order.
_STORED_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
# ISO 8601 durations in days/weeks and time units, e.g. PT1H, P7D, P1DT12H, PT90M.
_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?"
)
_LIMIT = re.compile(r"[0-9]{1,7}")


class QueryError(ValueError):
    """One or more query parameters are invalid; the message names each of them."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in self.problems))

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.problems)


@dataclass(frozen=True)
class EventPage:
    events: list[dict[str, Any]]
    continuation: str | None


@dataclass(frozen=True)
class PushPage:
    pushes: list[dict[str, Any]]
    continuation: str | None


def event_key(document: Mapping[str, Any]) -> str:
    """Unique across the container: ids are unique per partition only, and contain no '/'."""
    return f"{document['id']}/{document['repository']}"


def _parse_time(value: str, now: datetime) -> str:
    duration = _DURATION.fullmatch(value)
    if duration and value != "P" and not value.endswith("T"):
        amounts = {unit: int(count) for unit, count in duration.groupdict(default="0").items()}
        moment = now - timedelta(**amounts)
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                "must be an ISO 8601 time such as 2024-05-01T12:00:00Z "
                "or a duration before now such as PT1H"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # like stored timestamps: naive means UTC
    # Stored timestamps have these years (models), so string order is time order.
    if not MIN_YEAR <= moment.astimezone(UTC).year <= MAX_YEAR:
        raise ValueError(f"is out of range (years {MIN_YEAR} to {MAX_YEAR})")
    return iso_utc(moment)


def _parse_limit(value: str) -> int:
    if not _LIMIT.fullmatch(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise ValueError(f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def _parse_filter(name: str, value: str, now: datetime) -> str:
    if name in ("since", "until"):
        return _parse_time(value, now)
    if name == "action" and value not in RECORDED_ACTIONS:
        raise ValueError(f"must be one of {', '.join(sorted(RECORDED_ACTIONS))}")
    if name == "digest" and not _DIGEST.fullmatch(value):
        raise ValueError("must be a full digest such as sha256:<64 hex digits>")
    return value


def parse_event_query(
    params: Mapping[str, str], now: Callable[[], datetime] = utc_now
) -> EventQuery:
    """Validate query parameters. Raises QueryError naming every bad or unknown parameter."""
    problems: list[tuple[str, str]] = []
    values: dict[str, str] = {}
    for name in sorted(set(params) - set(PARAMETERS) - IGNORED_PARAMETERS):
        problems.append((repr(name)[1:-1], f"unknown parameter; use {', '.join(PARAMETERS)}"))
    moment = now()
    for name in FILTERS:
        value = params.get(name)
        if value is None:
            continue
        if not value:
            problems.append((name, "must not be empty"))
        elif len(value) > MAX_VALUE_CHARS:
            problems.append((name, f"must be at most {MAX_VALUE_CHARS} characters"))
        else:
            try:
                values[name] = _parse_filter(name, value, moment)
            except (ValueError, OverflowError) as error:
                message = str(error) if isinstance(error, ValueError) else "is out of range"
                problems.append((name, message))
    if "since" in values and "until" in values and values["since"] >= values["until"]:
        problems.append(("until", "must be later than since"))
    view = params.get("view", "events")
    if view not in VIEWS:
        problems.append(("view", f"must be one of {', '.join(VIEWS)}"))
    limit = DEFAULT_LIMIT
    if "limit" in params:
        try:
            limit = _parse_limit(params["limit"])
        except ValueError as error:
            problems.append(("limit", str(error)))
    # The parameters as given, not as resolved: "since=PT1H" must match its own next page.
    origin = filters_fingerprint({name: params.get(name) for name in FILTERS})
    query = EventQuery(
        repository=values.get("repository"),
        tag=values.get("tag"),
        digest=values.get("digest"),
        action=values.get("action"),
        since=values.get("since"),
        until=values.get("until"),
        limit=limit,
        origin=origin,
    )
    token = params.get("continuation")
    if token is not None and not problems:
        try:
            query = decode_continuation(token, query, view)
        except ValueError as error:
            problems.append(("continuation", str(error)))
    if problems:
        raise QueryError(problems)
    return query


def requested_view(params: Mapping[str, str]) -> str:
    """The view asked for (``events`` unless ``view`` says otherwise); call after
    ``parse_event_query`` has accepted the parameters."""
    return params.get("view", "events")


def encode_continuation(position: Position, query: EventQuery, view: str = "events") -> str:
    """An opaque token for the page after ``position``; it pins the resolved time window, so a
    relative ``since=PT1H`` covers the same hour on every page."""
    payload: dict[str, Any] = {
        "v": TOKEN_VERSION,
        "q": query.fingerprint(),
        "t": position.timestamp,
        "s": list(position.seen),
        "w": [query.since, query.until],
    }
    if view != "events":
        payload["view"] = view  # a page of pushes continues as pushes only
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _is_stamp(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _STORED_TIMESTAMP.fullmatch(value) is not None


def decode_continuation(token: str, query: EventQuery, view: str = "events") -> EventQuery:
    """``query`` continued after the position the token holds, in the token's time window.

    Raises ValueError if the token is not one of ours or belongs to other filters.
    """
    not_ours = ValueError("is not a continuation token from this endpoint; start without it")
    if not token or len(token) > MAX_CONTINUATION_CHARS:
        raise not_ours
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        payload = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise not_ours from None
    if not isinstance(payload, dict) or payload.get("v") != TOKEN_VERSION:
        raise not_ours
    timestamp, seen, window = payload.get("t"), payload.get("s"), payload.get("w")
    if (
        not _is_stamp(timestamp)
        or not isinstance(seen, list)
        or not all(isinstance(key, str) and "/" in key for key in seen)
        or not isinstance(window, list)
        or len(window) != 2
        or not all(bound is None or _is_stamp(bound) for bound in window)
    ):
        raise not_ours
    if payload.get("q") != query.fingerprint():
        raise ValueError("belongs to a query with other filters; repeat the same filters")
    if payload.get("view", "events") != view:
        raise ValueError(f"belongs to another view; repeat view={payload.get('view', 'events')}")
    since, until = window
    if (since is None) != (query.since is None) or (until is None) != (query.until is None):
        raise not_ours
    return dataclasses.replace(
        query, since=since, until=until, after=Position(timestamp, tuple(seen))
    )


def fetch_page(query: EventQuery, reader: EventReader) -> EventPage:
    """One page, newest first, with a continuation only when more events exist.

    Asks for one event more than the limit: so the last page never needs an empty follow-up.
    Raises RepositoryUnavailableError when the store fails or does not answer in time.
    """
    documents = reader.find_events(query, query.limit + 1)
    page = documents[: query.limit]
    if len(documents) <= query.limit:
        return EventPage(page, None)
    last = page[-1]["timestamp"]
    seen = [event_key(document) for document in page if document["timestamp"] == last]
    if query.after is not None and query.after.timestamp == last:
        seen = [*query.after.seen, *seen]  # a whole page of one timestamp: keep skipping those
    return EventPage(page, encode_continuation(Position(last, tuple(seen)), query))


def _advance(position: Position | None, document: Mapping[str, Any]) -> Position:
    """The keyset position just after ``document`` (read newest first)."""
    timestamp = document["timestamp"]
    if position is not None and position.timestamp == timestamp:
        return Position(timestamp, (*position.seen, event_key(document)))
    return Position(timestamp, (event_key(document),))


def push_row(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One push from its events (one per geo-replica that reported it, or per delivery)."""
    ordered = sorted(events, key=lambda event: str(event["timestamp"]))
    first = ordered[0]
    row = {name: first.get(name) for name in PUSH_KEY}
    row["timestamp"] = first["timestamp"]
    # Who pushed, and where: the first event that carries it (webhook deliveries do not).
    for name in ("actor", "registry"):
        row[name] = next((e[name] for e in ordered if e.get(name) is not None), None)
    row["regions"] = [
        {"location": event.get("location"), "timestamp": event["timestamp"]} for event in ordered
    ]
    return row


def fetch_pushes(query: EventQuery, reader: EventReader) -> PushPage:
    """Up to ``query.limit`` pushes, by each push's newest event, newest first.

    Raises RepositoryUnavailableError when the store fails or does not answer in time.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    position = query.after
    scanned = 0
    while True:
        batch = reader.find_events(dataclasses.replace(query, after=position), PUSH_SCAN_BATCH)
        for document in batch:
            key = tuple(document.get(name) for name in PUSH_KEY)
            if key not in groups and len(groups) == query.limit and position is not None:
                # One push too many: the next page starts with this very event.
                rows = [push_row(events) for events in groups.values()]
                return PushPage(rows, encode_continuation(position, query, "pushes"))
            groups.setdefault(key, []).append(document)
            position = _advance(position, document)
            scanned += 1
        rows = [push_row(events) for events in groups.values()]
        if len(batch) < PUSH_SCAN_BATCH:
            return PushPage(rows, None)
        if scanned >= MAX_PUSH_SCAN and position is not None:
            return PushPage(rows, encode_continuation(position, query, "pushes"))


def handle_events_query(
    params: Mapping[str, str], reader: EventReader, now: Callable[[], datetime] = utc_now
) -> Result:
    """GET events: 200 ``{"events": [...], "continuation": token|null}`` (``view=pushes``:
    ``{"pushes": [...], ...}``), 400 naming the bad parameter(s), 503 when the store is
    unavailable."""
    try:
        query = parse_event_query(params, now)
    except QueryError as error:
        log.warning("events query rejected: %s", error)
        return Result(400, {"error": str(error)})
    try:
        if requested_view(params) == "pushes":
            pushes = fetch_pushes(query, reader)
            more = " (more available)" if pushes.continuation else ""
            log.info("pushes query %s: %d push(es)%s", query.describe(), len(pushes.pushes), more)
            return Result(200, {"pushes": pushes.pushes, "continuation": pushes.continuation})
        page = fetch_page(query, reader)
    except RepositoryUnavailableError as error:
        log.error("events query %s failed: database unavailable (%s)", query.describe(), error)
        return Result(503, {"error": "the event store is unavailable; try again later"})
    more = " (more available)" if page.continuation else ""
    log.info("events query %s: %d event(s)%s", query.describe(), len(page.events), more)
    return Result(200, {"events": page.events, "continuation": page.continuation})
