"""Process-wide objects, built once on first use and shared by every request.

Nothing is cached when building fails (functools.cache does not keep exceptions), so a fixed
setting or a database that comes back needs no restart.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

from acr_webhook.config import BATCH_WRITE_THREADS, Settings, load_settings
from acr_webhook.fallback import FallbackQueue, StorageQueueFallback
from acr_webhook.handlers import SharedSecret
from acr_webhook.reconcile import WebhookHistory
from acr_webhook.repository import (
    EVENTGRID_WRITE_OPTIONS,
    CosmosEventRepository,
    DatabaseHealth,
    EventReader,
    EventRepository,
)
from acr_webhook.telemetry import sdk_call_options


@functools.cache
def settings() -> Settings:
    return load_settings()


@functools.cache
def database_health() -> DatabaseHealth:
    """One memory of database failures for every writer: webhook, Event Grid and replay."""
    return DatabaseHealth()


@functools.cache
def event_repository() -> EventRepository:
    return CosmosEventRepository(
        settings(), health=database_health(), call_options=sdk_call_options
    )


@functools.cache
def eventgrid_repository() -> EventRepository:
    # Event Grid waits 30 s, not 5: its batches get a client that rides out throttling longer.
    return CosmosEventRepository(
        settings(),
        write_options=EVENTGRID_WRITE_OPTIONS,
        health=database_health(),
        call_options=sdk_call_options,
    )


@functools.cache
def batch_executor() -> ThreadPoolExecutor:
    """The one pool that Event Grid batches fan their writes out on (config.BATCH_WRITE_THREADS:
    bounded for the whole process, however many batches arrive at once)."""
    return ThreadPoolExecutor(max_workers=BATCH_WRITE_THREADS, thread_name_prefix="batch-write")


@functools.cache
def event_reader() -> EventReader:
    # Its own instance: reads create their own client (QUERY_TIMEOUTS); writes keep theirs.
    return CosmosEventRepository(settings())


@functools.cache
def fallback_queue() -> FallbackQueue | None:
    queue = settings().fallback_queue
    return StorageQueueFallback(queue) if queue else None


@functools.cache
def shared_secret() -> SharedSecret | None:
    current = settings()
    if not current.webhook_secret:
        return None
    return SharedSecret(current.webhook_secret, current.webhook_secret_header)


@functools.cache
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
