"""The bench's Cosmos DB: a local server of its own, stopped afterwards.

Fresh, provisioned containers come from ``tests.conftest.fresh_settings``, as in the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.cosmos_server import LocalCosmosServer


@contextmanager
def local_cosmos_server() -> Iterator[LocalCosmosServer]:
    server = LocalCosmosServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
