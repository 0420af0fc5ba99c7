"""A telemetry failure never reaches the code that logs: no OpenTelemetry SDK needed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from acr_webhook.handlers import handle_webhook
from acr_webhook.telemetry import (
    APP_LOGGER,
    EXPORT_CALL_OPTIONS,
    EXPORTER_LOGGER,
    ITEM_DROP_MESSAGE,
    DecisionTelemetry,
    ItemDropLines,
    _Pipeline,
    _shut_down_within,
    _UnusableConnectionStringError,
)
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


# --- an ingestion that refuses, hangs or throttles (the end-to-end tests: tests/e2e/
# test_telemetry_sink_*_e2e.py) ------------------------------------------------------------


def item_drop(status: int = 400) -> logging.LogRecord:
    item = {"iKey": "00000000-0000-0000-0000-000000000000", "data": {"properties": {"x": 1}}}
    return logging.LogRecord(
        EXPORTER_LOGGER,
        logging.ERROR,
        __file__,
        1,
        ITEM_DROP_MESSAGE,
        (status, "too old", item),
        None,
    )


def test_items_ingestion_refuses_are_one_line_per_interval_without_the_item() -> None:
    now = [100.0]
    lines = ItemDropLines(5.0, clock=lambda: now[0])
    first = item_drop()
    assert lines.filter(first)
    assert first.getMessage() == (
        "Data drop 400: too old (the item is not logged; 0 more dropped since the last line)"
    )
    assert [lines.filter(item_drop()) for _ in range(3)] == [False] * 3
    now[0] += 4.9
    assert not lines.filter(item_drop())
    now[0] += 0.1
    line = item_drop(413)
    assert lines.filter(line)
    assert "00000000" not in line.getMessage()
    assert (
        line.getMessage().startswith("Data drop 413: too old") and "; 4 more" in line.getMessage()
    )
    other = logging.LogRecord(EXPORTER_LOGGER, logging.ERROR, __file__, 1, "Other %s", ("x",), None)
    assert lines.filter(other) and other.getMessage() == "Other x"


def test_each_export_is_sent_once_and_waited_for_10_seconds_at_most() -> None:
    """azure-core's defaults held a hung or throttled export (3 retries, a 300 s read timeout,
    a Retry-After of any length) and with it the process's exit; the exporters keep a failed
    batch on disk and send it again themselves."""
    from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter

    exporter = AzureMonitorLogExporter(
        connection_string="InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=http://127.0.0.1:9/",
        disable_offline_storage=True,
        **EXPORT_CALL_OPTIONS,
    )
    pipeline: Any = exporter.client._client._pipeline
    retry: Any = next(p for p in pipeline._impl_policies if type(p).__name__ == "RetryPolicy")
    assert retry.total_retries == 0
    assert pipeline._transport.connection_config.read_timeout == 10


def test_at_exit_the_providers_flush_at_once_and_are_waited_for_a_bounded_time() -> None:
    started = threading.Event()
    hung = threading.Event()
    flushed: list[str] = []

    class Provider:
        def __init__(self, name: str, hangs: bool) -> None:
            self.name, self.hangs = name, hangs

        def shutdown(self) -> None:
            started.set()
            if self.hangs:
                hung.wait(10)
            flushed.append(self.name)

    waited = time.monotonic()
    _shut_down_within(0.2, [Provider("traces", True), Provider("metrics", False)])
    assert time.monotonic() - waited < 2
    assert flushed == ["metrics"]  # the one behind a hung one was not kept waiting
    hung.set()


def test_each_line_counts_the_items_dropped_since_the_line_before_only() -> None:
    """Kills: the count of items left out not reset after a line (each line then counted every
    item since the first)."""
    now = [0.0]
    lines = ItemDropLines(5.0, clock=lambda: now[0])
    counts = []
    for left_out in (2, 0, 1):
        line = item_drop()
        assert lines.filter(line)
        counts.append(line.getMessage())
        assert [lines.filter(item_drop()) for _ in range(left_out)] == [False] * left_out
        now[0] += 5.0
    assert [c.split("; ")[1].split(" more")[0] for c in counts] == ["0", "2", "0"]


def test_a_provider_after_a_hung_one_is_flushed_and_all_share_one_deadline() -> None:
    """The providers' shutdowns start together and the wait is one deadline for all. Kills:
    each thread started after the one before was joined (a provider behind a hung one started
    only once the deadline had passed, so its telemetry was never sent), and each thread
    joined for the whole time (three hung providers: three times the wait)."""
    hung = threading.Event()
    flushed: list[str] = []

    class Provider:
        def __init__(self, name: str, seconds: float | None) -> None:
            self.name, self.seconds = name, seconds

        def shutdown(self) -> None:
            if self.seconds is None:
                hung.wait(30)
            else:
                time.sleep(self.seconds)
            flushed.append(self.name)

    try:
        _shut_down_within(1.0, [Provider("traces", None), Provider("logs", 0.2)])
        assert flushed == ["logs"]
        waited = time.monotonic()
        _shut_down_within(1.0, [Provider(name, None) for name in ("a", "b", "c")])
        assert time.monotonic() - waited < 2.5  # 3 s and more when each waits its own 1 s
    finally:
        hung.set()


def test_the_exporters_are_built_with_the_export_call_options_a_tests_own_winning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills: EXPORT_CALL_OPTIONS not merged into what the pipeline gives its exporters (the
    constant alone checked above), or merged over the options a caller passes."""
    import azure.monitor.opentelemetry.exporter as exporters

    given: dict[str, Any] = {}

    class Recording:
        def __init__(self, **options: Any) -> None:
            given.update(options)
            raise ValueError("built no further")

    monkeypatch.setattr(exporters, "AzureMonitorTraceExporter", Recording)
    pipeline = _Pipeline(
        {},
        dependencies_per_second=None,
        routine_records_per_second=None,
        span_processors=(),
        log_record_processors=(),
        metric_readers=(),
        exporter_options={"connection_string": "InstrumentationKey=x", "read_timeout": 3},
    )
    with pytest.raises(_UnusableConnectionStringError):
        pipeline._build_exporters()
    assert given == {
        "connection_string": "InstrumentationKey=x",
        "retry_total": 0,
        "read_timeout": 3,
    }
