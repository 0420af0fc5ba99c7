"""A graceful stop: ``python -m acr_webhook serve`` sent SIGTERM while events are in flight, as
Azure signals an instance it stops (a scale-in, a platform update; test_crash_e2e.py covers the
SIGKILL that ends it when the grace runs out, or at once on a deployment).

What Azure documents, for comparison (learn.microsoft.com/azure/azure-functions/...): a
deployment on Flex Consumption restarts every instance with the default site update strategy
(Recreate, which infra/modules/function-app.bicep leaves as it is) and in-progress executions
are "forcefully terminated" (flex-consumption-site-updates); a scale-in drains an instance,
letting executions finish for up to 60 minutes, a platform update for up to 10
(functions-scale, "Function app timeout duration"); an HTTP execution answers within 230 s.
The Python worker has no part in it: it handles neither the host's WorkerTerminate nor
InvocationCancel (azure-functions-python-worker, dispatcher.py ignores both), so the Functions
host's drain decides what finishes.

The local host (acr_webhook/local/host.py serve) stops accepting, gives requests in flight
STOP_GRACE_S to be answered, closes every connection once its answer is sent, then stops the
queue trigger and the timer, each after the call in progress (background.STOP_WAIT_S). Each
test holds one write at the Cosmos DB proxy (tests/support/holds.py, ``then_pass``) so that the
signal comes at a fixed point, then lets it through.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import azure.functions as func
import requests

from acr_webhook.config import QueueSettings, Settings
from acr_webhook.fallback import StorageQueueFallback, create_queue_client
from acr_webhook.local.background import STOP_WAIT_S
from acr_webhook.local.timers import TimerRunner, timer_functions
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.results import utc_now
from tests.e2e.test_chaos_e2e import replace_endpoint
from tests.e2e.test_crash_e2e import (
    DOCUMENT_WRITE,
    SHORT_LEASE_S,
    depth,
    parked_ids,
    patched,
    post_in_background,
    storage_of,
    stored_ids,
)
from tests.e2e.test_multi_instance_e2e import wait_until
from tests.support import payloads
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.holds import Hold
from tests.support.serve import ServeProcess
from tests.unit.test_eventgrid import event_grid

SHUTTING_DOWN = "received SIGTERM, shutting down"
EVENT_GRID_HEADERS = {"aeg-event-type": "Notification", "Content-Type": "application/json"}
# After the log line that says the signal arrived, the stop itself begins within milliseconds
# (host.serve); this leaves that step a wide margin on a loaded machine.
STOP_STARTED_S = 0.3
# How long an Event Grid batch is throttled after the signal: a second past the local host's
# grace before it covered the longest route's budget (5 s, when the batch lost its answer), a
# fixed figure so that the grace (host.STOP_GRACE_S, 21 s) does not make the test longer.
THROTTLED_AFTER_SIGNAL_S = 6.0


def signalled(served: ServeProcess) -> float:
    """SIGTERM sent and seen by serve (logged); returns when it was sent (time.monotonic).
    A held write is released soon after: the app's client gives up on it after 2 s."""
    sent = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    served.wait_for_output(SHUTTING_DOWN)
    return sent


def exit_code(served: ServeProcess) -> int:
    """serve's exit code, once it exits by itself: no second signal (ServeProcess.stop)."""
    try:
        return served.process.wait(timeout=30)
    finally:
        served.stop(signal.SIGKILL)  # drains its output; a no-op once it has exited


def answered_or_not_stored(outcome: list[Any], event_id: str, settings: Settings) -> None:
    """A request sent once the stop began: refused without storing anything (what the local
    host does) or, had it been taken before the stop, answered 2xx and stored. Never stored
    with no answer, which ACR counts as failed though the event is there."""
    wait_until(lambda: bool(outcome), 15, "the late request to end")
    stored = event_id in stored_ids(settings)
    if isinstance(outcome[0], int):
        assert 200 <= outcome[0] < 300 and stored, (outcome, stored)
    else:
        assert not stored, outcome


