"""In-memory stand-ins for unit tests. They never ship in the product path."""

from __future__ import annotations

from typing import Any

from acr_webhook.repository import RepositoryUnavailableError


class FakeEventRepository:
    """Keeps documents by id, like a Cosmos container keyed on the event id."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.unavailable = False
        self.add_calls = 0

    def add(self, document: dict[str, Any]) -> bool:
        self.add_calls += 1
        if self.unavailable:
            raise RepositoryUnavailableError("fake outage")
        if document["id"] in self.documents:
            return False
        self.documents[document["id"]] = dict(document)
        return True
