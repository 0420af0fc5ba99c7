"""A long-lived child process that stands in for the Functions worker: ``python -m bench.worker``.

Configured as the deployed app is, from the environment alone (COSMOS_*, no
local.settings.json in its working directory), with the root logger at INFO through a stand-in
for the Python worker's log handler (each record formatted and queued for the host). It imports
``function_app`` and calls the registered user functions with ``func.HttpRequest`` objects, as
the worker does, and runs the floors (bench/floors.py) in the same process, so the parent
(bench/inprocess.py) can interleave them round by round. With BENCH_TELEMETRY=1 the parent also
sets APPLICATIONINSIGHTS_CONNECTION_STRING to a local sink, so ``function_app`` sets telemetry
up exactly as deployed; the worker only checks that it did.

Protocol: one JSON command per line on stdin, one JSON answer per line on the original stdout
(``sys.stdout`` is pointed at stderr, so nothing else can end up there).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import azure.functions as func

from acr_webhook.config import load_settings
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.telemetry import APP_LOGGER, DecisionTelemetry
from bench import floors
from tests.support import payloads

FUNCTION = "function"
TELEMETRY_ENV = "BENCH_TELEMETRY"
# ACR registries push to many repositories: spread the events over a few partition keys.
REPOSITORIES = 16
WEBHOOK_URL = "http://localhost/api/acr/webhook"
EVENTGRID_URL = "http://localhost/api/acr/eventgrid"
REGISTRY_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bench/providers/"
    "Microsoft.ContainerRegistry/registries/benchregistry"
)
# The worker's handler (azure_functions_worker/dispatcher.py, AsyncLoggingHandler and
# Dispatcher.on_logging) formats each record with logging's default format (the message alone)
# and queues an RpcLog for its gRPC thread to send.
_WORKER_LOG_LEVELS = (
    (logging.CRITICAL, 5),
    (logging.ERROR, 4),
    (logging.WARNING, 3),
    (logging.INFO, 2),
)


class _WorkerLogHandler(logging.Handler):
    """Stands in for the Python worker's log handler on the invocation's thread: formats every
    record, builds the fields of the worker's RpcLog (level, message, category, invocation id)
    and queues them. Sending them is the worker's gRPC thread's work, as is sending each
    invocation's response, so it is left out like the rest of the worker's own traffic: the
    queue is emptied between rounds. Counts records, so the report can say how many log lines
    an event costs."""

    records = 0

    def __init__(self) -> None:
        super().__init__()
        self._invocation = threading.local()
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        message = self.format(record)
        level = next((rpc for floor, rpc in _WORKER_LOG_LEVELS if record.levelno >= floor), 1)
        log: dict[str, Any] = {
            "level": level,
            "message": message,
            "category": record.name,
            "log_category": 0,  # User: what the worker sends for the app's own loggers
        }
        invocation_id = getattr(self._invocation, "invocation_id", None)
        if invocation_id is not None:
            log["invocation_id"] = invocation_id
        self._queue.put_nowait(log)

    def begin_invocation(self, invocation_id: str) -> None:
        """What the worker does on the invocation's thread before it calls the function: the
        records logged there carry this id."""
        self._invocation.invocation_id = invocation_id

    def discard_queued(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()


def _info_logging() -> _WorkerLogHandler:
    handler = _WorkerLogHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _telemetry_handlers() -> list[DecisionTelemetry]:
    return [h for h in logging.getLogger(APP_LOGGER).handlers if isinstance(h, DecisionTelemetry)]


def _telemetry_configured() -> str:
    """What telemetry ``function_app``'s import set up, or why there is none."""
    if _telemetry_handlers():
        return (
            "APPLICATIONINSIGHTS_CONNECTION_STRING set, so `function_app` configured the Azure "
            "Monitor exporters through `acr_webhook.telemetry.configure_telemetry()` as deployed; "
            "its exporters send to a local sink (`bench/sink.py`)"
        )
    raise SystemExit("function_app configured no telemetry with a connection string set")


def _export_pending_telemetry() -> None:
    """Export the round's spans and log records now, on the round's CPU clock: the batch
    processors would otherwise send them later, partly while other rows are being measured.
    Metrics are left to their own interval: their export cost does not grow with events."""
    from opentelemetry import _logs, trace

    # The exporters are built on a thread of their own after the first record (the warm-up's).
    for handler in _telemetry_handlers():
        if not handler.wait_until_exporting(30):
            raise RuntimeError("telemetry exporters not built within 30 s")
    for provider in (trace.get_tracer_provider(), _logs.get_logger_provider()):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush()


def _pushes(count: int) -> list[dict[str, Any]]:
    return [
        payloads.with_new_id(payloads.PUSH, repository=f"team/app-{index % REPOSITORIES}")
        for index in range(count)
    ]


def _document(payload: dict[str, Any]) -> dict[str, Any]:
    return to_document(AcrEvent.model_validate(payload), datetime.now(UTC))


def _request(url: str, body: bytes) -> func.HttpRequest:
    return func.HttpRequest(
        "POST", url, headers={"content-type": "application/json"}, params={}, body=body
    )


