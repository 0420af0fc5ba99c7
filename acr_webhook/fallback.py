"""The durable fallback: when Cosmos DB fails, a validated event waits in a Storage queue.

A queue-triggered function (``replay_fallback`` in function_app.py) applies queued events to
Cosmos DB later; ids make that idempotent. While the database is still unavailable the replay
puts the event back itself, with a delay that doubles up to a cap, and returns normally: the
runtime's retries (a fixed delay, a counted number of tries, then the poison queue) are left
for messages that can never be stored. Messages never expire, so an outage of any length
loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from azure.core.exceptions import AzureError, ResourceExistsError
from pydantic import ValidationError

from acr_webhook.config import QueueSettings
from acr_webhook.models import ParkedDocument, validation_problems
from acr_webhook.store import (
    DocumentRejectedError,
    EventRepository,
    RepositoryUnavailableError,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.queue import QueueClient

log = logging.getLogger(__name__)

# The queue is the last resort inside ACR's 5 s window, after Cosmos DB has used up to ~2 s.
QUEUE_TIMEOUTS: dict[str, Any] = {
    "connection_timeout": 1,
    "read_timeout": 1.5,
    "retry_total": 0,
}


# Storage queue messages live 7 days unless told otherwise; -1 keeps them until replayed.
NEVER_EXPIRES = -1
# A parked event is replayed at once; after its first failed replay it waits this long, and each
# further failed try doubles the wait up to the cap (Settings.replay_max_delay_s, 60 s by
# default).
REPLAY_FIRST_DELAY_S = 2


class FallbackUnavailableError(Exception):
    """The fallback queue did not take the event either."""


class FallbackQueue(Protocol):
    def put(self, document: dict[str, Any], *, attempts: int = 0, delay_s: int = 0) -> None:
        """Keep one event document for replay, hidden for ``delay_s``, with the number of
        replay ``attempts`` already made; raises FallbackUnavailableError on failure."""
        ...


@dataclass(frozen=True)
class ParkedEvent:
    """A queue message: the event document and how many replays of it have failed."""

    document: dict[str, Any]
    attempts: int = 0

    def to_message(self) -> str:
        return json.dumps({"document": self.document, "attempts": self.attempts})


def create_queue_client(
    settings: QueueSettings, timeouts: dict[str, Any], base64_messages: bool = True
) -> QueueClient:
    """``base64_messages``: encode on send and decode on receive, as the Functions queue
    trigger expects by default (messageEncoding); off to see messages exactly as stored."""
    # Imported here, not at module level: the SDK (with cryptography for its client-side
    # encryption) adds ~40 ms to every cold start, and only the rare fallback path needs it.
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    encode = TextBase64EncodePolicy() if base64_messages else None
    decode = TextBase64DecodePolicy() if base64_messages else None
    if settings.connection_string:
        return QueueClient.from_connection_string(
            settings.connection_string,
            settings.queue_name,
            message_encode_policy=encode,
            message_decode_policy=decode,
            **timeouts,
        )
    if not settings.queue_service_uri:
        raise ValueError("QueueSettings needs a connection string or a queue service URI")
    from azure.identity import DefaultAzureCredential  # only the deployed app needs it

    credential: TokenCredential = DefaultAzureCredential()
    return QueueClient(
        settings.queue_service_uri,
        settings.queue_name,
        credential=credential,
        message_encode_policy=encode,
        message_decode_policy=decode,
        **timeouts,
    )


class StorageQueueFallback:
    """Azure Storage queue (Azurite locally). The client is created once, on first use."""

    def __init__(self, settings: QueueSettings) -> None:
        self._settings = settings
        self._client: QueueClient | None = None
        self._lock = threading.Lock()

    def _queue(self) -> QueueClient:
        with self._lock:
            if self._client is None:
                self._client = create_queue_client(self._settings, QUEUE_TIMEOUTS)
            return self._client

    def put(self, document: dict[str, Any], *, attempts: int = 0, delay_s: int = 0) -> None:
        try:
            self._queue().send_message(
                ParkedEvent(document, attempts).to_message(),
                visibility_timeout=delay_s or None,
                time_to_live=NEVER_EXPIRES,
            )
        except (AzureError, ValueError) as error:
            raise FallbackUnavailableError(f"{type(error).__name__}: {error}") from error


def provision_queue(settings: QueueSettings) -> None:
    """Create the fallback queue and its poison queue if missing (Bicep does it in Azure)."""
    for queue in (settings, settings.poison):
        client = create_queue_client(
            queue, {"connection_timeout": 5, "read_timeout": 30, "retry_total": 0}
        )
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()


class InvalidQueuedEventError(ValueError):
    """A queue message that is not an event this app parked, or one the database refuses:
    it can never be stored, so the runtime's retries end it in the poison queue."""


