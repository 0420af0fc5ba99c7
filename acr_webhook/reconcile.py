"""Reconcile: store what ACR's webhook delivery history holds and the record lacks.

ACR calls a webhook once and never retries, but it keeps each webhook's recent deliveries
(``az acr webhook list-events``, the ARM action ``webhooks/listEvents``), each with the payload
it sent. Replaying those payloads through the webhook route's own validation and document
mapping, idempotently by event id, fills the gaps a deployment or an outage left.

Two callers, one core (``reconcile_entries``): the ``reconcile`` CLI reads the file the Azure
CLI wrote; the timer function reads the history through the management API (the process-wide
``runtime.webhook_history()`` it is given). History entries also hold the request ACR sent: its
``requestUri`` carries ``?code=`` and its ``headers`` the shared secret. Only
``eventRequestMessage.content`` is ever read here, so neither reaches a log or a document.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from acr_webhook.config import ReconcileSettings
from acr_webhook.handlers import claimed_identity, loads_strictly, log_event_decision
from acr_webhook.models import (
    RECORDED_ACTIONS,
    dated_ahead,
    parse_webhook_payload,
    to_document,
)
from acr_webhook.results import utc_now
from acr_webhook.store import (
    DocumentRejectedError,
    EventRepository,
    HistoryUnreadableError,
    RepositoryUnavailableError,
    StoreNotFoundError,
    StorePartitionFullError,
    StoreSetUpError,
    StoreThrottledError,
    WebhookHistory,
)

log = logging.getLogger(__name__)

ROUTE: Final = "reconcile"
# Where the webhook payload sits in a history entry; named in the problems reported.
CONTENT_PATH = "eventRequestMessage.content"
_REQUEST_MESSAGE = CONTENT_PATH.split(".", 1)[0]
MAX_ID_CHARS = 80  # an id in a report line; longer ones are cut (they are invalid anyway)
# A write Cosmos DB still throttles once the client's own retries ran out is tried again after
# this pause, this many times in all, before the run stops: reconcile has minutes, not ACR's
# seconds, and stopping at the first throttled entry would leave every entry after it for the
# next run.
THROTTLED_PAUSE_S: Final = 1.0
THROTTLED_TRIES: Final = 10
# Events the timer's runs remember as stored, at most: ~250 bytes each (25 MB in all).
REMEMBERED_EVENTS: Final = 100_000


@dataclass
class ReconcileCounts:
    recorded: int = 0
    already: int = 0
    skipped: int = 0
    invalid: int = 0
    # Not stored for now: their repository's partition is full (said only when there are some).
    unstored: int = 0

    def summary(self) -> str:
        counts = (
            f"recorded={self.recorded} already={self.already} "
            f"skipped={self.skipped} invalid={self.invalid}"
        )
        return f"{counts} unstored={self.unstored}" if self.unstored else counts


@dataclass(frozen=True)
class ReconcileOutcome:
    counts: ReconcileCounts
    # Why the store stopped the run; None when every entry was handled.
    unavailable: str | None = None
    # What to fix when the store refused the app's set-up (a key, a role, a missing container),
    # which no later run gets past; None for an outage, which one may.
    set_up: str | None = None
    # Why counts.unstored events were not stored (a full partition's cause); the run went on.
    unstored_reason: str | None = None
    # The store answered that the database or container does not exist: a setting to fix.
    store_missing: bool = False


@dataclass(frozen=True)
class InvalidEntry:
    """A history entry that cannot be stored, and why (no payload values, no request data)."""

    index: int
    entry_id: str | None
    reason: str  # the same for every entry one cause hits: the log's reason
    # For the log: the event id, action and repository its payload gives, as far as it does.
    identity: Mapping[str, str] = field(default_factory=dict, compare=False)
    detail: str | None = None  # what this entry's failure said beyond the reason, if more

    def __str__(self) -> str:
        named = f" (id {self.entry_id!r})" if self.entry_id is not None else ""
        return f"entry {self.index}{named}: {self.reason if self.detail is None else self.detail}"


class HistoryFileError(Exception):
    """The events file cannot be used at all; the message says why in one line."""


def read_history_file(path: Path) -> list[dict[str, Any]]:
    """The entries of a file written by ``az acr webhook list-events --output json``.

    Raises HistoryFileError when it is missing, unreadable, not JSON or not an array of
    objects. UTF-16 with a byte order mark is accepted: it is what Windows PowerShell 5's ``>``
    writes.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HistoryFileError(f"{path}: no such file") from None
    except OSError as error:
        raise HistoryFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    encoding = "utf-16" if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    expected = "a JSON array of webhook events (az acr webhook list-events --output json)"
    try:
        entries = loads_strictly(raw.decode(encoding))
    except UnicodeDecodeError as error:
        problem = (
            "starts with UTF-16's byte order mark but is not UTF-16 text"
            if encoding == "utf-16"
            else "is not UTF-8 text"
        )
        raise HistoryFileError(f"{path}: {problem} (byte {error.start})") from None
    except RecursionError:
        raise HistoryFileError(f"{path}: is nested too deeply") from None
    except ValueError as error:
        # Empty after az failed, or another --output (the README's Verify step uses table).
        raise HistoryFileError(f"{path}: is not JSON ({error}); must be {expected}") from None
    if not isinstance(entries, list):
        raise HistoryFileError(f"{path}: must be {expected}, not a JSON {type(entries).__name__}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise HistoryFileError(
                f"{path}: must be {expected}; item {index} is a {type(entry).__name__}"
            )
    if entries and not any(_REQUEST_MESSAGE in entry for entry in entries):
        # Another command's array (the dead-letter blobs, `az acr webhook list`): counting each
        # entry invalid would end as a successful run that stored nothing.
        raise HistoryFileError(
            f"{path}: must be {expected}; none of its {len(entries)} item(s) has {_REQUEST_MESSAGE}"
        )
    return entries


