"""Reading the app's decision records back from pytest's log capture."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest

H = TypeVar("H", bound=logging.Handler)

DECISION_FIELDS = ("decision", "route", "event_id", "action", "repository", "reason", "store_ms")


def decisions(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The structured fields of each decision record captured, in order; a field the record
    does not carry is left out."""
    return [
        {key: getattr(record, key) for key in DECISION_FIELDS if hasattr(record, key)}
        for record in caplog.records
        if hasattr(record, "decision")
    ]


@contextmanager
def on_app_logger(handler: H, level: int) -> Iterator[H]:
    """``handler`` on the app's logger at ``level`` for the block, then as it was: records of
    every thread, a batch's writers included."""
    logger = logging.getLogger("acr_webhook")
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


class CountingHandler(logging.Handler):
    """Counts the records it gets, and the decisions among them by name."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records = 0
        self.decisions: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        decision = getattr(record, "decision", None)
        if decision is not None:
            self.decisions[decision] += 1
