from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from acr_webhook.config import Settings
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
