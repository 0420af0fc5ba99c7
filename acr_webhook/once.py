"""Objects built once, on first use, by whichever caller comes first."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BuiltOnce(Generic[T]):
    """What ``builder`` builds, built once: concurrent first callers wait for one build instead
    of each making its own (functools.cache lets them: a second client, a second pool). A
    build that raises keeps nothing, so the next call builds again: a fixed setting or a
    service that comes back needs no restart."""

    def __init__(self, builder: Callable[[], T]) -> None:
        self._builder = builder
        self._built: list[T] = []  # empty, or the one object
        self._lock = threading.Lock()

    def __call__(self) -> T:
        if self._built:
            return self._built[0]
        with self._lock:
            if not self._built:
                self._built.append(self._builder())
            return self._built[0]

    def cache_clear(self) -> None:
        """Forget the object (tests)."""
        with self._lock:
            self._built.clear()
