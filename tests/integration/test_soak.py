"""Soak: a long life squeezed into a few cycles, each measured after a warm-up.

- The app as deployed (function_app's registered functions, runtime's process-wide objects)
  meets outage after outage of a real local Cosmos DB server (frozen: connections accepted,
  nothing answered), parks events in a real Azurite queue, replays them through the local
  host's queue poller and gets their duplicates.
- ``python -m acr_webhook serve`` takes keep-alive and short-lived connections, 4xx and 413
  answers, idle and stalled connections, then Ctrl+C.
- The local queue poller polls an empty and an unreachable queue many times.

What the process holds (descriptors, threads, connections, memory, clients built) must stay
bounded however many cycles follow: anything that grows with them is a leak."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import signal
import socket
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.cosmos
import azure.functions as func
import azure.storage.queue
import pytest
import requests

import function_app
from acr_webhook import runtime
from acr_webhook.config import Settings
from acr_webhook.local.queues import QueueOptions, QueuePoller, queue_functions
from acr_webhook.once import BuiltOnce
from acr_webhook.repository import UNAVAILABLE_MEMORY_S, DatabaseHealth
from tests.conftest import fresh_settings, read_all
from tests.support import payloads
from tests.support.azurite import LocalAzurite, new_queue
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.deployed import deployed_on, post
from tests.support.ingestion import NOTHING_TO_MICROSOFT
from tests.support.resources import (
    Usage,
    app_threads,
    open_fds,
    os_threads,
    rss_bytes,
    tcp_connections,
)
from tests.support.serve import ServeProcess, run_python
from tests.unit.test_eventgrid import event_grid

# Small for CI; the report's long runs set SOAK_CYCLES=20 SOAK_EVENTS=100 by hand.
CYCLES = int(os.environ.get("SOAK_CYCLES", "2"))
EVENTS_PER_PHASE = int(os.environ.get("SOAK_EVENTS", "20"))
# Beyond the warm-up's reading: a descriptor, or connection, of a request still being closed.
SLACK = 4
# Per cycle, of what the app holds (traced Python memory, the test's log capture left out).
MEMORY_GROWTH_LIMIT = 256 * 1024


class Clock:
    """The clock of the app's memory of an outage (5 s): moved on by the test, so that a cycle
    need not wait for it to expire."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = Clock()
FAST = QueueOptions(max_dequeue_count=5, visibility_timeout=0, max_polling_interval=0.2)


class Counted:
    """Counts the instances a class makes (subclass instances included)."""

    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> dict[str, Counted]:
    """How many Cosmos DB and queue clients are constructed."""
    counts = {"cosmos": Counted(), "queue": Counted()}
    cosmos_class = azure.cosmos.CosmosClient
    queue_class = azure.storage.queue.QueueClient

    class CountedCosmos(cosmos_class):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            counts["cosmos"].count += 1
            super().__init__(*args, **kwargs)

    class CountedQueue(queue_class):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            counts["queue"].count += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr("acr_webhook.repository.CosmosClient", CountedCosmos)
    monkeypatch.setattr(azure.storage.queue, "QueueClient", CountedQueue)
    return counts


@pytest.fixture
def app(
    restartable_cosmos_server: LocalCosmosServer,
    azurite: LocalAzurite,
    monkeypatch: pytest.MonkeyPatch,
    built: dict[str, Counted],
) -> Iterator[Settings]:
    """function_app as deployed, with its fallback queue on Azurite and its memory of an
    outage on the test's clock."""
    direct = fresh_settings(restartable_cosmos_server)
    settings = dataclasses.replace(direct, fallback_queue=new_queue(azurite))
    monkeypatch.setattr(runtime, "database_health", BuiltOnce(lambda: DatabaseHealth(clock=CLOCK)))
    with deployed_on(settings, monkeypatch):
        yield settings


def counts(built: dict[str, Counted]) -> dict[str, int]:
    return {name: counted.count for name, counted in built.items()}


