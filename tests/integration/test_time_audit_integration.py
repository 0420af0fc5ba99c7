"""Time against the real local Cosmos DB API server: events sent with any offset and 0-9
fractional digits come back from the read API in time order, and ``since``/``until`` (any
offset, no zone, a date) select exactly the events whose instants are in range; a wall-clock
step (NTP, a VM resumed after a pause) during a database call neither fails a call that
succeeded nor stops a hung one from ending within its budget."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock

from azure.core.pipeline.transport import HttpRequest, RequestsTransport
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from acr_webhook.config import Settings
from acr_webhook.handlers import handle_webhook
from acr_webhook.queries import handle_events_query
from acr_webhook.repository import CosmosEventRepository
from tests.conftest import fresh_settings, read_all
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.properties import DETERMINISTIC
from tests.unit.test_time_audit import WallClock, instant_us, written_moments

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RECEIVED_LAST = datetime(9999, 12, 31, tzinfo=UTC)
HOUR_S = 3600.0
# Few examples, each a handful of writes and a few paged queries: server round trips.
ROUND_TRIPS = settings(
    DETERMINISTIC,
    max_examples=8,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[*DETERMINISTIC.suppress_health_check, HealthCheck.data_too_large],
)

_containers: dict[str, Settings] = {}


def shared_container(server: LocalCosmosServer) -> Settings:
    """One container for every example: each example writes to a repository of its own."""
    if server.endpoint not in _containers:
        _containers[server.endpoint] = fresh_settings(server)
    return _containers[server.endpoint]


@dataclass(frozen=True)
class Bound:
    text: str
    instant: datetime  # UTC, microseconds


@st.composite
def bounds(draw: st.DrawFn, near: list[datetime]) -> Bound:
    """A since/until value: an event's own instant (the edge), a microsecond either side of it,
    or any instant; written with Z, an offset, no zone, or as a date (midnight UTC)."""
    if draw(st.integers(0, 3)):
        edge = draw(st.sampled_from(near))
        instant = edge + timedelta(microseconds=draw(st.sampled_from([-1, 0, 0, 1])))
    else:
        anywhere = st.datetimes(
            min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.none()
        )
        instant = draw(anywhere).replace(tzinfo=UTC)
    style = draw(st.sampled_from(["Z", "offset", "naive", "date"]))
    if style == "date":
        midnight = instant.replace(hour=0, minute=0, second=0, microsecond=0)
        return Bound(f"{midnight:%Y-%m-%d}".rjust(10, "0"), midnight)
    local = instant
    if style == "offset":
        local = instant.astimezone(timezone(timedelta(minutes=draw(st.integers(-840, 840)))))
    digits = draw(st.integers(0 if instant.microsecond == 0 else 6, 6))
    fraction = f".{local.microsecond:06d}"[: digits + 1] if digits else ""
    zone = {"Z": "Z", "naive": ""}.get(style) or f"{local:%z}"[:3] + ":" + f"{local:%z}"[3:]
    return Bound(f"{local:%Y-%m-%dT%H:%M:%S}".rjust(19, "0") + fraction + zone, instant)


@dataclass(frozen=True)
class Window:
    since: Bound | None
    until: Bound | None
    limit: int


@dataclass(frozen=True)
class Case:
    moments: list[tuple[str, datetime, int]]
    windows: list[Window]


@st.composite
def windows(draw: st.DrawFn, near: list[datetime]) -> Window:
    given = draw(st.sampled_from(["both", "both", "since", "until", "neither"]))
    since = draw(bounds(near)) if given in ("both", "since") else None
    until = draw(bounds(near)) if given in ("both", "until") else None
    # Mostly a window (since before until); now and then the other way round: a 400.
    if since and until and since.instant > until.instant and draw(st.integers(0, 4)):
        since, until = until, since
    return Window(since, until, draw(st.integers(2, 6)))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    moments = draw(st.lists(written_moments(), min_size=3, max_size=8))
    # The same instant written another way: ties, across offsets and digit counts.
    if draw(st.booleans()):
        _, utc, nanos = moments[0]
        moments.append((f"{utc:%Y-%m-%dT%H:%M:%S}".rjust(19, "0") + f".{nanos:09d}Z", utc, nanos))
    near = [instant_us(moment) for moment in moments]
    return Case(moments, draw(st.lists(windows(near), min_size=5, max_size=5)))


def read_all_pages(params: dict[str, str], server: CosmosEventRepository) -> list[str]:
    """Every page of the query, followed to the end: the timestamps, in order."""
    timestamps: list[str] = []
    continuation = None
    for _ in range(20):
        asked = {**params, **({"continuation": continuation} if continuation else {})}
        result = handle_events_query(asked, server, now=lambda: NOW)
        assert result.status == 200, result.body
        assert result.body is not None
        timestamps += [event["timestamp"] for event in result.body["events"]]
        continuation = result.body["continuation"]
        if continuation is None:
            return timestamps
    raise AssertionError("paging did not end")


@ROUND_TRIPS
@given(cases())
def test_since_until_and_order_follow_the_instants_whatever_offset_or_digits_were_sent(
    cosmos_server: LocalCosmosServer, case: Case
) -> None:
    server = CosmosEventRepository(shared_container(cosmos_server))
    repository = f"time/{uuid.uuid4().hex[:12]}"
    for text, _, _ in case.moments:
        payload = payloads.with_new_id(payloads.PUSH, repository=repository)
        payload["timestamp"] = text
        # Received at the end of the stored years: no instant drawn (up to 9999) is then dated
        # ahead of its receipt, which is refused (models.dated_ahead).
        result = handle_webhook(payloads.body(payload), server, now=lambda: RECEIVED_LAST)
        assert result.status == 201, (text, result.body)

    instants = sorted((instant_us(moment) for moment in case.moments), reverse=True)
    for window in case.windows:
        params = {"repository": repository, "limit": str(window.limit)}
        if window.since is not None:
            params["since"] = window.since.text
        if window.until is not None:
            params["until"] = window.until.text
        if window.since and window.until and window.since.instant >= window.until.instant:
            result = handle_events_query(params, server, now=lambda: NOW)
            assert result.status == 400 and "until" in str(result.body)
            continue
        # docs/queries.md: since inclusive, until exclusive; newest first.
        expected = [
            f"{at:%Y-%m-%dT%H:%M:%S.%f}Z".rjust(27, "0")
            for at in instants
            if (window.since is None or at >= window.since.instant)
            and (window.until is None or at < window.until.instant)
        ]
        assert read_all_pages(params, server) == expected, params


# A wall-clock step while a database call is in flight.


@contextmanager
def wall_clock_steps_during_each_request(
    step_s: float, before: bool = False, steps: int | None = None
) -> Iterator[None]:
    """time.time() moves by ``step_s`` while each HTTP request is in flight (``before``: as it
    is sent, for a request that never gets an answer), for the first ``steps`` requests (all:
    None); the monotonic clock is untouched."""
    wall = WallClock()
    send = RequestsTransport.send
    sent = 0

    def stepping_send(self: RequestsTransport, request: HttpRequest, **kwargs: Any) -> Any:
        nonlocal sent
        sent += 1
        stepping = steps is None or sent <= steps
        if before and stepping:
            wall.step_s += step_s
        answer = send(self, request, **kwargs)
        if not before and stepping:
            wall.step_s += step_s
        return answer

    with (
        mock.patch("time.time", wall.time),
        mock.patch("time.time_ns", wall.time_ns),
        mock.patch.object(RequestsTransport, "send", stepping_send),
    ):
        yield


def push(server: CosmosEventRepository) -> tuple[str, int]:
    payload = payloads.with_new_id(payloads.PUSH)
    return payload["id"], handle_webhook(payloads.body(payload), server, now=lambda: NOW).status


def test_a_wall_clock_step_forward_during_a_write_that_succeeded_is_no_outage(
    cosmos_settings: Settings,
) -> None:
    """azure-cosmos measures the `timeout` the app passes on the wall clock, after a call that
    succeeded too: a step forward made a stored event a 503 and a remembered outage. The write
    is made once more (a 409: it is stored, answered as a duplicate)."""
    server = CosmosEventRepository(cosmos_settings)
    assert push(server)[1] == 201  # the client is built
    with wall_clock_steps_during_each_request(HOUR_S, steps=1):
        event_id, status = push(server)
    assert status == 200  # stored by the first try, found by the second
    assert [d["id"] for d in read_all(cosmos_settings) if d["id"] == event_id] == [event_id]
    assert push(server)[1] == 201  # and the next event is not refused "moments" later


def test_a_wall_clock_step_forward_during_a_read_is_no_outage(cosmos_settings: Settings) -> None:
    server = CosmosEventRepository(cosmos_settings)
    assert push(server)[1] == 201
    assert handle_events_query({}, server, now=lambda: NOW).status == 200  # reads' client built
    with wall_clock_steps_during_each_request(HOUR_S, steps=1):
        result = handle_events_query({}, server, now=lambda: NOW)
    assert result.status == 200, result.body


def test_a_wall_clock_step_back_does_not_keep_a_write_to_a_hung_database_waiting(
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    """README: every webhook answer within 4.5 s; a write gives up after ~2 s. A step back
    puts the SDK's own (wall-clock) timeout an hour away: the socket timeouts must still end
    it."""
    server = CosmosEventRepository(fresh_settings(restartable_cosmos_server))
    assert push(server)[1] == 201
    restartable_cosmos_server.freeze()
    try:
        with wall_clock_steps_during_each_request(-HOUR_S, before=True):
            started = time.monotonic()
            _, status = push(server)
            took_s = time.monotonic() - started
    finally:
        restartable_cosmos_server.thaw()
    assert status == 503  # no fallback queue here
    assert took_s < 3.0
