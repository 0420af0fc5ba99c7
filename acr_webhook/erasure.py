"""Erasing one person's events from the record (the erase command; docs/operations.md,
"Personal data"): every stored event that names them is found, then each is deleted."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from acr_webhook.models import Person, StoredEvent
from acr_webhook.store import EventEraser, RepositoryUnavailableError


@dataclass
class Erasure:
    """What an erase found and did. ``stopped``: the store's failure that ended it part-way."""

    found: list[StoredEvent]
    deleted: int = 0
    gone: int = 0  # deleted by someone else between the finding and the deleting
    stopped: RepositoryUnavailableError | None = None

    @property
    def left(self) -> int:
        return len(self.found) - self.deleted - self.gone


def by_repository(events: list[StoredEvent]) -> list[tuple[str, int]]:
    """How many of ``events`` each repository holds, most first."""
    counts = Counter(event.repository for event in events)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def matched_values(events: list[StoredEvent]) -> list[str]:
    """The values that matched, as recorded: a client address with each port it used."""
    return sorted({event.matched for event in events})


def find(eraser: EventEraser, person: Person) -> list[StoredEvent]:
    return eraser.events_naming(person)


def erase(eraser: EventEraser, erasure: Erasure) -> Erasure:
    """Deletes each event ``erasure`` found, counting in it as it goes, so that a caller
    stopped from outside (Ctrl+C) can still say what was deleted; the first failure of the
    store stops it (running it again finds what is left)."""
    for event in erasure.found:
        try:
            deleted = eraser.delete(event)
        except RepositoryUnavailableError as error:
            erasure.stopped = error
            break
        if deleted:
            erasure.deleted += 1
        else:
            erasure.gone += 1
    return erasure
