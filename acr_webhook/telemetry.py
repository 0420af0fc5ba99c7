"""Telemetry into Application Insights: OpenTelemetry through the Azure Monitor exporters.

Only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (the deployed app). Without it this
module imports nothing beyond the standard library and exports nothing: local runs and tests pay
no cold-start cost for a pipeline they do not use.

What arrives in Application Insights:

- the records of the ``acr_webhook`` loggers, in ``traces``, with the ``extra`` fields of each
  decision (decision, route, event_id, action, repository, reason, store_ms) as custom
  dimensions: every warning and error (rejected, unavailable, queued...) and every record of the
  replay and the reconcile; the routine ones (a new or repeated event recorded on the webhook or
  Event Grid route) sampled at :data:`ROUTINE_RECORDS_PER_SECOND`, each sent one carrying its
  sampling rate (``itemCount`` in Application Insights), as the Functions host samples its own;
- ``acr_webhook.decisions`` (a count per decision and route, exact: every record, sampled or
  not) and ``acr_webhook.store.duration`` (a histogram of ``store_ms``, in ms) in
  ``customMetrics``, made from those same log records by :class:`DecisionMetrics`, so handlers
  carry no telemetry code;
- the Cosmos DB and Storage HTTP calls in ``dependencies``, from azure-core's OpenTelemetry
  tracing, sampled at :data:`DEPENDENCIES_PER_SECOND` (Application Insights scales the counts
  back up). The SDK's method spans around each call are not recorded: each would be a second
  ``InProc`` dependency per call, as costly to export as the call itself and saying nothing more.
  An event's write is sampled before the call (:func:`sdk_call_options`), so that a write that
  will not be recorded is not traced at all.

Measured in situ (bench/worker.py's function path, interleaved, 2 cores): exporting every record
and tracing every write to drop most of them cost ~390 µs of CPU per event, ~40% of the event;
sampled as above, ~65 µs, half of it the store-latency histogram (~20 µs) and the two
sampling decisions (~6 µs each).

Why not ``configure_azure_monitor()`` (the distro): measured here (bench/), it made the cold
start 1.8x its floor and each event 0.6x dearer. It imports and starts what this app does not
use (live metrics, performance counters, instrumentation entry points, a second span per call)
and builds everything before the first event. This module builds the same three exporters with
the OpenTelemetry SDK in two steps:

1. at import, only the app logger's :class:`DecisionTelemetry` handler, which holds records
   until the rest exists;
2. the rest (the exporters, the credential, the resource, the tracer, log and metric providers,
   azure-core tracing: ~100 ms of imports) on a thread started by the first log record, so off
   the first answer's path. The held records are then exported as if the pipeline had been there
   all along; the SDK calls made before it existed (a new instance's first event's, ~0.1 s) are
   not traced: that would take the tracer provider and the resource on the first answer's path
   (~30 ms, most of it imports).
   A process that ends right after its first event waits for that thread before the
   interpreter stops taking thread-pool work, which building the resource needs
   (:meth:`_Pipeline.start`).

Sources relied on:

- learn.microsoft.com/azure/azure-functions/opentelemetry-howto (Python): host.json
  ``"telemetryMode": "OpenTelemetry"``; host.json log filters apply to the host only, the worker
  filters its own logs; Entra ID authentication is configured separately for the host
  (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and the worker.
- azure-monitor-opentelemetry-exporter: ``AzureMonitorTraceExporter`` / ``LogExporter`` /
  ``MetricExporter`` (``connection_string``, ``credential``, ``disable_offline_storage``) and
  ``RateLimitedSampler``, the pieces azure-monitor-opentelemetry 1.8.11 assembles the same way
  (its default: 5 spans a second). :class:`RateLimit` computes its sampling percentage
  (``RateLimitedSamplingPercentage``, a private module of 1.0.0b58) on the monotonic clock;
  the sampling rate travels as
  ``_MS.sampleRate``, which that version's trace exporter turns into the envelope's
  ``sampleRate`` and its log exporter does not (:func:`_sampled_log_exporter` adds it).
- Azure/azure-functions-host#10770 and #11496: with ``telemetryMode`` OpenTelemetry the host
  ignores host.json's ``applicationInsights`` section, sampling included, and samples none of
  its own telemetry; the app bounds what it exports itself.
- Azure/azure-functions-python-worker, workers/azure_functions_worker/dispatcher.py:
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY makes the worker call the distro itself (no
  credential, root logger), so it must stay unset here or everything is exported twice; it
  also sets OTEL_EXPERIMENTAL_RESOURCE_DETECTORS to "azure_functions": that detector is used
  below.
  PYTHON_ENABLE_OPENTELEMETRY alone marks the worker OpenTelemetry-enabled without creating
  the trace-context propagator its sync-invocation path then calls (issue #1881 reports the
  same crash on Python 3.13): see docs/operations.md.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from acr_webhook.config import read_values
from acr_webhook.store import first_line

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter
    from azure.monitor.opentelemetry.exporter._generated.exporter.models import TelemetryItem
    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
    from opentelemetry.trace import Link, SpanKind
    from opentelemetry.trace.span import TraceState
    from opentelemetry.util.types import Attributes

CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
APP_LOGGER = "acr_webhook"
DECISIONS_METRIC = "acr_webhook.decisions"
STORE_DURATION_METRIC = "acr_webhook.store.duration"
# The distro's default rate: bounds the export cost under load (exporting a traced write costs
# about a tenth of the event's CPU, docs/operations.md); each exported one carries its rate.
DEPENDENCIES_PER_SECOND = 5.0
# Routine decision records (a new or repeated event on the routes ACR and Event Grid call) are
# exported at up to this many per second: translating and exporting one costs about a sixth of
# the event's own CPU. Their counts stay exact in customMetrics; each exported one carries its
# sampling rate (itemCount). Every other record (warnings and errors, replays, reconciles) is
# always exported.
ROUTINE_RECORDS_PER_SECOND = 5.0
ROUTINE_DECISIONS = frozenset({"recorded", "duplicate"})
ROUTINE_ROUTES = frozenset({"webhook", "eventgrid"})
# Where the exporters read an item's sampling rate, in percent (azure-monitor-opentelemetry-
# exporter's span attribute; its log exporter is taught the same by _sampled_log_exporter).
SAMPLE_RATE_KEY = "_MS.sampleRate"
# Records logged before the exporters exist (the first event's, normally a handful).
HELD_RECORDS = 10_000
# The pipeline is built on its own thread at the first log record, or this long after start in
# a process that logs nothing (one that only answers reads: its calls are still dependencies).
SETUP_AT_THE_LATEST_SECONDS = 10.0
# A process that exits while that thread is still building waits this long for it at most.
SETUP_AT_EXIT_WAIT_SECONDS = 5.0
# Each export is sent once and waited for 10 s at most: the exporters keep a batch that failed
# on disk and send it again themselves, while azure-core's retries (3, with a 300 s read timeout,
# and as long as a 429's Retry-After asks: an hour) held the export thread and the process's exit.
EXPORT_CALL_OPTIONS: Mapping[str, Any] = {"retry_total": 0, "read_timeout": 10}
# At exit the three providers flush at once, waited for this long in all: a process stops within
# a few seconds whatever the sink does; what is not sent by then is dropped.
EXIT_FLUSH_SECONDS = 2.0
# What the exporter logs, at ERROR, for each item ingestion refuses for good in a batch it
# otherwise took (a 206), with the whole item: its instrumentation key and custom dimensions.
ITEM_DROP_MESSAGE = "Data drop %s: %s %s."
ITEM_DROP_LINE_EVERY_SECONDS = 5.0
EXPORTER_LOGGER = "azure.monitor.opentelemetry.exporter.export._base"

_log = logging.getLogger(__name__)


# Set to warnings: the Azure SDKs log every HTTP request at INFO (4 records per failed Cosmos
# write, 1 per queue write), and urllib3 each request line at DEBUG with its query string: a
# shared access signature, with a SAS connection string. host.json's ``Azure.Core`` level does
# not reach Python loggers, so they are set here.
SDK_LOGGERS = ("azure", "urllib3")


def quiet_sdk_loggers() -> None:
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def lean_log_records() -> None:
    """Log records without the thread and process fields, as the logging HOWTO's
    "Optimization" section suggests when nothing reads them: the worker ships only a record's
    level, logger name and message to the host, and Application Insights has the instance. Each
    event logs its decision, and creating that record is most of what logging costs it: this
    saves ~13 µs of ~1,000 µs of CPU per event (bench/, measured between real writes)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_telemetry(
    environ: Mapping[str, str] | None = None,
    *,
    dependencies_per_second: float | None = DEPENDENCIES_PER_SECOND,
    routine_records_per_second: float | None = ROUTINE_RECORDS_PER_SECOND,
    span_processors: Sequence[SpanProcessor] = (),
    log_record_processors: Sequence[LogRecordProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
    exporter_options: Mapping[str, Any] | None = None,
) -> bool:
    """Set up export to Application Insights if a connection string is configured.

    Returns whether it did. The keywords are for tests: ``dependencies_per_second=None`` records
    every dependency, ``routine_records_per_second=None`` exports every log record; the
    processors and readers are added next to the Azure Monitor exporters; ``exporter_options`` go
    to those exporters unchanged. The app passes none.
    """
    quiet_sdk_loggers()
    lean_log_records()
    values = read_values(environ)
    connection_string = values.get(CONNECTION_STRING_SETTING, "").strip()
    if not connection_string:
        return False
    pipeline = _Pipeline(
        values,
        dependencies_per_second=dependencies_per_second,
        routine_records_per_second=routine_records_per_second,
        span_processors=span_processors,
        log_record_processors=log_record_processors,
        metric_readers=metric_readers,
        exporter_options={"connection_string": connection_string, **(exporter_options or {})},
    )
    install_decision_telemetry(pipeline)
    # Built by the first log record at the latest, off the first answer's path.
    latest = threading.Timer(SETUP_AT_THE_LATEST_SECONDS, pipeline.start)
    latest.daemon = True
    latest.start()
    global _calls_pipeline  # one pipeline per process, as its providers are
    _calls_pipeline = pipeline
    return True


_UNTRACED: Mapping[str, Any] = {"tracing_options": {"enabled": False}}
_NO_OPTIONS: Mapping[str, Any] = {}
_calls_pipeline: _Pipeline | None = None


def sdk_call_options() -> Mapping[str, Any]:
    """Keywords for one Azure SDK call on an event's path (runtime.py gives it to the
    repository): the dependency sampling decided before the call, so that a call that will not
    be recorded is not traced at all (azure-core's ``tracing_options``). Tracing a call only to
    drop it costs ~10% of the call's CPU: the method span, the context switches, the sampler.

    Nothing without telemetry, nor before the exporters exist (azure-core tracing is still off),
    nor when every call is recorded (tests).
    """
    pipeline = _calls_pipeline
    calls = pipeline.calls if pipeline is not None else None
    if calls is None:
        return _NO_OPTIONS
    rate = calls.sample()
    if rate is None:
        return _UNTRACED
    # The rate marks the call as sampled already (DependencySampler) and becomes its itemCount.
    return {"tracing_options": {"attributes": {SAMPLE_RATE_KEY: rate}}}


def managed_identity_credential(values: Mapping[str, str]) -> TokenCredential | None:
    """The app's user-assigned managed identity (AZURE_CLIENT_ID): local authentication is off
    on the Application Insights resource, so ingestion needs a Microsoft Entra token.

    None without AZURE_CLIENT_ID; the exporter then reads APPLICATIONINSIGHTS_AUTHENTICATION_STRING
    itself (``Authorization=AAD`` for a system-assigned identity), or sends the key.
    """
    client_id = values.get("AZURE_CLIENT_ID", "").strip()
    if not client_id:
        return None
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id)


