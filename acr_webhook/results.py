"""What every handler returns, and the clock they share; nothing here knows about HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Result:
    """A handler's answer: status, JSON body (None for none) and extra headers."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def utc_now() -> datetime:
    return datetime.now(UTC)
