from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos import ContainerProxy

from acr_webhook.config import Settings
from tests.support.arm_stand_in import TOKEN, ListEventsStandIn
from tests.support.cosmos_proxy import FaultyCosmosProxy


@pytest.fixture
def proxy(cosmos_settings: Settings, tmp_path: Path) -> Iterator[FaultyCosmosProxy]:
    """A FaultyCosmosProxy in front of the test's container's server."""
    server = FaultyCosmosProxy(cosmos_settings.cosmos_endpoint, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def through_proxy(cosmos_settings: Settings, proxy: FaultyCosmosProxy) -> Settings:
    """The test's container, reached through ``proxy``."""
    return dataclasses.replace(cosmos_settings, cosmos_endpoint=proxy.endpoint)


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[ListEventsStandIn]:
    """The management API's listEvents, 2 history entries a page, taking ``TOKEN``."""
    server = ListEventsStandIn(tmp_path, TOKEN, page_size=2)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def query_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every query the SDK is asked to run."""
    calls: list[dict[str, Any]] = []
    original = ContainerProxy.query_items

    def spy(self: ContainerProxy, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ContainerProxy, "query_items", spy)
    return calls
