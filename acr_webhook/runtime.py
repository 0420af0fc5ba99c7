"""Process-wide objects, built once on first use and shared by every request.

Nothing is kept when building fails, so a fixed setting or a database that comes back needs
no restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from acr_webhook.config import BATCH_WRITE_THREADS, Settings, load_settings
from acr_webhook.fallback import StorageQueueFallback
from acr_webhook.handlers import SharedSecret
from acr_webhook.repository import EVENTGRID_WRITE_OPTIONS, CosmosEventRepository, DatabaseHealth
from acr_webhook.store import EventReader, EventRepository, FallbackQueue, WebhookHistory
from acr_webhook.telemetry import sdk_call_options

T = TypeVar("T")


class ProcessWide(Generic[T]):
    """What ``builder`` builds, built once: concurrent first requests wait for one build instead
    of each making its own (functools.cache lets them: a second client, a second pool). A
    build that raises keeps nothing, so the next call builds again."""

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


@ProcessWide
def settings() -> Settings:
    return load_settings()


@ProcessWide
def database_health() -> DatabaseHealth:
    """One memory of database failures for every writer: webhook, Event Grid and replay."""
    return DatabaseHealth()


@ProcessWide
def event_repository() -> EventRepository:
    return CosmosEventRepository(
        settings(), health=database_health(), call_options=sdk_call_options
    )


@ProcessWide
def eventgrid_repository() -> EventRepository:
    # Event Grid waits 30 s, not 5: its batches get a client that rides out throttling longer.
    return CosmosEventRepository(
        settings(),
        write_options=EVENTGRID_WRITE_OPTIONS,
        health=database_health(),
        call_options=sdk_call_options,
    )


@ProcessWide
def batch_executor() -> ThreadPoolExecutor:
    """The one pool that Event Grid batches fan their writes out on (config.BATCH_WRITE_THREADS:
    bounded for the whole process, however many batches arrive at once)."""
    return ThreadPoolExecutor(max_workers=BATCH_WRITE_THREADS, thread_name_prefix="batch-write")


@ProcessWide
def event_reader() -> EventReader:
    # Its own instance: reads create their own client (QUERY_TIMEOUTS); writes keep theirs.
    return CosmosEventRepository(settings())


@ProcessWide
def fallback_queue() -> FallbackQueue | None:
    queue = settings().fallback_queue
    return StorageQueueFallback(queue) if queue else None


@ProcessWide
def shared_secret() -> SharedSecret | None:
    current = settings()
    if not current.webhook_secret:
        return None
    return SharedSecret(current.webhook_secret, current.webhook_secret_header)


@ProcessWide
def webhook_history() -> WebhookHistory | None:
    """ACR's delivery history for the reconcile timer, or None when reconcile is not configured.

    One for the process: its management client and credential are built on the first read and
    reused by every later timer run, token included.
    """
    target = settings().reconcile
    if target is None:
        return None
    # Imported on the timer's first run: nothing on the HTTP path needs it (cold start).
    from acr_webhook.acr_history import ManagementApiHistory

    return ManagementApiHistory(target)
