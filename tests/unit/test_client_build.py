"""The database client, built by the first request that needs it (repository._LazyContainer):
requests that arrive meanwhile wait for that build within their own bounds, are woken once the
container is stored, and answer with the build's failure.
"""

from __future__ import annotations

import time

import pytest

from acr_webhook.config import Settings
from acr_webhook.models import EventQuery
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.store import RepositoryUnavailableError
from tests.support.fakes import client_build_under_way

SETTINGS = Settings("https://127.0.0.1:1/", "key", "acr", "events", None)


# --- find_events: a page's read waits for a build within the page's budget ----------------------


def test_a_page_read_waiting_for_another_requests_client_build_waits_only_the_pages_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """_LazyContainer.get: "a request that finds a build under way waits for it until its own
    ``deadline``"; find_events passes the page's (docs/queries.md: 8 s for a page, all of its
    reads together). A read late in its page must not wait the build's 5 s + 1 s. Mutant:
    ``self._reads.get()`` without the deadline."""
    reader = CosmosEventRepository(SETTINGS)
    errors: list[Exception] = []

    def build_first() -> None:
        try:
            reader.find_events(EventQuery(), 10)
        except RepositoryUnavailableError as error:
            errors.append(error)

    with client_build_under_way(monkeypatch, build_first):
        started = time.monotonic()
        with pytest.raises(RepositoryUnavailableError, match="database client is not ready"):
            reader.find_events(EventQuery(), 10, deadline=started + 0.2)
        waited = time.monotonic() - started
    assert waited < 1.0
    assert errors  # the build itself failed: nothing else ended the wait
