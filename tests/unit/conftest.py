from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import function_app
from acr_webhook import repository
from tests.support.fakes import FakeEventRepository
from tests.support.stepped_calls import SteppedClock


@pytest.fixture(autouse=True)
def _no_local_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Unit tests never read a developer's local.settings.json (it is looked up in the cwd)
    nor its COSMOS_/storage settings from the environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("COSMOS_ENDPOINT", "AzureWebJobsStorage", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def host_in_another_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process runs in UTC+05:30: this machine runs in UTC, where a time read as local time
    passes for UTC."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def app_repository(monkeypatch: pytest.MonkeyPatch) -> FakeEventRepository:
    """function_app's routes with an in-memory store: no fallback queue, no shared secret."""
    fake = FakeEventRepository()
    monkeypatch.setattr(function_app, "event_repository", lambda: fake)
    monkeypatch.setattr(function_app, "event_reader", lambda: fake)
    monkeypatch.setattr(function_app, "fallback_queue", lambda: None)
    monkeypatch.setattr(function_app, "shared_secret", lambda: None)
    return fake


@pytest.fixture
def cli_reader(monkeypatch: pytest.MonkeyPatch) -> FakeEventRepository:
    """The CLI with its settings from the environment (no local.settings.json: the working
    directory is the test's own) and the fake as its Cosmos DB."""
    fake = FakeEventRepository()
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _settings: fake)
    return fake


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> SteppedClock:
    """The repository's monotonic clock, stepped by the test."""
    clock = SteppedClock()
    monkeypatch.setattr(repository, "time", clock)
    return clock


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback listening socket for a test's hand-made server."""
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()
