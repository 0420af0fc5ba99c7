"""Where event documents are kept: a Protocol and its Cosmos DB implementation."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosResourceExistsError
from urllib3.exceptions import InsecureRequestWarning

from acr_webhook.config import Settings
from acr_webhook.models import EventQuery

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.cosmos import ContainerProxy


log = logging.getLogger(__name__)

PARTITION_KEY_PATH = "/repository"

# ACR waits 5 s for an answer and never retries. These bound every Cosmos call to about 2 s,
# measured against a frozen local server: the SDK uses the connection timeout as the read
# timeout once it has marked an endpoint unavailable, so both must be short, and a refused
# connection must not be retried. Throttling (429) gets one short retry at most. `timeout`
# caps client creation, whose account lookup otherwise retries for about 12 s.
CLIENT_TIMEOUTS: dict[str, Any] = {
    "timeout": 2,
    "connection_timeout": 1,
    "read_timeout": 2,
    "retry_total": 0,
    "retry_throttle_total": 1,
    "retry_throttle_backoff_max": 1,
}
# Event Grid waits 30 s and redelivers anything but a 2xx, so its writes ride out throttling
# (429) for longer: up to 4 throttle retries, each waiting at most 3 s, inside the batch budget
# that eventgrid.py enforces; still throttled after that, the batch is answered 503.
EVENTGRID_WRITE_OPTIONS: dict[str, Any] = {
    **CLIENT_TIMEOUTS,
    "timeout": 5,
    "retry_throttle_total": 4,
    "retry_throttle_backoff_max": 3,
}
# Provisioning is run by hand, off the request path; an emulator may take seconds per container.
PROVISIONING_TIMEOUTS: dict[str, Any] = {"timeout": 60, "connection_timeout": 5, "read_timeout": 30}


# Reads serve people (HTTP GET, CLI), not ACR, so they may take longer than a write, but stay
# bounded: a stuck database must give a 503 or an error message, not a hung request. `timeout`
# bounds each operation (client creation, query plan, each page); QUERY_BUDGET_S the whole query.
QUERY_TIMEOUTS: dict[str, Any] = {
    "timeout": 5,
    "connection_timeout": 2,
    "read_timeout": 4,
    "retry_total": 0,
    "retry_throttle_total": 3,
    "retry_throttle_backoff_max": 2,
}
QUERY_BUDGET_S = 8.0


class RepositoryUnavailableError(Exception):
    """The store did not accept or answer in time; the event was not recorded."""


class DocumentRejectedError(Exception):
    """The store refused this document for a reason that will not change (a 400-class answer
    other than throttling or a conflict): trying again cannot help. The message says why."""


class EventRepository(Protocol):
    def add(self, document: dict[str, Any]) -> bool:
        """Store one event document. True if new, False if that id was already recorded.

        Raises RepositoryUnavailableError when the store fails or does not answer in time, and
        DocumentRejectedError when it refuses the document itself.
        """
        ...


class EventReader(Protocol):
    def find_events(self, query: EventQuery, max_items: int) -> list[dict[str, Any]]:
        """Up to ``max_items`` documents that match the query's filters and come after its
        position, newest first (equal timestamps in any order), without Cosmos system fields.

        Raises RepositoryUnavailableError when the store fails or does not answer in time.
        """
        ...


def events_sql(query: EventQuery, max_items: int) -> tuple[str, list[dict[str, Any]]]:
    """The Cosmos DB SQL and parameters for ``find_events``.

    One ORDER BY property only: a second one (a tie-breaker) would need a composite index. Every
    filter is served by the range index of its path; ``id`` is always indexed.
    """
    conditions: list[str] = []
    parameters: list[dict[str, Any]] = [{"name": "@limit", "value": max_items}]
    for name in ("repository", "tag", "digest", "action"):
        value = getattr(query, name)
        if value is not None:
            conditions.append(f"c.{name} = @{name}")
            parameters.append({"name": f"@{name}", "value": value})
    if query.since is not None:
        conditions.append("c.timestamp >= @since")
        parameters.append({"name": "@since", "value": query.since})
    if query.until is not None:
        conditions.append("c.timestamp < @until")
        parameters.append({"name": "@until", "value": query.until})
    if query.after is not None:
        conditions.append("c.timestamp <= @after")
        parameters.append({"name": "@after", "value": query.after.timestamp})
        if query.after.seen:
            # Same key as queries.event_key: ids are unique per partition and hold no '/'.
            conditions.append("NOT ARRAY_CONTAINS(@seen, CONCAT(c.id, '/', c.repository))")
            parameters.append({"name": "@seen", "value": list(query.after.seen)})
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    # Only fixed fragments above are joined into the text; every value is a @parameter.
    sql = f"SELECT TOP @limit * FROM c{where} ORDER BY c.timestamp DESC"  # noqa: S608
    return sql, parameters


def without_system_fields(item: dict[str, Any]) -> dict[str, Any]:
    """The document as written: Cosmos DB adds _rid, _self, _etag, _attachments, _ts."""
    return {key: value for key, value in item.items() if not key.startswith("_")}


def is_loopback(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_cosmos_client(
    settings: Settings, timeouts: dict[str, Any] = CLIENT_TIMEOUTS
) -> CosmosClient:
    """Key auth when COSMOS_KEY is set (local server, emulator), otherwise Microsoft Entra ID."""
    verify_tls = not is_loopback(settings.cosmos_endpoint)
    if not verify_tls:
        # Expected for the local server only; the filter matches loopback hosts alone.
        warnings.filterwarnings(
            "ignore",
            message=r"Unverified HTTPS request is being made to host '(127\.|localhost|::1)",
            category=InsecureRequestWarning,
        )
    credential: str | TokenCredential
    if settings.cosmos_key:
        credential = settings.cosmos_key
    else:
        # Imported here: only the deployed app (managed identity) pays for azure-identity.
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return CosmosClient(
        settings.cosmos_endpoint,
        credential=credential,
        # The local server's certificate is self-signed; any other host is verified.
        connection_verify=verify_tls,
        # Writes need no echo of the item; this saves bandwidth on every event.
        no_response_on_write=True,
        **timeouts,
    )


class _LazyContainer:
    """A container client built on first use with these timeouts, then reused. A failed
    build is retried on the next call, so an app started while the database was unreachable
    recovers without a restart."""

    def __init__(self, settings: Settings, timeouts: dict[str, Any]) -> None:
        self._settings = settings
        self._timeouts = timeouts
        self._container: ContainerProxy | None = None
        self._lock = threading.Lock()

    def get(self) -> ContainerProxy:
        container = self._container
        if container is None:
            with self._lock:
                if self._container is None:
                    client = create_cosmos_client(self._settings, self._timeouts)
                    database = client.get_database_client(self._settings.cosmos_database)
                    self._container = database.get_container_client(self._settings.cosmos_container)
                container = self._container
        return container


class CosmosEventRepository:
    """Cosmos DB implementation. Writes and reads each get a client, created on first use:
    reads use their own (QUERY_TIMEOUTS), built only when something reads, so writes keep
    their ~2 s bound."""

    def __init__(self, settings: Settings, write_options: dict[str, Any] = CLIENT_TIMEOUTS) -> None:
        self._writes = _LazyContainer(settings, write_options)
        self._reads = _LazyContainer(settings, QUERY_TIMEOUTS)

    def add(self, document: dict[str, Any]) -> bool:
        try:
            self._writes.get().create_item(document)
        except CosmosResourceExistsError:
            return False
        except AzureError as error:
            raise RepositoryUnavailableError(f"{type(error).__name__}: {error.message}") from error
        return True

    def find_events(self, query: EventQuery, max_items: int) -> list[dict[str, Any]]:
        sql, parameters = events_sql(query, max_items)
        # With the partition key the SDK sends the query to that one partition only.
        scope: dict[str, Any] = (
            {"partition_key": query.repository}
            if query.repository is not None
            else {"enable_cross_partition_query": True}
        )
        deadline = time.monotonic() + QUERY_BUDGET_S
        documents: list[dict[str, Any]] = []
        try:
            items = self._reads.get().query_items(
                query=sql, parameters=parameters, max_item_count=max_items, **scope
            )
            for item in items:
                documents.append(without_system_fields(item))
                if len(documents) >= max_items:
                    break
                if time.monotonic() > deadline:
                    raise RepositoryUnavailableError(f"no answer within {QUERY_BUDGET_S:g} s")
        except AzureError as error:
            raise RepositoryUnavailableError(f"{type(error).__name__}: {error.message}") from error
        return documents


def provision(settings: Settings) -> None:
    """Create the database and container if missing. Not on the request path: run once."""
    client = create_cosmos_client(settings, PROVISIONING_TIMEOUTS)
    database = client.create_database_if_not_exists(settings.cosmos_database)
    database.create_container_if_not_exists(
        settings.cosmos_container, partition_key=PartitionKey(path=PARTITION_KEY_PATH)
    )
