from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.cosmos import ContainerProxy

from acr_webhook.config import FALLBACK_QUEUE_NAME, QueueSettings, Settings
from acr_webhook.fallback import create_queue_client, provision_queue
from acr_webhook.repository import create_cosmos_client, provision
from tests.support.azurite import LocalAzurite
from tests.support.cosmos_server import EMULATOR_KEY, LocalCosmosServer, bound_port
from tests.support.queue_proxy import HoldingQueueProxy


@pytest.fixture(autouse=True)
def _app_log_level_kept() -> Iterator[None]:
    """A command run in-process (reconcile quiets the app's INFO lines for its process) leaves
    the app's logger as it found it, so later tests still capture INFO decisions."""
    app_logger = logging.getLogger("acr_webhook")
    level = app_logger.level
    yield
    app_logger.setLevel(level)


@pytest.fixture
def machine_to_itself(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """For tests that load the machine on purpose and hold a time bound: they take turns across
    scripts/test's two worker processes. Two at once on 2 cores starved each other's servers
    into 503s (a fresh-clone CI run, 2026-12-07: the 1,000-request and the cold-start tests
    failed together); each alone passes."""
    # Under xdist the base temp is per worker, its parent shared by the run's workers.
    lock_file = tmp_path_factory.getbasetemp().parent / "machine-to-itself.lock"
    with lock_file.open("a") as lock:  # closing it lets the lock go
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def cosmos_server() -> Iterator[LocalCosmosServer]:
    server = LocalCosmosServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def restartable_cosmos_server() -> Iterator[LocalCosmosServer]:
    """A server of the test's own, for tests that stop or freeze it."""
    server = LocalCosmosServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def azurite() -> Iterator[LocalAzurite]:
    queues = LocalAzurite()
    queues.start()
    yield queues
    queues.close()


@pytest.fixture
def queue_proxy(azurite: LocalAzurite) -> Iterator[HoldingQueueProxy]:
    """A HoldingQueueProxy in front of the session's Azurite."""
    server = HoldingQueueProxy(azurite)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def queues(azurite: LocalAzurite) -> Iterator[QueueSettings]:
    """The fallback queue the app and the CLI use by name, and its poison queue, on the
    session's Azurite: empty for the test, and emptied after it. Every test in a worker that
    uses the name shares them: messages one left (parked, redriven, or held under a 60 s lease)
    would be replayed or counted by the next."""
    queue = QueueSettings(FALLBACK_QUEUE_NAME, azurite.connection_string)
    provision_queue(queue)
    for each in (queue, queue.poison):
        create_queue_client(each, {}).clear_messages()
    yield queue
    for each in (queue, queue.poison):
        with contextlib.suppress(ResourceNotFoundError):  # a test may delete one
            create_queue_client(each, {}).clear_messages()


@pytest.fixture
def restartable_azurite() -> Iterator[LocalAzurite]:
    """An Azurite of the test's own, for tests that stop it."""
    queues = LocalAzurite()
    queues.start()
    yield queues
    queues.close()


@pytest.fixture
def refusing_port() -> Iterator[Callable[[], int]]:
    """Gives ports that refuse connections until the test ends (``bound_port``): a port that
    free_port() found free and let go could start answering meanwhile, as one of the other test
    worker's servers, proxies or hosts."""
    held: list[socket.socket] = []

    def port() -> int:
        bound = bound_port()
        assert bound is not None
        held.append(bound)
        return int(bound.getsockname()[1])

    yield port
    for bound in held:
        bound.close()


def fresh_settings(server: LocalCosmosServer) -> Settings:
    """Settings for a new, provisioned container, so tests never see each other's events."""
    settings = Settings(
        cosmos_endpoint=server.endpoint,
        cosmos_key=EMULATOR_KEY,
        cosmos_database="acr",
        cosmos_container=f"events-{uuid.uuid4().hex[:12]}",
        local_function_key=None,
    )
    provision(settings)
    return settings


@pytest.fixture
def cosmos_settings(cosmos_server: LocalCosmosServer) -> Settings:
    return fresh_settings(cosmos_server)


def container_for(settings: Settings) -> ContainerProxy:
    """The settings' container, with a client of its own (not the app's)."""
    return (
        create_cosmos_client(settings)
        .get_database_client(settings.cosmos_database)
        .get_container_client(settings.cosmos_container)
    )


def read_all(settings: Settings) -> list[dict[str, Any]]:
    """Every document in the settings' container, read straight from the server."""
    return list(container_for(settings).read_all_items())
