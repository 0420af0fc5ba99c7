"""Where event documents are kept: a Protocol and its Cosmos DB implementation."""

from __future__ import annotations

import ipaddress
import logging
import threading
import warnings
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosResourceExistsError
from urllib3.exceptions import InsecureRequestWarning

from acr_webhook.config import Settings

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
# Provisioning is run by hand, off the request path; an emulator may take seconds per container.
PROVISIONING_TIMEOUTS: dict[str, Any] = {"timeout": 60, "connection_timeout": 5, "read_timeout": 30}


class RepositoryUnavailableError(Exception):
    """The store did not accept or answer in time; the event was not recorded."""


class EventRepository(Protocol):
    def add(self, document: dict[str, Any]) -> bool:
        """Store one event document. True if new, False if that id was already recorded.

        Raises RepositoryUnavailableError when the store fails or does not answer in time.
        """
        ...


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


class CosmosEventRepository:
    """Cosmos DB implementation. The client is created on first use and then reused.

    Creation is retried on the next call after a failure, so an app started while the
    database was unreachable recovers without a restart.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._container: ContainerProxy | None = None
        self._lock = threading.Lock()

    def _events(self) -> ContainerProxy:
        container = self._container
        if container is None:
            with self._lock:
                if self._container is None:
                    client = create_cosmos_client(self._settings)
                    database = client.get_database_client(self._settings.cosmos_database)
                    self._container = database.get_container_client(self._settings.cosmos_container)
                container = self._container
        return container

    def add(self, document: dict[str, Any]) -> bool:
        try:
            self._events().create_item(document)
        except CosmosResourceExistsError:
            return False
        except AzureError as error:
            raise RepositoryUnavailableError(f"{type(error).__name__}: {error.message}") from error
        return True


def provision(settings: Settings) -> None:
    """Create the database and container if missing. Not on the request path: run once."""
    client = create_cosmos_client(settings, PROVISIONING_TIMEOUTS)
    database = client.create_database_if_not_exists(settings.cosmos_database)
    database.create_container_if_not_exists(
        settings.cosmos_container, partition_key=PartitionKey(path=PARTITION_KEY_PATH)
    )