def parse_parked(message: bytes | str) -> ParkedEvent:
    """The parked event in a queue message: ``{"document": ..., "attempts": n}``, or a bare
    document as parked before replays counted their attempts."""
    try:
        payload = json.loads(message)
    except ValueError as error:
        raise InvalidQueuedEventError(f"queued message is not JSON: {error}") from error
    except RecursionError:
        raise InvalidQueuedEventError("queued message is nested too deeply") from None
    attempts = 0
    if isinstance(payload, dict) and "document" in payload:
        attempts = payload.get("attempts", 0)
        payload = payload["document"]
        if type(attempts) is not int or attempts < 0:
            raise InvalidQueuedEventError("queued message has no valid attempt count")
    try:
        ParkedDocument.model_validate(payload)
    except ValidationError as error:
        problems = "; ".join(validation_problems(error, "document"))
        raise InvalidQueuedEventError(
            f"queued message is not an event document: {problems}"
        ) from None
    return ParkedEvent(payload, attempts)


def replay_delay_s(failed_tries: int, max_delay_s: int) -> int:
    """The wait before the next replay after ``failed_tries`` (1 or more) failed ones: 2, 4,
    8 ... capped."""
    doublings = min(max(failed_tries - 1, 0), 30)
    return int(min(max_delay_s, REPLAY_FIRST_DELAY_S * 2**doublings))


def replay_queued_event(
    message: bytes | str,
    repository: EventRepository,
    requeue: FallbackQueue | None,
    max_delay_s: int,
) -> str:
    """Apply one parked event to the store: ``"recorded"``, ``"duplicate"``, or ``"requeued"``
    when the store is still unavailable (the event is back in the queue with a longer delay,
    so the caller returns normally and the runtime deletes this copy).

    Raises InvalidQueuedEventError for a message that can never be stored, and
    FallbackUnavailableError when it could be neither stored nor put back (the runtime then
    keeps the message and retries it).
    """
    try:
        parked = parse_parked(message)
    except InvalidQueuedEventError as error:
        # No event to name: the message is not one this app parked. The runtime's retries end
        # it in the poison queue; this record says why (the redrive section of operations.md).
        log.error(
            "replay: %s",
            error,
            extra={"decision": "rejected", "route": "replay", "reason": str(error)},
        )
        raise
    document = parked.document
    fields = {
        "route": "replay",
        "event_id": document["id"],
        "action": document.get("action"),
        "repository": document["repository"],
    }
    context = (
        f"event={document['id']!r} action={document.get('action')!r} "
        f"repository={document['repository']!r}"
    )
    try:
        created = repository.add(document)
    except DocumentRejectedError as error:
        log.error(
            "%s cannot be replayed: %s",
            context,
            error,
            extra={"decision": "rejected", "reason": str(error), **fields},
        )
        raise InvalidQueuedEventError(str(error)) from error
    except RepositoryUnavailableError as error:
        attempts = parked.attempts + 1
        delay_s = replay_delay_s(attempts, max_delay_s)
        try:
            if requeue is None:
                raise FallbackUnavailableError("no fallback queue to put the event back")
            requeue.put(document, attempts=attempts, delay_s=delay_s)
        except FallbackUnavailableError as queue_error:
            # The runtime keeps the message and retries it, then poisons it: name the event.
            reason = (
                f"database unavailable ({error}) and fallback queue unavailable ({queue_error})"
            )
            log.error(
                "%s replay attempt %d: %s",
                context,
                attempts,
                reason,
                extra={"decision": "unavailable", "reason": reason, **fields},
            )
            raise
        # One line per failed try, no traceback: an outage is expected here, not a bug.
        log.warning(
            "%s replay attempt %d: database unavailable (%s); next try in %d s",
            context,
            attempts,
            error,
            delay_s,
            extra={"decision": "queued", "reason": "database unavailable", **fields},
        )
        return "requeued"
    decision = "replayed" if created else "duplicate"
    log.info(
        "%s replayed from fallback queue: %s",
        context,
        "recorded" if created else "already recorded",
        extra={"decision": decision, **fields},
    )
    return "recorded" if created else "duplicate"
