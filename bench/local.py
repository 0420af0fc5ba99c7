"""The bench's Cosmos DB: a local server of its own, stopped afterwards.

Fresh, provisioned containers come from ``tests.conftest.fresh_settings``, as in the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.cosmos_server import LocalCosmosServer

# Longer than any round: connections that sit out the other floors' rounds stay open, as a
# database keeps a client's connections for minutes. With Node.js's 5 s, a write sent just as
# its idle connection closed broke the floors (the bare SDK sends a write once): seen in stop 36.
KEEP_ALIVE_S = 600


@contextmanager
def local_cosmos_server() -> Iterator[LocalCosmosServer]:
    server = LocalCosmosServer(keep_alive_s=KEEP_ALIVE_S)
    server.start()
    try:
        yield server
    finally:
        server.close()