def keepalive_post_in_background(session: requests.Session, url: str, body: bytes) -> list[Any]:
    """post_in_background on an open keep-alive connection (``session``'s)."""
    outcome: list[Any] = []

    def send() -> None:
        try:
            outcome.append(session.post(url, data=body, timeout=20).status_code)
        except requests.RequestException as error:
            outcome.append(type(error).__name__)

    threading.Thread(target=send, daemon=True).start()
    return outcome


def test_a_webhook_in_flight_at_sigterm_is_answered_and_later_requests_store_nothing(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy, tmp_path: Path
) -> None:
    """The held write outlives the signal: serve waits for it and sends the 201 before it
    exits (0). A request on a new connection or on an open keep-alive one after the stop
    began gets no answer (the connection ends) and stores nothing; ACR's history has it for
    reconcile, as for any failed delivery (docs/delivery.md)."""
    served = ServeProcess(replace_endpoint(cosmos_settings, proxy), tmp_path)
    session = requests.Session()
    warm = payloads.with_new_id(payloads.PUSH, tag="warm")  # builds the database client
    assert session.post(served.url(), data=payloads.body(warm), timeout=10).status_code == 201
    hold = Hold(DOCUMENT_WRITE, then_pass=True)
    proxy.holds = [hold]
    in_flight = payloads.with_new_id(payloads.PUSH, tag="in-flight")
    answer = post_in_background(served.url(), payloads.body(in_flight))
    hold.wait()

    sent = signalled(served)
    time.sleep(STOP_STARTED_S)
    late = payloads.with_new_id(payloads.PUSH, tag="late")
    late_answer = post_in_background(served.url(), payloads.body(late))
    kept = payloads.with_new_id(payloads.PUSH, tag="keep-alive")
    kept_answer = keepalive_post_in_background(session, served.url(), payloads.body(kept))
    time.sleep(0.2)  # for both to reach the host
    assert served.process.poll() is None, "serve exited with a request in flight"
    hold.release()
    code = exit_code(served)
    print(f"\nserve exited {time.monotonic() - sent:.2f} s after SIGTERM: {code}")

    assert code == 0, served.output()
    assert answer == [201]
    assert in_flight["id"] in stored_ids(cosmos_settings)
    answered_or_not_stored(late_answer, late["id"], cosmos_settings)
    answered_or_not_stored(kept_answer, kept["id"], cosmos_settings)
    print(f"after the stop began: new connection {late_answer}, keep-alive {kept_answer}")
    session.close()


def test_an_event_grid_batch_half_written_at_sigterm_is_answered_whole(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy, tmp_path: Path
) -> None:
    """10 events written concurrently, 4 applied and 6 held when the signal comes: the batch
    finishes and Event Grid hears 200 for all 10, so it redelivers nothing."""
    served = ServeProcess(replace_endpoint(cosmos_settings, proxy), tmp_path)
    url = served.url("acr/eventgrid")
    warm = payloads.body([event_grid(payloads.with_new_id(payloads.PUSH, tag="warm"))])
    assert requests.post(url, data=warm, headers=EVENT_GRID_HEADERS, timeout=10).status_code == 200
    events = [payloads.with_new_id(payloads.PUSH, tag=f"batch-{n}") for n in range(10)]
    hold = Hold(DOCUMENT_WRITE, skip=4, then_pass=True)
    proxy.holds = [hold]
    answer = post_in_background(
        url, payloads.body([event_grid(event) for event in events]), **EVENT_GRID_HEADERS
    )
    hold.wait(held=6, passed=4)

    signalled(served)
    assert served.process.poll() is None, "serve exited with a batch in flight"
    hold.release()
    code = exit_code(served)

    assert code == 0, served.output()
    assert answer == [200]
    assert {event["id"] for event in events} <= set(stored_ids(cosmos_settings))
    assert "recorded=10 duplicate=0 ignored=0" in served.output()