class RateLimit:
    """Keeps up to ``per_second`` items a second, each with the probability the distro's
    ``RateLimitedSampler`` computes: the incoming rate estimated over a window that decays in
    ~0.1 s, the result rounded down to 100/n percent, so each kept item stands for a whole
    number of items. Without that sampler's trace-id hashing: these decisions are made before
    any span exists. Its estimate (``RateLimitedSamplingPercentage``) reads the wall clock: after
    a step back it counted every item as arriving at once and kept ~2 in 30 s, each standing
    for ~1,500. This one reads the monotonic clock."""

    ADAPTATION_S = 0.1

    def __init__(self, per_second: float, clock: Callable[[], float] | None = None) -> None:
        self._per_second = per_second
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._last = self._clock()
        self._window_items = 0.0
        self._window_s = 0.0

    def percentage(self) -> float:
        """The share of items to keep now, in %: 100/n for a whole n, or 0."""
        now = self._clock()
        with self._lock:
            elapsed = now - self._last
            decay = math.exp(-elapsed / self.ADAPTATION_S) if elapsed > 0 else 1.0
            self._window_items = self._window_items * decay + 1
            self._window_s = self._window_s * decay + max(elapsed, 0.0)
            self._last = max(now, self._last)
            share = min(self._window_s * self._per_second / self._window_items, 1.0)
        if share <= 0.0:
            return 0.0
        return 100.0 / math.ceil(1.0 / share)

    def sample(self) -> float | None:
        """None to drop one more item, else keep it: the sampling rate it stands for, in %."""
        rate = self.percentage()
        return rate if random.random() * 100.0 < rate else None  # noqa: S311 (not security)


