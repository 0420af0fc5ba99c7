"""Mutation audit of stop 36's product changes, the part that needs real servers: the fallback
queue's second send (Azurite, behind a proxy that closes a send without an answer), a write's
second try (the local Cosmos DB server, behind its faulty proxy) and the local server's
keep-alive. Each test names the hand-made mutants it kills that the earlier tests let through;
each asserts what a doc or the code's own comment says. tests/unit/test_session36_mutants.py
holds the rest."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from acr_webhook import fallback as fallback_module
from acr_webhook.config import QueueSettings, Settings
from acr_webhook.fallback import QUEUE_WAITS, StorageQueueFallback, create_queue_client
from acr_webhook.models import parse_parked
from acr_webhook.repository import CLIENT_TIMEOUTS, CosmosEventRepository, DatabaseHealth
from acr_webhook.store import FallbackUnavailableError, RepositoryUnavailableError
from bench.local import local_cosmos_server
from tests.integration.test_closed_connections import DOCUMENT_WRITE, new_document, warm
from tests.integration.test_local_server_keep_alive import closed_after_idle
from tests.support.azurite import ACCOUNT, LocalAzurite, new_queue
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.holds import Hold
from tests.support.queue_proxy import HoldingQueueProxy

# --- fallback.StorageQueueFallback.put: the second send --------------------------------------


class _Readings:
    """fallback.py's monotonic clock: these readings in turn, then the last one again."""

    def __init__(self, *readings: float) -> None:
        self._readings = list(readings)

    def monotonic(self) -> float:
        return self._readings.pop(0) if len(self._readings) > 1 else self._readings[0]


class _Parking:
    """A fallback whose next send's connection the proxy closes without an answer, and the
    sends its queue client makes (the message and the keywords), passed on to Azurite."""

    def __init__(self, queue: QueueSettings, proxy: HoldingQueueProxy) -> None:
        self.queue = queue
        self.fallback = StorageQueueFallback(
            QueueSettings(queue.queue_name, connection_string=proxy.connection_string)
        )
        self.fallback.put(new_document())  # the faulty send goes out on a kept-alive connection
        self.sent: list[tuple[str, dict[str, Any]]] = []
        client = self.fallback._queue()
        send = client.send_message

        def recorded(content: str, **options: Any) -> Any:
            self.sent.append((content, options))
            return send(content, **options)

        client.send_message = recorded  # type: ignore[method-assign,assignment]
        self.closed = Hold(f"^POST /{ACCOUNT}/{queue.queue_name}/messages$", limit=1)
        self.closed.release()  # closed at once
        proxy.holds.append(self.closed)

    def stored(self) -> int:
        """Messages in the queue, visible or not."""
        properties = create_queue_client(self.queue, {}).get_queue_properties()
        return properties.approximate_message_count or 0


@pytest.fixture
def parking(azurite: LocalAzurite, queue_proxy: HoldingQueueProxy) -> _Parking:
    return _Parking(new_queue(azurite), queue_proxy)