# Allocations the measurement leaves out: pytest keeps every log record of the test.
NOT_THE_APP = (
    tracemalloc.Filter(False, "*/logging/__init__.py"),
    tracemalloc.Filter(False, "*/_pytest/*"),
    tracemalloc.Filter(False, tracemalloc.__file__),
)


def app_memory() -> int:
    """Bytes traced since tracemalloc started, but for the test's own log capture."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(NOT_THE_APP)
    return sum(stat.size for stat in snapshot.statistics("filename"))


def usage(settings: Settings, azurite: LocalAzurite) -> Usage:
    gc.collect()
    cosmos_port = int(settings.cosmos_endpoint.rsplit(":", 1)[1].strip("/"))
    return Usage(
        fds=open_fds(),
        threads=len(app_threads()),
        connections={
            "cosmos": tcp_connections(cosmos_port),
            "queue": tcp_connections(azurite.port),
        },
        rss=rss_bytes(),
    )


def test_outage_cycles_keep_resources_bounded(
    app: Settings,
    restartable_cosmos_server: LocalCosmosServer,
    azurite: LocalAzurite,
    built: dict[str, Counted],
) -> None:
    assert app.fallback_queue is not None
    [replay] = [f for f in queue_functions(function_app.app) if f.name == "replay_fallback"]
    poller = QueuePoller(replay, app.fallback_queue, FAST)
    sent: list[str] = []  # the ids of the latest cycle's events

    def send(count: int, expected: set[int]) -> list[dict[str, Any]]:
        events = [payloads.with_new_id(payloads.PUSH, tag=f"t{i}") for i in range(count)]
        for event in events:
            status = function_app.acr_webhook(post(payloads.body(event))).status_code
            assert status in expected, status
        batch = json.dumps([event_grid(payloads.with_new_id(payloads.PUSH))]).encode()
        function_app.acr_eventgrid(post(batch))
        sent.extend(e["id"] for e in events)
        return events

    def drain() -> None:
        for _ in range(200):
            if poller.poll_once() == 0 and poller.poll_once() == 0:
                return
        raise AssertionError("the fallback queue never emptied")

    def cycle(number: int) -> None:
        sent.clear()
        healthy = send(EVENTS_PER_PHASE, {201})
        query = func.HttpRequest("GET", "http://localhost/api/acr/events", body=b"")
        assert function_app.acr_events(query).status_code == 200
        restartable_cosmos_server.freeze()
        try:
            parked = send(EVENTS_PER_PHASE, {202})
        finally:
            restartable_cosmos_server.thaw()
        CLOCK.now += UNAVAILABLE_MEMORY_S
        drain()
        # Duplicates: of events stored directly and of events replayed.
        for event in healthy[:5] + parked[:5]:
            assert function_app.acr_webhook(post(payloads.body(event))).status_code == 200

    tracemalloc.start()
    try:
        cycle(0)  # warm-up: every client built, every pool filled
        warm, warm_built = usage(app, azurite), counts(built)
        first = app_memory()
        readings = []
        for number in range(1, CYCLES + 1):
            cycle(number)
            readings.append((usage(app, azurite), counts(built), app_memory()))
    finally:
        tracemalloc.stop()
    print(f"\nwarm: {warm} built={warm_built}")
    for number, (reading, clients, memory) in enumerate(readings, start=1):
        print(f"cycle {number}: {reading} built={clients} traced={(memory - first) // 1024:+}KiB")
    for reading, clients, _ in readings:
        assert clients == warm_built  # no client built again, for an outage or anything else
        assert reading.fds <= warm.fds + SLACK
        assert reading.threads <= warm.threads
        for server, connections in reading.connections.items():
            assert connections <= warm.connections[server] + SLACK, server
    # What the app holds may grow by the strings pydantic-core caches (a bounded cache).
    assert readings[-1][2] - first < MEMORY_GROWTH_LIMIT * CYCLES
    stored = {d["id"] for d in read_all(app)}
    assert set(sent) <= stored  # the last cycle's events, parked ones included


ROUNDS = int(os.environ.get("SOAK_ROUNDS", "3"))


def one_round(served: ServeProcess) -> None:
    """Keep-alive and short-lived connections, 201/200/400/401/413 answers, connections left
    idle or stalled and dropped by the client."""
    with requests.Session() as session:  # keep-alive
        events = [payloads.with_new_id(payloads.PUSH) for _ in range(10)]
        for event in events + events[:5]:
            answer = session.post(served.url(), data=payloads.body(event), timeout=10)
            assert answer.status_code in (200, 201), answer.text
        assert session.post(served.url(), data=b"{", timeout=10).status_code == 400
        big = b" " * (1024 * 1024 + 1)
        assert session.post(served.url(), data=big, timeout=10).status_code == 413
    for _ in range(10):  # short-lived, a new connection each
        answer = requests.post(
            served.url(key="wrong"), data=b"{}", headers={"Connection": "close"}, timeout=10
        )
        assert answer.status_code == 401
    idle = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(5)]
    for connection in idle[:2]:  # a head whose body never comes
        connection.sendall(b"POST /api/acr/webhook HTTP/1.1\r\nContent-Length: 100\r\n\r\nx")
    for connection in idle:
        connection.close()


def serve_usage(served: ServeProcess) -> tuple[int, int]:
    """The serve process's descriptors and threads, once its closed connections are gone."""
    pid = served.process.pid
    deadline = time.monotonic() + 5
    while tcp_connections(served.port, pid, remote=False) and time.monotonic() < deadline:
        time.sleep(0.05)
    return open_fds(pid), os_threads(pid)


