"""The read side: query parameters in, a page of events (newest first) and a continuation out.

Framework-free like ``handlers``: ``function_app.py`` passes ``req.params`` to
``handle_events_query`` and the CLI calls ``parse_event_query`` and ``fetch_page`` (or
``fetch_pushes``) itself.

Paging is keyset paging with a token of our own rather than the SDK's continuation: the SDK's
cross-partition ORDER BY tokens are not portable between real Cosmos DB and the local server, and a
tie-breaking second ORDER BY property would need a composite index that a container created by
``provision`` does not have. The store sorts by timestamp only; the app puts the events that
share a timestamp in the order of a digest of their key (``tie_digest``), reading them whole
(at most MAX_TIED_EVENTS). So where a page ended is a timestamp and, when it ended among the
events at that timestamp, one digest: a token has a fixed size however many events tie, and the
next page is "the events at t after that digest, then timestamp < t". A timestamp with more
than MAX_TIED_EVENTS matching events cannot be ordered that way: a page ends before it and
says it skipped it.

``view=pushes`` answers "what was pushed" with one row per push: the events, read in the same
order from the same position, grouped by (repository, digest, tag, action) in the app (the
local server has no GROUP BY). Each row has the push's first timestamp and, per event,
``{location, timestamp}``: when each geo-replica had it. A page ends just before the first
event of the push that would be one too many, so every event lands on exactly one page; a push
whose events straddle that boundary (replication still completing, or interleaved with other
pushes) continues on the next page as a row with the same key. Filtering by digest and
repository gives each push of that image as one complete row, as long as one page holds them
all (``limit`` pushes, MAX_PUSH_SCAN events).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import itertools
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeGuard

from acr_webhook.config import QUERY_BUDGET_S
from acr_webhook.models import (
    DEFAULT_LIMIT,
    FILTERS,
    MAX_PARKED_REPOSITORY_LENGTH,
    MAX_PARTITION_KEY_BYTES,
    MAX_YEAR,
    MIN_YEAR,
    RECORDED_ACTIONS,
    EventQuery,
    Position,
    filters_fingerprint,
    iso_utc,
)
from acr_webhook.results import Result, utc_now
from acr_webhook.store import (
    EventReader,
    RepositoryUnavailableError,
    StoreSetUpError,
    unavailable_reasons,
)

log = logging.getLogger(__name__)

MAX_LIMIT: Final = 1000
VIEWS: Final = ("events", "pushes")
PARAMETERS: Final = (*FILTERS, "view", "limit", "continuation")
# What makes events one push: the same image (digest) under the same name and tag, same action,
# in the same registry (compared by name: _push_key).
PUSH_KEY: Final = ("registry", "repository", "digest", "tag", "action")
# The pushes view reads events in batches of this many, and at most MAX_PUSH_SCAN per page (the
# page then ends early, with a continuation): a page's cost stays bounded.
PUSH_SCAN_BATCH: Final = 200
MAX_PUSH_SCAN: Final = 1000
# Events that share a timestamp are read whole to be put in order, at most this many: a page's
# cost stays bounded. A timestamp with more matching events is skipped (docs/queries.md).
MAX_TIED_EVENTS: Final = 1000
SKIPPED_REASON: Final = (
    f"more than {MAX_TIED_EVENTS} events at this timestamp match, too many to page through; "
    "add filters (repository, tag, digest, action) to list them"
)
# The function key when it is sent as ?code= (the host takes that name in any case): the host
# checks it, the query ignores it.
IGNORED_PARAMETERS: Final = frozenset({"code"})
# Every filter's longest value. Not the webhook's field limits: documents stored by earlier
# versions, which the endpoint still reads, have repository names up to 1,024 characters
# (replay still stores those: models.MAX_PARKED_REPOSITORY_LENGTH) and tags and digests of any
# length. Times are parsed and actions checked against a list: this bounds the work asked for.
MAX_VALUE_CHARS: Final = MAX_PARKED_REPOSITORY_LENGTH
# A token holds a timestamp, one digest, the time window and a fingerprint: about 250
# characters whatever the data, so this bounds nothing the endpoint issues.
MAX_CONTINUATION_CHARS: Final = 512
# 2: ties in digest order (1 listed the keys of the tied events returned).
TOKEN_VERSION: Final = 2

# OCI image spec: algorithm ":" encoded, e.g. sha256:<64 hex>; the registered algorithms'
# encodings have a fixed length, so a shortened one (as the CLI's table prints) is refused.
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_REGISTERED_DIGESTS = {
    "sha256": re.compile(r"[a-f0-9]{64}"),
    "sha512": re.compile(r"[a-f0-9]{128}"),
}
# What models.iso_utc writes (years 1000-9999, so string order is time order), and what the
# first versions wrote for earlier years ("999-..."): a token must page past those too. ASCII:
# \d alone takes any script's digits, which sort after every stored time.
_STORED_TIMESTAMP = re.compile(r"\d{1,4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", re.ASCII)
# ISO 8601 durations in days/weeks and time units, e.g. PT1H, P7D, P1DT12H, PT90M.
_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?",
    re.ASCII,
)
_LIMIT = re.compile(r"[0-9]{1,7}")
_TIE_DIGEST = re.compile(r"[0-9a-f]{32}")


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
    skipped: str | None = None  # the timestamp skipped for MAX_TIED_EVENTS; the page ends there


@dataclass(frozen=True)
class PushPage:
    pushes: list[dict[str, Any]]
    continuation: str | None
    skipped: str | None = None  # as in EventPage


class TooManyTiedError(Exception):
    """More than MAX_TIED_EVENTS matching events share ``timestamp``: too many to put in order."""

    def __init__(self, timestamp: str) -> None:
        super().__init__(f"more than {MAX_TIED_EVENTS} events at {timestamp} match")
        self.timestamp = timestamp


def event_key(document: Mapping[str, Any]) -> str:
    """Unique across the container: ids are unique per partition only, and contain no '/'."""
    return f"{document['id']}/{document['repository']}"


def tie_digest(document: Mapping[str, Any]) -> str:
    """The order of events that share a timestamp: a fixed-size stand-in for the key (up to 511
    characters), so that a token says where a page ended among them in 32 characters."""
    key = event_key(document).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(key, digest_size=16).hexdigest()


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
    if name == "digest" and not _is_full_digest(value):
        raise ValueError("must be a full digest such as sha256:<64 hex digits>")
    return value


def _is_full_digest(value: str) -> bool:
    algorithm, _, encoded = value.partition(":")
    registered = _REGISTERED_DIGESTS.get(algorithm)
    if registered is not None:
        return registered.fullmatch(encoded) is not None
    return _DIGEST.fullmatch(value) is not None


def parse_event_query(
    params: Mapping[str, str], now: Callable[[], datetime] = utc_now
) -> EventQuery:
    """Validate query parameters. Raises QueryError naming every bad or unknown parameter."""
    problems: list[tuple[str, str]] = []
    values: dict[str, str] = {}
    for name in sorted(set(params) - set(PARAMETERS)):
        if name.lower() not in IGNORED_PARAMETERS:
            problems.append((repr(name)[1:-1], f"unknown parameter (use {', '.join(PARAMETERS)})"))
    moment = now()
    for name in FILTERS:
        value = params.get(name)
        if value is None:
            continue
        if not value:
            problems.append((name, "must not be empty"))
        elif len(value) > MAX_VALUE_CHARS:
            problems.append((name, f"must be at most {MAX_VALUE_CHARS} characters"))
        elif name == "repository" and len(value.encode("utf-8", "surrogatepass")) > (
            MAX_PARTITION_KEY_BYTES
        ):
            # No document has such a partition key, and Cosmos DB refuses the query.
            problems.append((name, f"must be at most {MAX_PARTITION_KEY_BYTES} bytes in UTF-8"))
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
        registry=values.get("registry"),
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
    """An opaque token for the page after ``position``, at most MAX_CONTINUATION_CHARS long; it
    pins the resolved time window, so a relative ``since=PT1H`` covers the same hour on every
    page."""
    payload: dict[str, Any] = {
        "v": TOKEN_VERSION,
        "q": query.fingerprint(),
        "t": position.timestamp,
        "k": position.tied_through,
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
    if not isinstance(payload, dict):
        raise not_ours
    version = payload.get("v")
    if type(version) is int and 0 < version < TOKEN_VERSION:
        # A client that held a real token across an upgrade: say so, not "not ours".
        raise ValueError("is from an earlier version of this endpoint; start without it")
    if type(version) is int and version > TOKEN_VERSION:
        # Brought back from a newer instance (a rollback, a rolling update): not a forgery.
        raise ValueError("is from a newer version of this endpoint; start without it")
    if version != TOKEN_VERSION:
        raise not_ours
    timestamp, window = payload.get("t"), payload.get("w")
    tied = payload.get("k", "")  # null is a position, absent is not
    if (
        not _is_stamp(timestamp)
        or not (tied is None or (isinstance(tied, str) and _TIE_DIGEST.fullmatch(tied)))
        or not isinstance(window, list)
        or len(window) != 2
        or not all(bound is None or _is_stamp(bound) for bound in window)
    ):
        raise not_ours
    if payload.get("q") != query.fingerprint():
        raise ValueError("belongs to a query with other filters; repeat the same filters")
    token_view = payload.get("view", "events")
    if token_view not in VIEWS:
        raise not_ours  # the token is not signed: its view goes into the answer and the log
    if token_view != view:
        raise ValueError(f"belongs to another view; repeat view={token_view}")
    since, until = window
    if (since is None) != (query.since is None) or (until is None) != (query.until is None):
        raise not_ours
    # A position is an event's timestamp, inside the window: the next pages only narrow it.
    if (since is not None and timestamp < since) or (until is not None and timestamp >= until):
        raise not_ours
    return dataclasses.replace(
        query, since=since, until=until, after=Position(timestamp, tied_through=tied)
    )


def _in_page_order(documents: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest first; events that share a timestamp by ``tie_digest``."""
    by_digest = sorted(documents, key=tie_digest)
    return sorted(by_digest, key=lambda document: document["timestamp"], reverse=True)


