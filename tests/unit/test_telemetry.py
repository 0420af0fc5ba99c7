"""Telemetry through the real OpenTelemetry SDK and the Azure Monitor exporters: in-memory
exporters beside the Azure Monitor ones, whose envelopes go to a local stand-in for the ingestion
endpoint. Webhook events run against the local Cosmos DB server and Azurite, so the dependencies
are real SDK calls."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import azure.functions as func
import pytest
from azure.core.settings import settings as azure_core_settings
from azure.identity import ManagedIdentityCredential
from azure.monitor.opentelemetry.exporter.export.metrics._exporter import (
    APPLICATION_INSIGHTS_METRIC_TEMPORALITIES,
)
from opentelemetry._logs import get_logger_provider
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.metrics import get_meter_provider
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, get_tracer_provider

import function_app
from acr_webhook import telemetry
from acr_webhook.config import QueueSettings, Settings
from acr_webhook.fallback import StorageQueueFallback
from acr_webhook.handlers import SharedSecret
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.telemetry import (
    APP_LOGGER,
    DECISIONS_METRIC,
    ROUTINE_RECORDS_PER_SECOND,
    SAMPLE_RATE_KEY,
    STORE_DURATION_METRIC,
    DecisionMetrics,
    DecisionTelemetry,
    RateLimit,
    RoutineSampling,
    configure_telemetry,
    managed_identity_credential,
)
from tests.conftest import fresh_settings
from tests.support import payloads
from tests.support.azurite import LocalAzurite, new_queue
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.ingestion import NOTHING_TO_MICROSOFT, Ingestion
from tests.support.serve import run_python

SECRET = "telemetry-test-secret"


@dataclass
class Exported:
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    metrics: InMemoryMetricReader
    ingestion: Ingestion

    def clear(self) -> None:
        self.spans.clear()
        self.logs.clear()

    def decision_logs(self) -> list[dict[str, Any]]:
        # The log exporters are built off the first event's path; its records wait for them.
        assert exporting_handler().wait_until_exporting(timeout=30)
        records: list[ReadableLogRecord] = list(self.logs.get_finished_logs())
        return [
            dict(record.log_record.attributes or {})
            for record in records
            if (record.log_record.attributes or {}).get("decision")
        ]

    def client_spans(self, method: str | None = None) -> list[ReadableSpan]:
        """Outgoing HTTP calls (Application Insights dependencies), of one method if given."""
        return [
            span
            for span in self.spans.get_finished_spans()
            if span.kind is SpanKind.CLIENT
            and method in (None, _attributes(span)["http.request.method"])
        ]

    def decision_counts(self) -> dict[tuple[tuple[str, Any], ...], int]:
        return {
            tuple(sorted(point.attributes.items())): int(point.value)
            for point in _points(self.metrics, DECISIONS_METRIC)
        }


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def exporting_handler() -> DecisionTelemetry:
    [handler] = [
        h for h in logging.getLogger(APP_LOGGER).handlers if isinstance(h, DecisionTelemetry)
    ]
    return handler


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """Telemetry configured once for this module (its providers are process-wide), undone
    afterwards so that later tests in the process export nothing."""
    found = Exported(
        InMemorySpanExporter(),
        InMemoryLogRecordExporter(),  # type: ignore[no-untyped-call]
        InMemoryMetricReader(),
        Ingestion(),
    )
    logger = logging.getLogger(APP_LOGGER)
    handlers_before, level_before = list(logger.handlers), logger.level
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("telemetry"))  # no developer local.settings.json
        # Nor, every minute, the SDK's self-reporting to the stand-in.
        for name, value in NOTHING_TO_MICROSOFT.items():
            patch.setenv(name, value)
        configured = configure_telemetry(
            {"APPLICATIONINSIGHTS_CONNECTION_STRING": found.ingestion.connection_string},
            dependencies_per_second=None,  # every dependency, not 5 per second
            routine_records_per_second=None,  # every log record, not 5 routine ones per second
            span_processors=[SimpleSpanProcessor(found.spans)],
            log_record_processors=[SimpleLogRecordProcessor(found.logs)],
            metric_readers=[found.metrics],
            exporter_options={"disable_offline_storage": True},
        )
        assert configured
        logger.setLevel(logging.INFO)  # the Functions worker's root level
        # The first record starts building the exporters; SDK calls are traced once they exist.
        logger.info("telemetry tests start")
        assert exporting_handler().wait_until_exporting(timeout=30)
        try:
            yield found
        finally:
            azure_core_settings.tracing_enabled.unset_value()
            # Flushed into the stand-in while it listens; the metric reader would otherwise
            # keep exporting every minute.
            cast(TracerProvider, get_tracer_provider()).shutdown()
            cast(LoggerProvider, get_logger_provider()).shutdown()
            cast(MeterProvider, get_meter_provider()).shutdown()
            found.ingestion.close()
            logger.handlers[:] = handlers_before
            logger.setLevel(level_before)


@pytest.fixture
def queue(azurite: LocalAzurite) -> QueueSettings:
    return new_queue(azurite)


def post_webhook(payload: dict[str, Any], secret: str | None = SECRET) -> func.HttpResponse:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    request = func.HttpRequest(
        method="POST", url="/api/acr/webhook", headers=headers, body=payloads.body(payload)
    )
    response: func.HttpResponse = function_app.acr_webhook(request)
    return response


@pytest.fixture
def app_stores(
    monkeypatch: pytest.MonkeyPatch,
    restartable_cosmos_server: LocalCosmosServer,
    queue: QueueSettings,
) -> Settings:
    """function_app's webhook route with the real local stores and a shared secret."""
    settings = fresh_settings(restartable_cosmos_server)
    repository = CosmosEventRepository(settings)
    fallback = StorageQueueFallback(queue)
    monkeypatch.setattr(function_app, "event_repository", lambda: repository)
    monkeypatch.setattr(function_app, "fallback_queue", lambda: fallback)
    monkeypatch.setattr(function_app, "shared_secret", lambda: SharedSecret(SECRET))
    return settings


