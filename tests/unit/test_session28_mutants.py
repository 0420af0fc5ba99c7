"""Mutation audit of session 28's product changes: what the tests written with them left unpinned.

Each test below kills hand-made mutants that the earlier tests let through (named in its
docstring). Every one asserts what a doc or the code's own comment says, not the mutant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from azure.cosmos.exceptions import CosmosClientTimeoutError
from azure.monitor.opentelemetry.exporter.export.trace import _rate_limited_sampling as distro
from hypothesis import given
from hypothesis import strategies as st

from acr_webhook import repository as repository_module
from acr_webhook.models import AcrEvent
from acr_webhook.repository import _on_time
from acr_webhook.telemetry import RateLimit
from tests.support import payloads
from tests.support.properties import DETERMINISTIC

# --- telemetry.RateLimit: the distro's estimate, on the monotonic clock ---------------------


class _NanoClock:
    """One machine clock read two ways: as the distro's time.time_ns() and as RateLimit's
    clock (seconds)."""

    def __init__(self) -> None:
        self.ns = 0

    def time_ns(self) -> int:
        return self.ns

    def seconds(self) -> float:
        return self.ns / 1e9


@given(
    per_second=st.sampled_from([1.0, 5.0, 20.0]),
    # Milliseconds since the last reading; a negative one is a reading that lost the race to the
    # lock (the clock is read before it is taken), 0 one in the same tick.
    steps_ms=st.lists(st.integers(-30, 400), min_size=1, max_size=60),
)
@DETERMINISTIC
def test_the_rate_limits_percentage_is_the_distros_on_the_same_clock(
    per_second: float, steps_ms: list[int]
) -> None:
    """telemetry.RateLimit: "Keeps up to per_second items a second, each with the probability
    the distro's RateLimitedSampler computes: the incoming rate estimated over a window that
    decays in ~0.1 s, the result rounded down to 100/n percent"; only the clock differs. Fed
    one clock, it answers what RateLimitedSamplingPercentage answers, reading for reading.
    Kills: decay 0 (not 1) for a reading in the same tick; ``max(elapsed, 0)`` or
    ``max(now, last)`` dropped; ``min(share, 0.9)``; ADAPTATION_S 1.0; exp(-elapsed * 0.1);
    the window's count not decayed; ``share < 0`` (a ZeroDivisionError)."""
    clock = _NanoClock()
    ours = RateLimit(per_second, clock=clock.seconds)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distro, "time", clock)
        theirs = distro.RateLimitedSamplingPercentage(per_second)
        for step in steps_ms:
            clock.ns = max(clock.ns + step * 1_000_000, 0)
            got, expected = ours.percentage(), theirs.get()
            state = theirs._state
            share = min(
                state.effective_window_nanoseconds
                * 1e-9
                * per_second
                / state.effective_window_count,
                1.0,
            )
            if expected == 0:  # the distro's cut-off for a share under 1/2^31
                assert got < 1e-6
            elif got != pytest.approx(expected, rel=1e-9):
                # Only where 100/share is a whole number to within float rounding.
                assert abs(1 / share - round(1 / share)) < 1e-6, (got, expected, share)


@pytest.mark.parametrize(
    ("every_s", "expected"),
    [
        (0.024, 100 / 9),  # 5 of ~41.7 a second: 12 % rounded down to 100/9
        (0.06, 100 / 4),  # 5 of ~16.7 a second: 30 % rounded down to 100/4
        (1.0, 100.0),  # below the limit: every item is kept
    ],
)
def test_a_steady_rate_is_sampled_at_the_limit_rounded_down_to_100_over_n(
    every_s: float, expected: float
) -> None:
    """telemetry.RateLimit.percentage: "The share of items to keep now, in %: 100/n for a whole
    n" and the class: "rounded down to 100/n percent, so each kept item stands for a whole number
    of items". Kills: ceil -> floor or round (12.5 %), ``min(share, 0.9)`` (50 % below the
    limit)."""
    now = [0.0]
    limit = RateLimit(5.0, clock=lambda: now[0])
    for _ in range(200):
        now[0] += every_s
        rate = limit.percentage()
    assert rate == pytest.approx(expected)
    assert (100.0 / rate) == pytest.approx(round(100.0 / rate))


