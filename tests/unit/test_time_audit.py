"""Time and clocks: budgets and outage memory on the monotonic clock, whatever the wall clock
does (an NTP step, a VM resumed after a pause); event timestamps stored in UTC, fixed-width, so
that text order is time order; ``since``/``until`` read as the docs say in any time zone of the
process; stamps on the console in UTC with a Z.

Wall-clock steps are simulated by patching ``time.time``/``time.time_ns`` mid-operation
(``stepping_wall_clock``); the monotonic clock keeps running as it does."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest
from azure.mgmt.containerregistry.models import Event
from hypothesis import given, settings
from hypothesis import strategies as st

from acr_webhook import __main__ as cli
from acr_webhook import queries, telemetry
from acr_webhook.config import QUERY_BUDGET_S
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import handle_webhook
from acr_webhook.local.timers import next_occurrence
from acr_webhook.models import AcrEvent, EventQuery, iso_utc
from acr_webhook.queries import EventPage, fetch_page, handle_events_query, parse_event_query
from acr_webhook.reconcile import reconcile_entries
from acr_webhook.repository import DatabaseHealth
from acr_webhook.store import RepositoryUnavailableError
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.support.properties import DETERMINISTIC

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOUR_S = 3600.0
# Process time zones that expose a local-time reading: a half-hour offset east, a half-hour
# offset west (St John's, -03:30), and one with DST (Berlin skips 02:00-03:00 on 2026-03-29 and
# has 02:00-03:00 twice on 2026-10-25).
TIME_ZONES = ("UTC", "Asia/Kolkata", "America/St_Johns", "Europe/Berlin")
EVENT_GRID_TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.ContainerRegistry/registries/myregistry"
)


class WallClock:
    """``time.time``/``time.time_ns`` plus a step a test sets mid-operation."""

    def __init__(self) -> None:
        self.step_s = 0.0
        self._time = time.time
        self._time_ns = time.time_ns

    def time(self) -> float:
        return self._time() + self.step_s

    def time_ns(self) -> int:
        return self._time_ns() + round(self.step_s * 1e9)


@contextmanager
def stepping_wall_clock() -> Iterator[WallClock]:
    wall = WallClock()
    with mock.patch("time.time", wall.time), mock.patch("time.time_ns", wall.time_ns):
        yield wall


@pytest.fixture(params=TIME_ZONES)
def process_time_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    zone = str(request.param)
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    request.addfinalizer(time.tzset)  # after monkeypatch has put TZ back
    return zone


# 1. Budgets, deadlines and outage memory: the monotonic clock.


def test_the_outage_memory_runs_on_the_monotonic_clock() -> None:
    """Every writer shares DatabaseHealth() as built by default (runtime.py): its clock is
    bound when the class is defined, so only its identity shows which clock it reads."""
    default = inspect.signature(DatabaseHealth.__init__).parameters["clock"].default
    assert default is time.monotonic


@pytest.mark.parametrize("step_s", [HOUR_S, -HOUR_S])
def test_a_wall_clock_step_neither_ends_nor_prolongs_the_outage_memory(step_s: float) -> None:
    health = DatabaseHealth(memory_s=0.15)
    with stepping_wall_clock() as wall:
        health.failed("database unavailable (ServiceRequestError)")
        wall.step_s = step_s
        with pytest.raises(RepositoryUnavailableError):
            health.check()  # not forgotten at once by a step forward
        time.sleep(0.2)
        health.check()  # nor remembered for the hour a step back adds


class SteppingRepository(FakeEventRepository):
    """Steps the wall clock as its first write starts, then writes each in ``write_delay_s``."""

    def __init__(self, wall: WallClock, step_s: float) -> None:
        super().__init__()
        self.wall = wall
        self.step_s = step_s

    def add(self, document: dict[str, Any]) -> bool:
        self.wall.step_s = self.step_s
        return super().add(document)


def event_grid_batch(count: int) -> bytes:
    return payloads.body(
        [
            {
                "id": f"grid-{number}",
                "topic": EVENT_GRID_TOPIC,
                "subject": "team/api:v1",
                "eventType": "Microsoft.ContainerRegistry.ImagePushed",
                "eventTime": "2026-11-23T11:59:59.1234567Z",
                "data": payloads.numbered(number),
                "dataVersion": "1.0",
                "metadataVersion": "1",
            }
            for number in range(count)
        ]
    )


def test_a_wall_clock_step_forward_does_not_use_up_an_event_grid_batch_budget() -> None:
    with stepping_wall_clock() as wall, ThreadPoolExecutor(max_workers=2) as pool:
        repository = SteppingRepository(wall, HOUR_S)
        repository.write_delay_s = 0.01
        result = handle_eventgrid(
            event_grid_batch(6), {}, repository, lambda: NOW, executor=pool, budget_s=5.0
        )
    assert result.status == 200, result.body
    assert result.body == {"recorded": 6, "duplicate": 0, "ignored": 0}


def test_a_wall_clock_step_back_does_not_stretch_an_event_grid_batch_budget() -> None:
    """A write that hangs past the budget is a 503 when the budget ends, not an hour later."""
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        with stepping_wall_clock() as wall:
            repository = SteppingRepository(wall, -HOUR_S)
            repository.write_delay_s = 0.6
            started = time.monotonic()
            result = handle_eventgrid(
                event_grid_batch(2), {}, repository, lambda: NOW, executor=pool, budget_s=0.2
            )
            took_s = time.monotonic() - started
    finally:
        pool.shutdown(wait=False)  # the hung writes end on their own
    assert result.status == 503
    assert took_s < 0.5


class DeadlineCheckingReader(FakeEventRepository):
    """Steps the wall clock forward an hour on each read, and checks that the page's deadline
    it is given is one on the monotonic clock, inside the page's budget."""

    def __init__(self, wall: WallClock) -> None:
        super().__init__()
        self.wall = wall
        self.deadlines: list[float] = []

    def find_events(
        self, query: EventQuery, max_items: int, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        self.wall.step_s += HOUR_S
        assert deadline is not None
        self.deadlines.append(deadline - time.monotonic())
        return super().find_events(query, max_items, deadline)


def test_a_read_pages_budget_is_kept_on_the_monotonic_clock_while_the_wall_clock_steps() -> None:
    with stepping_wall_clock() as wall:
        reader = DeadlineCheckingReader(wall)
        for number in range(5):
            reader.add(stored_document(f"2026-11-23T10:00:0{number}Z"))
        page = fetch_page(parse_event_query({"limit": "2"}, now=lambda: NOW), reader)
    assert len(page.events) == 2
    assert page.continuation is not None
    assert reader.deadlines
    assert all(0 < left <= QUERY_BUDGET_S for left in reader.deadlines)


# 2. Event timestamps: stored in UTC, fixed width, microseconds kept, in any process time zone.


def stored_document(timestamp: Any, received_at: datetime = NOW, **fields: Any) -> dict[str, Any]:
    repository = FakeEventRepository()
    payload = payloads.with_new_id(payloads.PUSH)
    payload.update(timestamp=timestamp, **fields)
    result = handle_webhook(payloads.body(payload), repository, now=lambda: received_at)
    assert result.status == 201, result.body
    (document,) = repository.documents.values()
    return document


STORED_AS = [
    # ACR's nanoseconds: cut to microseconds, never rounded (.9999999 stays in its second).
    ("2026-11-23T16:52:01.343145347Z", "2026-11-23T16:52:01.343145Z"),
    ("2026-11-23T16:52:01.9999999Z", "2026-11-23T16:52:01.999999Z"),
    ("2026-11-23T16:52:01.1234567891Z", "2026-11-23T16:52:01.123456Z"),
    ("2026-11-23T16:52:01Z", "2026-11-23T16:52:01.000000Z"),
    ("2026-11-23T16:52:01.5Z", "2026-11-23T16:52:01.500000Z"),
    # Offsets: converted to UTC, the date with them.
    ("2026-11-23T22:22:01.343145347+05:30", "2026-11-23T16:52:01.343145Z"),
    ("2026-11-23T13:22:01-03:30", "2026-11-23T16:52:01.000000Z"),
    ("2026-11-24T06:52:01+14:00", "2026-11-23T16:52:01.000000Z"),
    ("2026-11-23T04:52:01-12:00", "2026-11-23T16:52:01.000000Z"),
    ("2026-11-23T16:52:01-00:00", "2026-11-23T16:52:01.000000Z"),
    ("2026-11-23T16:52:01+00:00", "2026-11-23T16:52:01.000000Z"),
    # No zone: UTC, whatever the process's; also at times Berlin's DST skips or repeats.
    ("2026-11-23T16:52:01", "2026-11-23T16:52:01.000000Z"),
    ("2026-03-29T02:30:00", "2026-03-29T02:30:00.000000Z"),
    ("2026-10-25T02:30:00.25", "2026-10-25T02:30:00.250000Z"),
    # Before 1970, and the ends of the stored years, reached through an offset too.
    ("1969-07-20T20:17:40Z", "1969-07-20T20:17:40.000000Z"),
    ("1000-01-01T00:00:00Z", "1000-01-01T00:00:00.000000Z"),
    ("0999-12-31T23:30:00-01:00", "1000-01-01T00:30:00.000000Z"),
]


@pytest.mark.parametrize(("sent", "stored"), STORED_AS)
def test_event_timestamps_are_stored_in_utc_fixed_width_in_any_process_time_zone(
    process_time_zone: str, sent: str, stored: str
) -> None:
    document = stored_document(sent)
    assert document["timestamp"] == stored
    assert document["receivedAt"] == "2026-11-23T12:00:00.000000Z"


def test_the_last_storable_instant_is_stored_fixed_width_when_it_is_not_ahead(
    process_time_zone: str,
) -> None:
    """Year 9999's last microsecond, received in its own last day: an event dated more than a
    day after it was received is refused (models.dated_ahead), so this is how it is reached."""
    last_day = datetime(9999, 12, 31, tzinfo=UTC)
    document = stored_document("9999-12-31T23:59:59.999999999Z", received_at=last_day)
    assert document["timestamp"] == "9999-12-31T23:59:59.999999Z"
    assert document["receivedAt"] == "9999-12-31T00:00:00.000000Z"


@pytest.mark.parametrize(
    "sent",
    [
        "2026-06-30T23:59:60Z",  # a leap second: no datetime has it
        "2026-11-23T24:00:00Z",
        "0001-01-01T00:00:00Z",  # Go's zero time
        "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
        "not a time",
    ],
)
def test_a_timestamp_that_cannot_be_stored_is_a_400_naming_it(sent: str) -> None:
    repository = FakeEventRepository()
    payload = payloads.with_new_id(payloads.PUSH)
    payload["timestamp"] = sent
    result = handle_webhook(payloads.body(payload), repository, now=lambda: NOW)
    assert result.status == 400
    assert result.body is not None and str(result.body["error"]).startswith("timestamp: ")
    assert not repository.documents


@pytest.mark.parametrize(
    ("sent", "meaning"),
    [
        ("20261123", "2026-11-23T00:00:00.000000Z"),  # ISO 8601 basic format: 23 November 2026
        ("1700000000", None),  # not ISO 8601 at all
        (1700000000, None),
        (1700000000000, None),  # "milliseconds" by pydantic's size rule
    ],
)
def test_a_timestamp_is_read_as_iso_8601_or_refused(sent: Any, meaning: str | None) -> None:
    repository = FakeEventRepository()
    payload = payloads.with_new_id(payloads.PUSH)
    payload["timestamp"] = sent
    result = handle_webhook(payloads.body(payload), repository, now=lambda: NOW)
    stored = [document["timestamp"] for document in repository.documents.values()]
    # README, field limits: "timestamp | ISO 8601 whose UTC time falls in the years 1000-9999";
    # a malformed value is a 400 naming the field.
    assert (result.status == 400 and not stored) or stored == [meaning], (result, stored)


# A moment as ACR may write it: any whole-minute offset within ±14 h (or Z, -00:00, none), 0
# to 9 fractional digits. The instant is kept to the nanosecond as (UTC datetime, ns).
@st.composite
def written_moments(draw: st.DrawFn) -> tuple[str, datetime, int]:
    utc = draw(
        st.datetimes(
            min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.none()
        )
    ).replace(microsecond=0, tzinfo=UTC)
    nanos = draw(st.integers(0, 999_999_999))
    digits = draw(st.integers(0, 9))
    zone = draw(st.sampled_from(["Z", "-00:00", "", "offset"]))
    offset = timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60))) if zone == "offset" else None
    nanos = nanos // 10 ** (9 - digits) * 10 ** (9 - digits)  # what the digits written hold
    local = utc.astimezone(timezone(offset)) if offset is not None else utc
    fraction = f".{nanos:09d}"[: digits + 1] if digits else ""
    suffix = zone if offset is None else f"{local:%z}"[:3] + ":" + f"{local:%z}"[3:]
    text = local.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + fraction + suffix
    return text, utc, nanos