def test_recorded_queued_and_rejected_events_arrive_with_dimensions_counts_and_dependencies(
    exported: Exported,
    app_stores: Settings,
    restartable_cosmos_server: LocalCosmosServer,
    queue: QueueSettings,
) -> None:
    counts_before = exported.decision_counts()
    cosmos_port = f":{restartable_cosmos_server.port}/"

    # recorded: one write to Cosmos DB
    exported.clear()
    recorded = payloads.with_new_id(payloads.PUSH)
    assert post_webhook(recorded).status_code == 201
    [record] = exported.decision_logs()
    assert record["decision"] == "recorded"
    assert record["route"] == "webhook"
    assert record["event_id"] == recorded["id"]
    assert record["action"] == "push"
    assert record["repository"] == recorded["target"]["repository"]
    assert isinstance(record["store_ms"], float)
    writes = [
        _attributes(span)
        for span in exported.client_spans("POST")
        if cosmos_port in _attributes(span)["url.full"]
    ]
    assert [write["http.response.status_code"] for write in writes] == [201]

    # queued: Cosmos DB does not answer, the event goes to the Storage queue
    exported.clear()
    queued = payloads.with_new_id(payloads.PUSH)
    restartable_cosmos_server.freeze()
    try:
        assert post_webhook(queued).status_code == 202
    finally:
        restartable_cosmos_server.thaw()
    [record] = exported.decision_logs()
    assert (record["decision"], record["route"], record["event_id"]) == (
        "queued",
        "webhook",
        queued["id"],
    )
    assert record["reason"]
    posts = exported.client_spans("POST")
    failed_writes = [s for s in posts if cosmos_port in _attributes(s)["url.full"]]
    assert failed_writes and all(not span.status.is_ok for span in failed_writes)
    sends = [
        _attributes(span)
        for span in posts
        if f"/{queue.queue_name}/messages" in _attributes(span)["url.full"]
    ]
    assert [send["http.response.status_code"] for send in sends] == [201]

    # rejected: no shared secret, nothing stored and no dependency
    exported.clear()
    rejected = payloads.with_new_id(payloads.PUSH)
    assert post_webhook(rejected, secret=None).status_code == 401
    [record] = exported.decision_logs()
    assert (record["decision"], record["route"]) == ("rejected", "webhook")
    assert record["reason"]
    assert exported.client_spans() == []
    # Only the calls themselves: the SDK's method spans around them are not recorded.
    assert all(span.kind is SpanKind.CLIENT for span in exported.spans.get_finished_spans())

    counts = exported.decision_counts()
    for decision in ("recorded", "queued", "rejected"):
        key = (("decision", decision), ("route", "webhook"))
        assert counts.get(key, 0) - counts_before.get(key, 0) == 1, decision
    latencies = {
        tuple(sorted(point.attributes.items())): point.count
        for point in _points(exported.metrics, STORE_DURATION_METRIC)
    }
    assert latencies[(("decision", "recorded"), ("route", "webhook"))] >= 1

    # What Application Insights receives from the Azure Monitor exporters: the fields as
    # customDimensions (strings) in traces, the counter in customMetrics, the dependencies.
    flush_telemetry()
    stored = {
        properties["event_id"]: properties
        for message in exported.ingestion.of_type("MessageData")
        if "event_id" in (properties := message.get("properties", {}))
    }
    assert stored[recorded["id"]]["decision"] == "recorded"
    assert stored[recorded["id"]]["repository"] == recorded["target"]["repository"]
    assert float(stored[recorded["id"]]["store_ms"]) >= 0
    assert (stored[queued["id"]]["decision"], stored[queued["id"]]["route"]) == (
        "queued",
        "webhook",
    )
    rejections = [
        message["properties"]
        for message in exported.ingestion.of_type("MessageData")
        if message.get("properties", {}).get("decision") == "rejected"
    ]
    assert rejections and all(r["route"] == "webhook" and r["reason"] for r in rejections)
    metrics = {
        (metric["properties"]["decision"], metric["properties"].get("route"))
        for metric in exported.ingestion.of_type("MetricData")
        if metric["metrics"][0]["name"] == DECISIONS_METRIC
    }
    assert {("recorded", "webhook"), ("queued", "webhook"), ("rejected", "webhook")} <= metrics
    calls = [d for d in exported.ingestion.of_type("RemoteDependencyData") if d["type"] == "HTTP"]
    cosmos = f"127.0.0.1:{restartable_cosmos_server.port}"
    outcomes = [
        (call["resultCode"], call["success"])
        for call in calls
        if call["target"] == cosmos and call["name"].startswith("POST /dbs/")
    ]
    assert ("201", True) in outcomes  # recorded
    assert any(not succeeded for _, succeeded in outcomes)  # queued: the write that timed out
    sends = [c for c in calls if c["name"] == f"POST /devstoreaccount1/{queue.queue_name}/messages"]
    assert [(send["resultCode"], send["success"]) for send in sends] == [("201", True)]
    assert not [
        d for d in exported.ingestion.of_type("RemoteDependencyData") if d["type"] != "HTTP"
    ]


