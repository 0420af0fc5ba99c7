"""In-process figures through bench/worker.py children: per-event CPU and latency, throughput at
the deployed concurrency and an Event Grid batch, the function path next to its floors.

One worker runs the app as configured by default (logging at INFO); a second, if telemetry can
be configured, runs it with telemetry on. Every round runs each (worker, path) pair once, in an
order that rotates from round to round, so drift on the machine spreads over all of them; a
ratio is taken within each round and the median of the rounds' ratios is reported with their
range.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from acr_webhook.config import Settings
from bench import floors
from bench.sink import Sink, telemetry_sink
from bench.stats import Spread, median, percentile, spread
from bench.worker import FUNCTION, TELEMETRY_ENV
from tests.support.serve import app_environment

TELEMETRY = "function+telemetry"
LABELS = {
    FUNCTION: "function path: `function_app.acr_webhook`, `func.HttpRequest` in, "
    "`func.HttpResponse` out, logging at INFO",
    TELEMETRY: "function path as above, telemetry on as deployed (exporting to a local sink)",
    **floors.LABELS,
}


class WorkerError(RuntimeError):
    pass


class WorkerProcess:
    """One bench/worker.py child and its command channel."""

    def __init__(self, settings: Settings, workdir: str, telemetry: dict[str, str] | None) -> None:
        """``telemetry``: the settings that turn it on (bench/sink.py), or None for off."""
        env = app_environment(settings, "APPLICATIONINSIGHTS_")
        env.update({TELEMETRY_ENV: "1" if telemetry else "0"}, **(telemetry or {}))
        env["TMPDIR"] = workdir  # where the exporters keep unsent telemetry: removed afterwards
        # Closed in close(): it outlives this method, as the process does.
        self._stderr: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker"],
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        hello = self.ask({"op": "hello"})
        self.paths: list[str] = hello["paths"]
        self.telemetry: str = hello["telemetry"]

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.write(json.dumps(command) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(timeout=10)
            self._stderr.seek(0)
            raise WorkerError(f"worker exited: {self._stderr.read()[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise WorkerError(f"worker failed {command}: {answer['error']}")
        return answer

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout:
            self._process.stdout.close()
        self._stderr.close()


@dataclass
class Workers:
    plain: WorkerProcess
    telemetry: WorkerProcess | None
    telemetry_note: str  # what telemetry setup was used, or why it was not measured
    sink: Sink  # where the telemetry worker exports to

    def jobs(self) -> list[tuple[str, WorkerProcess, str]]:
        """(row name, worker, path) for every row measured in a round."""
        rows = [(path, self.plain, path) for path in self.plain.paths]
        if self.telemetry:
            rows.append((TELEMETRY, self.telemetry, FUNCTION))
        return rows

    @property
    def async_note(self) -> str:
        return "" if floors.ASYNC in self.plain.paths else floors.AIOHTTP_MISSING


@contextmanager
def workers(settings: Settings) -> Iterator[Workers]:
    with ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-worker-"))
        sink = stack.enter_context(telemetry_sink())
        plain = WorkerProcess(settings, workdir, telemetry=None)
        stack.callback(plain.close)
        telemetry: WorkerProcess | None = None
        try:
            telemetry = WorkerProcess(settings, workdir, telemetry=sink.environment)
        except WorkerError as error:
            note = f"not measured: {str(error).strip().splitlines()[-1]}"
        else:
            stack.callback(telemetry.close)
            note = telemetry.telemetry
        yield Workers(plain, telemetry, note, sink)


def rotated(items: Sequence[Any], index: int) -> list[Any]:
    shift = index % len(items)
    return [*items[shift:], *items[:shift]]


@dataclass
class Rows:
    """Per row name, one figure per round (and every latency of every round)."""

    per_round: dict[str, list[float]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, figure: float, latencies: Sequence[float]) -> None:
        self.per_round.setdefault(name, []).append(figure)
        self.latencies.setdefault(name, []).extend(latencies)

    def median(self, name: str) -> float:
        return median(self.per_round[name])

    def spread(self, name: str) -> Spread:
        return spread(self.per_round[name])

    def latency(self, name: str, fraction: float) -> float:
        return percentile(self.latencies[name], fraction)

    def floors(self) -> list[str]:
        return [name for name in floors.FLOORS if name in self.per_round]

    def ratios(self, name: str, floor: str) -> Spread:
        """``name`` over ``floor``, round by round."""
        pairs = zip(self.per_round[name], self.per_round[floor], strict=True)
        return spread([mine / theirs for mine, theirs in pairs])


@dataclass(frozen=True)
class PerEventFigures:
    events: int
    rounds: int
    rows: Rows  # per_round: CPU seconds per event; latencies: seconds per event
    log_records_per_event: float  # formatted at INFO on the function path (no telemetry)

    def fastest_floor(self) -> str:
        return min(self.rows.floors(), key=self.rows.median)


@dataclass(frozen=True)
class ThroughputFigures:
    events: int
    concurrency: int
    rounds: int
    rows: Rows  # per_round: events per second; latencies: seconds per event
    cpu: Rows  # per_round: the process's CPU seconds per event at this concurrency

    def fastest_floor(self) -> str:
        return max(self.rows.floors(), key=self.rows.median)


def measure_per_event(pool: Workers, events: int, rounds: int) -> PerEventFigures:
    """Sequential new events on each row, ``rounds`` interleaved rounds after a warm-up."""
    jobs = pool.jobs()
    for _, worker, path in jobs:
        worker.ask({"op": "events", "path": path, "count": max(10, events // 10)})
    rows = Rows()
    records = 0
    for index in range(rounds):
        for name, worker, path in rotated(jobs, index):
            answer = worker.ask({"op": "events", "path": path, "count": events})
            rows.add(name, answer["cpu"] / events, answer["latencies"])
            records += answer["log_records"] if name == FUNCTION else 0
    return PerEventFigures(events, rounds, rows, records / (events * rounds))


def measure_throughput(
    pool: Workers, events: int, concurrency: int, rounds: int
) -> ThroughputFigures:
    """``events`` new events at ``concurrency`` on each row (telemetry's left out: its target is
    per-event CPU), ``rounds`` interleaved rounds."""
    jobs = [job for job in pool.jobs() if job[0] != TELEMETRY]
    rows, cpu = Rows(), Rows()
    for index in range(rounds):
        for name, worker, path in rotated(jobs, index):
            command = {"op": "throughput", "path": path, "count": events}
            answer = worker.ask({**command, "concurrency": concurrency})
            rows.add(name, events / answer["seconds"], answer["latencies"])
            cpu.add(name, answer["cpu"] / events, [])
    return ThroughputFigures(events, concurrency, rounds, rows, cpu)


@dataclass(frozen=True)
class EventGridFigures:
    events: int
    body_bytes: int
    seconds: list[float]  # one batch per round

    @property
    def median(self) -> float:
        return median(self.seconds)


def measure_eventgrid(pool: Workers, events: int, rounds: int) -> EventGridFigures:
    seconds, body_bytes = [], 0
    for _ in range(rounds):
        answer = pool.plain.ask({"op": "eventgrid", "count": events})
        if answer["status"] != 200 or answer["stored"] != events:
            raise WorkerError(
                f"Event Grid batch answered {answer['status']} with "
                f"{answer['stored']} of {events} events stored"
            )
        seconds.append(answer["seconds"])
        body_bytes = answer["bytes"]
    return EventGridFigures(events, body_bytes, seconds)
