"""Telemetry into Application Insights: OpenTelemetry through the Azure Monitor distro.

Only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (the deployed app). Without it this
module imports nothing beyond the standard library and exports nothing: local runs and tests pay
no cold-start cost for a distro they do not use.

What arrives in Application Insights:

- every record of the ``acr_webhook`` loggers, in ``traces``, with the ``extra`` fields of each
  decision (decision, route, event_id, action, repository, reason, store_ms) as custom
  dimensions;
- ``acr_webhook.decisions`` (a counter, attributes decision and route) and
  ``acr_webhook.store.duration`` (a histogram of ``store_ms``, in ms) in ``customMetrics``, made
  from those same log records by :class:`DecisionMetrics`, so handlers carry no telemetry code;
- every Cosmos DB and Storage call in ``dependencies``, from azure-core's OpenTelemetry tracing,
  which the distro turns on.

Sources relied on:

- learn.microsoft.com/azure/azure-functions/opentelemetry-howto (Python): host.json
  ``"telemetryMode": "OpenTelemetry"``; ``configure_azure_monitor()`` in function_app.py; host.json
  log filters apply to the host only, the worker filters its own logs; Entra ID authentication is
  configured separately for the host (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and the worker.
- azure-monitor-opentelemetry 1.8.11 ``configure_azure_monitor``: ``credential``,
  ``logger_name``, ``instrumentation_options``, ``span_processors`` / ``log_record_processors``
  / ``metric_readers`` (added next to its own exporters).
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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from acr_webhook.config import read_values

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from opentelemetry.metrics import MeterProvider

CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
APP_LOGGER = "acr_webhook"
DECISIONS_METRIC = "acr_webhook.decisions"
STORE_DURATION_METRIC = "acr_webhook.store.duration"
# Every outbound call of this app goes through an Azure SDK, whose spans are the dependencies;
# the HTTP-library instrumentations would add a second span per call and cost cold start.
HTTP_LIBRARY_INSTRUMENTATIONS = (
    "django",
    "fastapi",
    "flask",
    "httpx",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)


def quiet_azure_sdk_loggers() -> None:
    """The SDKs log every HTTP request at INFO (4 records per failed Cosmos write, 1 per queue
    write); host.json's ``Azure.Core`` level does not reach Python loggers, so set it here."""
    logging.getLogger("azure").setLevel(logging.WARNING)


def configure_telemetry(environ: Mapping[str, str] | None = None, **distro_options: Any) -> bool:
    """Set up export to Application Insights if a connection string is configured.

    Returns whether it did. ``distro_options`` go to ``configure_azure_monitor`` unchanged
    (tests add in-memory processors and readers there; the app passes none).
    """
    quiet_azure_sdk_loggers()
    values = read_values(environ)
    connection_string = values.get(CONNECTION_STRING_SETTING, "").strip()
    if not connection_string:
        return False
    # Imported only now: the distro and the OpenTelemetry SDK are ~200 ms of imports.
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.metrics import get_meter_provider

    # What the worker sets when it configures the distro: the Functions resource (role name =
    # the app's name) instead of probing for App Service and VM metadata.
    os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_functions")
    options: dict[str, Any] = {
        "connection_string": connection_string,
        "logger_name": APP_LOGGER,
        "instrumentation_options": {
            name: {"enabled": False} for name in HTTP_LIBRARY_INSTRUMENTATIONS
        },
    }
    credential = managed_identity_credential(values)
    if credential is not None:
        options["credential"] = credential
    options.update(distro_options)
    configure_azure_monitor(**options)
    install_decision_metrics(get_meter_provider())
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


def install_decision_metrics(meter_provider: MeterProvider) -> None:
    """Attach :class:`DecisionMetrics` to the app's logger, once."""
    logger = logging.getLogger(APP_LOGGER)
    if not any(isinstance(handler, DecisionMetrics) for handler in logger.handlers):
        logger.addHandler(DecisionMetrics(meter_provider))
