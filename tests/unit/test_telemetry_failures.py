"""A telemetry failure never reaches the code that logs: no OpenTelemetry SDK needed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest

from acr_webhook.handlers import handle_webhook
from acr_webhook.telemetry import APP_LOGGER, DecisionTelemetry
from tests.support import payloads
from tests.support.fakes import FakeEventRepository


class StubPipeline:
    def __init__(self, fails_to_start: bool = False) -> None:
        self.ready = threading.Event()
        self.fails_to_start = fails_to_start

    def start(self) -> None:
        if self.fails_to_start:
            raise RuntimeError("can't start new thread")


class Raising(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("exporter broke")


class Keeping(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[DecisionTelemetry]]:
    """The app logger with only the handlers a test installs, failures reported silently."""
    monkeypatch.setattr(logging, "raiseExceptions", False)  # handleError: no stderr traceback
    logger = logging.getLogger(APP_LOGGER)
    handlers_before, level_before = list(logger.handlers), logger.level
    installed: list[DecisionTelemetry] = []
    logger.handlers[:] = []
    logger.setLevel(logging.INFO)
    try:
        yield installed
    finally:
        logger.handlers[:] = handlers_before
        logger.setLevel(level_before)


def install(installed: list[DecisionTelemetry], pipeline: StubPipeline) -> DecisionTelemetry:
    handler = DecisionTelemetry(cast(Any, pipeline))
    logging.getLogger(APP_LOGGER).addHandler(handler)
    installed.append(handler)
    return handler


def post_push(repository: FakeEventRepository) -> int:
    body = payloads.body(payloads.with_new_id(payloads.PUSH))
    return handle_webhook(body, repository).status


def test_a_failing_export_target_neither_fails_the_request_nor_starves_the_others(
    installed: list[DecisionTelemetry],
) -> None:
    handler = install(installed, StubPipeline())
    kept = Keeping()
    repository = FakeEventRepository()
    assert post_push(repository) == 201  # held until the pipeline exists
    handler.start_exporting((Raising(), kept))
    assert post_push(repository) == 201
    assert len(repository.documents) == 2
    assert [getattr(r, "decision", None) for r in kept.records] == ["recorded", "recorded"]


def test_a_pipeline_that_cannot_start_does_not_fail_the_request(
    installed: list[DecisionTelemetry],
) -> None:
    install(installed, StubPipeline(fails_to_start=True))
    assert post_push(FakeEventRepository()) == 201