def test_calls_and_records_sampled_before_export_carry_their_rate_and_dropped_calls_no_span(
    exported: Exported, app_stores: Settings, restartable_cosmos_server: LocalCosmosServer
) -> None:
    """What telemetry.sdk_call_options and RoutineSampling hand on: a call sampled beforehand
    (through azure-cosmos to azure-core's tracing) and a record, each with its sampling rate,
    and a call not traced at all."""
    decisions: Iterator[Mapping[str, Any]] = iter(
        [
            {"tracing_options": {"attributes": {SAMPLE_RATE_KEY: 25.0}}},
            {"tracing_options": {"enabled": False}},
        ]
    )
    repository = CosmosEventRepository(app_stores, call_options=lambda: next(decisions))
    exported.clear()
    sampled, dropped = (payloads.with_new_id(payloads.PUSH) for _ in range(2))
    for payload in (sampled, dropped):
        assert repository.add(to_document(AcrEvent.model_validate(payload), datetime.now(UTC)))
    fields = {"decision": "recorded", "route": "webhook", "event_id": sampled["id"]}
    logging.getLogger(f"{APP_LOGGER}.test_rates").info(
        "stored", extra={**fields, SAMPLE_RATE_KEY: 25.0}
    )

    cosmos = f"127.0.0.1:{restartable_cosmos_server.port}"
    [write] = [
        _attributes(span)
        for span in exported.client_spans("POST")
        if cosmos in _attributes(span)["url.full"]
    ]
    assert write[SAMPLE_RATE_KEY] == 25.0
    flush_telemetry()
    # (The calls of the other tests here were all recorded: no sampling rate.)
    rates = [
        envelope.get("sampleRate")
        for envelope in exported.ingestion.envelopes
        if envelope["data"]["baseType"] == "RemoteDependencyData"
        and envelope["data"]["baseData"]["target"] == cosmos
        and "sampleRate" in envelope
    ]
    assert rates == [25.0]
    [message] = [
        envelope
        for envelope in exported.ingestion.envelopes
        if envelope["data"]["baseType"] == "MessageData"
        and envelope["data"]["baseData"].get("properties", {}).get("event_id") == sampled["id"]
    ]
    assert message["sampleRate"] == 25.0
    assert fields.items() <= message["data"]["baseData"]["properties"].items()
    assert SAMPLE_RATE_KEY not in message["data"]["baseData"]["properties"]