def eventgrid_event(data: dict[str, Any]) -> dict[str, Any]:
    """An ACR push in the Event Grid schema, as a system topic delivers it."""
    return {
        "id": data["id"],
        "topic": REGISTRY_ID,
        "subject": f"{data['target']['repository']}:{data['target'].get('tag', '')}",
        "eventType": "Microsoft.ContainerRegistry.ImagePushed",
        "eventTime": datetime.now(UTC).isoformat(),
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


class Worker:
    def __init__(self) -> None:
        self._log = _info_logging()
        import function_app  # configures telemetry when a connection string is set

        self.telemetry = _telemetry_configured() if os.environ.get(TELEMETRY_ENV) == "1" else ""

        functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
        self._webhook = functions["acr_webhook"].get_user_function()
        self._eventgrid = functions["acr_eventgrid"].get_user_function()
        settings = load_settings()
        self._settings = settings
        self._containers = {
            floors.SYNC_DEFAULT: floors.sync_container(settings, tuned=False),
            floors.SYNC_TUNED: floors.sync_container(settings, tuned=True),
        }
        self._async = floors.AsyncFloor(settings) if floors.async_available() else None

    def paths(self) -> list[str]:
        available = [FUNCTION, floors.SYNC_DEFAULT, floors.SYNC_TUNED]
        return available + ([floors.ASYNC] if self._async else [])

    def _calls(self, path: str, count: int) -> list[Callable[[], object]]:
        """One call per new event on ``path``, everything but the call itself prepared."""
        events = _pushes(count)
        if path == FUNCTION:

            def answer(request: func.HttpRequest) -> Callable[[], object]:
                invocation_id = str(uuid.uuid4())

                def call() -> object:
                    self._log.begin_invocation(invocation_id)
                    response = self._webhook(request)
                    response.get_body()  # as the worker does to send it
                    if response.status_code != 201:
                        raise RuntimeError(f"answered {response.status_code}")
                    return response

                return call

            return [answer(_request(WEBHOOK_URL, payloads.body(event))) for event in events]
        container = self._containers[path]

        def write(document: dict[str, Any]) -> Callable[[], object]:
            return lambda: container.create_item(document)

        return [write(_document(event)) for event in events]

    def events(self, path: str, count: int) -> dict[str, Any]:
        """``count`` new events one after another: CPU and wall time of the whole round."""
        if path == floors.ASYNC:
            assert self._async is not None
            documents = [_document(event) for event in _pushes(count)]
            cpu = time.process_time()
            latencies = self._async.sequential(documents)
        else:
            calls = self._calls(path, count)
            self._log.discard_queued()
            records, cpu = self._log.records, time.process_time()
            latencies = [floors.timed(call) for call in calls]
            if path == FUNCTION and self.telemetry:
                _export_pending_telemetry()
            cpu, records = time.process_time() - cpu, self._log.records - records
            return {"cpu": cpu, "latencies": latencies, "log_records": records}
        return {"cpu": time.process_time() - cpu, "latencies": latencies, "log_records": 0}

    def throughput(self, path: str, count: int, concurrency: int) -> dict[str, Any]:
        """``count`` new events on ``concurrency`` threads (tasks, for the async client), after
        one warm-up write per thread."""
        if path == floors.ASYNC:
            assert self._async is not None
            self._async.concurrent([_document(e) for e in _pushes(concurrency)], concurrency)
            documents = [_document(event) for event in _pushes(count)]
            started, cpu = time.perf_counter(), time.process_time()
            latencies = self._async.concurrent(documents, concurrency)
        else:
            floors.threaded(self._calls(path, concurrency), concurrency)
            calls = self._calls(path, count)
            self._log.discard_queued()
            started, cpu = time.perf_counter(), time.process_time()
            latencies = floors.threaded(calls, concurrency)
        return {
            "seconds": time.perf_counter() - started,
            "cpu": time.process_time() - cpu,
            "latencies": latencies,
        }

    def eventgrid(self, count: int) -> dict[str, Any]:
        """One Event Grid batch of ``count`` new pushes through the registered function, then a
        read-back of every event (outside the clock) to prove each was stored."""
        events = _pushes(count)
        body = json.dumps([eventgrid_event(event) for event in events]).encode()
        request = _request(EVENTGRID_URL, body)
        self._log.begin_invocation(str(uuid.uuid4()))
        started = time.perf_counter()
        response = self._eventgrid(request)
        seconds = time.perf_counter() - started
        container = self._containers[floors.SYNC_TUNED]
        stored = sum(
            1
            for event in events
            if container.read_item(event["id"], partition_key=event["target"]["repository"])
        )
        return {
            "seconds": seconds,
            "status": response.status_code,
            "bytes": len(body),
            "stored": stored,
        }

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        operation = command["op"]
        if operation == "hello":
            return {"paths": self.paths(), "telemetry": self.telemetry}
        if operation == "events":
            return self.events(command["path"], command["count"])
        if operation == "throughput":
            return self.throughput(command["path"], command["count"], command["concurrency"])
        if operation == "eventgrid":
            return self.eventgrid(command["count"])
        raise ValueError(f"unknown command {operation!r}")


def main(commands: TextIO, answers: TextIO) -> None:
    worker = Worker()
    for line in commands:
        try:
            answer = worker.handle(json.loads(line))
        except Exception as error:
            answer = {"error": f"{type(error).__name__}: {error}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    protocol = sys.stdout
    sys.stdout = sys.stderr
    main(sys.stdin, protocol)