def _positioned(
    events: list[dict[str, Any]], more_follow: bool
) -> Iterator[tuple[dict[str, Any], Position | None]]:
    """``events`` (in page order, with every event of their oldest timestamp), each with the
    position just after it: None after the last one when nothing follows."""
    for index, event in enumerate(events):
        following = events[index + 1] if index + 1 < len(events) else None
        timestamp = event["timestamp"]
        if following is not None and following["timestamp"] == timestamp:
            yield event, Position(timestamp, tied_through=tie_digest(event))
        elif following is not None or more_follow:
            yield event, Position(timestamp)
        else:
            yield event, None


def _tied(query: EventQuery, reader: EventReader, timestamp: str) -> list[dict[str, Any]]:
    """Every event of ``query`` at ``timestamp``, in page order.

    Raises TooManyTiedError when there are more than MAX_TIED_EVENTS.
    """
    at_timestamp = dataclasses.replace(query, since=timestamp, after=Position(timestamp))
    tied = reader.find_events(at_timestamp, MAX_TIED_EVENTS + 1)
    if len(tied) > MAX_TIED_EVENTS:
        raise TooManyTiedError(timestamp)
    return sorted(tied, key=tie_digest)


def _events_in_page_order(
    query: EventQuery, reader: EventReader, batch_size: int
) -> Iterator[tuple[dict[str, Any], Position | None]]:
    """The events of ``query`` after its position, in page order, each with the position just
    after it (None after the last one).

    Reads ``batch_size`` events at a time, newest first. The events at a batch's oldest
    timestamp may go on past it, so the next batch starts with them again; a batch of a single
    timestamp is read whole instead (``_tied``). Raises TooManyTiedError at a timestamp with
    more than MAX_TIED_EVENTS events, RepositoryUnavailableError when the store fails.
    """
    start = query.after
    tied: list[dict[str, Any]] = []  # every event of one timestamp not returned yet, in order
    rest = query  # the events after those
    if start is not None:
        if start.tied_through is not None:
            at_start = _tied(query, reader, start.timestamp)
            tied = [event for event in at_start if tie_digest(event) > start.tied_through]
        rest = dataclasses.replace(query, until=start.timestamp, after=None)
    while True:
        batch = reader.find_events(rest, batch_size)
        if len(batch) < batch_size:
            yield from _positioned([*tied, *_in_page_order(batch)], more_follow=False)
            return
        oldest = batch[-1]["timestamp"]
        newer = [event for event in batch if event["timestamp"] > oldest]
        yield from _positioned([*tied, *_in_page_order(newer)], more_follow=True)
        if newer:
            # The events at `oldest` may go on past this batch: the next one starts with them.
            tied, rest = [], dataclasses.replace(query, after=Position(oldest))
        else:
            # One timestamp fills the batch: read all of its events, to put them in order.
            tied = _tied(query, reader, oldest)
            rest = dataclasses.replace(query, until=oldest, after=None)