def flush_telemetry() -> None:
    """Export what the batch processors and the metric reader hold, now."""
    cast(TracerProvider, get_tracer_provider()).force_flush()
    cast(LoggerProvider, get_logger_provider()).force_flush()
    cast(MeterProvider, get_meter_provider()).force_flush()


def test_the_store_latency_histogram_comes_from_store_ms() -> None:
    reader = InMemoryMetricReader()
    logger = logging.getLogger(f"{APP_LOGGER}.test_histogram")
    logger.setLevel(logging.INFO)
    handler = DecisionMetrics(MeterProvider(metric_readers=[reader]))
    logger.addHandler(handler)
    try:
        fields = {"decision": "recorded", "route": "webhook"}
        logger.info("stored", extra={**fields, "store_ms": 12.5})
        logger.info("stored", extra={**fields, "store_ms": 7})
        logger.info("not a decision", extra={"store_ms": 1000.0})
        logger.warning("no latency", extra={"decision": "rejected", "route": "webhook"})
    finally:
        logger.removeHandler(handler)
    [latency] = _points(reader, STORE_DURATION_METRIC)
    assert isinstance(latency, HistogramDataPoint)
    assert (latency.count, latency.sum, latency.max) == (2, 19.5, 12.5)
    assert dict(latency.attributes or {}) == fields
    counts = {
        tuple(sorted(p.attributes.items())): p.value for p in _points(reader, DECISIONS_METRIC)
    }
    assert counts == {
        (("decision", "recorded"), ("route", "webhook")): 2,
        (("decision", "rejected"), ("route", "webhook")): 1,
    }


