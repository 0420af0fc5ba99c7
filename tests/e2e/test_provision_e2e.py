"""``python -m acr_webhook provision`` as a user runs it, against the real local servers."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from azure.cosmos import ContainerProxy, PartitionKey
from azure.storage.queue import QueueServiceClient

from acr_webhook.config import FALLBACK_QUEUE_NAME, Settings
from acr_webhook.repository import create_cosmos_client
from tests.support.azurite import LocalAzurite
from tests.support.cosmos_server import EMULATOR_KEY, LocalCosmosServer
from tests.support.serve import run_cli


def provision(
    server: LocalCosmosServer, container: str, workdir: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "COSMOS_ENDPOINT": server.endpoint,
        "COSMOS_KEY": EMULATOR_KEY,
        "COSMOS_CONTAINER": container,
        **extra,
    }
    return run_cli(["provision"], workdir, env)


def test_provision_creates_the_container_partitioned_by_repository_twice_fine(
    cosmos_server: LocalCosmosServer, tmp_path: Path
) -> None:
    container = f"prov-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        result = provision(cosmos_server, container, tmp_path)
        assert result.returncode == 0, result.stderr
    settings = Settings(cosmos_server.endpoint, EMULATOR_KEY, "acr", container, None)
    properties = (
        create_cosmos_client(settings)
        .get_database_client("acr")
        .get_container_client(container)
        .read()
    )
    assert properties["partitionKey"]["paths"] == ["/repository"]


def test_provision_creates_the_fallback_queues_when_storage_is_configured(
    cosmos_server: LocalCosmosServer, azurite: LocalAzurite, tmp_path: Path
) -> None:
    result = provision(
        cosmos_server, "events", tmp_path, AzureWebJobsStorage=azurite.connection_string
    )
    assert result.returncode == 0, result.stderr
    service = QueueServiceClient.from_connection_string(azurite.connection_string)
    names = {queue.name for queue in service.list_queues()}
    assert {FALLBACK_QUEUE_NAME, f"{FALLBACK_QUEUE_NAME}-poison"} <= names


def test_unreachable_storage_is_a_warning_not_a_failure(
    cosmos_server: LocalCosmosServer, restartable_azurite: LocalAzurite, tmp_path: Path
) -> None:
    connection_string = restartable_azurite.connection_string
    restartable_azurite.stop()
    result = provision(cosmos_server, "events", tmp_path, AzureWebJobsStorage=connection_string)
    assert result.returncode == 0, result.stderr
    assert "warning: fallback queue" in result.stderr
    assert "container 'events' are ready" in result.stdout


def container_client(server: LocalCosmosServer, container: str) -> ContainerProxy:
    settings = Settings(server.endpoint, EMULATOR_KEY, "acr", container, None)
    return create_cosmos_client(settings).get_database_client("acr").get_container_client(container)


def container_properties(server: LocalCosmosServer, container: str) -> dict[str, object]:
    return dict(container_client(server, container).read())


def test_retention_days_sets_the_default_time_to_live_and_a_rerun_changes_it(
    cosmos_server: LocalCosmosServer, tmp_path: Path
) -> None:
    """The local server keeps the property but never expires items; Cosmos DB does both. A
    rerun changes only the time-to-live: the documents and the indexing policy stay."""
    container = f"ttl-{uuid.uuid4().hex[:8]}"
    assert provision(cosmos_server, container, tmp_path, RETENTION_DAYS="30").returncode == 0
    assert container_properties(cosmos_server, container).get("defaultTtl") == 30 * 86400
    client = container_client(cosmos_server, container)
    client.create_item({"id": "kept", "repository": "team/api"})
    curated = {"indexingMode": "consistent", "excludedPaths": [{"path": "/*"}]}
    database = create_cosmos_client(
        Settings(cosmos_server.endpoint, EMULATOR_KEY, "acr", container, None)
    ).get_database_client("acr")
    database.replace_container(
        client,
        partition_key=PartitionKey(path="/repository"),
        indexing_policy=curated,
        default_ttl=30 * 86400,
    )

    assert provision(cosmos_server, container, tmp_path, RETENTION_DAYS="7").returncode == 0
    assert container_properties(cosmos_server, container).get("defaultTtl") == 7 * 86400
    assert provision(cosmos_server, container, tmp_path).returncode == 0  # keep forever again
    properties = container_properties(cosmos_server, container)
    assert properties.get("defaultTtl") is None
    policy = properties["indexingPolicy"]
    assert isinstance(policy, dict) and curated.items() <= policy.items()
    assert [item["id"] for item in client.read_all_items()] == ["kept"]


def test_a_container_partitioned_by_another_path_is_exit_2_naming_both(
    cosmos_server: LocalCosmosServer, tmp_path: Path
) -> None:
    """It said "ready" (exit 0) for a container partitioned by /id: writes then land, but
    every read by repository finds nothing."""
    container = f"prov-{uuid.uuid4().hex[:8]}"
    settings = Settings(cosmos_server.endpoint, EMULATOR_KEY, "acr", container, None)
    database = create_cosmos_client(settings).create_database_if_not_exists("acr")
    database.create_container(container, partition_key=PartitionKey(path="/id"))
    result = provision(cosmos_server, container, tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert container in line and "/id" in line and "/repository" in line


def test_a_database_not_listening_yet_is_one_line_and_exit_1(
    tmp_path: Path, refusing_port: Callable[[], int]
) -> None:
    """The README's piece-by-piece steps ran provision before the server listened: a
    60-line traceback."""
    nowhere = f"https://127.0.0.1:{refusing_port()}/"
    result = run_cli(
        ["provision"], tmp_path, {"COSMOS_ENDPOINT": nowhere, "COSMOS_KEY": EMULATOR_KEY}
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"the event store at {nowhere} is unavailable or refused: ")
    assert EMULATOR_KEY not in line


def test_bad_retention_days_is_refused_before_anything_is_created(
    cosmos_server: LocalCosmosServer, tmp_path: Path
) -> None:
    result = provision(cosmos_server, "events", tmp_path, RETENTION_DAYS="forever")
    assert result.returncode == 2
    assert "RETENTION_DAYS" in result.stderr
