"""Where a proxy holds a request, so that a test can kill the process that sent it at a fixed
point (not at a random moment): before the request reaches the server, or once the server has
applied it but before the sender hears the answer."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Hold:
    """Requests whose ``"<METHOD> <path>"`` matches ``pattern``: the first ``skip`` pass, the
    later ones are held, unanswered, until ``release``; then their connection is closed.
    ``after_passing``: a held request is passed on first (the server applies it), and only
    its answer is held. ``then_pass``: a request held before passing is
    passed on at ``release`` and answered, as a slow server would (a stop that waits for it
    sees it end).
    ``limit``: at most this many are held; later matches are left to the next Hold in the
    proxy's list."""

    pattern: str
    skip: int = 0
    after_passing: bool = False
    then_pass: bool = False
    limit: int | None = None
    matched: int = 0
    held: int = 0
    passed: int = 0  # matching requests passed on and answered by the server
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def matches(self, method: str, path: str) -> bool:
        return re.search(self.pattern, f"{method} {path}") is not None

    def claims(self, method: str, path: str) -> bool:
        """Whether this request is one to hold (counted as matched either way)."""
        if not self.matches(method, path):
            return False
        with self._lock:
            if self.limit is not None and self.matched - self.skip >= self.limit:
                return False
            self.matched += 1
            return self.matched > self.skip

    def count_passed(self) -> None:
        with self._lock:
            self.passed += 1

    def hold(self) -> None:
        """Blocks the request's thread until ``release``."""
        with self._lock:
            self.held += 1
        self._released.wait()

    def release(self) -> None:
        self._released.set()

    def wait(self, held: int = 1, passed: int = 0, timeout: float = 15) -> None:
        """Until at least ``held`` requests are held and ``passed`` were answered."""
        deadline = time.monotonic() + timeout
        while self.held < held or self.passed < passed:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.pattern!r}: held {self.held} (wanted {held}), passed {self.passed} "
                    f"(wanted {passed}) after {timeout:g} s"
                )
            time.sleep(0.01)


def claimed(holds: Sequence[Hold], method: str, path: str) -> Hold | None:
    """The first of ``holds`` that claims this request, for a proxy to hold it: before passing
    it on, or, for one ``after_passing``, once the server has answered."""
    return next((hold for hold in holds if hold.claims(method, path)), None)


def answered(holds: Sequence[Hold], method: str, path: str) -> None:
    """A request the proxy passed on and answered: counted by every Hold it matches."""
    for hold in holds:
        if hold.matches(method, path):
            hold.count_passed()


class Background:
    """One call on a thread of its own, started at once: the party whose request a Hold
    keeps while the test acts in between. ``result`` joins it and returns what the call
    returned, or raises what it raised."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._outcome: list[Any] = []
        self._thread = threading.Thread(target=lambda: self._run(call), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._outcome.append(call())
        except BaseException as error:
            self._outcome.append(error)

    def result(self, timeout: float = 30) -> Any:
        self._thread.join(timeout)
        [outcome] = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
