"""In-memory stand-ins for unit tests. They never ship in the product path."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from azure.core.exceptions import ServiceRequestError

from acr_webhook.models import ENRICHMENT_FIELDS, EXACT_FILTERS, FILLED_IN_BY, EventQuery
from acr_webhook.store import DocumentRejectedError, RepositoryUnavailableError

K = TypeVar("K")


class FakeTime:
    """A module's ``time`` in unit tests: seconds pass only when the test (a fake call's
    latency) or the code under test (``sleep``) moves them, so timing is deterministic."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def client_build_under_way(
    monkeypatch: pytest.MonkeyPatch, first: Callable[[], None]
) -> Iterator[None]:
    """``first`` runs on a thread of its own and starts building the Cosmos client, which
    hangs for as long as the block runs and then fails ("connection timed out"): inside it,
    every other request finds the build under way."""
    building, release = threading.Event(), threading.Event()

    def slow_build(*_args: object, **_kwargs: object) -> object:
        building.set()
        release.wait(10)
        raise ServiceRequestError("connection timed out")

    monkeypatch.setattr("acr_webhook.repository.create_cosmos_client", slow_build)
    builder = threading.Thread(target=first)
    builder.start()
    try:
        assert building.wait(5)
        yield
    finally:
        release.set()
        builder.join()


def store_or_fill_in(documents: dict[K, dict[str, Any]], key: K, document: dict[str, Any]) -> bool:
    """The store protocol's write into ``documents``: True for a new document; for one already
    stored, False, with the ENRICHMENT_FIELDS it lacks taken from ``document`` when its source
    fills in (models.FILLED_IN_BY: not a webhook copy's); a value it has is never overwritten."""
    stored = documents.get(key)
    if stored is None:
        documents[key] = dict(document)
        return True
    if document.get("source") in FILLED_IN_BY:
        for name in ENRICHMENT_FIELDS:
            if stored.get(name) is None and document.get(name) is not None:
                stored[name] = document[name]
    return False


class FakeEventRepository:
    """Keeps documents by id, like a Cosmos container keyed on the event id within the
    repository's partition: the same id in another repository is another document, kept under
    ``"<id>/<repository>"`` (the first one keeps the plain id). Reads them back like
    ``CosmosEventRepository.find_events``. Safe for concurrent writers (Event Grid batches),
    fills in missing ENRICHMENT_FIELDS on an Event Grid or reconcile duplicate as the protocol
    says (store_or_fill_in), refuses the ids in
    ``refused`` for good and takes ``write_delay_s`` per write."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.unavailable = False
        self.refused: set[str] = set()
        self.write_delay_s = 0.0
        self.add_calls = 0
        self.find_calls = 0
        self.last_find: tuple[EventQuery, int] | None = None
        self._lock = threading.Lock()

    def add(self, document: dict[str, Any]) -> bool:
        with self._lock:
            self.add_calls += 1
        if self.write_delay_s:
            time.sleep(self.write_delay_s)
        if self.unavailable:
            raise RepositoryUnavailableError("fake outage")
        if document["id"] in self.refused:
            raise DocumentRejectedError("fake refusal")
        with self._lock:
            key = document["id"]
            stored = self.documents.get(key)
            if stored is not None and stored["repository"] != document["repository"]:
                key = f"{key}/{document['repository']}"
            return store_or_fill_in(self.documents, key, document)

    def find_events(
        self, query: EventQuery, max_items: int, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        """The filters of repository.events_sql. Equal timestamps come back in a different
        order on every call: nothing promises a stable order for them."""
        self.find_calls += 1
        self.last_find = (query, max_items)
        if self.unavailable:
            raise RepositoryUnavailableError("fake outage")
        matches = [dict(d) for d in self.documents.values() if _matches(query, d)]
        random.Random(self.find_calls).shuffle(matches)
        matches.sort(key=lambda document: str(document["timestamp"]), reverse=True)
        return matches[:max_items]


def _matches(query: EventQuery, document: dict[str, Any]) -> bool:
    for name in EXACT_FILTERS:
        wanted = getattr(query, name)
        if wanted is not None and document.get(name) != wanted:
            return False
    timestamp = str(document["timestamp"])
    if query.since is not None and timestamp < query.since:
        return False
    if query.until is not None and timestamp >= query.until:
        return False
    # As repository.events_sql: the store returns what is at or before the position.
    return query.after is None or timestamp <= query.after.timestamp