def instant_us(moment: tuple[str, datetime, int]) -> datetime:
    _, utc, nanos = moment
    return utc + timedelta(microseconds=nanos // 1000)


@settings(DETERMINISTIC, max_examples=200)
@given(written_moments(), written_moments())
def test_stored_text_order_is_the_order_of_the_instants(
    first: tuple[str, datetime, int], second: tuple[str, datetime, int]
) -> None:
    """What the read API's ORDER BY and since/until rest on: comparing stored strings compares
    the times, whatever offset or number of digits each event was sent with."""
    a = iso_utc(AcrEvent.model_validate({**payloads.PUSH, "timestamp": first[0]}).timestamp)
    b = iso_utc(AcrEvent.model_validate({**payloads.PUSH, "timestamp": second[0]}).timestamp)
    assert a == iso_utc(instant_us(first))
    assert (a < b) == (instant_us(first) < instant_us(second))
    assert (a == b) == (instant_us(first) == instant_us(second))


# 2b. since/until: read as the docs say, in any process time zone.


@pytest.mark.parametrize(
    ("given_value", "stored"),
    [
        ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00.000000Z"),
        ("2026-11-23T11:00:00+01:00", "2026-11-23T10:00:00.000000Z"),
        ("2026-11-23T06:30:00-03:30", "2026-11-23T10:00:00.000000Z"),
        ("2026-11-23T10:00:00-00:00", "2026-11-23T10:00:00.000000Z"),
        ("2026-11-23T10:00:00", "2026-11-23T10:00:00.000000Z"),  # no offset means UTC
        ("2026-11-23", "2026-11-23T00:00:00.000000Z"),  # a date: midnight UTC
        ("2026-03-29T02:30:00", "2026-03-29T02:30:00.000000Z"),  # Berlin skips 02:30
        ("2026-10-25T02:30:00", "2026-10-25T02:30:00.000000Z"),  # Berlin has it twice
        ("2026-11-23T10:00:00.5Z", "2026-11-23T10:00:00.500000Z"),
        ("2026-11-23T10:00:00.123456+00:00", "2026-11-23T10:00:00.123456Z"),
        ("PT1H", "2026-11-23T11:00:00.000000Z"),  # before the (UTC) now
        ("P1DT12H", "2026-11-22T00:00:00.000000Z"),
    ],
)
def test_since_and_until_mean_the_same_instant_in_any_process_time_zone(
    process_time_zone: str, given_value: str, stored: str
) -> None:
    query = parse_event_query({"since": given_value}, now=lambda: NOW)
    assert query.since == stored
    later = parse_event_query({"until": given_value}, now=lambda: NOW)
    assert later.until == stored


def test_since_and_until_compare_to_the_microsecond_like_the_stored_times() -> None:
    """docs/queries.md: events are stored, and since/until compared, to the microsecond: the
    digits past the sixth are dropped from both, so an event and a bound in the same
    microsecond are at the same time (the audit found this undocumented; rounding only the
    bounds would have misplaced an event at ...0000009Z instead)."""
    repository = FakeEventRepository()
    payload = payloads.with_new_id(payloads.PUSH)
    payload["timestamp"] = "2026-11-23T10:00:00.0000001Z"  # 100 ns past the second
    assert handle_webhook(payloads.body(payload), repository, now=lambda: NOW).status == 201
    [document] = repository.documents.values()
    assert document["timestamp"] == "2026-11-23T10:00:00.000000Z"
    bound = "2026-11-23T10:00:00.0000005Z"  # the same microsecond
    since = handle_events_query({"since": bound}, repository, now=lambda: NOW)
    until = handle_events_query({"until": bound}, repository, now=lambda: NOW)
    assert since.body is not None and until.body is not None
    assert [event["id"] for event in since.body["events"]] == [payload["id"]]  # inclusive
    assert until.body["events"] == []  # exclusive
    later = handle_events_query(
        {"until": "2026-11-23T10:00:00.000001Z"}, repository, now=lambda: NOW
    )
    assert later.body is not None and [e["id"] for e in later.body["events"]] == [payload["id"]]


# 3. receivedAt: the app's clock; the read API sorts and filters on the event's own timestamp.


def test_an_event_from_a_skewed_registry_clock_keeps_its_own_time_and_is_read_by_it() -> None:
    repository = FakeEventRepository()
    ahead = payloads.with_new_id(payloads.PUSH)
    ahead["timestamp"] = "2026-11-23T17:00:00Z"  # ACR's clock 5 h ahead of the app's
    behind = payloads.with_new_id(payloads.PUSH)
    behind["timestamp"] = "2026-11-23T07:00:00Z"  # 5 h behind
    for payload in (ahead, behind):
        result = handle_webhook(payloads.body(payload), repository, now=lambda: NOW)
        assert result.status == 201
    stored = {d["id"]: d for d in repository.documents.values()}
    assert stored[ahead["id"]]["timestamp"] == "2026-11-23T17:00:00.000000Z"
    assert {d["receivedAt"] for d in stored.values()} == {"2026-11-23T12:00:00.000000Z"}

    def ids(params: dict[str, str]) -> list[str]:
        body = handle_events_query(params, repository, now=lambda: NOW).body
        assert body is not None
        return [event["id"] for event in body["events"]]

    assert ids({}) == [ahead["id"], behind["id"]]  # by timestamp, not by receivedAt
    # README: --since PT1H is "the last hour of the events' own timestamps".
    assert ids({"since": "PT1H"}) == [ahead["id"]]
    assert ids({"until": "PT1H"}) == [behind["id"]]


# 3b. Reconcile and the timer: no time window; the history's own timestamps, UTC schedules.


def test_reconcile_stores_the_historys_timestamps_in_utc_and_the_runs_time_as_received() -> None:
    """Reconcile reads the whole history (no window, so no window edge to miss or double):
    each entry's timestamp as ACR wrote it, through the management SDK's model as the timer
    reads it, and ``receivedAt`` the time of the run."""
    sent = {
        "2026-11-23T22:22:01.343145347+05:30": "2026-11-23T16:52:01.343145Z",
        "2026-11-23T13:22:01.9999999-03:30": "2026-11-23T16:52:01.999999Z",
        "2026-11-23T16:52:01": "2026-11-23T16:52:01.000000Z",
    }
    entries = []
    for text in sent:
        payload = payloads.with_new_id(payloads.PUSH)
        payload["timestamp"] = text
        entries.append(Event(history_entry(payload)).as_dict())  # what the timer iterates
    repository = FakeEventRepository()
    run_at = datetime(2026, 11, 24, 3, 0, 0, 500, tzinfo=UTC)
    outcome = reconcile_entries(
        entries, repository, received_at=run_at, report_invalid=lambda entry: None
    )
    assert outcome.counts.recorded == 3
    documents = list(repository.documents.values())
    assert sorted(d["timestamp"] for d in documents) == sorted(sent.values())
    assert {d["receivedAt"] for d in documents} == {"2026-11-24T03:00:00.000500Z"}


@pytest.mark.parametrize(
    ("after", "due"),
    [
        # Berlin skips 02:00-03:00 local on 2026-03-29 and repeats it on 2026-10-25: UTC does not.
        (datetime(2026, 3, 29, 1, 59, 59, tzinfo=UTC), datetime(2026, 3, 29, 2, 0, tzinfo=UTC)),
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 2, 0, tzinfo=UTC)),
        # A time given with an offset is the same instant.
        (
            datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 3, 29, 2, 0, tzinfo=UTC),
        ),
    ],
)
def test_timer_schedules_are_read_in_utc_in_any_process_time_zone(
    process_time_zone: str, after: datetime, due: datetime
) -> None:
    """README: RECONCILE_SCHEDULE is NCRONTAB in UTC; the local host runs it so."""
    assert next_occurrence("0 0 2 * * *", after) == due


