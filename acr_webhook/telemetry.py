"""Telemetry into Application Insights: OpenTelemetry through the Azure Monitor exporters.

Only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (the deployed app). Without it this
module imports nothing beyond the standard library and exports nothing: local runs and tests pay
no cold-start cost for a pipeline they do not use.

What arrives in Application Insights:

- every record of the ``acr_webhook`` loggers, in ``traces``, with the ``extra`` fields of each
  decision (decision, route, event_id, action, repository, reason, store_ms) as custom
  dimensions;
- ``acr_webhook.decisions`` (a counter, attributes decision and route) and
  ``acr_webhook.store.duration`` (a histogram of ``store_ms``, in ms) in ``customMetrics``, made
  from those same log records by :class:`DecisionMetrics`, so handlers carry no telemetry code;
- the Cosmos DB and Storage HTTP calls in ``dependencies``, from azure-core's OpenTelemetry
  tracing, sampled at :data:`DEPENDENCIES_PER_SECOND` (Application Insights scales the counts
  back up). The SDK's method spans around each call are not recorded: each would be a second
  ``InProc`` dependency per call, as costly to export as the call itself and saying nothing more.

Why not ``configure_azure_monitor()`` (the distro): measured here (bench/), it made the cold
start 1.8x its floor and each event 0.6x dearer. It imports and starts what this app does not
use (live metrics, performance counters, instrumentation entry points, a second span per call)
and builds everything before the first event. This module builds the same three exporters with
the OpenTelemetry SDK in two steps:

1. at import, only what must exist before the first event so that none of its telemetry is
   lost: the tracer provider that records the SDK's spans (the first Cosmos DB call included),
   exporting through :class:`_ExportWhenReady`, and the app logger's :class:`DecisionTelemetry`
   handler, which holds records until the rest exists;
2. the rest (the exporters, the credential, log and metric providers: ~100 ms of imports) on a
   thread started by the first log record or span export, so off the first answer's path. The
   held records and spans are then exported as if the pipeline had been there all along.

Sources relied on:

- learn.microsoft.com/azure/azure-functions/opentelemetry-howto (Python): host.json
  ``"telemetryMode": "OpenTelemetry"``; host.json log filters apply to the host only, the worker
  filters its own logs; Entra ID authentication is configured separately for the host
  (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and the worker.
- azure-monitor-opentelemetry-exporter: ``AzureMonitorTraceExporter`` / ``LogExporter`` /
  ``MetricExporter`` (``connection_string``, ``credential``, ``disable_offline_storage``) and
  ``RateLimitedSampler``, the pieces azure-monitor-opentelemetry 1.8.11 assembles the same way.
- Azure/azure-functions-python-worker, workers/azure_functions_worker/dispatcher.py:
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY makes the worker call the distro itself (no
  credential, root logger), so it must stay unset here or everything is exported twice; it
  also sets OTEL_EXPERIMENTAL_RESOURCE_DETECTORS to "azure_functions", as done below.
  PYTHON_ENABLE_OPENTELEMETRY alone marks the worker OpenTelemetry-enabled without creating
  the trace-context propagator its sync-invocation path then calls (issue #1881 reports the
  same crash on Python 3.13): see docs/operations.md.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from acr_webhook.config import read_values

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk._logs import LogRecordProcessor
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
    from opentelemetry.trace import Link, SpanKind
    from opentelemetry.trace.span import TraceState
    from opentelemetry.util.types import Attributes

CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
APP_LOGGER = "acr_webhook"
DECISIONS_METRIC = "acr_webhook.decisions"
STORE_DURATION_METRIC = "acr_webhook.store.duration"
# The distro's default rate: bounds the export cost under load (a dependency costs about as much
# CPU to export as a log record); each exported one carries its sampling rate.
DEPENDENCIES_PER_SECOND = 5.0
# Records logged before the exporters exist (the first event's, normally a handful).
HELD_RECORDS = 10_000
# How long an export waits for the exporters to be built (it only waits on a cold process).
SETUP_WAIT_SECONDS = 30.0

_log = logging.getLogger(__name__)


def quiet_azure_sdk_loggers() -> None:
    """The SDKs log every HTTP request at INFO (4 records per failed Cosmos write, 1 per queue
    write); host.json's ``Azure.Core`` level does not reach Python loggers, so set it here."""
    logging.getLogger("azure").setLevel(logging.WARNING)


