"""The thread behind each local trigger runner (queue pollers, timers)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

# How long stop() waits for a runner's current work (one poll or one function call) to end.
STOP_WAIT_S = 10


class BackgroundRunner(ABC):
    """Runs ``_run`` on a daemon thread from ``start()``; ``_run`` returns once ``_stop`` is set,
    which ``stop()`` does before waiting for it."""

    def __init__(self, thread_name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=STOP_WAIT_S)

    @abstractmethod
    def _run(self) -> None: ...
