"""A write whose connection the database side closes without an answer.

Servers and load balancers close keep-alive connections that sat idle (the local server after
~5 s, Node.js's default; Azure's outbound path after minutes). A request sent on such a
connection as it closes is answered by nothing: the client sees "Remote end closed connection
without response" (or a reset), the write never reached the database or landed unheard. The
benchmark's 2,000 writes at concurrency 16 met it (stop 36: ServiceResponseError, `Connection
aborted`, on the SDK's default client). Writes are idempotent by event id, so the app sends
the write once more on a new connection, within the same bound, instead of parking the event
and taking the database for unreachable for UNAVAILABLE_MEMORY_S.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from acr_webhook.config import QueueSettings, Settings
from acr_webhook.fallback import QUEUE_BUDGET_S, StorageQueueFallback, decode_message
from acr_webhook.models import AcrEvent, parse_parked, to_document
from acr_webhook.repository import CLIENT_TIMEOUTS, CosmosEventRepository, DatabaseHealth
from acr_webhook.store import FallbackUnavailableError
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
    # The exact waits of the second send: test_session36_mutants (integration).
    assert elapsed < QUEUE_BUDGET_S + 0.5, elapsed
