"""Replay: a parked event from the fallback queue applied to the store.

The queue-triggered function ``replay_fallback`` in function_app.py calls this for each message;
ids make it idempotent. While the database is still unavailable the event goes back into the
queue with a delay that doubles up to a cap, and the call returns normally: the runtime's
retries (a fixed delay, a counted number of tries, then the poison queue) are left for messages
that can never be stored, and for events that the queue could not take back either.
"""

from __future__ import annotations

import logging

from acr_webhook.models import InvalidQueuedEventError, about, parse_parked
from acr_webhook.store import (
    DocumentRejectedError,
    EventRepository,
    FallbackQueue,
    FallbackUnavailableError,
    RepositoryUnavailableError,
    store_failure_reason,
    unavailable_reasons,
)

log = logging.getLogger(__name__)

# A parked event is replayed at once; after its first failed replay it waits this long, and each
# further failed try doubles the wait up to the cap (Settings.replay_max_delay_s, 60 s by
# default).
REPLAY_FIRST_DELAY_S = 2


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
    dequeue_count: int | None = 1,
) -> str:
    """Apply one parked event to the store: ``"recorded"``, ``"duplicate"``, or ``"requeued"``
    when the store is still unavailable (the event is back in the queue with a longer delay,
    so the caller returns normally and the runtime deletes this copy).

    Raises InvalidQueuedEventError for a message that can never be stored, and
    FallbackUnavailableError when it could be neither stored nor put back (the runtime then
    keeps the message and retries it).

    ``dequeue_count``: how many times the runtime has delivered this copy of the message (1 the
    first time). The message's own count covers only the tries that put it back, so the runtime's
    retries of a message that could not be put back are counted from this.
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
    fields = {"route": "replay", **about(document)}
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
            extra={"decision": "rejected", "reason": error.cause, **fields},
        )
        raise InvalidQueuedEventError(str(error)) from error
    except RepositoryUnavailableError as error:
        attempts = parked.attempts + max(dequeue_count or 1, 1)
        delay_s = replay_delay_s(attempts, max_delay_s)
        try:
            if requeue is None:
                raise FallbackUnavailableError("no fallback queue to put the event back")
            requeue.put(document, attempts=attempts, delay_s=delay_s)
        except FallbackUnavailableError as queue_error:
            # The runtime keeps the message and retries it, then poisons it: name the event.
            reason, detail = unavailable_reasons([error, queue_error])
            log.error(
                "%s replay attempt %d: %s",
                context,
                attempts,
                detail,
                extra={"decision": "unavailable", "reason": reason, **fields},
            )
            raise
        # One line per failed try, no traceback: an outage is expected here, not a bug.
        log.warning(
            "%s replay attempt %d: %s; next try in %d s",
            context,
            attempts,
            unavailable_reasons([error])[1],
            delay_s,
            extra={"decision": "queued", "reason": store_failure_reason(error), **fields},
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