def test_serve_keeps_descriptors_and_threads_bounded_over_many_connections(
    cosmos_settings: Settings, azurite: LocalAzurite, tmp_path: Path
) -> None:
    served = ServeProcess(
        cosmos_settings, tmp_path, extra_env={"AzureWebJobsStorage": azurite.connection_string}
    )
    try:
        served.wait_for_output("queue trigger replay_fallback")
        one_round(served)  # warm-up: the clients, the worker threads
        warm = serve_usage(served)
        readings = []
        for _ in range(ROUNDS):
            one_round(served)
            readings.append(serve_usage(served))
        print(f"\nserve: warm (fds, threads) {warm}, then {readings}")
    finally:
        code = served.stop(signal.SIGINT)  # Ctrl+C
    assert code == 0, served.output()
    for fds, threads in readings:
        assert fds <= warm[0] + SLACK
        assert threads <= warm[1]


WARM_POLLS = 40
MEASURED_POLLS = 100
QUICK_POLLS = QueueOptions(max_dequeue_count=5, visibility_timeout=0, max_polling_interval=0.005)


@pytest.mark.parametrize("queue_state", ["empty", "unreachable"])
def test_the_local_queue_poller_holds_nothing_more_after_many_polls(
    azurite: LocalAzurite, queue_state: str, refusing_port: Callable[[], int]
) -> None:
    queue = new_queue(azurite)
    if queue_state == "unreachable":
        dead = f"http://127.0.0.1:{refusing_port()}/devstoreaccount1"
        queue = dataclasses.replace(
            queue,
            connection_string=azurite.connection_string.replace(
                f"http://127.0.0.1:{azurite.port}/devstoreaccount1", dead
            ),
        )
    [replay] = [f for f in queue_functions(function_app.app) if f.name == "replay_fallback"]
    poller = QueuePoller(replay, queue, QUICK_POLLS)
    polls = 0
    real_poll = poller.poll_once

    def counted_poll() -> int:
        nonlocal polls
        polls += 1
        return real_poll()

    poller.poll_once = counted_poll  # type: ignore[method-assign]

    def after_polls(count: int) -> int:
        """Traced memory once ``count`` polls are done: counted, not timed, so that a busy
        machine (a CI run measured 34 KB warm, then 134 KB more) warms up as far as a quiet one."""
        deadline = time.monotonic() + 30
        while polls < count and time.monotonic() < deadline:
            time.sleep(0.01)
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    before, threads_before = open_fds(), app_threads()
    tracemalloc.start()
    try:
        poller.start()
        warm_memory = after_polls(WARM_POLLS)
        memory = after_polls(WARM_POLLS + MEASURED_POLLS)
    finally:
        tracemalloc.stop()
        poller.stop()
    after = open_fds()
    print(
        f"\n{queue_state}: {polls} polls, traced {warm_memory} -> {memory} B, "
        f"fds {before} -> {after}"
    )
    assert polls >= WARM_POLLS + MEASURED_POLLS
    assert after <= before + 1  # its one pooled connection at most
    assert set(app_threads()) <= set(threads_before)  # its thread ended, and left none
    assert memory - warm_memory < 128 * 1024  # caches of the SDK filling, nothing per poll


