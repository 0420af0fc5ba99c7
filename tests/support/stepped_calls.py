"""SDK calls on a clock the test steps, for repository._on_time and what is built on it: how
long each call takes, how it fails, and the timeouts the repository would pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SteppedClock:
    """Stands in for the ``time`` module: ``monotonic()`` reads ``now``, which calls step."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class FailingCalls:
    """An SDK call that takes ``took_s`` on ``clock`` and then raises ``failure()`` the first
    ``failures`` times, else answers "stored"; ``options`` records each call's keywords."""

    def __init__(
        self,
        clock: SteppedClock,
        took_s: float,
        failures: int,
        failure: Callable[[], Exception],
    ) -> None:
        self.clock = clock
        self.took_s = took_s
        self.failures = failures
        self.failure = failure
        self.options: list[dict[str, Any]] = []

    def __call__(self, **options: Any) -> str:
        self.options.append(options)
        self.clock.now += self.took_s
        if len(self.options) <= self.failures:
            raise self.failure()
        return "stored"


def bounds(clock: SteppedClock, deadline: float) -> Callable[[], dict[str, Any]]:
    """What the repository passes: the timeouts left of ``deadline`` (never a whole new one)."""
    return lambda: {"timeout": deadline - clock.now}
