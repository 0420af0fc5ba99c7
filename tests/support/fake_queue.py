"""In-memory fallback queue for unit tests. Never ships in the product path."""

from __future__ import annotations

from typing import Any

from acr_webhook.fallback import FallbackUnavailableError


class FakeFallbackQueue:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.unavailable = False

    def put(self, document: dict[str, Any]) -> None:
        if self.unavailable:
            raise FallbackUnavailableError("fake queue outage")
        self.messages.append(dict(document))