# Decision records logged with Application Insights unreachable, in bursts far above the
# export rate: what the process holds after each burst (descriptors, threads, traced memory).
TELEMETRY_SINK_DOWN = """
import gc, json, logging, os, sys, time, tracemalloc
from acr_webhook.telemetry import APP_LOGGER, DecisionTelemetry, configure_telemetry
from tests.support.resources import app_threads, open_fds
assert configure_telemetry(exporter_options={"storage_directory": sys.argv[1]})
log = logging.getLogger("acr_webhook.handlers")
log.setLevel(logging.INFO)
# The first record starts the pipeline's build on its own thread; on a loaded machine a burst
# could end before it does and be taken for the settled state.
log.info("start")
handlers = logging.getLogger(APP_LOGGER).handlers
[exporting] = [h for h in handlers if isinstance(h, DecisionTelemetry)]
assert exporting.wait_until_exporting(timeout=60)
fields = {"route": "webhook", "action": "push", "repository": "r", "store_ms": 1.0}
def burst():
    for i in range(2000):
        log.warning("queued", extra={"decision": "queued", "event_id": str(i), **fields})
        log.info("recorded", extra={"decision": "recorded", "event_id": str(i), **fields})
    time.sleep(0.5)
    gc.collect()
    return [open_fds(), len(app_threads()), tracemalloc.get_traced_memory()[0]]
# Warm-up: the pipeline built, its queues full. The exporters start some of their threads
# only after their first failed exports (a loaded machine takes bursts to get there): measure
# from the first burst that started none.
settled = burst()
for _ in range(6):
    again = burst()
    if again[1] <= settled[1]:
        break
    settled = again
tracemalloc.start()
print(json.dumps([burst() for _ in range(3)]), flush=True)
os._exit(0)  # not the exporters' flush at exit, which waits on the unreachable sink
"""


def test_telemetry_with_its_sink_down_drops_records_instead_of_holding_them(
    tmp_path: Path, refusing_port: Callable[[], int]
) -> None:
    env = {
        **os.environ,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint=http://127.0.0.1:{refusing_port()}/"
        ),
        # The SDK's own usage metrics keep their unsent batches in the temporary directory
        # (/tmp/Microsoft-AzureMonitor-<hash of the working directory>: a new one every run).
        "TMPDIR": str(tmp_path),
        **NOTHING_TO_MICROSOFT,
    }
    result = run_python(["-c", TELEMETRY_SINK_DOWN, str(tmp_path / "offline")], tmp_path, env)
    assert result.returncode == 0, result.stderr
    readings = json.loads(result.stdout.splitlines()[-1])
    print(f"\nsink down: [fds, threads, traced bytes] per burst of 4000 records: {readings}")
    (fds, threads, _), *later = readings
    for later_fds, later_threads, _ in later:
        assert later_fds <= fds + 2
        assert later_threads <= threads
    # The export queues hold 2,048 records each, and a batch may be in flight: a few MiB. Kept
    # records (~1 KiB each) would pass this by the second burst.
    assert all(reading[2] < 8 * 1024 * 1024 for reading in readings)
