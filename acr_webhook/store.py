"""What handlers see of the outside: the event store, the fallback queue and ACR's webhook
history, their protocols and the ways they fail.

No SDK here: handlers depend on this module; ``repository`` implements the event store for
Cosmos DB, ``fallback`` the queue for Azure Storage and ``acr_history`` the history through the
management API.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from acr_webhook.models import EventQuery, Person, StoredEvent


def one_line(text: str) -> str:
    """``text`` with each run of whitespace, line breaks included, as one space. The SDKs'
    messages span several lines (azure-cosmos puts the status code and the service's message
    on lines of their own), which would split a log record and a reconcile report."""
    return " ".join(text.split())


def first_line(text: str) -> str:
    """The first line of an SDK's message, whose later lines repeat it or hold the service's
    XML; empty for an empty message."""
    return next(iter(text.splitlines()), "")


class OneLineError(Exception):
    """An error whose message goes into a log line or an answer: kept on one line.

    ``cause`` names the kind of failure in words that are the same for every event it hits: the
    decision records' ``reason``, which the documented queries group by. The message may add
    what was particular to this try (an address, the time left, the service's activity id); by
    default the two are the same.
    """

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        super().__init__(one_line(message))
        self.cause = str(self) if cause is None else one_line(cause)


def failure_kind(error: Exception) -> str:
    """An SDK failure's type and, for an answer, its status code (and Cosmos DB's sub-status):
    unlike its message, the same for every request the same fault fails."""
    kind = type(error).__name__
    status = getattr(error, "status_code", None)
    if not isinstance(status, int):
        return kind
    sub_status = getattr(error, "sub_status", None)
    if isinstance(sub_status, int) and sub_status:
        return f"{kind} {status}/{sub_status}"
    return f"{kind} {status}"


def error_line(error: Exception) -> str:
    """An SDK failure in one line: its kind and its message's first line, not the service's
    XML that follows it."""
    return f"{failure_kind(error)}: {first_line(str(error))}"


class RepositoryUnavailableError(OneLineError):
    """The store did not accept or answer in time; the event was not recorded."""


class StoreSetUpError(RepositoryUnavailableError):
    """The store refused the app's set-up, not a request: a key or identity it does not take,
    a role not (yet) assigned, a database or container that is not there. Nothing changes until
    a person fixes it; the cause names what to fix."""


class StoreNotFoundError(StoreSetUpError):
    """The database or container the settings name does not exist (not provisioned, or a
    setting that names another): no retry will find it."""


class StorePartitionFullError(RepositoryUnavailableError):
    """The event's repository holds all its partition may (20 GB): its events cannot be written
    until room is made, while other repositories' can."""


class StoreThrottledError(RepositoryUnavailableError):
    """The store answered, asking to try again later (Cosmos DB's 429 and 449), and the client's
    own retries ran out: the same write may well succeed moments later."""


class DocumentRejectedError(OneLineError):
    """The store refused this document for a reason that will not change (a 400-class answer
    other than throttling or a conflict): trying again cannot help. The message says why."""


class EventRepository(Protocol):
    def add(self, document: dict[str, Any]) -> bool:
        """Store one event document. True if new, False if that id was already recorded.

        On a duplicate from a source in ``models.FILLED_IN_BY``, the fields in
        ``models.ENRICHMENT_FIELDS`` that the stored document lacks and this one has are filled
        in (never overwritten).

        Raises RepositoryUnavailableError when the store fails or does not answer in time, and
        DocumentRejectedError when it refuses the document itself.
        """
        ...


class EventReader(Protocol):
    def find_events(
        self, query: EventQuery, max_items: int, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        """Up to ``max_items`` documents that match the query's filters and come after its
        position, newest first (equal timestamps in any order), without Cosmos system fields.

        Raises RepositoryUnavailableError when the store fails or does not answer in time: by
        ``deadline`` (``time.monotonic()``), shared by the reads of one page, or else within
        config.QUERY_BUDGET_S.
        """
        ...


class EventEraser(Protocol):
    def events_naming(self, person: Person) -> list[StoredEvent]:
        """Every stored event whose ``person.field`` names the person, in every repository.

        Raises RepositoryUnavailableError (StoreSetUpError, StoreNotFoundError) as reads do.
        """
        ...

    def delete(self, event: StoredEvent) -> bool:
        """Delete one stored event: True if it was deleted, False if it was already gone.

        Raises RepositoryUnavailableError (StoreSetUpError, StoreNotFoundError) as writes do.
        """
        ...


class FallbackUnavailableError(OneLineError):
    """The fallback queue did not take the event either."""


def unavailable_reasons(failures: Sequence[OneLineError]) -> tuple[str, str]:
    """ "database unavailable (...)", with "and fallback queue unavailable (...)" when the queue
    failed too, twice: from each failure's cause (a decision's reason) and from its message
    (the detail). A set-up the database refuses, and a full partition, are said as such (the
    cause names what to fix), not as an outage."""
    as_itself = _said_as_itself(failures[0])
    causes = _unavailable_text(as_itself, [e.cause for e in failures])
    return causes, _unavailable_text(as_itself, map(str, failures))


def store_failure_reason(error: OneLineError) -> str:
    """What a decision's reason says of a store failure alone (replay's put-back)."""
    return error.cause if _said_as_itself(error) else "database unavailable"


def _said_as_itself(error: OneLineError) -> bool:
    return isinstance(error, StoreSetUpError | StorePartitionFullError)


def _unavailable_text(as_itself: bool, parts: Iterable[str]) -> str:
    store, *queue = parts
    text = store if as_itself else f"database unavailable ({store})"
    return f"{text} and fallback queue unavailable ({queue[0]})" if queue else text


class FallbackQueue(Protocol):
    def put(self, document: dict[str, Any], *, attempts: int = 0, delay_s: int = 0) -> None:
        """Keep one event document for replay, hidden for ``delay_s``, with the number of
        replay ``attempts`` already made; raises FallbackUnavailableError on failure."""
        ...


class HistoryUnreadableError(OneLineError):
    """A webhook's delivery history could not be read (or not to the end). The message names
    the cause, the SDK's error type first."""


class WebhookHistory(Protocol):
    def entries(self, webhook_name: str) -> Iterator[dict[str, Any]]:
        """The webhook's delivery history, every page, as the management API returns it.

        Raises HistoryUnreadableError when it cannot be read, possibly after some entries.
        """
        ...