def configure_telemetry(
    environ: Mapping[str, str] | None = None,
    *,
    dependencies_per_second: float | None = DEPENDENCIES_PER_SECOND,
    span_processors: Sequence[SpanProcessor] = (),
    log_record_processors: Sequence[LogRecordProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
    exporter_options: Mapping[str, Any] | None = None,
) -> bool:
    """Set up export to Application Insights if a connection string is configured.

    Returns whether it did. The keywords are for tests: ``dependencies_per_second=None`` records
    every dependency; the processors and readers are added next to the Azure Monitor exporters;
    ``exporter_options`` go to those exporters unchanged. The app passes none.
    """
    quiet_azure_sdk_loggers()
    values = read_values(environ)
    connection_string = values.get(CONNECTION_STRING_SETTING, "").strip()
    if not connection_string:
        return False
    # Imported only now, and only what the first event's spans need (~30 ms).
    # opentelemetry.sdk._logs too (~4 ms), although only the setup thread uses it: its import
    # builds a default Resource on a thread pool, which fails once the interpreter is shutting
    # down, when that thread may run (in a process that ends right after its first event).
    import opentelemetry.sdk._logs  # noqa: F401
    from azure.core.settings import settings as azure_core_settings
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import set_tracer_provider

    # What the worker sets when it configures the distro: the Functions resource (role name =
    # the app's name) instead of probing for App Service and VM metadata.
    os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_functions")
    resource = Resource.create()
    pipeline = _Pipeline(
        values,
        resource,
        dependencies_per_second=dependencies_per_second,
        log_record_processors=log_record_processors,
        metric_readers=metric_readers,
        exporter_options={"connection_string": connection_string, **(exporter_options or {})},
    )
    tracer_provider = TracerProvider(sampler=_dependency_sampler(pipeline), resource=resource)
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)
    tracer_provider.add_span_processor(BatchSpanProcessor(_export_when_ready(pipeline)))
    set_tracer_provider(tracer_provider)
    # azure-core's own OpenTelemetry tracing (not the azure-core-tracing-opentelemetry plugin
    # the distro sets): it gets its tracer once, not twice per call, and costs less per span.
    azure_core_settings.tracing_enabled = True
    install_decision_telemetry(pipeline)
    return True


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


class DecisionMetrics(logging.Handler):
    """Turns decision log records into metrics: a count per decision and route, and the store
    latency (``store_ms``) as a histogram. Records without a ``decision`` are not counted."""

    def __init__(self, meter_provider: MeterProvider) -> None:
        super().__init__()
        meter = meter_provider.get_meter(APP_LOGGER)
        self._decisions = meter.create_counter(
            DECISIONS_METRIC, unit="{decision}", description="Decisions taken on events"
        )
        self._store_duration = meter.create_histogram(
            STORE_DURATION_METRIC, unit="ms", description="Time to store an event in Cosmos DB"
        )

    def emit(self, record: logging.LogRecord) -> None:
        decision = getattr(record, "decision", None)
        if not isinstance(decision, str):
            return
        attributes = {"decision": decision}
        route = getattr(record, "route", None)
        if isinstance(route, str):
            attributes["route"] = route
        self._decisions.add(1, attributes)
        store_ms = getattr(record, "store_ms", None)
        if isinstance(store_ms, int | float) and not isinstance(store_ms, bool):
            self._store_duration.record(float(store_ms), attributes)


class DecisionTelemetry(logging.Handler):
    """The app logger's one telemetry handler: each record to :class:`DecisionMetrics` and to
    OpenTelemetry's logging handler (one handler call per record instead of two). Until the
    pipeline is built, records are held (and the build started) instead."""

    def __init__(self, pipeline: _Pipeline) -> None:
        super().__init__()
        self._pipeline = pipeline
        self._held: deque[logging.LogRecord] = deque(maxlen=HELD_RECORDS)
        self._targets: tuple[logging.Handler, ...] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Runs under the handler's lock (logging.Handler.handle), as does start_exporting.
        if self._targets is None:
            self._held.append(record)
            self._pipeline.start()
            return
        for target in self._targets:
            target.emit(record)

    def start_exporting(self, targets: tuple[logging.Handler, ...]) -> None:
        """Send the held records, then every record, to ``targets``."""
        self.acquire()
        try:
            self._targets = targets
            while self._held:
                record = self._held.popleft()
                for target in targets:
                    target.emit(record)
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


