"""The event store as handlers see it: the protocols and the two ways a write fails.

No SDK here: handlers depend on this module, and ``repository`` implements it for Cosmos DB.
"""

from __future__ import annotations

from typing import Any, Protocol

from acr_webhook.models import EventQuery


class RepositoryUnavailableError(Exception):
    """The store did not accept or answer in time; the event was not recorded."""


class DocumentRejectedError(Exception):
    """The store refused this document for a reason that will not change (a 400-class answer
    other than throttling or a conflict): trying again cannot help. The message says why."""


class EventRepository(Protocol):
    def add(self, document: dict[str, Any]) -> bool:
        """Store one event document. True if new, False if that id was already recorded.

        On a duplicate, the fields in ``models.ENRICHMENT_FIELDS`` that the stored document
        lacks and this one has are filled in (never overwritten).

        Raises RepositoryUnavailableError when the store fails or does not answer in time, and
        DocumentRejectedError when it refuses the document itself.
        """
        ...


class EventReader(Protocol):
    def find_events(self, query: EventQuery, max_items: int) -> list[dict[str, Any]]:
        """Up to ``max_items`` documents that match the query's filters and come after its
        position, newest first (equal timestamps in any order), without Cosmos system fields.

        Raises RepositoryUnavailableError when the store fails or does not answer in time.
        """
        ...
