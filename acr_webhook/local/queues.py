"""Queue triggers for the local host, with the Functions runtime's retry and poison rules.

For each queue-triggered function in the app, a poller receives messages, calls the function,
deletes the message on success, makes it visible again after ``visibilityTimeout`` on failure,
and moves it to ``<queue>-poison`` once it has failed ``maxDequeueCount`` times. The options
come from host.json ``extensions.queues``, as in Azure.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.functions.decorators.queue import QueueTrigger
from azure.functions.queue import QueueMessage as TriggerMessage
from azure.storage.queue import QueueMessage

from acr_webhook.config import (
    STORAGE_CONNECTION,
    ConfigurationError,
    QueueSettings,
    queue_settings,
)
from acr_webhook.fallback import create_queue_client, decode_message
from acr_webhook.local.app_index import extension_settings, resolve_settings, triggered_by
from acr_webhook.local.background import BackgroundRunner
from acr_webhook.store import error_line, failure_kind

log = logging.getLogger(__name__)

# How long a received message stays hidden from other instances; renewed at half of it while
# its batch waits, as the runtime keeps a message hidden until its function returns.
LEASE_SECONDS = 30
# What the queue service answers a lease that another instance took over meanwhile: the
# message's pop receipt no longer matches (400), or the message was deleted (404).
_LEASE_LOST = frozenset({400, 404})
POLL_TIMEOUTS: dict[str, Any] = {"connection_timeout": 2, "read_timeout": 5, "retry_total": 0}


@dataclass(frozen=True)
class QueueOptions:
    """host.json ``extensions.queues``; defaults are the Functions runtime's own."""

    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0
    batch_size: int = 16

    @classmethod
    def from_host_json(cls, path: Path) -> QueueOptions:
        queues = extension_settings(path, "queues")
        defaults = cls()

        def whole(name: str, default: int) -> int:
            value = queues.get(name, default)
            # .NET binds an int from a whole number or its text, not from 1.5, 16.0 or true.
            if isinstance(value, bool | float):
                raise _not_usable(path, name, "a whole number")
            try:
                return int(value)
            except (TypeError, ValueError):
                raise _not_usable(path, name, "a whole number") from None

        def seconds(name: str, default: float) -> float:
            value = queues.get(name)
            try:
                return _seconds(value, default)
            except (AttributeError, TypeError, ValueError):
                raise _not_usable(path, name, "a time span hh:mm:ss") from None

        return cls(
            max_dequeue_count=whole("maxDequeueCount", defaults.max_dequeue_count),
            visibility_timeout=seconds("visibilityTimeout", defaults.visibility_timeout),
            max_polling_interval=seconds("maxPollingInterval", defaults.max_polling_interval),
            batch_size=whole("batchSize", defaults.batch_size),
        )


def _not_usable(path: Path, name: str, form: str) -> ConfigurationError:
    return ConfigurationError(f"{path}: extensions.queues.{name} must be {form}")


def _seconds(value: str | None, default: float) -> float:
    """host.json time spans: ``hh:mm:ss`` (optionally with fractions)."""
    if not value:
        return default
    hours, minutes, seconds = value.split(":")
    return timedelta(hours=int(hours), minutes=int(minutes), seconds=float(seconds)).total_seconds()


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue_name: str
    connection: str
    call: Any


def queue_functions(app: func.FunctionApp) -> list[QueueFunction]:
    return [
        QueueFunction(
            name=str(function.get_function_name()),
            queue_name=str(trigger.queue_name),
            connection=str(trigger.connection or STORAGE_CONNECTION),
            call=function.get_user_function(),
        )
        for function, trigger in triggered_by(app, QueueTrigger)
    ]


def resolve_queue(function: QueueFunction, values: Mapping[str, str]) -> QueueSettings | None:
    """The queue a function listens on, with ``%SETTING%`` names resolved like the runtime."""
    queue_name = resolve_settings(function.queue_name, values)
    if not queue_name:
        return None
    return queue_settings(values, function.connection, queue_name)


