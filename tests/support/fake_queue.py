"""In-memory fallback queue for unit tests. Never ships in the product path."""

from __future__ import annotations

from typing import Any

from acr_webhook.store import FallbackUnavailableError


class FakeFallbackQueue:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        # (attempts, delay_s) of each put, in order
        self.puts: list[tuple[int, int]] = []
        self.unavailable = False

    def put(self, document: dict[str, Any], *, attempts: int = 0, delay_s: int = 0) -> None:
        if self.unavailable:
            raise FallbackUnavailableError("fake queue outage")
        self.messages.append(dict(document))
        self.puts.append((attempts, delay_s))
