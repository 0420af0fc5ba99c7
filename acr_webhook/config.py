"""The one place that reads configuration.

Settings come from the environment and, for local runs, from ``local.settings.json`` "Values"
(the file Core Tools reads too). The environment wins, so a deployed app and CI need no file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE = "acr"
DEFAULT_CONTAINER = "events"
# Fixed, not a setting: the queue-trigger decorator and the writer must name the same queue.
FALLBACK_QUEUE_NAME = "acr-events-fallback"
DEFAULT_SECRET_HEADER = "Authorization"  # noqa: S105 (a header name, not a secret)
LOCAL_SETTINGS_FILE = "local.settings.json"
# The Functions host's own storage connection; the fallback queue lives in the same account.
STORAGE_CONNECTION = "AzureWebJobsStorage"


class ConfigurationError(Exception):
    """A required setting is missing or unusable; the message names it."""


@dataclass(frozen=True)
class QueueSettings:
    """Where the fallback queue is: a connection string (Azurite, keys) or, in Azure, the
    queue service URI reached with the app's managed identity."""

    queue_name: str
    connection_string: str | None = None
    queue_service_uri: str | None = None


@dataclass(frozen=True)
class Settings:
    cosmos_endpoint: str
    cosmos_key: str | None
    cosmos_database: str
    cosmos_container: str
    local_function_key: str | None
    webhook_secret: str | None = None
    webhook_secret_header: str = DEFAULT_SECRET_HEADER
    fallback_queue: QueueSettings | None = None


def read_values(
    environ: Mapping[str, str] | None = None, settings_file: Path | None = None
) -> dict[str, str]:
    """Merge ``local.settings.json`` "Values" (if the file exists) under the environment."""
    environ = os.environ if environ is None else environ
    settings_file = Path(LOCAL_SETTINGS_FILE) if settings_file is None else settings_file
    values: dict[str, str] = {}
    if settings_file.is_file():
        try:
            document = json.loads(settings_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigurationError(f"{settings_file} is not readable JSON: {error}") from error
        file_values = document.get("Values", {}) if isinstance(document, dict) else {}
        if not isinstance(file_values, dict):
            raise ConfigurationError(f'{settings_file}: "Values" must be an object')
        values.update({str(k): str(v) for k, v in file_values.items() if v is not None})
    values.update(environ)
    return values


def load_settings(
    environ: Mapping[str, str] | None = None, settings_file: Path | None = None
) -> Settings:
    values = read_values(environ, settings_file)
    endpoint = values.get("COSMOS_ENDPOINT", "").strip()
    if not endpoint:
        raise ConfigurationError(
            "COSMOS_ENDPOINT is not set (environment or local.settings.json Values)"
        )
    if not endpoint.startswith(("https://", "http://")):
        raise ConfigurationError("COSMOS_ENDPOINT must be an https:// URL")
    return Settings(
        cosmos_endpoint=endpoint,
        cosmos_key=values.get("COSMOS_KEY") or None,
        cosmos_database=values.get("COSMOS_DATABASE") or DEFAULT_DATABASE,
        cosmos_container=values.get("COSMOS_CONTAINER") or DEFAULT_CONTAINER,
        local_function_key=values.get("LOCAL_FUNCTION_KEY") or None,
        webhook_secret=values.get("WEBHOOK_SECRET") or None,
        webhook_secret_header=values.get("WEBHOOK_SECRET_HEADER") or DEFAULT_SECRET_HEADER,
        fallback_queue=queue_settings(values),
    )


def queue_settings(
    values: Mapping[str, str],
    connection: str = STORAGE_CONNECTION,
    queue_name: str = FALLBACK_QUEUE_NAME,
) -> QueueSettings | None:
    """A queue on the storage ``connection``, or None when that connection is not configured.

    Same setting names the Functions host reads: ``<connection>`` as a connection string, or
    the identity-based ``<connection>__queueServiceUri`` / ``<connection>__accountName``.
    """
    connection_string = values.get(connection, "").strip()
    if connection_string:
        return QueueSettings(queue_name, connection_string=connection_string)
    service_uri = values.get(f"{connection}__queueServiceUri", "").strip()
    account = values.get(f"{connection}__accountName", "").strip()
    if not service_uri and account:
        service_uri = f"https://{account}.queue.core.windows.net"
    return QueueSettings(queue_name, queue_service_uri=service_uri) if service_uri else None