class _Pipeline:
    """The part of the setup built off the first event's path, once, on its own thread."""

    def __init__(
        self,
        values: Mapping[str, str],
        resource: Resource,
        *,
        dependencies_per_second: float | None,
        log_record_processors: Sequence[LogRecordProcessor],
        metric_readers: Sequence[MetricReader],
        exporter_options: Mapping[str, Any],
    ) -> None:
        self._values = values
        self._resource = resource
        self._dependencies_per_second = dependencies_per_second
        self._log_record_processors = log_record_processors
        self._metric_readers = metric_readers
        self._exporter_options = exporter_options
        self._handlers: list[DecisionTelemetry] = []
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.span_exporter: SpanExporter | None = None
        # Imported with the exporters (its package is most of their import time).
        self.call_sampler: Sampler | None = None

    def add_handler(self, handler: DecisionTelemetry) -> None:
        """``handler`` starts exporting once the pipeline is built."""
        self._handlers.append(handler)

    def start(self) -> None:
        with self._started:
            if self._thread is None:
                # Not a daemon: the process's exit waits for it, so the held telemetry is sent.
                self._thread = threading.Thread(target=self._build, name="telemetry-setup")
                self._thread.start()

    def _build(self) -> None:
        try:
            self._build_exporters()
        except Exception:
            _log.exception("Telemetry export could not be set up; nothing will be exported")
            for handler in self._handlers:
                handler.start_exporting(())
        finally:
            self.ready.set()

    def _build_exporters(self) -> None:
        from azure.monitor.opentelemetry.exporter import (
            AzureMonitorLogExporter,
            AzureMonitorMetricExporter,
            AzureMonitorTraceExporter,
            RateLimitedSampler,
        )
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
        from opentelemetry.metrics import set_meter_provider
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        if self._dependencies_per_second is not None:
            self.call_sampler = RateLimitedSampler(self._dependencies_per_second)
        options = dict(self._exporter_options)
        credential = managed_identity_credential(self._values)
        if credential is not None:
            options["credential"] = credential
        meter_provider = MeterProvider(
            metric_readers=[
                *self._metric_readers,
                PeriodicExportingMetricReader(AzureMonitorMetricExporter(**options)),
            ],
            resource=self._resource,
        )
        set_meter_provider(meter_provider)
        logger_provider = LoggerProvider(resource=self._resource)
        for processor in self._log_record_processors:
            logger_provider.add_log_record_processor(processor)
        logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(AzureMonitorLogExporter(**options))
        )
        set_logger_provider(logger_provider)
        self.span_exporter = AzureMonitorTraceExporter(**options)
        targets = (DecisionMetrics(meter_provider), LoggingHandler(logger_provider=logger_provider))
        for handler in self._handlers:
            handler.start_exporting(targets)


def _export_when_ready(pipeline: _Pipeline) -> SpanExporter:
    """The span exporter the tracer provider starts with: waits for the Azure Monitor one (and
    starts building it), so spans ended before it existed are exported too."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class ExportWhenReady(SpanExporter):
        def _exporter(self) -> SpanExporter | None:
            pipeline.start()
            pipeline.ready.wait(SETUP_WAIT_SECONDS)
            return pipeline.span_exporter

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            exporter = self._exporter()
            return exporter.export(spans) if exporter else SpanExportResult.FAILURE

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            exporter = self._exporter()
            return exporter.force_flush(timeout_millis) if exporter else False

        def shutdown(self) -> None:
            if pipeline.span_exporter is not None:
                pipeline.span_exporter.shutdown()

    return ExportWhenReady()


def _dependency_sampler(pipeline: _Pipeline) -> Sampler:
    """Records the SDK's HTTP calls (client spans: the dependencies) as ``pipeline.call_sampler``
    decides (all of them until it exists), and drops the method spans around them."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, Sampler, SamplingResult
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
            calls = pipeline.call_sampler or ALWAYS_ON
            # Not the dropped method span's decision: each call is sampled on its own.
            return calls.should_sample(None, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return "DependencySampler"

    return DependencySampler()
