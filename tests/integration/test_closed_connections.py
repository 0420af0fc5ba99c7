"""A write whose connection the database side closes without an answer.

Servers and load balancers close keep-alive connections that sat idle (the local server after
~5 s, Node.js's default; Azure's outbound path after minutes). A request sent on such a
connection as it closes is answered by nothing: the client sees "Remote end closed connection
without response" (or a reset), the write never reached the database or landed unheard. The
benchmark's 2,000 writes at concurrency 16 met it (stop 36: ServiceResponseError, `Connection
aborted`, on the SDK's default client). Writes are idempotent by event id, so the app sends
the write once more on a new connection, within the same bound, instead of parking the event
and taking the database for unreachable for UNAVAILABLE_MEMORY_S. The fallback queue's put
does the same within QUEUE_BUDGET_S: its second send is the same message, with what is left.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from acr_webhook import fallback as fallback_module
from acr_webhook.config import QueueSettings, Settings
from acr_webhook.fallback import (
    QUEUE_BUDGET_S,
    QUEUE_WAITS,
    StorageQueueFallback,
    create_queue_client,
    decode_message,
)
from acr_webhook.models import AcrEvent, parse_parked, to_document
from acr_webhook.repository import CLIENT_TIMEOUTS, CosmosEventRepository, DatabaseHealth
from acr_webhook.store import FallbackUnavailableError, RepositoryUnavailableError
from tests.conftest import read_all
from tests.support import payloads
from tests.support.azurite import ACCOUNT, LocalAzurite, new_queue, raw_messages
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.holds import Hold
from tests.support.queue_proxy import HoldingQueueProxy

DOCUMENT_WRITE = r"^POST /dbs/[^/]+/colls/[^/]+/docs/?$"


def new_document() -> dict[str, object]:
    event = AcrEvent.model_validate(payloads.with_new_id(payloads.PUSH))
    return to_document(event, datetime.now(UTC))


def closed_without_answer(proxy: FaultyCosmosProxy, after_passing: bool) -> Hold:
    """The next document write's connection is closed without an answer: before the request
    reaches the server, or (``after_passing``) once the server has stored it."""
    hold = Hold(DOCUMENT_WRITE, after_passing=after_passing, limit=1)
    hold.release()  # closed at once, not held
    proxy.holds.append(hold)
    return hold


def warm(repository: CosmosEventRepository) -> None:
    """One write first, so that the faulty one goes out on a kept-alive connection, as after an
    idle spell."""
    assert repository.add(new_document()) is True


@pytest.mark.parametrize("after_passing", [False, True], ids=["not-sent", "stored-unanswered"])
def test_a_write_whose_connection_closed_without_an_answer_is_sent_again_and_stored_once(
    through_proxy: Settings,
    proxy: FaultyCosmosProxy,
    cosmos_settings: Settings,
    after_passing: bool,
) -> None:
    """Closed before the write arrived, the second try stores it; closed once the server had
    stored it, the second try meets the stored document (409): a duplicate. Either way it is
    stored once, within the write's bound, and not remembered as an outage."""
    health = DatabaseHealth()
    repository = CosmosEventRepository(through_proxy, health=health)
    warm(repository)
    hold = closed_without_answer(proxy, after_passing=after_passing)
    document = new_document()
    started = time.monotonic()
    assert repository.add(document) is (not after_passing)
    assert time.monotonic() - started < CLIENT_TIMEOUTS["timeout"]
    assert hold.held == 1
    stored = [d for d in read_all(cosmos_settings) if d["id"] == document["id"]]
    assert len(stored) == 1
    health.check()  # not remembered as an outage: the next write goes to the database


# --- the fallback queue: the same for a parked event --------------------------------------


@pytest.mark.parametrize("after_passing", [False, True], ids=["not-sent", "stored-unanswered"])
def test_a_parked_event_whose_connection_closed_without_an_answer_is_sent_again(
    azurite: LocalAzurite, queue_proxy: HoldingQueueProxy, after_passing: bool
) -> None:
    """The queue is the last resort: a put that fails is a 503, and ACR never sends the event
    again. A second send that lands twice parks the event twice, which replay stores once.
    The put keeps its bound (QUEUE_BUDGET_S), the second send included."""
    queue = new_queue(azurite)
    fallback = StorageQueueFallback(
        QueueSettings(queue.queue_name, connection_string=queue_proxy.connection_string)
    )
    fallback.put(new_document())  # the faulty send goes out on a kept-alive connection
    messages = f"^POST /{ACCOUNT}/{queue.queue_name}/messages$"
    hold = Hold(messages, after_passing=after_passing, limit=1)
    hold.release()
    queue_proxy.holds.append(hold)
    document = new_document()
    started = time.monotonic()
    fallback.put(document)
    assert time.monotonic() - started < QUEUE_BUDGET_S
    assert hold.held == 1
    parked = [parse_parked(decode_message(raw)).document["id"] for raw in raw_messages(queue)]
    assert parked.count(document["id"]) == (2 if after_passing else 1)


def test_the_second_send_waits_only_for_what_is_left_of_the_bound(
    azurite: LocalAzurite, queue_proxy: HoldingQueueProxy
) -> None:
    """The first send's connection is closed after 1.2 s without an answer; the second is
    never answered. The put gives up at QUEUE_BUDGET_S (2.5 s), so the webhook's 4.5 s bound
    holds (with some slack for a loaded machine)."""
    queue = new_queue(azurite)
    fallback = StorageQueueFallback(
        QueueSettings(queue.queue_name, connection_string=queue_proxy.connection_string)
    )
    fallback.put(new_document())
    messages = f"^POST /{ACCOUNT}/{queue.queue_name}/messages$"
    closed_late, never_answered = Hold(messages, limit=1), Hold(messages, limit=1)
    queue_proxy.holds += [closed_late, never_answered]
    timer = threading.Timer(1.2, closed_late.release)
    timer.start()
    started = time.monotonic()
    with pytest.raises(FallbackUnavailableError):
        fallback.put(new_document())
    elapsed = time.monotonic() - started
    timer.join()
    assert (closed_late.held, never_answered.held) == (1, 1)
    # The exact waits of the second send: test_the_second_send_is_the_same_message_... below.
    assert elapsed < QUEUE_BUDGET_S + 0.5, elapsed


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


# --- repository: a write closed late keeps the write's bound ------------------------------------


def test_a_write_closed_late_is_tried_again_within_the_write_bound(
    through_proxy: Settings, proxy: FaultyCosmosProxy
) -> None:
    """README: a write whose connection closes without an answer "is sent once more on a new
    connection within the same bound". The test above closes it
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
