"""Moves poison messages back to the fallback queue for replay: ``python -m acr_webhook redrive``.

A queued event lands in ``acr-events-fallback-poison`` after its replay failed
``maxDequeueCount`` times (host.json): the database refused the document, or it was down and
the fallback queue could not take the event back either (a replay that finds the database down
puts the event back itself: see ``replay``). Messages that are not events end there too. Once
the cause is fixed, every message that holds an event document goes back to
``acr-events-fallback``, where the queue trigger replays it.

Per message: receive it from the poison queue (hidden from other readers meanwhile), send it to
the fallback queue, then delete it from the poison queue. A crash between the send and the
delete leaves the message in both queues, and a send whose answer was lost, which the SDK
sends again, a second copy: duplicate events, which replay stores once (the event id is the
document id). A message already deleted is never sent again, so running the command twice
moves nothing twice.

Contents move unchanged: both queues hold what fallback.py wrote, base64 of the parked event's
JSON (``models.ParkedEvent``; the Functions queue trigger's default encoding), and the runtime
copies a message to the poison queue as it was; nothing is decoded and re-encoded on the way
back.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from acr_webhook.config import STORAGE_CONNECTION, ConfigurationError, QueueSettings
from acr_webhook.fallback import NEVER_EXPIRES, create_queue_client, decode_message
from acr_webhook.models import parse_parked

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage

# A command, not a request path: it may wait for the service and retries a failed call twice,
# but after ~3 and ~5 s (the SDK's own: 3 times, after ~18, ~24 and ~42 s), so that a wrong or
# unreachable endpoint is an error message within ~10 s, not after more than a minute.
CLI_TIMEOUTS: dict[str, Any] = {
    "connection_timeout": 5,
    "read_timeout": 30,
    "retry_total": 2,
    "initial_backoff": 1,  # the n-th retry waits initial_backoff + increment_base**n seconds
    "increment_base": 2,
    "random_jitter_range": 1,
}
# Releasing the kept messages on Ctrl+C: one short try each. The operator may be stopping it
# because the service stopped answering; a message not released comes back when its lease ends.
STOPPING_TIMEOUTS: dict[str, Any] = {"connection_timeout": 1, "read_timeout": 1, "retry_total": 0}
# How long a received message stays hidden while it is moved; far longer than a send and a
# delete, so no other reader (another redrive) can take it meanwhile.
LEASE_SECONDS = 60
BATCH_SIZE = 32  # the most the queue service returns per receive


@dataclass
class RedriveProgress:
    """What a run has moved so far: all a stopped run (Ctrl+C, SIGTERM) can report."""

    moved: int = 0


@dataclass(frozen=True)
class RedriveReport:
    moved: int
    # Messages that are not event documents stay in the poison queue for a person to inspect.
    not_events: int
    # What the poison queue still holds afterwards (approximate, as the service counts).
    left: int

    @property
    def unseen(self) -> int:
        """Of ``left``, those this run never received: hidden by another run's lease (one
        stopped midway holds its batch for LEASE_SECONDS), or poisoned since it looked."""
        return max(self.left - self.not_events, 0)


def is_event_message(content: str) -> bool:
    """Whether replay would accept this message: base64 of a parked event
    (``models.parse_parked``), decoded as the queue trigger decodes it."""
    try:
        parse_parked(decode_message(content))
    except ValueError:  # binascii.Error and InvalidQueuedEventError are ValueErrors
        return False
    return True


def redrive(queue: QueueSettings, progress: RedriveProgress | None = None) -> RedriveReport:
    """Move every event message from ``<queue>-poison`` back to ``queue``; ``progress`` counts
    the moves as they happen."""
    progress = RedriveProgress() if progress is None else progress
    main = create_queue_client(queue, CLI_TIMEOUTS, base64_messages=False)
    poison = create_queue_client(queue.poison, CLI_TIMEOUTS, base64_messages=False)
    try:
        batch = _receive(poison)
    except ResourceNotFoundError:
        try:
            main.get_queue_properties()
        except ResourceNotFoundError:
            # Neither queue: the setting names another account, or they were deleted. "Moved
            # 0" would tell a person checking after a poison alert that all is well.
            raise _missing(queue) from None
        return RedriveReport(moved=0, not_events=0, left=0)  # nothing was ever poisoned
    # Messages that are not events, by id: hidden for the lease, so seen once in most runs. A
    # run longer than the lease sees one again, and only its latest receipt can release it.
    kept: dict[str, QueueMessage] = {}
    stopping = False
    try:
        while batch:
            for message in batch:
                content = str(message.content)
                if not is_event_message(content):
                    kept[message.id] = message
                    continue
                try:
                    main.send_message(content, time_to_live=NEVER_EXPIRES)  # as parked
                except ResourceNotFoundError:
                    raise _missing(queue) from None
                # Gone already: this delete's answer was lost and the SDK sent it again, or the
                # lease ended and another run took it (and sends it too: replay stores it once).
                with contextlib.suppress(ResourceNotFoundError):
                    poison.delete_message(message)
                progress.moved += 1
            batch = _receive(poison)
    except KeyboardInterrupt:
        stopping = True
        raise
    finally:
        for message in kept.values():
            # Visible again at once, as before the run, for whoever inspects the queue.
            if stopping:
                with contextlib.suppress(AzureError):
                    poison.update_message(message, visibility_timeout=0, **STOPPING_TIMEOUTS)
            else:
                poison.update_message(message, visibility_timeout=0)
    left = int(poison.get_queue_properties().approximate_message_count or 0)
    return RedriveReport(moved=progress.moved, not_events=len(kept), left=left)


def _missing(queue: QueueSettings) -> ConfigurationError:
    return ConfigurationError(
        f"queue '{queue.queue_name}' does not exist in the account {STORAGE_CONNECTION} names: "
        f"run provision, or check {STORAGE_CONNECTION}"
    )


def _receive(poison: QueueClient) -> list[QueueMessage]:
    return list(
        poison.receive_messages(
            messages_per_page=BATCH_SIZE, max_messages=BATCH_SIZE, visibility_timeout=LEASE_SECONDS
        )
    )
