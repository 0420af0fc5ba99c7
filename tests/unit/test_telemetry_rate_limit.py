"""telemetry.RateLimit, the sampler of decision records: the Azure Monitor distro's rate-limited
sampling percentage, computed on the monotonic clock, reading for reading.
"""

from __future__ import annotations

import pytest
from azure.monitor.opentelemetry.exporter.export.trace import _rate_limited_sampling as distro
from hypothesis import example, given
from hypothesis import strategies as st

from acr_webhook.telemetry import RateLimit
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
# Whatever examples are drawn: a burst in one tick, a reading that lost the race, a steady rate.
@example(per_second=5.0, steps_ms=[10, 0, 0, 0, 10])
@example(per_second=5.0, steps_ms=[10, 10, 10, -20, 10, 10])
@example(per_second=5.0, steps_ms=[24] * 40)
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
