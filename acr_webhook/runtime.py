"""Process-wide objects, built once on first use and shared by every request.

Nothing is kept when building fails, so a fixed setting or a database that comes back needs
no restart.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from acr_webhook.config import BATCH_WRITE_THREADS, Settings, load_settings
from acr_webhook.fallback import StorageQueueFallback
from acr_webhook.handlers import SharedSecret
from acr_webhook.once import BuiltOnce
from acr_webhook.reconcile import StoredEvents
from acr_webhook.repository import EVENTGRID_WRITE_OPTIONS, CosmosEventRepository, DatabaseHealth
from acr_webhook.store import EventReader, EventRepository, FallbackQueue, WebhookHistory
from acr_webhook.telemetry import sdk_call_options


@BuiltOnce
def settings() -> Settings:
    return load_settings()


@BuiltOnce
def database_health() -> DatabaseHealth:
    """One memory of database failures for every writer: webhook, Event Grid and replay."""
    return DatabaseHealth()


@BuiltOnce
def event_repository() -> EventRepository:
    return CosmosEventRepository(
        settings(), health=database_health(), call_options=sdk_call_options
    )


@BuiltOnce
def eventgrid_repository() -> EventRepository:
    # Event Grid waits 30 s, not 5: its batches get a client that rides out throttling longer.
    return CosmosEventRepository(
        settings(),
        write_options=EVENTGRID_WRITE_OPTIONS,
        health=database_health(),
        call_options=sdk_call_options,
    )


@BuiltOnce
def batch_executor() -> ThreadPoolExecutor:
    """The one pool that Event Grid batches fan their writes out on (config.BATCH_WRITE_THREADS:
    bounded for the whole process, however many batches arrive at once)."""
    return ThreadPoolExecutor(max_workers=BATCH_WRITE_THREADS, thread_name_prefix="batch-write")


@BuiltOnce
def event_reader() -> EventReader:
    # Its own instance: reads create their own client (QUERY_TIMEOUTS); writes keep theirs.
    return CosmosEventRepository(settings())


@BuiltOnce
def fallback_queue() -> FallbackQueue | None:
    queue = settings().fallback_queue
    return StorageQueueFallback(queue) if queue else None


@BuiltOnce
def shared_secret() -> SharedSecret | None:
    current = settings()
    if not current.webhook_secret:
        return None
    return SharedSecret(current.webhook_secret, current.webhook_secret_header)


@BuiltOnce
def reconciled_events() -> StoredEvents:
    """What the reconcile timer's runs found stored, for the process: later runs skip it."""
    return StoredEvents()


@BuiltOnce
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
