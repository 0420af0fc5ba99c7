"""Per-event CPU: one push payload from bytes to Cosmos document, next to ``json.loads``.

CPU time (``time.process_time``) per call, timeit-style: the loop count is sized to about
0.2 s, the loop repeated, the median taken; the garbage collector is off while timing, as in
timeit. The handler runs with a repository that stores nothing, so no I/O is counted.
"""

from __future__ import annotations

import io
import json
import logging
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from acr_webhook.handlers import handle_webhook, parse_json_object
from acr_webhook.models import AcrEvent, to_document
from bench.stats import median
from tests.support import payloads


class NullRepository:
    """Accepts every document and keeps none: the handler's CPU without the write."""

    def add(self, document: dict[str, Any]) -> bool:
        return True


@dataclass(frozen=True)
class CpuFigure:
    name: str
    seconds: float  # CPU seconds per call (median of the repeats)
    floor: bool = False
    detail: bool = False  # a part of the handler's figure, or a variant of it


@dataclass(frozen=True)
class CpuFigures:
    payload_bytes: int
    rows: list[CpuFigure]

    @property
    def handler(self) -> CpuFigure:
        return next(row for row in self.rows if not row.floor and not row.detail)

    @property
    def floor(self) -> CpuFigure:
        return next(row for row in self.rows if row.floor)


def cpu_per_call(function: Callable[[], object], repeats: int) -> float:
    timer = timeit.Timer(function, timer=time.process_time)
    number, _ = timer.autorange()
    return median([total / number for total in timer.repeat(repeats, number)])


@contextmanager
def info_logging() -> Iterator[None]:
    """The app's loggers at INFO into a discarded stream, as a host that keeps INFO would."""
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def measure_cpu(repeats: int = 7) -> CpuFigures:
    body = payloads.body(payloads.PUSH)
    repository = NullRepository()
    payload = json.loads(body)
    event = AcrEvent.model_validate(payload)
    now = datetime.now(UTC)
    result = handle_webhook(body, repository)
    if result.status != 201:
        raise RuntimeError(f"the push payload was answered {result.status}, not 201")

    def handler() -> object:
        return handle_webhook(body, repository)

    figures = [
        CpuFigure("json.loads(body)", cpu_per_call(lambda: json.loads(body), repeats), floor=True),
        CpuFigure("handle_webhook(body) without the write", cpu_per_call(handler, repeats)),
        CpuFigure(
            "  parse_json_object(body)",
            cpu_per_call(lambda: parse_json_object(body), repeats),
            detail=True,
        ),
        CpuFigure(
            "  AcrEvent.model_validate(payload)",
            cpu_per_call(lambda: AcrEvent.model_validate(payload), repeats),
            detail=True,
        ),
        CpuFigure(
            "  to_document(event, now)",
            cpu_per_call(lambda: to_document(event, now), repeats),
            detail=True,
        ),
    ]
    with info_logging():
        figures.append(
            CpuFigure(
                "handle_webhook(body), INFO logging on", cpu_per_call(handler, repeats), detail=True
            )
        )
    return CpuFigures(len(body), figures)