class DecisionMetrics(logging.Handler):
    """Turns decision log records into metrics: a count per decision and route, and the store
    latency (``store_ms``) as a histogram. Records without a ``decision`` are not counted.

    A record only increments a count kept here (~0.2 µs); the counts are added to the decisions
    counter when the metrics are collected, instead of a counter ``add`` (~5 µs: attribute
    hashing, a lock per reader) on every event. Exact all the same, and in the delta temporality
    the Azure Monitor exporter asks for, only what was decided since the previous collection is
    exported (an observable counter, reporting every decision and route seen so far, would send
    a zero-valued customMetrics row for each of them every minute). Not an observable counter
    reporting only what changed either: its callback does not know which reader collects, so a
    second reader (the tests') would miss what the first one took."""

    def __init__(self, meter_provider: MeterProvider) -> None:
        super().__init__()
        meter = meter_provider.get_meter(APP_LOGGER)
        self._pending: dict[tuple[str, str | None], int] = {}
        self._pending_lock = threading.Lock()
        self._decisions = meter.create_counter(
            DECISIONS_METRIC, unit="{decision}", description="Decisions taken on events"
        )
        # Observes nothing: its callback is how the pending counts are added at the start of
        # every collection, for every reader.
        meter.create_observable_counter(
            f"{DECISIONS_METRIC}.collection", callbacks=[self._add_pending_counts]
        )
        self._store_duration = meter.create_histogram(
            STORE_DURATION_METRIC, unit="ms", description="Time to store an event in Cosmos DB"
        )

    def emit(self, record: logging.LogRecord) -> None:
        decision = getattr(record, "decision", None)
        if not isinstance(decision, str):
            return
        route = getattr(record, "route", None)
        key = (decision, route if isinstance(route, str) else None)
        with self._pending_lock:
            self._pending[key] = self._pending.get(key, 0) + 1
        store_ms = getattr(record, "store_ms", None)
        if isinstance(store_ms, int | float) and not isinstance(store_ms, bool):
            self._store_duration.record(float(store_ms), _decision_attributes(key))

    def _add_pending_counts(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for key, count in pending.items():
            self._decisions.add(count, _decision_attributes(key))
        return ()


def _decision_attributes(key: tuple[str, str | None]) -> dict[str, str]:
    decision, route = key
    return {"decision": decision} if route is None else {"decision": decision, "route": route}


class RoutineSampling(logging.Handler):
    """Passes each record to ``target`` (OpenTelemetry's logging handler), but routine decision
    records (:data:`ROUTINE_DECISIONS` on :data:`ROUTINE_ROUTES`, below WARNING) only as
    ``limit`` allows, each passed one with its sampling rate (:data:`SAMPLE_RATE_KEY`)."""

    def __init__(self, target: logging.Handler, limit: RateLimit) -> None:
        super().__init__()
        self._target = target
        self._limit = limit

    def emit(self, record: logging.LogRecord) -> None:
        if is_routine(record):
            rate = self._limit.sample()
            if rate is None:
                return
            if rate < 100.0:
                # A copy: the same record goes on to the app's other handlers unchanged.
                record = copy.copy(record)
                setattr(record, SAMPLE_RATE_KEY, rate)
        self._target.emit(record)


def is_routine(record: logging.LogRecord) -> bool:
    return (
        record.levelno < logging.WARNING
        and getattr(record, "decision", None) in ROUTINE_DECISIONS
        and getattr(record, "route", None) in ROUTINE_ROUTES
    )


class DecisionTelemetry(logging.Handler):
    """The app logger's one telemetry handler: each record to :class:`DecisionMetrics` and to
    OpenTelemetry's logging handler through :class:`RoutineSampling` (one handler call per
    record instead of two). Until the pipeline is built, records are held (and the build
    started) instead, and then all exported: they are the first event's, a handful."""

    def __init__(self, pipeline: _Pipeline) -> None:
        super().__init__()
        self._pipeline = pipeline
        self._held: deque[logging.LogRecord] = deque(maxlen=HELD_RECORDS)
        self._targets: tuple[logging.Handler, ...] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Runs under the handler's lock (logging.Handler.handle), as does start_exporting.
        if self._targets is None:
            try:
                self._held.append(record)
                self._pipeline.start()
            except Exception:
                self.handleError(record)
            return
        for target in self._targets:
            self._emit_to(target, record)

    def _emit_to(self, target: logging.Handler, record: logging.LogRecord) -> None:
        """As logging.Handler.emit asks: a failure is reported (handleError), never raised into
        the code that logged, where it would turn an event already stored into a 500 (or an
        Event Grid batch into a redelivery); nor does it keep the record from other targets."""
        try:
            target.emit(record)
        except Exception:
            self.handleError(record)

    def start_exporting(
        self,
        targets: tuple[logging.Handler, ...],
        held_targets: tuple[logging.Handler, ...] | None = None,
    ) -> None:
        """Send the held records to ``held_targets`` (default: ``targets``), then every record
        to ``targets``."""
        self.acquire()
        try:
            self._targets = targets
            while self._held:
                record = self._held.popleft()
                for target in targets if held_targets is None else held_targets:
                    self._emit_to(target, record)
        finally:
            self.release()

    def wait_until_exporting(self, timeout: float) -> bool:
        """Whether the pipeline was built (or failed: nothing is then held) within ``timeout``."""
        return self._pipeline.ready.wait(timeout)


def install_decision_telemetry(pipeline: _Pipeline) -> None:
    """Attach :class:`DecisionTelemetry` to the app's logger, once."""
    logger = logging.getLogger(APP_LOGGER)
    if not any(isinstance(handler, DecisionTelemetry) for handler in logger.handlers):
        handler = DecisionTelemetry(pipeline)
        pipeline.add_handler(handler)
        logger.addHandler(handler)


class _UnusableConnectionStringError(Exception):
    """The exporter refused APPLICATIONINSIGHTS_CONNECTION_STRING; the message says why."""


class _Pipeline:
    """The part of the setup built off the first event's path, once, on its own thread."""

    def __init__(
        self,
        values: Mapping[str, str],
        *,
        dependencies_per_second: float | None,
        routine_records_per_second: float | None,
        span_processors: Sequence[SpanProcessor],
        log_record_processors: Sequence[LogRecordProcessor],
        metric_readers: Sequence[MetricReader],
        exporter_options: Mapping[str, Any],
    ) -> None:
        self._values = values
        self._dependencies_per_second = dependencies_per_second
        self._routine_records_per_second = routine_records_per_second
        self._span_processors = span_processors
        self._log_record_processors = log_record_processors
        self._metric_readers = metric_readers
        self._exporter_options = exporter_options
        self._handlers: list[DecisionTelemetry] = []
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        # Imported with the exporters (its package is most of their import time).
        self.calls: RateLimit | None = None

    def add_handler(self, handler: DecisionTelemetry) -> None:
        """``handler`` starts exporting once the pipeline is built."""
        self._handlers.append(handler)

    def start(self) -> None:
        with self._started:
            if self._thread is None:
                # Not a daemon: the process's exit waits for it, so the held telemetry is sent.
                self._thread = threading.Thread(target=self._build, name="telemetry-setup")
                self._thread.start()
                _before_thread_pools_stop(self._wait_at_exit)

    def _wait_at_exit(self) -> None:
        self.ready.wait(SETUP_AT_EXIT_WAIT_SECONDS)

    def _build(self) -> None:
        try:
            self._build_exporters()
        except _UnusableConnectionStringError as error:
            _log.error(  # the exporter's words say it; its stack would say nothing
                "Telemetry export could not be set up: %s is not usable (%s); nothing will be "
                "exported",
                CONNECTION_STRING_SETTING,
                error,
            )
            self._export_nothing()
        except Exception:
            _log.exception("Telemetry export could not be set up; nothing will be exported")
            self._export_nothing()
        finally:
            self.ready.set()

    def _export_nothing(self) -> None:
        for handler in self._handlers:
            handler.start_exporting(())

    def _build_exporters(self) -> None:
        from azure.core.settings import settings as azure_core_settings
        from azure.monitor.opentelemetry.exporter import (
            AzureMonitorLogExporter,
            AzureMonitorMetricExporter,
            AzureMonitorTraceExporter,
        )
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
        from opentelemetry.metrics import set_meter_provider
        from opentelemetry.resource.detector.azure import AzureFunctionsResourceDetector
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import set_tracer_provider

        options = {**EXPORT_CALL_OPTIONS, **self._exporter_options}
        credential = managed_identity_credential(self._values)
        if credential is not None:
            options["credential"] = credential
        try:  # the first exporter reads the connection string: a setting to name, not a bug
            trace_exporter = AzureMonitorTraceExporter(**options)
        except ValueError as error:
            raise _UnusableConnectionStringError(first_line(str(error))) from None
        # The Functions resource (role name = the app's name), as the worker's distro set-up
        # asks for (OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=azure_functions).
        resource = Resource.create().merge(AzureFunctionsResourceDetector().detect())
        calls = None
        if self._dependencies_per_second is not None:
            calls = RateLimit(self._dependencies_per_second)
        tracer_provider = TracerProvider(
            sampler=_dependency_sampler(calls), resource=resource, shutdown_on_exit=False
        )
        for span_processor in self._span_processors:
            tracer_provider.add_span_processor(span_processor)
        tracer_provider.add_span_processor(BatchSpanProcessor(trace_exporter))
        set_tracer_provider(tracer_provider)
        meter_provider = MeterProvider(
            metric_readers=[
                *self._metric_readers,
                PeriodicExportingMetricReader(AzureMonitorMetricExporter(**options)),
            ],
            resource=resource,
            # The Azure Monitor exporter sends no exemplars: not offering each measurement.
            exemplar_filter=AlwaysOffExemplarFilter(),
            shutdown_on_exit=False,
        )
        set_meter_provider(meter_provider)
        logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        for processor in self._log_record_processors:
            logger_provider.add_log_record_processor(processor)
        logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(_sampled_log_exporter(AzureMonitorLogExporter, options))
        )
        set_logger_provider(logger_provider)
        metrics = DecisionMetrics(meter_provider)
        logs = LoggingHandler(logger_provider=logger_provider)
        targets: tuple[logging.Handler, ...] = (metrics, logs)
        if self._routine_records_per_second is not None:
            limit = RateLimit(self._routine_records_per_second)
            targets = (metrics, RoutineSampling(logs, limit))
        for handler in self._handlers:
            handler.start_exporting(targets, held_targets=(metrics, logs))
        self.calls = calls
        # Each provider's own exit hook flushed in turn, each waiting up to 30 s for its exporter.
        atexit.register(
            _shut_down_within,
            EXIT_FLUSH_SECONDS,
            (tracer_provider, meter_provider, logger_provider),
        )
        logging.getLogger(EXPORTER_LOGGER).addFilter(ItemDropLines(ITEM_DROP_LINE_EVERY_SECONDS))
        # Only now: the calls made before (a new instance's first event's) are not recorded.
        # azure-core's own OpenTelemetry tracing (not the azure-core-tracing-opentelemetry plugin
        # the distro sets): it gets its tracer once, not twice per call, and costs less per span.
        azure_core_settings.tracing_enabled = True