def _continuation_past(
    tied: TooManyTiedError, query: EventQuery, reader: EventReader, view: str = "events"
) -> str | None:
    """The token for the page after the events at ``tied.timestamp``, which are skipped; None
    when no event is older (a token promises more events, and crowds are often the oldest:
    an import of history)."""
    log.warning("%s query %s: %s; skipped them", view, query.describe(), tied)
    older = dataclasses.replace(query, until=tied.timestamp, after=None)
    if not reader.find_events(older, 1):
        return None
    return encode_continuation(Position(tied.timestamp), query, view)


class _PageReads:
    """``reader`` for the reads of one page, which may be several (a crowded timestamp, the
    pushes view): each read ends by the page's deadline, so the page keeps one budget."""

    def __init__(self, reader: EventReader) -> None:
        self._reader = reader
        self._deadline = time.monotonic() + QUERY_BUDGET_S

    def find_events(
        self, query: EventQuery, max_items: int, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        ends = self._deadline if deadline is None else min(deadline, self._deadline)
        return self._reader.find_events(query, max_items, ends)


def fetch_page(query: EventQuery, reader: EventReader) -> EventPage:
    """One page in page order, with a continuation only when more events exist.

    Reads one event more than the limit: so the last page never needs an empty follow-up.
    Raises RepositoryUnavailableError when the store fails or does not answer within
    QUERY_BUDGET_S, all of the page's reads together.
    """
    reader = _PageReads(reader)
    events: list[dict[str, Any]] = []
    end: Position | None = None
    in_order = _events_in_page_order(query, reader, query.limit + 1)
    try:
        for event, after in itertools.islice(in_order, query.limit):
            events.append(event)
            end = after
    except TooManyTiedError as tied:
        continuation = _continuation_past(tied, query, reader)
        return EventPage(events, continuation, skipped=tied.timestamp)
    return EventPage(events, None if end is None else encode_continuation(end, query))


def push_row(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One push from its events (one per geo-replica that reported it, or per delivery)."""
    ordered = sorted(events, key=lambda event: str(event["timestamp"]))
    first = ordered[0]
    row = {name: first.get(name) for name in PUSH_KEY}
    row["timestamp"] = first["timestamp"]
    # What kind of manifest: one digest has one mediaType, and a multi-platform push is an
    # index plus untagged platform manifests, which only this tells apart.
    row["mediaType"] = first.get("mediaType")
    # Who pushed: the first event that carries it (webhook deliveries do not).
    row["actor"] = next((e["actor"] for e in ordered if e.get("actor") is not None), None)
    row["regions"] = [
        {"location": event.get("location"), "timestamp": event["timestamp"]} for event in ordered
    ]
    return row


def _push_key(event: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes events one push: PUSH_KEY's values, the registry by its name (the host's
    first label, in any case), so that a replica whose event names a regional host of the
    registry (``<name>.<region>.data.azurecr.io``), or the login server in capitals, still
    reports the same push."""
    return tuple(
        _registry_name(event.get(name)) if name == "registry" else event.get(name)
        for name in PUSH_KEY
    )


def _registry_name(host: Any) -> Any:
    return host.split(".", 1)[0].lower() if isinstance(host, str) else host


def fetch_pushes(query: EventQuery, reader: EventReader) -> PushPage:
    """Up to ``query.limit`` pushes, by each push's newest event, newest first.

    Raises RepositoryUnavailableError when the store fails or does not answer within
    QUERY_BUDGET_S, all of the page's reads together.
    """
    reader = _PageReads(reader)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    before: Position | None = None  # the position just before `event`
    scanned = 0
    try:
        for event, after in _events_in_page_order(query, reader, PUSH_SCAN_BATCH):
            key = _push_key(event)
            one_push_too_many = key not in groups and len(groups) == query.limit
            if before is not None and (one_push_too_many or scanned == MAX_PUSH_SCAN):
                # The next page starts with this very event.
                return PushPage(_push_rows(groups), encode_continuation(before, query, "pushes"))
            groups.setdefault(key, []).append(event)
            before = after
            scanned += 1
    except TooManyTiedError as tied:
        continuation = _continuation_past(tied, query, reader, "pushes")
        return PushPage(_push_rows(groups), continuation, skipped=tied.timestamp)
    return PushPage(_push_rows(groups), None)


def _push_rows(groups: Mapping[tuple[Any, ...], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [push_row(events) for events in groups.values()]


# A code point in the surrogate range is always a lone one in a Python str. Versions before
# 3ccf54c stored ACR's text as sent, and a JSON body's "\ud800" is one: json.dumps writes it
# back as that escape, which strict parsers (jq, Go's decoder) refuse, failing the whole page.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _as_unicode(value: Any) -> Any:
    """``value`` with each lone surrogate as U+FFFD, the replacement any UTF-8 decoder makes."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_as_unicode(key): _as_unicode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_unicode(item) for item in value]
    return value


def page_body(
    rows_name: str, rows: list[dict[str, Any]], continuation: str | None, skipped: str | None
) -> dict[str, Any]:
    """A page as the endpoint answers it (and the CLI's --json prints it), valid Unicode
    whatever an earlier version stored."""
    body: dict[str, Any] = {rows_name: _as_unicode(rows), "continuation": continuation}
    if skipped is not None:
        body["skipped"] = {"timestamp": skipped, "reason": SKIPPED_REASON}
    return body


# The read endpoint's 503 for a set-up the database refuses (a key, a role, a missing
# container): the caller cannot fix it, and the app's log names what to fix.
SET_UP_REFUSED = "the event store refuses this app's set-up; the app's log says what to fix"


def handle_events_query(
    params: Mapping[str, str], reader: EventReader, now: Callable[[], datetime] = utc_now
) -> Result:
    """GET events: 200 ``{"events": [...], "continuation": token|null}`` (``view=pushes``:
    ``{"pushes": [...], ...}``; plus ``skipped`` when a page skipped a timestamp with too many
    events), 400 naming the bad parameter(s), 503 when the store is unavailable."""
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
            return Result(
                200, page_body("pushes", pushes.pushes, pushes.continuation, pushes.skipped)
            )
        page = fetch_page(query, reader)
    except RepositoryUnavailableError as error:
        _, detail = unavailable_reasons([error])  # a refused set-up said as one, as on writes
        log.error("events query %s failed: %s", query.describe(), detail)
        if isinstance(error, StoreSetUpError):  # trying again gets the same until it is fixed
            return Result(503, {"error": SET_UP_REFUSED})
        return Result(503, {"error": "the event store is unavailable; try again later"})
    more = " (more available)" if page.continuation else ""
    log.info("events query %s: %d event(s)%s", query.describe(), len(page.events), more)
    return Result(200, page_body("events", page.events, page.continuation, page.skipped))
