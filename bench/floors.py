"""The floors: the bare SDK's ``create_item`` of the same documents, in each client
configuration a user of the same libraries could pick.

- ``sync-default``: ``azure.cosmos.CosmosClient`` as it comes (its requests session reads the
  proxy and .netrc settings of the environment on every request; 10 pooled connections).
- ``sync-tuned``: the same client on ``RequestsTransport(use_env_settings=False)`` (trust_env
  off) with a pool of ``config.COSMOS_POOL_SIZE`` connections.
- ``async``: ``azure.cosmos.aio.CosmosClient`` (aiohttp) on one event loop. aiohttp is no
  dependency of the app: without it this floor is skipped and the report says so.

All three get the app's client options (``repository.CLIENT_TIMEOUTS``, no echo of the item on
writes), so they differ in the transport alone.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.cosmos import ContainerProxy, CosmosClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from acr_webhook.config import COSMOS_POOL_SIZE, Settings
from acr_webhook.repository import CLIENT_TIMEOUTS

SYNC_DEFAULT = "sync-default"
SYNC_TUNED = "sync-tuned"
ASYNC = "async"
FLOORS = (SYNC_DEFAULT, SYNC_TUNED, ASYNC)
LABELS = {
    SYNC_DEFAULT: "SDK `create_item`, default sync client",
    SYNC_TUNED: "SDK `create_item`, sync client, `RequestsTransport(use_env_settings=False)`, "
    f"pool {COSMOS_POOL_SIZE}",
    ASYNC: "SDK `create_item`, async client (`azure.cosmos.aio`, aiohttp)",
}
AIOHTTP_MISSING = (
    "aiohttp is not installed, so the async floor (azure.cosmos.aio) is not measured: "
    "`.venv/bin/pip install aiohttp` to include it"
)
CLIENT_OPTIONS: dict[str, Any] = {**CLIENT_TIMEOUTS, "no_response_on_write": True}


def async_available() -> bool:
    return importlib.util.find_spec("aiohttp") is not None


def _quiet_loopback_tls() -> None:
    # The local server's certificate is self-signed; the app silences the same warning.
    warnings.filterwarnings("ignore", message=r"Unverified HTTPS request")


def _key(settings: Settings) -> str:
    if not settings.cosmos_key:
        raise ValueError("the floors need COSMOS_KEY (the local server's key)")
    return settings.cosmos_key


def tuned_transport() -> RequestsTransport:
    session = requests.Session()
    session.trust_env = False
    # As RequestsTransport mounts its own adapter: no urllib3 retries (the SDK retries), but
    # a pool as large as the number of threads that may write at once.
    adapter = HTTPAdapter(
        pool_connections=COSMOS_POOL_SIZE,
        pool_maxsize=COSMOS_POOL_SIZE,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return RequestsTransport(session=session, use_env_settings=False)


def sync_container(settings: Settings, tuned: bool) -> ContainerProxy:
    _quiet_loopback_tls()
    options = dict(CLIENT_OPTIONS)
    if tuned:
        options["transport"] = tuned_transport()
    client = CosmosClient(
        settings.cosmos_endpoint,
        credential=_key(settings),
        connection_verify=False,
        **options,
    )
    database = client.get_database_client(settings.cosmos_database)
    return database.get_container_client(settings.cosmos_container)


class AsyncFloor:
    """The async client on an event loop of its own, driven from synchronous code."""

    def __init__(self, settings: Settings) -> None:
        from azure.cosmos.aio import CosmosClient as AsyncCosmosClient

        _quiet_loopback_tls()
        self._loop = asyncio.new_event_loop()
        self._client = AsyncCosmosClient(
            settings.cosmos_endpoint,
            credential=_key(settings),
            connection_verify=False,
            **CLIENT_OPTIONS,
        )
        database = self._client.get_database_client(settings.cosmos_database)
        self._container = database.get_container_client(settings.cosmos_container)

    def sequential(self, documents: Sequence[dict[str, Any]]) -> list[float]:
        """Each document written after the previous one; seconds per write."""

        async def run() -> list[float]:
            latencies = []
            for document in documents:
                started = time.perf_counter()
                await self._container.create_item(document)
                latencies.append(time.perf_counter() - started)
            return latencies

        return self._loop.run_until_complete(run())

    def concurrent(self, documents: Sequence[dict[str, Any]], concurrency: int) -> list[float]:
        """``concurrency`` writers taking the documents in turn; seconds per write."""
        pending = iter(documents)
        latencies: list[float] = []

        async def writer() -> None:
            for document in pending:
                started = time.perf_counter()
                await self._container.create_item(document)
                latencies.append(time.perf_counter() - started)

        async def run() -> None:
            await asyncio.gather(*(writer() for _ in range(concurrency)))

        self._loop.run_until_complete(run())
        return latencies

    def close(self) -> None:
        self._loop.run_until_complete(self._client.close())
        self._loop.close()


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def threaded(calls: Sequence[Callable[[], object]], concurrency: int) -> list[float]:
    """The calls on ``concurrency`` threads; seconds per call."""
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(timed, calls))
