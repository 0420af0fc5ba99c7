"""The bench's Cosmos DB: its own local server, and clients built as the app builds them.

Fresh, provisioned containers come from ``tests.conftest.fresh_settings``, as in the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.cosmos import ContainerProxy

from acr_webhook.config import Settings
from acr_webhook.repository import CLIENT_TIMEOUTS, create_cosmos_client
from tests.support.cosmos_server import LocalCosmosServer


@contextmanager
def local_cosmos_server() -> Iterator[LocalCosmosServer]:
    """A local Cosmos DB API server of the bench's own, stopped afterwards."""
    server = LocalCosmosServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def container_for(settings: Settings, timeouts: dict[str, Any] = CLIENT_TIMEOUTS) -> ContainerProxy:
    """A container client built as the app builds its own (same client options by default)."""
    client = create_cosmos_client(settings, timeouts)
    return client.get_database_client(settings.cosmos_database).get_container_client(
        settings.cosmos_container
    )