def test_the_second_send_is_the_same_message_with_what_is_left_of_the_bound(
    parking: _Parking, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """fallback.put: a send closed without an answer "is sent once more with what is left"
    of QUEUE_BUDGET_S, "a second send included: one connection's wait and one answer's".
    1.8 s in, 0.7 s are left: the second send waits 0.7 s to connect and 0.7 s for an
    answer. It is the same message: a replay's re-park keeps its attempts and its delay. An
    INFO record names the event with its structured fields. Kills: the waits not cut, or only
    one of them; min -> max; QUEUE_BUDGET_S raised or lowered; the second send without its
    delay or with the message made anew (attempts 0); the log record's extra dropped."""
    monkeypatch.setattr(fallback_module, "time", _Readings(100.0, 101.8))
    document = new_document()
    before = parking.stored()
    with caplog.at_level(logging.INFO, logger="acr_webhook.fallback"):
        parking.fallback.put(document, attempts=2, delay_s=60)
    assert parking.closed.held == 1
    waits = [{name: options[name] for name in QUEUE_WAITS} for _, options in parking.sent]
    assert waits == [
        {"connection_timeout": 1, "read_timeout": 1.5},
        {"connection_timeout": pytest.approx(0.7), "read_timeout": pytest.approx(0.7)},
    ]
    assert [options["visibility_timeout"] for _, options in parking.sent] == [60, 60]
    first, second = (content for content, _ in parking.sent)
    assert second == first
    assert parse_parked(second).attempts == 2
    assert parking.stored() == before + 1  # the first never reached it, the second waits 60 s
    records = [r for r in caplog.records if "closed the connection" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.INFO]
    about = {"event_id": document["id"], "action": "push", "repository": "hello-world"}
    assert {name: getattr(records[0], name, None) for name in about} == about


@pytest.mark.parametrize("then", [102.5, 103.0], ids=["bound-just-used-up", "bound-passed"])
def test_no_second_send_once_the_bound_is_used_up(
    parking: _Parking, monkeypatch: pytest.MonkeyPatch, then: float
) -> None:
    """fallback.put "Parks document within QUEUE_BUDGET_S": a send that fails closed without
    an answer once nothing is left of it (2.5 s in, or later) is the put's failure, with no
    second send (which would wait on past ACR's 5 s). Kills: the ``left <= 0`` check dropped,
    ``<=`` -> ``<``."""
    monkeypatch.setattr(fallback_module, "time", _Readings(100.0, then))
    with pytest.raises(FallbackUnavailableError):
        parking.fallback.put(new_document())
    assert parking.closed.held == 1
    assert len(parking.sent) == 1


# --- repository: a write closed late keeps the write's bound -------------------------------


def test_a_write_closed_late_is_tried_again_within_the_write_bound(
    through_proxy: Settings, proxy: FaultyCosmosProxy
) -> None:
    """README: a write whose connection closes without an answer "is sent once more on a new
    connection within the same bound". tests/integration/test_closed_connections.py closes it
    at once; here it is closed 1.2 s in and the second try is never answered: the write fails
    at its ~2 s (CLIENT_TIMEOUTS), not 1.2 s plus a whole read timeout (3.2 s), so the queue
    still has its time inside ACR's 5 s. (The second try's new connection, a TLS handshake,
    comes on top of its wait for an answer: ~2.05 s here, more on a loaded machine.) Kills:
    the second try given the first try's timeouts."""
    repository = CosmosEventRepository(through_proxy, health=DatabaseHealth())
    warm(repository)
    closed_late, never_answered = Hold(DOCUMENT_WRITE, limit=1), Hold(DOCUMENT_WRITE, limit=1)
    proxy.holds += [closed_late, never_answered]
    timer = threading.Timer(1.2, closed_late.release)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(RepositoryUnavailableError):
            repository.add(new_document())
        elapsed = time.monotonic() - started
    finally:
        timer.join()
        never_answered.release()
    assert (closed_late.held, never_answered.held) == (1, 1)
    assert elapsed < CLIENT_TIMEOUTS["timeout"] + 0.5, elapsed


# --- scripts/cosmos-server.js, bench/local.py: how long an idle connection stays ---------


def test_the_keep_alive_setting_is_read_in_seconds() -> None:
    """COSMOS_SERVER_KEEP_ALIVE_S is seconds: a server given 2 s keeps a connection idle for
    1.7 s (test_local_server_keep_alive.py checks that one given 0.5 s closes it within 2 s).
    Node.js closes an idle connection about 1 s after its keepAliveTimeout (measured: 0.15 s
    -> 1.15 s, 2 s -> 3 s, the default 5 s -> 6 s). Kills: the seconds taken as tenths."""
    server = LocalCosmosServer(keep_alive_s=2.0)
    server.start()
    try:
        assert not closed_after_idle(server, idle_s=1.7)
    finally:
        server.close()


def test_the_benchmarks_server_keeps_an_idle_connection_past_nodes_default() -> None:
    """bench/local.py: "connections that sit out the other floors' rounds stay open", 600 s
    where Node.js closes one idle for 5 s (6 s, measured). One idle for 7 s is still open.
    Kills: bench's server started without keep_alive_s, KEEP_ALIVE_S at 5, cosmos-server.js
    capping the setting at Node's default."""
    with local_cosmos_server() as server:
        try:
            assert not closed_after_idle(server, idle_s=7.0)
        finally:
            server.close()
