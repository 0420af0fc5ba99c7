"""Reading the app's decision records back from pytest's log capture."""

from __future__ import annotations

from typing import Any

import pytest

DECISION_FIELDS = ("decision", "route", "event_id", "action", "repository", "reason", "store_ms")


def decisions(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The structured fields of each decision record captured, in order; a field the record
    does not carry is left out."""
    return [
        {key: getattr(record, key) for key in DECISION_FIELDS if hasattr(record, key)}
        for record in caplog.records
        if hasattr(record, "decision")
    ]