def _shut_down_within(seconds: float, providers: Sequence[Any]) -> None:
    """Shut ``providers`` down at once (each exports what it holds) and wait ``seconds`` at most
    for all of them: their exporters' calls can hang on a sink that does not answer."""
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=provider.shutdown, name="telemetry-shutdown", daemon=True)
        for provider in providers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


class ItemDropLines(logging.Filter):
    """The exporter's line per item ingestion refused, made one line per ``every_seconds``
    without the item (its instrumentation key, its record's custom dimensions), counting the
    items dropped since the last line: a batch refused item by item logged hundreds of 1.5 KB
    lines a second."""

    def __init__(self, every_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._every_seconds = every_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._next_line_at = -math.inf
        self._left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != ITEM_DROP_MESSAGE or not isinstance(record.args, tuple):
            return True
        with self._lock:
            now = self._clock()
            if now < self._next_line_at:
                self._left_out += 1
                return False
            self._next_line_at = now + self._every_seconds
            left_out, self._left_out = self._left_out, 0
        status, message = record.args[:2]
        record.msg = (
            "Data drop %s: %s (the item is not logged; %d more dropped since the last line)"
        )
        record.args = (status, message, left_out)
        return True


def _before_thread_pools_stop(callback: Callable[[], None]) -> None:
    """Run ``callback`` when the interpreter starts to exit, before concurrent.futures stops
    taking work: the setup thread builds a Resource on a thread pool (OpenTelemetry's
    Resource.create, also run by importing its log SDK), which refuses work after that point.

    The hook is the one concurrent.futures registers its own stop with (CPython's
    ``threading._register_atexit``, Python 3.9 and later); hooks run last-registered first, so
    registering after importing concurrent.futures.thread puts this one ahead of it. Without the
    hook (another interpreter), a process that exits during the setup loses its held records.
    """
    import concurrent.futures.thread  # noqa: F401  (registers its own hook first)

    register: Callable[[Callable[[], None]], None] | None = getattr(
        threading, "_register_atexit", None
    )
    if register is None:
        return
    with contextlib.suppress(RuntimeError):  # already exiting: too late to wait for anything
        register(callback)


def _sampled_log_exporter(
    base: type[AzureMonitorLogExporter], options: Mapping[str, Any]
) -> AzureMonitorLogExporter:
    """``base`` (the Azure Monitor log exporter) made to send a record's :data:`SAMPLE_RATE_KEY`
    as its envelope's sampling rate, as the trace exporter does for spans (this exporter version
    does not for logs), instead of as a custom dimension."""

    class SampledLogExporter(base):  # type: ignore[valid-type,misc]
        def _log_to_envelope(self, readable_log_record: ReadableLogRecord) -> TelemetryItem:
            envelope: TelemetryItem = super()._log_to_envelope(readable_log_record)
            attributes = readable_log_record.log_record.attributes or {}
            rate = attributes.get(SAMPLE_RATE_KEY)
            if isinstance(rate, float):
                envelope.sample_rate = rate
                data = envelope.data.base_data if envelope.data else None
                properties = getattr(data, "properties", None) or {}
                properties.pop(SAMPLE_RATE_KEY, None)
            return envelope

    return cast("AzureMonitorLogExporter", SampledLogExporter(**options))


def _dependency_sampler(calls: RateLimit | None) -> Sampler:
    """Records the SDK's HTTP calls (client spans: the dependencies) that were sampled before the
    call (:func:`sdk_call_options`) or, for the others, as ``calls`` decides (all of them if
    None), and drops the method spans around them."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    drop = SamplingResult(Decision.DROP)

    class DependencySampler(Sampler):
        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            if kind is not SpanKind.CLIENT:
                return drop
            if calls is None or (attributes and SAMPLE_RATE_KEY in attributes):
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
            # Not the dropped method span's decision: each call is sampled on its own.
            rate = calls.sample()
            if rate is None:
                return drop
            sampled = {**(attributes or {}), SAMPLE_RATE_KEY: rate}
            return SamplingResult(Decision.RECORD_AND_SAMPLE, sampled)

        def get_description(self) -> str:
            return "DependencySampler"

    return DependencySampler()
