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
LOCAL_SETTINGS_FILE = "local.settings.json"


class ConfigurationError(Exception):
    """A required setting is missing or unusable; the message names it."""


@dataclass(frozen=True)
class Settings:
    cosmos_endpoint: str
    cosmos_key: str | None
    cosmos_database: str
    cosmos_container: str
    local_function_key: str | None


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
    )