def _entry_id(entry: object) -> str | None:
    value = entry.get("id") if isinstance(entry, dict) else None
    if not isinstance(value, str):
        return None
    return value if len(value) <= MAX_ID_CHARS else value[:MAX_ID_CHARS] + "..."


class _InvalidContentError(ValueError):
    pass


def _content(entry: object) -> dict[str, Any]:
    """The webhook payload of a history entry (the content ACR posted), nothing else of it."""
    if not isinstance(entry, dict):
        raise _InvalidContentError(f"must be an object, not {type(entry).__name__}")
    message = entry.get("eventRequestMessage")
    if not isinstance(message, dict):
        raise _InvalidContentError("eventRequestMessage: required, must be an object")
    content = message.get("content")
    if isinstance(content, str):
        # The spec types it as an object; a serialised one is still the same payload, read as
        # a webhook body and an Event Grid event's text data are read.
        try:
            content = loads_strictly(content)
        except RecursionError:
            raise _InvalidContentError(f"{CONTENT_PATH}: is a string nested too deeply") from None
        except ValueError as error:
            problem = f"is a string but not JSON: {error}"
            raise _InvalidContentError(f"{CONTENT_PATH}: {problem}") from None
    if not isinstance(content, dict):
        raise _InvalidContentError(f"{CONTENT_PATH}: required, must be an object")
    return content


