"""Throughput and latency: N events at concurrency C through the handler and the real Cosmos
repository, next to direct ``create_item`` of the same documents at the same concurrency.

Each run gets a fresh container and a client of its own, built as the app builds it, warmed
with C writes (connections open, the account read) before the clock starts. Handler and floor
runs alternate (which goes first swaps every round); events/s is the median of the rounds,
the ratio the median of the rounds' ratios, p50/p99 are over every event of all rounds of a
kind, each timed from its call to its return.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from acr_webhook.handlers import handle_webhook
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.repository import CosmosEventRepository
from bench.local import container_for
from bench.stats import median, percentile
from tests.conftest import fresh_settings
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer

# ACR registries push to many repositories: spread the events over a few partition keys.
REPOSITORIES = 16


@dataclass(frozen=True)
class RunFigures:
    events_per_s: float
    latencies: list[float]  # seconds per event


@dataclass(frozen=True)
class ThroughputFigures:
    events: int
    concurrency: int
    rounds: int
    runs: dict[str, list[RunFigures]]

    def events_per_s(self, kind: str) -> float:
        return median([run.events_per_s for run in self.runs[kind]])

    def ratio(self) -> float:
        """Handler over floor events/s: the median of each round's pair, which cancels the
        drift other work on the machine causes between rounds."""
        pairs = zip(self.runs["handler"], self.runs["floor"], strict=True)
        return median([handler.events_per_s / floor.events_per_s for handler, floor in pairs])

    def latency(self, kind: str, fraction: float) -> float:
        return percentile([s for run in self.runs[kind] for s in run.latencies], fraction)


def _bodies(count: int) -> list[bytes]:
    return [
        payloads.body(
            payloads.with_new_id(payloads.PUSH, repository=f"team/app-{index % REPOSITORIES}")
        )
        for index in range(count)
    ]


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _run(
    calls: Sequence[Callable[[], object]], warmups: Sequence[Callable[[], object]], concurrency: int
) -> RunFigures:
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda call: call(), warmups))
        started = time.perf_counter()
        latencies = list(pool.map(_timed, calls))
        elapsed = time.perf_counter() - started
    return RunFigures(len(calls) / elapsed, latencies)


def _handler_run(server: LocalCosmosServer, bodies: list[bytes], concurrency: int) -> RunFigures:
    repository = CosmosEventRepository(fresh_settings(server))

    def call(body: bytes) -> Callable[[], object]:
        def send() -> object:
            result = handle_webhook(body, repository)
            if result.status != 201:
                raise RuntimeError(f"handler answered {result.status}: {result.body}")
            return result

        return send

    warmups = [call(body) for body in _bodies(concurrency)]
    return _run([call(body) for body in bodies], warmups, concurrency)


def _floor_run(
    server: LocalCosmosServer, documents: list[dict[str, Any]], concurrency: int
) -> RunFigures:
    container = container_for(fresh_settings(server))

    def call(document: dict[str, Any]) -> Callable[[], object]:
        return lambda: container.create_item(document)

    warmups = [call(_document(body)) for body in _bodies(concurrency)]
    return _run([call(document) for document in documents], warmups, concurrency)


def _document(body: bytes) -> dict[str, Any]:
    return to_document(AcrEvent.model_validate_json(body), datetime.now(UTC))


def measure_throughput(
    server: LocalCosmosServer, events: int, concurrency: int, rounds: int
) -> ThroughputFigures:
    bodies = _bodies(events)
    documents = [_document(body) for body in bodies]
    runs: dict[str, list[RunFigures]] = {"handler": [], "floor": []}
    for index in range(rounds):
        order = ("handler", "floor") if index % 2 == 0 else ("floor", "handler")
        for kind in order:
            if kind == "handler":
                runs[kind].append(_handler_run(server, bodies, concurrency))
            else:
                runs[kind].append(_floor_run(server, documents, concurrency))
    return ThroughputFigures(events, concurrency, rounds, runs)