def test_an_event_grid_batch_slower_than_the_grace_is_answered_before_serve_exits(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy, tmp_path: Path
) -> None:
    """Cosmos DB throttles every write until a second past the local host's grace
    (THROTTLED_AFTER_SIGNAL_S); then the writes go through. The batch should be answered
    (any status: Event Grid retries what is not 200) before serve exits."""
    served = ServeProcess(replace_endpoint(cosmos_settings, proxy), tmp_path)
    url = served.url("acr/eventgrid")
    warm = payloads.body([event_grid(payloads.with_new_id(payloads.PUSH, tag="warm"))])
    assert requests.post(url, data=warm, headers=EVENT_GRID_HEADERS, timeout=10).status_code == 200
    events = [payloads.with_new_id(payloads.PUSH, tag=f"slow-{n}") for n in range(4)]
    proxy.throttle_always = True
    answer = post_in_background(
        url, payloads.body([event_grid(event) for event in events]), **EVENT_GRID_HEADERS
    )
    wait_until(lambda: proxy.throttled >= len(events), 10, "every write to be throttled")

    sent = signalled(served)
    time.sleep(max(0.0, sent + THROTTLED_AFTER_SIGNAL_S - time.monotonic()))
    proxy.throttle_always = False
    code = exit_code(served)
    wait_until(lambda: bool(answer), 10, "the batch's client to hear the end")
    print(f"\nserve exited {time.monotonic() - sent:.2f} s after SIGTERM; batch: {answer}")

    assert code == 0, served.output()
    assert isinstance(answer[0], int), answer


def test_a_replay_in_progress_at_sigterm_finishes_and_the_rest_of_its_batch_comes_back(
    cosmos_settings: Settings,
    proxy: FaultyCosmosProxy,
    queues: QueueSettings,
    tmp_path: Path,
) -> None:
    """Two parked events, received in one batch; the first one's write is held when the
    signal comes. Its replay finishes and its message is deleted; the second, received but
    never handed to the function, stays leased and comes back when the lease ends (30 s here,
    2 s in this test), as a delivery counted (dequeue count 1), with nothing in the poison
    queue. README: "A replay cut off by its instance stopping ... counts as a try too"."""
    events = [payloads.with_new_id(payloads.PUSH, tag=f"parked-{n}") for n in range(2)]
    parking = StorageQueueFallback(queues)
    for event in events:
        parking.put(to_document(AcrEvent.model_validate(event), received_at=utc_now()))
    hold = Hold(DOCUMENT_WRITE, then_pass=True)
    proxy.holds = [hold]
    served = ServeProcess(
        replace_endpoint(cosmos_settings, proxy),
        tmp_path,
        extra_env=storage_of(queues),
        launcher=patched(f"acr_webhook.local.queues.LEASE_SECONDS={SHORT_LEASE_S}"),
    )
    hold.wait()

    signalled(served)
    assert served.process.poll() is None, "serve exited with a replay in progress"
    hold.release()
    code = exit_code(served)

    assert code == 0, served.output()
    [replayed] = stored_ids(cosmos_settings)
    assert served.output().count("replayed from fallback queue: recorded") == 1
    wait_until(lambda: depth(queues) == (1, 1), 10, "the unhandled message's lease to end")
    [left] = create_queue_client(queues, {}).peek_messages()
    assert parked_ids(queues) == [next(e["id"] for e in events if e["id"] != replayed)]
    assert left.dequeue_count == 1  # delivered once, never called
    assert depth(queues.poison) == (0, 0)


def test_a_timer_run_in_progress_is_waited_for_by_stop() -> None:
    """serve stops its timers after its HTTP server: stop() returns once the run in progress
    ends (reconcile is idempotent, so a run longer than STOP_WAIT_S, cut when the process
    exits, is finished by the next one: test_crash_e2e.py)."""
    app = func.FunctionApp()
    running, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    @app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
    def long_run(timer: func.TimerRequest) -> None:
        running.set()
        release.wait(STOP_WAIT_S)
        finished.append(True)

    [function] = timer_functions(app)
    runner = TimerRunner(function, function.schedule)
    runner.start()
    assert running.wait(10)
    stopping = threading.Thread(target=runner.stop)
    stopping.start()
    stopping.join(0.3)
    assert stopping.is_alive() and not finished  # stop() waits for the run
    release.set()
    stopping.join(10)
    assert not stopping.is_alive() and finished == [True]
