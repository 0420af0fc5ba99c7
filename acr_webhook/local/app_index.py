"""The function app's registered functions, indexed once, the runtime's ``%SETTING%`` binding
expressions and host.json's extension settings (for the local host and its trigger runners)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import azure.functions as func
from azure.functions.decorators.function_app import Function

from acr_webhook.config import ConfigurationError

T = TypeVar("T")

# A trigger property written as %NAME% takes the value of the app setting NAME.
_SETTING_EXPRESSION = re.compile(r"%([^%]+)%")


class SettingsSection(Mapping[str, Any]):
    """A host.json section whose names are compared without regard to case, as .NET's
    configuration compares them (``RoutePrefix`` is ``routePrefix`` in Azure)."""

    def __init__(self, values: object) -> None:
        # A section written as null has no settings, as .NET's configuration reads it.
        given = values if isinstance(values, dict) else {}
        self._values = {str(name).lower(): value for name, value in given.items()}

    def __getitem__(self, name: str) -> Any:
        return self._values[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def extension_settings(host_json: Path, extension: str) -> SettingsSection:
    """host.json ``extensions.<extension>``, empty when the file or the section is missing or
    null, so that every setting in it keeps the runtime's default."""
    if not host_json.is_file():
        return SettingsSection({})
    try:
        document = json.loads(host_json.read_text(encoding="utf-8-sig"))  # as local.settings
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"{host_json} is not readable JSON: {error}") from None
    extensions = SettingsSection(document).get("extensions")
    return SettingsSection(SettingsSection(extensions).get(extension))


@functools.cache  # the SDK's get_functions() refuses a second call on the same app
def indexed_functions(app: func.FunctionApp) -> list[Function]:
    return list(app.get_functions())


def triggered_by(app: func.FunctionApp, trigger_type: type[T]) -> list[tuple[Function, T]]:
    """The app's functions whose trigger is a ``trigger_type``, each with its trigger."""
    found = []
    for function in indexed_functions(app):
        trigger = function.get_trigger()
        if isinstance(trigger, trigger_type):
            found.append((function, trigger))
    return found


def missing_settings(text: str, values: Mapping[str, str]) -> list[str]:
    """The settings ``text`` names as %NAME% that have no value."""
    return [name for name in _SETTING_EXPRESSION.findall(text) if not values.get(name)]


def resolve_settings(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each %NAME% replaced by that setting's value (empty when it has none)."""
    return _SETTING_EXPRESSION.sub(lambda m: values.get(m.group(1), "").strip(), text)
