"""Through the local host over HTTP (issue 13): ``python -m acr_webhook serve`` as a process
of its own, driven by ``concurrency`` clients that each keep one connection alive, next to
direct ``create_item`` of the same documents at the same concurrency (bench/worker.py's floors).

Host and floor rounds alternate. Each host round opens its connections with one warm-up request
each (off the clock), then sends ``events`` new pushes from a shared queue; it counts connection
errors (the connection is then reopened) and answers other than 201, and times each request
from send to the end of the answer.
"""

from __future__ import annotations

import http.client
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from urllib.parse import urlsplit

from acr_webhook.config import Settings
from bench.inprocess import Rows, Workers, rotated
from bench.worker import FUNCTION, REPOSITORIES
from tests.support import payloads
from tests.support.serve import ServeProcess

HOST = "local host over HTTP (`python -m acr_webhook serve`, keep-alive)"


@dataclass(frozen=True)
class HttpFigures:
    events: int
    concurrency: int
    rounds: int
    rows: Rows  # per_round: events per second; latencies: seconds per request
    connection_errors: int
    unexpected_answers: int

    def fastest_floor(self) -> str:
        return max(self.rows.floors(), key=self.rows.median)


@dataclass
class _Tally:
    latencies: list[float]
    connection_errors: int = 0
    unexpected: int = 0


def _bodies(count: int) -> Iterator[bytes]:
    for index in range(count):
        yield payloads.body(
            payloads.with_new_id(payloads.PUSH, repository=f"team/app-{index % REPOSITORIES}")
        )


def _send(connection: http.client.HTTPConnection, target: str, body: bytes, tally: _Tally) -> None:
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    started = time.perf_counter()
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        tally.connection_errors += 1
        connection.close()  # reopened by the next request
        return
    tally.latencies.append(time.perf_counter() - started)
    if response.status != 201:
        tally.unexpected += 1


def _client(
    base: str,
    target: str,
    warmup: bytes,
    work: SimpleQueue[bytes],
    tally: _Tally,
    start: threading.Barrier,
) -> None:
    """One keep-alive connection: a warm-up request off the clock, then bodies from ``work``
    until it is empty."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        _send(connection, target, warmup, _Tally([]))
        start.wait()
        while True:
            try:
                body = work.get_nowait()
            except Empty:
                return
            _send(connection, target, body, tally)
    finally:
        connection.close()


def _host_round(serve: ServeProcess, count: int, concurrency: int) -> tuple[float, _Tally]:
    target = urlsplit(serve.url())
    path = f"{target.path}?{target.query}"
    tallies = [_Tally([]) for _ in range(concurrency)]
    work: SimpleQueue[bytes] = SimpleQueue()
    for body in _bodies(count):
        work.put(body)
    start = threading.Barrier(concurrency + 1)
    threads = [
        threading.Thread(target=_client, args=(serve.base_url, path, warmup, work, mine, start))
        for warmup, mine in zip(_bodies(concurrency), tallies, strict=True)
    ]
    for thread in threads:
        thread.start()
    start.wait()  # every connection open and warm
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    # Each thread kept its own tally; merged here, after they are done.
    tally = _Tally(
        [s for mine in tallies for s in mine.latencies],
        sum(mine.connection_errors for mine in tallies),
        sum(mine.unexpected for mine in tallies),
    )
    return elapsed, tally


def measure_http_host(
    settings: Settings, pool: Workers, events: int, concurrency: int, rounds: int
) -> HttpFigures:
    floors = [name for name in pool.plain.paths if name != FUNCTION]
    rows = Rows()
    errors = unexpected = 0
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as workdir:
        # No telemetry, whatever this shell has set: the floors export nothing either.
        quiet = {"APPLICATIONINSIGHTS_CONNECTION_STRING": ""}
        serve = ServeProcess(settings, Path(workdir), extra_env=quiet)
        try:
            for index in range(rounds):
                for name in rotated([HOST, *floors], index):
                    if name == HOST:
                        elapsed, tally = _host_round(serve, events, concurrency)
                        rows.add(name, events / elapsed, tally.latencies)
                        errors += tally.connection_errors
                        unexpected += tally.unexpected
                    else:
                        command = {"op": "throughput", "path": name, "count": events}
                        answer = pool.plain.ask({**command, "concurrency": concurrency})
                        rows.add(name, events / answer["seconds"], answer["latencies"])
        finally:
            serve.stop()
    return HttpFigures(events, concurrency, rounds, rows, errors, unexpected)
