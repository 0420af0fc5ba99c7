"""The database client, built by the first request that needs it (repository._LazyContainer):
requests that arrive meanwhile wait for that build within their own bounds, are woken once the
container is stored, and answer with the build's failure.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError

from acr_webhook import repository as repository_module
from acr_webhook.config import Settings
from acr_webhook.models import EventQuery
from acr_webhook.repository import (
    CLIENT_TIMEOUTS,
    EVENTGRID_WRITE_OPTIONS,
    QUERY_TIMEOUTS,
    CosmosEventRepository,
    DatabaseHealth,
    _LazyContainer,
)
from acr_webhook.store import RepositoryUnavailableError
from tests.support.fakes import client_build_under_way
from tests.unit.test_database_health import RecordingClient, RecordingContainer

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


# --- repository._LazyContainer: waiters woken once the container is stored ----------------------


class _WatchedBuild:
    """create_cosmos_client for one _LazyContainer: records what a waiter woken by the build's
    event would read, at the moment it is woken."""

    def __init__(self, lazy: _LazyContainer, outcome: RecordingClient | Exception) -> None:
        self._lazy, self._outcome = lazy, outcome
        self.events: list[threading.Event] = []
        self.read_when_woken: list[object] = []

    def __call__(self, *_: object, **__: object) -> RecordingClient:
        building = self._lazy._build_done
        assert building is not None  # claimed before the build starts, so others wait for it
        self.events.append(building)
        wake = building.set

        def set_and_watch() -> None:
            self.read_when_woken.append(self._lazy._container)
            wake()

        building.set = set_and_watch  # type: ignore[method-assign]
        if isinstance(self._outcome, Exception):
            raise self._outcome
        return self._outcome


def test_a_build_wakes_its_waiters_once_the_container_is_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """repository._LazyContainer._build: "before the waiters are woken: they read it at once";
    ``building`` "is set once it is built". Kills: the event set before the container is
    stored (a waiter reads None: "not ready"), and the event never set (every waiter waits its
    whole bound)."""
    lazy = _LazyContainer(SETTINGS, dict(CLIENT_TIMEOUTS), DatabaseHealth())
    container = RecordingContainer()
    build = _WatchedBuild(lazy, RecordingClient(container))
    monkeypatch.setattr(repository_module, "create_cosmos_client", build)
    got: object = lazy.get(deadline=time.monotonic() + 60)
    assert got is container
    [event] = build.events
    assert event.is_set()
    assert build.read_when_woken == [container]
    assert lazy._build_done is None


def test_a_failed_build_wakes_its_waiters_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """``building`` "is set once it is built or failed, which ends the waiters' wait", and the
    next request builds again. Kills: the event set on success alone."""
    lazy = _LazyContainer(SETTINGS, dict(CLIENT_TIMEOUTS), DatabaseHealth())
    build = _WatchedBuild(lazy, ServiceRequestError("connection timed out"))
    monkeypatch.setattr(repository_module, "create_cosmos_client", build)
    with pytest.raises(RepositoryUnavailableError):
        lazy.get(deadline=time.monotonic() + 60)
    [event] = build.events
    assert event.is_set()
    assert build.read_when_woken == [None]
    assert lazy._build_done is None


class _BuildUnderWay:
    """Another request's build, found under way: it ends while this request waits for it, with
    ``built`` stored, or with its failure remembered by ``health``."""

    def __init__(
        self, lazy: _LazyContainer, built: object | None, health: DatabaseHealth | None = None
    ) -> None:
        self._lazy, self._built, self._health = lazy, built, health
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if self._built is not None:
            self._lazy._container = self._built  # type: ignore[assignment]
        if self._health is not None:
            self._health.failed("connection timed out")
        return True


@pytest.mark.parametrize("options", [CLIENT_TIMEOUTS, EVENTGRID_WRITE_OPTIONS, QUERY_TIMEOUTS])
def test_a_request_waits_for_another_build_its_clients_timeout_and_one_second_at_most(
    options: dict[str, Any],
) -> None:
    """_LazyContainer: requests that arrive meanwhile wait "for that one build at most (bounded
    by its own ``timeout``)"; a build started that long ago has given up, the second is slack.
    With a deadline far off, that bound decides; the container the build stored is the answer.
    Kills: the `+ 1` dropped, the client's bound ignored for the deadline's, and the waiter
    answering what it read before its wait."""
    lazy = _LazyContainer(SETTINGS, dict(options), DatabaseHealth())
    built: object = RecordingContainer()
    build = _BuildUnderWay(lazy, built)
    lazy._build_done = build  # type: ignore[assignment]
    assert lazy.get(deadline=time.monotonic() + 600) is built
    assert build.waits == [options["timeout"] + 1]


def test_a_request_whose_awaited_build_failed_answers_with_that_failure() -> None:
    """_LazyContainer: "A failed build is remembered in ``health``, so the waiters ... answer at
    once": with its reason, as the request that built answered, not "not ready". Kills: the
    health check after the wait dropped."""
    health = DatabaseHealth()
    lazy = _LazyContainer(SETTINGS, dict(CLIENT_TIMEOUTS), health)
    lazy._build_done = _BuildUnderWay(lazy, None, health)  # type: ignore[assignment]
    with pytest.raises(RepositoryUnavailableError, match=r"moments ago \(connection timed out\)"):
        lazy.get(deadline=time.monotonic() + 60)