class QueuePoller(BackgroundRunner):
    def __init__(self, function: QueueFunction, queue: QueueSettings, options: QueueOptions):
        super().__init__(f"queue-{function.name}")
        self.function = function
        self.queue_name = queue.queue_name
        self.options = options
        # Raw messages: decoding here lets an undecodable one go to poison, as in Azure.
        self._queue = create_queue_client(queue, POLL_TIMEOUTS, base64_messages=False)
        self._poison = create_queue_client(queue.poison, POLL_TIMEOUTS, base64_messages=False)

    def _run(self) -> None:
        idle = 0.1
        healthy = True
        while not self._stop.is_set():
            try:
                handled = self.poll_once()
            except AzureError as error:
                if healthy:
                    log.warning("%s; retrying", self._poll_failure(error))
                healthy, handled = False, 0
            else:
                if not healthy:  # the warning said it failed: say it works again
                    log.warning(
                        "queue trigger %s: queue %s answers again",
                        self.function.name,
                        self.queue_name,
                    )
                healthy = True
            # Back off while idle, like the runtime, up to maxPollingInterval.
            idle = 0.1 if handled else min(idle * 2, self.options.max_polling_interval)
            self._stop.wait(0 if handled else idle)

    def _poll_failure(self, error: AzureError) -> str:
        """One line for a failed poll, naming the queue and what to check, not the service's
        XML (its message's later lines)."""
        function, queue = f"queue trigger {self.function.name}", self.queue_name
        status = error.status_code if isinstance(error, HttpResponseError) else None
        if status == 404:
            return (
                f"{function}: queue {queue} does not exist: run provision, or check "
                f"{self.function.connection}"
            )
        if status in (401, 403):
            return (
                f"{function}: the queue service refused {self.function.connection}'s "
                f"credentials for queue {queue} ({failure_kind(error)})"
            )
        return f"{function}: queue {queue} unreachable ({error_line(error)})"

    def poll_once(self) -> int:
        """Receive one batch and handle its messages until asked to stop; returns how many were
        received. Those left when stopping stay leased, and are received again when it ends.
        The lease of those still waiting is renewed at half its length: another instance took
        them after 30 s (and replayed them too) when a slow database made a batch take longer."""
        messages = list(
            self._queue.receive_messages(
                messages_per_page=self.options.batch_size,
                max_messages=self.options.batch_size,
                visibility_timeout=LEASE_SECONDS,
            )
        )
        waiting = messages
        leased_at = time.monotonic()
        while waiting and not self._stop.is_set():  # a stop waits for the call in progress
            if time.monotonic() - leased_at >= LEASE_SECONDS / 2:
                waiting = self._renewed(waiting)
                leased_at = time.monotonic()
                if not waiting:
                    break
            message, *waiting = waiting
            self._handle(message)
        return len(messages)

    def _renewed(self, messages: list[QueueMessage]) -> list[QueueMessage]:
        """``messages`` leased for LEASE_SECONDS more, less any another instance has taken."""
        renewed = []
        for message in messages:
            try:
                answer = self._queue.update_message(message, visibility_timeout=LEASE_SECONDS)
            except HttpResponseError as error:
                if error.status_code not in _LEASE_LOST:
                    raise
                log.info("queue message %s is another instance's now", message.id)
                continue
            # The answer carries the new receipt, not the content: keep the message's own.
            message = copy.copy(message)
            message.pop_receipt = answer.pop_receipt
            message.next_visible_on = answer.next_visible_on
            renewed.append(message)
        return renewed

    def _handle(self, message: QueueMessage) -> None:
        dequeue_count = int(message.dequeue_count or 1)
        try:
            body = decode_message(str(message.content))
        except ValueError:  # binascii.Error included
            log.error("queue message %s is not base64; moving it to poison", message.id)
            self._to_poison(message)
            return
        if dequeue_count > self.options.max_dequeue_count:
            # Delivered that often without being deleted (instances stopped while handling it):
            # the runtime moves it to poison without calling the function (WebJobs'
            # QueueProcessor.BeginProcessingMessageAsync).
            log.error(
                "queue message %s was delivered %d times, more than %d; moving it to poison",
                message.id,
                dequeue_count,
                self.options.max_dequeue_count,
            )
            self._to_poison(message)
            return
        trigger_message = TriggerMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            self.function.call(trigger_message)
        except Exception:
            log.exception(
                "function %s failed on message %s (attempt %d of %d)",
                self.function.name,
                message.id,
                dequeue_count,
                self.options.max_dequeue_count,
            )
            if dequeue_count >= self.options.max_dequeue_count:
                self._to_poison(message)
            else:
                self._queue.update_message(
                    message, visibility_timeout=int(self.options.visibility_timeout)
                )
            return
        try:
            self._queue.delete_message(message)
        except HttpResponseError as error:
            if error.status_code not in _LEASE_LOST:
                raise
            # Not the queue being unreachable, as it was logged: the instance that holds the
            # message now handles it again, and replay is idempotent by event id.
            log.warning("queue message %s was handled, but its lease had run out", message.id)

    def _to_poison(self, message: QueueMessage) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._poison.create_queue()
        # Raw content: the poison queue keeps exactly what arrived.
        self._poison.send_message(message.content)
        self._queue.delete_message(message)
        log.error("message %s moved to %s-poison", message.id, self._queue.queue_name)


def start_queue_pollers(
    app: func.FunctionApp, values: Mapping[str, str], options: QueueOptions
) -> list[QueuePoller]:
    """A running poller per queue function whose connection is configured; others are skipped
    with a warning (the HTTP functions still serve)."""
    pollers = []
    for function in queue_functions(app):
        queue = resolve_queue(function, values)
        if queue is None:
            log.warning(
                "queue trigger %s not started: %s is not configured",
                function.name,
                function.connection,
            )
            continue
        poller = QueuePoller(function, queue, options)
        poller.start()
        pollers.append(poller)
    return pollers