class StoredEvents:
    """The events (repository, id) that reconcile runs of this process stored or found stored,
    with every field their history entry carries: a later run skips them, so a history that has
    not changed costs no database request (each entry cost a create answered 409, and a read
    when it carries who pushed, on every run). At most ``limit``, the oldest forgotten first."""

    def __init__(self, limit: int = REMEMBERED_EVENTS) -> None:
        self._limit = limit
        self._keys: dict[tuple[str, str], None] = {}  # in the order first stored
        self._lock = threading.Lock()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._keys

    def add(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._keys[key] = None
            if len(self._keys) > self._limit:
                del self._keys[next(iter(self._keys))]


def _add_while_throttled(repository: EventRepository, document: dict[str, Any]) -> bool:
    for _ in range(THROTTLED_TRIES - 1):
        try:
            return repository.add(document)
        except StoreThrottledError:
            time.sleep(THROTTLED_PAUSE_S)
    return repository.add(document)


def reconcile_entries(
    entries: Iterable[object],
    repository: EventRepository,
    *,
    received_at: datetime,
    report_invalid: Callable[[InvalidEntry], None],
    stored: StoredEvents | None = None,
    counts: ReconcileCounts | None = None,
) -> ReconcileOutcome:
    """Store the recorded events among ``entries`` that are not stored yet.

    Each entry costs one ``repository.add`` at most (which fills in missing fields of an
    already stored event), none when it is in ``stored``, which learns each event the run
    stores or finds stored. Ping and other actions are skipped; invalid entries are reported
    and counted, never fatal. The run stops when the store is unreachable: the outcome says so.
    ``counts``: where to count as it goes, for a caller that must say what was done when the
    run is stopped from outside (Ctrl+C).
    """
    counts = ReconcileCounts() if counts is None else counts
    unstored_reason: str | None = None
    for index, entry in enumerate(entries):
        try:
            content = _content(entry)
        except _InvalidContentError as problem:
            counts.invalid += 1
            report_invalid(InvalidEntry(index, _entry_id(entry), str(problem)))
            continue
        action = content.get("action")
        if not isinstance(action, str) or not action:
            counts.invalid += 1
            reason = f"{CONTENT_PATH}.action: required, must be a non-empty string"
            report_invalid(InvalidEntry(index, _entry_id(entry), reason))
            continue
        if action not in RECORDED_ACTIONS:
            counts.skipped += 1  # ping, or an action the record does not keep
            continue
        event = parse_webhook_payload(content, CONTENT_PATH)  # the webhook route's validation
        if not isinstance(event, list):
            ahead = dated_ahead(event, received_at)
            event = [f"{CONTENT_PATH}.{ahead}"] if ahead else event
        if isinstance(event, list):
            counts.invalid += 1
            problems = "; ".join(event)
            identity = claimed_identity(content)
            report_invalid(InvalidEntry(index, _entry_id(entry), problems, identity))
            continue
        key = (event.target.repository, event.id)  # the document's partition key and id
        if stored is not None and key in stored:
            counts.already += 1
            continue
        try:
            created = _add_while_throttled(
                repository, to_document(event, received_at=received_at, source=ROUTE)
            )
        except RepositoryUnavailableError as error:
            log_event_decision(
                log,
                logging.ERROR,
                ROUTE,
                "unavailable",
                event,
                reason=error.cause,
                detail=str(error),
            )
            if isinstance(error, StorePartitionFullError):
                # One repository's: the other repositories' events are stored all the same.
                counts.unstored += 1
                unstored_reason = unstored_reason or error.cause
                continue
            return ReconcileOutcome(
                counts,
                unavailable=str(error),
                set_up=error.cause if isinstance(error, StoreSetUpError) else None,
                unstored_reason=unstored_reason,
                store_missing=isinstance(error, StoreNotFoundError),
            )
        except DocumentRejectedError as error:
            counts.invalid += 1
            report_invalid(
                InvalidEntry(
                    index,
                    _entry_id(entry),
                    f"refused by the store: {error.cause}",
                    claimed_identity(content),
                    detail=f"refused by the store: {error}",
                )
            )
            continue
        if stored is not None:
            stored.add(key)
        if created:
            counts.recorded += 1
            log_event_decision(log, logging.INFO, ROUTE, "reconciled", event)
        else:
            counts.already += 1
    return ReconcileOutcome(counts, unstored_reason=unstored_reason)


def _log_invalid(entry: InvalidEntry) -> None:
    claimed = "".join(
        f" {name}={entry.identity[name]!r}"
        for name in ("action", "repository")
        if name in entry.identity
    )
    log.warning(
        "reconcile: history %s%s",
        entry,
        claimed,
        extra={
            "decision": "rejected",
            "route": ROUTE,
            **({"event_id": entry.entry_id} if entry.entry_id else {}),
            **entry.identity,
            "reason": entry.reason,
        },
    )


class _Guarded:
    """The history's entries, ending early (with ``error`` set) when reading them fails, so
    what was read before the failure is still reconciled and counted."""

    def __init__(self, entries: Iterator[dict[str, Any]]) -> None:
        self._entries = entries
        self.error: HistoryUnreadableError | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            yield from self._entries
        except HistoryUnreadableError as error:
            self.error = error


def reconcile_webhooks(
    target: ReconcileSettings | None,
    repository: EventRepository,
    history: WebhookHistory | None,
    *,
    stored: StoredEvents | None = None,
    now: Callable[[], datetime] = utc_now,
) -> Mapping[str, ReconcileOutcome]:
    """The timer's run: reconcile each configured webhook's history; one summary log line each.

    ``history`` is None exactly when ``target`` is (runtime.webhook_history()). Stops at the
    first webhook whose run found the database unreachable.
    """
    if target is None or history is None:
        log.info("reconcile is not configured (ACR_REGISTRY_ID is not set); nothing to do")
        return {}
    outcomes: dict[str, ReconcileOutcome] = {}
    for name in target.webhook_names:
        entries = _Guarded(history.entries(name))
        outcome = reconcile_entries(
            entries, repository, received_at=now(), report_invalid=_log_invalid, stored=stored
        )
        outcomes[name] = outcome
        summary = outcome.counts.summary()
        if entries.error is not None:
            log.error(
                "reconcile of webhook %r: history unreadable (%s); so far %s",
                name,
                entries.error,
                summary,
            )
        elif outcome.store_missing:
            log.error(
                "reconcile of webhook %r stopped: the database or container does not exist "
                "(COSMOS_DATABASE, COSMOS_CONTAINER; run provision); %s",
                name,
                summary,
            )
            break
        elif outcome.set_up is not None:
            log.error("reconcile of webhook %r stopped: %s; %s", name, outcome.set_up, summary)
            break
        elif outcome.unavailable is not None:
            log.error("reconcile of webhook %r stopped: database unavailable; %s", name, summary)
            break
        elif outcome.unstored_reason is not None:
            log.error("reconcile of webhook %r: %s; %s", name, outcome.unstored_reason, summary)
        else:
            log.info("reconcile of webhook %r: %s", name, summary)
    return outcomes