def test_the_estimate_follows_a_drop_in_the_rate_within_a_second() -> None:
    """telemetry.RateLimit: the rate is "estimated over a window that decays in ~0.1 s". After a
    second at 1,000 items a second, a second at ~16.7 a second is sampled at 30 % rounded down
    to 25 %, as if the
    burst had never been. Kills: ADAPTATION_S 1.0; exp(-elapsed * ADAPTATION_S)."""
    now = [0.0]
    limit = RateLimit(5.0, clock=lambda: now[0])
    for _ in range(1000):
        now[0] += 0.001
        limit.percentage()
    for _ in range(17):
        now[0] += 0.06
        rate = limit.percentage()
    assert rate == pytest.approx(25.0)


def test_an_item_read_at_the_instant_the_limit_was_made_is_a_share_not_an_error() -> None:
    """telemetry.RateLimit.percentage: "100/n for a whole n, or 0" (a coarse clock reads the
    same tick twice). Kills ``share < 0.0`` (100 / ceil(1 / 0): ZeroDivisionError)."""
    limit = RateLimit(5.0, clock=lambda: 12.5)
    assert [limit.percentage() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.sample() is None


# --- models.AcrEvent._iso_8601_text ------------------------------------------------------------


def test_an_event_built_in_python_may_carry_its_timestamp_as_a_datetime() -> None:
    """models.AcrEvent._iso_8601_text: numbers and digit strings are refused (Unix time), and
    ``isinstance(value, datetime)`` passes: an aware datetime is a timestamp already.
    Kills: the datetime check dropped (every datetime refused)."""
    payload = payloads.with_new_id(payloads.PUSH)
    payload["timestamp"] = datetime(2026, 11, 23, 16, 52, 1, 343145, tzinfo=UTC)
    event = AcrEvent.model_validate(payload)
    assert event.timestamp == datetime(2026, 11, 23, 16, 52, 1, 343145, tzinfo=UTC)


# --- repository._on_time: once more when the wall clock made the SDK's timeout run out -------


class _Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class _Calls:
    """An SDK call that takes ``took_s`` on the monotonic clock and then raises the SDK's
    timeout error the first ``failures`` times, else answers "stored"."""

    def __init__(self, clock: _Monotonic, took_s: float, failures: int) -> None:
        self.clock = clock
        self.took_s = took_s
        self.failures = failures
        self.options: list[dict[str, Any]] = []

    def __call__(self, **options: Any) -> str:
        self.options.append(options)
        self.clock.now += self.took_s
        if len(self.options) <= self.failures:
            raise CosmosClientTimeoutError()  # type: ignore[no-untyped-call]
        return "stored"


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> _Monotonic:
    clock = _Monotonic()
    monkeypatch.setattr(repository_module, "time", clock)
    return clock


def bounds(clock: _Monotonic, deadline: float) -> Any:
    """What the repository passes: the timeouts left of ``deadline`` (never a whole new one)."""

    def timeouts() -> dict[str, Any]:
        return {"timeout": deadline - clock.now}

    return timeouts


def test_a_timeout_that_ran_out_early_is_tried_once_more_with_what_is_left(
    monotonic: _Monotonic,
) -> None:
    """repository._on_time: "made once more if the SDK's timeout ran out sooner than it can
    have ... The second call gets what is left of the bound". Here the SDK gave up after 1 s
    of a 10 s timeout (the wall clock stepped forward). Kills: never retried (``if True``, the
    except clause narrowed), ``started`` read a timeout earlier, the second call given the
    first call's timeouts."""
    call = _Calls(monotonic, took_s=1.0, failures=1)
    assert _on_time(call, bounds(monotonic, monotonic.now + 10.0)) == "stored"
    assert [options["timeout"] for options in call.options] == [10.0, 9.0]


@pytest.mark.parametrize("took_s", [10.0, 12.0])
def test_a_timeout_that_really_ran_out_is_raised_at_once(
    monotonic: _Monotonic, took_s: float
) -> None:
    """repository._on_time: once more only if the timeout "ran out sooner than it can have":
    one that took its whole 10 s (or longer) is the database not answering in time, raised at
    once (the write is parked, the read a 503). Kills: retried whatever the time taken,
    ``started`` taken after the call, ``>=`` -> ``>``."""
    call = _Calls(monotonic, took_s=took_s, failures=2)
    with pytest.raises(CosmosClientTimeoutError):
        _on_time(call, bounds(monotonic, monotonic.now + 10.0))
    assert len(call.options) == 1


def test_only_one_more_try(monotonic: _Monotonic) -> None:
    """repository._on_time: "made once more": a second early timeout is raised."""
    call = _Calls(monotonic, took_s=0.5, failures=5)
    with pytest.raises(CosmosClientTimeoutError):
        _on_time(call, bounds(monotonic, monotonic.now + 10.0))
    assert len(call.options) == 2
