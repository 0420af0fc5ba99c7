"""function_app as deployed, on the settings a test gives: what acr_webhook.runtime builds once
per process is built anew on them, and cleared again afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

import function_app
from acr_webhook import runtime
from acr_webhook.config import Settings
from acr_webhook.once import BuiltOnce

PROCESS_WIDE: tuple[BuiltOnce[Any], ...] = (
    runtime.database_health,
    runtime.event_repository,
    runtime.eventgrid_repository,
    runtime.event_reader,
    runtime.fallback_queue,
    runtime.shared_secret,
    runtime.reconciled_events,
)


@contextlib.contextmanager
def deployed_on(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """function_app and runtime read ``settings``; what runtime built before is dropped."""
    monkeypatch.setattr(runtime, "settings", lambda: settings)
    monkeypatch.setattr(function_app, "settings", lambda: settings)
    for once in PROCESS_WIDE:
        once.cache_clear()
    try:
        yield settings
    finally:
        for once in PROCESS_WIDE:
            once.cache_clear()


def post(body: bytes) -> func.HttpRequest:
    """A POST as the worker hands it to an HTTP function."""
    return func.HttpRequest("POST", "http://localhost/api/acr/any", body=body)