def test_each_collection_exports_only_the_decisions_taken_since_the_one_before() -> None:
    """In the delta temporality the Azure Monitor exporter asks for, an idle decision and route
    sends nothing (each point is a customMetrics row), and the counts stay exact, for another
    reader too."""
    azure_monitor = InMemoryMetricReader(
        preferred_temporality=APPLICATION_INSIGHTS_METRIC_TEMPORALITIES  # type: ignore[arg-type]
    )
    other = InMemoryMetricReader()  # cumulative, collecting at other times
    logger = logging.getLogger(f"{APP_LOGGER}.test_delta")
    logger.setLevel(logging.INFO)
    handler = DecisionMetrics(MeterProvider(metric_readers=[azure_monitor, other]))
    logger.addHandler(handler)
    recorded = {"decision": "recorded", "route": "webhook"}
    rejected = {"decision": "rejected", "route": "webhook"}

    def key(attributes: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        return tuple(sorted(attributes.items()))

    def collect(reader: InMemoryMetricReader) -> dict[tuple[tuple[str, Any], ...], int]:
        points = _points(reader, DECISIONS_METRIC)
        counts = {key(p.attributes): int(p.value) for p in points}
        assert len(counts) == len(points)
        return counts

    try:
        logger.info("stored", extra=recorded)
        logger.warning("refused", extra=rejected)
        assert collect(azure_monitor) == {key(recorded): 1, key(rejected): 1}
        logger.info("stored", extra=recorded)
        assert collect(azure_monitor) == {key(recorded): 1}
        assert collect(azure_monitor) == {}  # nothing new: not even a zero
        logger.warning("refused", extra=rejected)
        logger.warning("refused", extra=rejected)
        assert collect(azure_monitor) == {key(rejected): 2}
        assert collect(other) == {key(recorded): 2, key(rejected): 3}
    finally:
        logger.removeHandler(handler)


@dataclass
class Burst:
    """Decision records logged as fast as possible through the sampling and the counting."""

    exported: list[dict[str, Any]]  # the attributes of each record passed on for export
    counts: dict[tuple[tuple[str, Any], ...], float]  # the decisions counter
    seconds: float

    def routine(self) -> list[dict[str, Any]]:
        """The records the app samples: recorded and duplicate on the webhook and Event Grid."""
        return [
            attributes
            for attributes in self.exported
            if attributes["decision"] in ("recorded", "duplicate")
            and attributes["route"] in ("webhook", "eventgrid")
        ]


ROUTINE_IN_BURST = 2000


class SimulatedClock:
    """The sampler's clock, moved on by the burst itself: a burst then lasts as long as it says
    whatever the machine's load. On the real clock a loaded machine stalls the burst, and after
    each stall the sampler's estimate keeps more: too few seconds for a rate to show."""

    def __init__(self) -> None:
        self.now_ns = time.time_ns()

    def seconds(self) -> float:
        return self.now_ns / 1e9


def log_burst(
    limit: RateLimit,
    routine: int = ROUTINE_IN_BURST,
    clock: SimulatedClock | None = None,
    interval_s: float = 0.0,
) -> Burst:
    """``routine`` records (half webhook, half Event Grid; a quarter of each duplicate, the
    rest recorded), with a rejection, a replayed and a duplicate record of the replay every 100
    among them. With ``clock``, each routine record moves it on by ``interval_s``."""
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    reader = InMemoryMetricReader()
    logger = logging.getLogger(f"{APP_LOGGER}.test_sampling")
    logger.setLevel(logging.INFO)
    handlers = [
        DecisionMetrics(MeterProvider(metric_readers=[reader])),
        RoutineSampling(LoggingHandler(logger_provider=logger_provider), limit),
    ]
    for handler in handlers:
        logger.addHandler(handler)
    started = time.monotonic()
    try:
        for index in range(routine):
            if clock is not None:
                clock.now_ns += round(interval_s * 1e9)
            route = "webhook" if index % 2 else "eventgrid"
            decision = "duplicate" if index % 4 < 2 else "recorded"
            logger.info("stored", extra={"decision": decision, "route": route})
            if index % 100 == 0:
                logger.warning("refused", extra={"decision": "rejected", "route": route})
                logger.info("replayed", extra={"decision": "replayed", "route": "replay"})
                logger.info("duplicate", extra={"decision": "duplicate", "route": "replay"})
        seconds = routine * interval_s if clock else time.monotonic() - started
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
    counts = {
        tuple(sorted(p.attributes.items())): p.value for p in _points(reader, DECISIONS_METRIC)
    }
    exported = [dict(r.log_record.attributes or {}) for r in exporter.get_finished_logs()]
    return Burst(exported, counts, seconds)


def test_routine_records_are_exported_at_about_5_a_second_the_rest_all_counts_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ROUTINE_RECORDS_PER_SECOND == 5  # as the README and docs/operations.md say
    clock = SimulatedClock()
    monkeypatch.setattr(telemetry, "random", random.Random(0))  # the same keeps every run
    # A minute at 200 routine records a second.
    routine, interval_s = 12_000, 0.005
    limit = RateLimit(ROUTINE_RECORDS_PER_SECOND, clock=clock.seconds)
    burst = log_burst(limit, routine, clock, interval_s)

    # Warnings and the replay's records: every one, as logged, with no sampling rate.
    others = [attributes for attributes in burst.exported if attributes not in burst.routine()]
    assert len(others) == 3 * routine // 100
    assert not [attributes for attributes in others if SAMPLE_RATE_KEY in attributes]
    # The routine ones, recorded and duplicate: 5 a second on average. The distro's sampler
    # estimates the rate as it goes, so not exactly 300: within a quarter of it.
    expected = ROUTINE_RECORDS_PER_SECOND * burst.seconds
    assert 0.75 * expected <= len(burst.routine()) <= 1.25 * expected
    # The counts are exact.
    assert burst.counts == {
        (("decision", "recorded"), ("route", "webhook")): routine / 4,
        (("decision", "recorded"), ("route", "eventgrid")): routine / 4,
        (("decision", "duplicate"), ("route", "webhook")): routine / 4,
        (("decision", "duplicate"), ("route", "eventgrid")): routine / 4,
        (("decision", "rejected"), ("route", "eventgrid")): routine / 100,
        (("decision", "replayed"), ("route", "replay")): routine / 100,
        (("decision", "duplicate"), ("route", "replay")): routine / 100,
    }


def test_each_sampled_record_says_how_many_records_it_stands_for() -> None:
    # A higher rate than the app's, so that the burst keeps enough for the estimate below
    # (the burst takes ~20 ms here: a few hundred records).
    burst = log_burst(RateLimit(20_000.0))
    sampled = burst.routine()
    assert {attributes["decision"] for attributes in sampled} == {"recorded", "duplicate"}
    stands_for = [100 / attributes.get(SAMPLE_RATE_KEY, 100.0) for attributes in sampled]
    # Application Insights' itemCount (100 / sampling rate): a whole number per record...
    assert all(count == pytest.approx(round(count)) for count in stands_for)
    # ...that scales the sample back up to about what was logged.
    assert ROUTINE_IN_BURST / 2 < sum(stands_for) < ROUTINE_IN_BURST * 2


def test_the_managed_identity_is_the_one_named_by_azure_client_id() -> None:
    assert isinstance(
        managed_identity_credential({"AZURE_CLIENT_ID": "abc"}), ManagedIdentityCredential
    )
    assert managed_identity_credential({}) is None


FIRST_EVENT_THEN_EXIT = """
import logging, sys
from azure.core import PipelineClient
from azure.core.rest import HttpRequest
from acr_webhook.telemetry import configure_telemetry

assert configure_telemetry(exporter_options={"disable_offline_storage": True})
# The exporters, the tracing and the SDK's resource are built off the first event's path, not at
# import: at exit, building them must still be possible.
off_the_path = {
    "azure.monitor.opentelemetry.exporter",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk._logs",
    "opentelemetry.sdk.resources",
}
assert not off_the_path & set(sys.modules), off_the_path & set(sys.modules)
logging.getLogger("acr_webhook").setLevel(logging.INFO)
with PipelineClient(sys.argv[1]) as client:  # an SDK call before they exist, as a first write
    client.send_request(HttpRequest("POST", sys.argv[1] + "probe", json=[])).raise_for_status()
logging.getLogger("acr_webhook.handlers").info(
    "recorded", extra={"decision": "recorded", "route": "webhook", "event_id": "first"}
)
"""  # ...and the process ends at once: no flush


def exporting_to(ingestion: Ingestion) -> dict[str, str]:
    """This environment for a child process whose telemetry goes to ``ingestion`` only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLICATIONINSIGHTS_")}
    env.update(NOTHING_TO_MICROSOFT)
    env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = ingestion.connection_string
    return env


def test_the_first_event_is_exported_even_if_the_process_ends_right_after(tmp_path: Path) -> None:
    ingestion = Ingestion()
    env = exporting_to(ingestion)
    endpoint = ingestion.connection_string.split("IngestionEndpoint=")[1]
    try:
        result = run_python(["-c", FIRST_EVENT_THEN_EXIT, endpoint], tmp_path, env)
        assert result.returncode == 0, result.stderr
    finally:
        ingestion.close()
    [message] = [m for m in ingestion.of_type("MessageData") if m.get("properties")]
    fields = {"decision": "recorded", "route": "webhook", "event_id": "first"}
    assert fields.items() <= message["properties"].items()
    # Tracing starts with the exporters: the call made before them is not a dependency.
    assert ingestion.of_type("RemoteDependencyData") == []
    [count] = [
        m for m in ingestion.of_type("MetricData") if m["metrics"][0]["name"] == DECISIONS_METRIC
    ]
    assert (count["metrics"][0]["value"], count["properties"]) == (
        1,
        {"decision": "recorded", "route": "webhook"},
    )


DEFAULT_DEPENDENCY_RATE = """
import json, logging, sys, time
from acr_webhook.telemetry import configure_telemetry, sdk_call_options

assert configure_telemetry(exporter_options={"disable_offline_storage": True})  # the app's rates
logging.getLogger("acr_webhook").setLevel(logging.INFO)
logging.getLogger("acr_webhook.handlers").info("first", extra={"decision": "ping"})
deadline = time.monotonic() + 10
while sdk_call_options() == {} and time.monotonic() < deadline:  # the exporters are being built
    time.sleep(0.01)
untraced = {"tracing_options": {"enabled": False}}
warm_up = time.monotonic() + 0.5  # the sampler estimates the incoming rate over ~0.1 s windows
while time.monotonic() < warm_up:
    sdk_call_options()
calls = traced = 0
started = time.monotonic()
while time.monotonic() - started < 2.0:
    calls += 1
    traced += sdk_call_options() != untraced
print(json.dumps({"calls": calls, "traced": traced, "seconds": time.monotonic() - started}))
"""


def test_dependencies_are_traced_at_most_5_a_second_as_deployed(tmp_path: Path) -> None:
    """docs/operations.md: SDK calls on the events' path are recorded as dependencies at about
    5 a second (DEPENDENCIES_PER_SECOND), the rest not traced at all."""
    ingestion = Ingestion()
    env = exporting_to(ingestion)
    try:
        result = run_python(["-c", DEFAULT_DEPENDENCY_RATE], tmp_path, env)
        assert result.returncode == 0, result.stderr
    finally:
        ingestion.close()
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["calls"] > 1000  # a burst far above the rate...
    # ...of which 5 a second are traced once the sampler has seen the rate: each call is kept
    # at random, so ~10 in these 2 s (7-13 measured). A loaded machine that stalls the burst
    # skews the sampler's estimate of the rate (one run of the suite beside three others went
    # past 2x), so the bound is 3x: still a hundredth of the calls.
    assert 1 <= found["traced"] < 3 * 5 * found["seconds"]


def test_without_a_connection_string_nothing_is_imported_sdk_loggers_quiet_and_records_lean(
    tmp_path: Path,
) -> None:
    """function_app as the worker imports it, in a fresh process without the setting."""
    probe = (
        "import json, logging, sys; import function_app; "
        "print(json.dumps({'loaded': sorted(m for m in sys.modules if m.startswith("
        "('opentelemetry', 'azure.monitor'))), "
        "'azure_level': logging.getLogger('azure').level, "
        "'record': sorted(k for k in ('thread', 'threadName', 'process', 'processName') "
        "if getattr(logging.makeLogRecord({}), k) is not None)}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLICATIONINSIGHTS_")}
    result = run_python(["-c", probe], tmp_path, env)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    # Records skip the thread and process fields nothing reads (lean_log_records).
    assert found == {"loaded": [], "azure_level": logging.WARNING, "record": []}