# 4. Telemetry: the rate of sampled routine records.


class MachineClock:
    """Every clock of the process, simulated: the monotonic ones advance with the test, the
    wall clock with them plus any step. Whichever clock a sampler reads, it sees the time that
    passes; only a wall-clock reader sees the step."""

    def __init__(self) -> None:
        self.monotonic_ns = 1_000 * 10**9
        self.wall_offset_ns = 1_800_000_000 * 10**9

    def patched(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        ns = {
            "time_ns": lambda: self.monotonic_ns + self.wall_offset_ns,
            "monotonic_ns": lambda: self.monotonic_ns,
            "perf_counter_ns": lambda: self.monotonic_ns,
        }
        for name, read in ns.items():
            stack.enter_context(mock.patch(f"time.{name}", read))
            seconds = name.removesuffix("_ns")  # time, monotonic, perf_counter

            def read_s(read: Callable[[], int] = read) -> float:
                return read() / 1e9

            stack.enter_context(mock.patch(f"time.{seconds}", read_s))
        return stack


def sampled(
    limit: telemetry.RateLimit, clock: MachineClock, items: int, every_s: float
) -> list[float]:
    kept = []
    for _ in range(items):
        clock.monotonic_ns += round(every_s * 1e9)
        rate = limit.sample()
        if rate is not None:
            kept.append(rate)
    return kept


def test_routine_records_are_sampled_at_about_5_a_second_after_a_wall_clock_step_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = MachineClock()
    monkeypatch.setattr(telemetry, "random", random.Random(0))
    with clock.patched():
        limit = telemetry.RateLimit(telemetry.ROUTINE_RECORDS_PER_SECOND)
        sampled(limit, clock, 1000, 0.01)  # 10 s at 100 records a second
        clock.wall_offset_ns -= round(HOUR_S * 1e9)  # NTP steps the wall clock back an hour
        kept = sampled(limit, clock, 3000, 0.01)  # the next 30 s, at the same rate
    # docs/operations.md: "about 5 per second"; "use sum(itemCount)" to count sampled items.
    expected = telemetry.ROUTINE_RECORDS_PER_SECOND * 30
    assert 0.75 * expected <= len(kept) <= 1.25 * expected
    assert 0.75 * 3000 <= sum(100.0 / rate for rate in kept) <= 1.25 * 3000


# 5. The console and the CLI: UTC with a Z, in any process time zone.


def test_console_lines_are_stamped_in_utc_with_a_z(process_time_zone: str) -> None:
    record = logging.LogRecord("acr_webhook.test", logging.INFO, __file__, 1, "hello", (), None)
    record.created = datetime(2026, 11, 23, 23, 59, 59, 123000, tzinfo=UTC).timestamp()
    record.msecs = 123.0
    line = cli._console_handler().format(record)
    assert line.startswith("2026-11-23T23:59:59.123Z INFO acr_webhook.test: hello")


def test_the_cli_reads_dates_as_utc_and_prints_stored_times_as_they_are(
    process_time_zone: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("COSMOS_KEY", "a2V5")
    asked: list[EventQuery] = []
    shown = stored_document("2026-01-01T05:29:59.999999+05:30")

    def page(query: EventQuery, reader: object) -> EventPage:
        asked.append(query)
        return EventPage([shown], None)

    monkeypatch.setattr(queries, "fetch_page", page)
    argv = ["events", "--since", "2026-01-01", "--until", "2026-01-01T06:00:00+05:30"]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--json"]) == 0
    # A date is midnight UTC, not the process's local midnight (README: no offset means UTC).
    assert [(q.since, q.until) for q in asked] == 2 * [
        ("2026-01-01T00:00:00.000000Z", "2026-01-01T00:30:00.000000Z")
    ]
    table, as_json = capsys.readouterr().out.split("{", 1)
    assert "2025-12-31T23:59:59.999999Z" in table.splitlines()[1]
    assert json.loads("{" + as_json)["events"][0]["timestamp"] == "2025-12-31T23:59:59.999999Z"
