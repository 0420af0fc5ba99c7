"""provision without a database: an existing container is taken only with the partition key
/repository and no unique key (refused before anything is changed), the retention is applied,
and the command says an outage or a fallback queue it could not create as such.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

from acr_webhook import __main__ as cli
from acr_webhook import repository as repository_module
from acr_webhook.config import ConfigurationError, QueueSettings, Settings
from acr_webhook.repository import provision
from tests.unit.test_database_health import REFUSING, SETTINGS_FIELDS

# --- repository.provision: the container's partition key is /repository, nothing else -----------


class ExistingContainer:
    """The client, database and container at once: the container exists with ``properties``;
    replaces are recorded."""

    def __init__(self, properties: dict[str, Any]) -> None:
        self.properties = properties
        self.replaced: list[dict[str, Any]] = []

    def create_database_if_not_exists(self, _name: str) -> ExistingContainer:
        return self

    def create_container_if_not_exists(self, _name: str, **_options: Any) -> ExistingContainer:
        return self

    def read(self) -> dict[str, Any]:
        return self.properties

    def replace_container(self, _container: object, **options: Any) -> None:
        self.replaced.append(options)


@pytest.mark.parametrize(
    ("partition_key", "named"),
    [
        (
            {"paths": ["/repository", "/tag"], "kind": "MultiHash", "version": 2},
            "/repository, /tag",
        ),
        (
            {"paths": ["/tag", "/repository"], "kind": "MultiHash", "version": 2},
            "/tag, /repository",
        ),
        ({"paths": ["/id"], "kind": "Hash"}, "/id"),
        (None, "(none)"),
    ],
)
def test_provision_refuses_any_other_partition_key_and_changes_nothing(
    partition_key: dict[str, Any] | None, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """provision: "refuse the container rather than say 'ready'" unless its key is exactly
    /repository: a hierarchical key that starts with it too (reads by repository name one
    level of it), and one the container's properties do not give. Refused before the
    retention is applied. Kills the check by `in` or by the first path, a missing key read as
    a KeyError or joined as None, and the check made only when the retention is unchanged."""
    properties: dict[str, Any] = {"id": "events", "defaultTtl": None}
    if partition_key is not None:
        properties["partitionKey"] = partition_key
    existing = ExistingContainer(properties)
    monkeypatch.setattr("acr_webhook.repository.create_cosmos_client", lambda *_a: existing)
    settings = Settings(*SETTINGS_FIELDS, retention_days=30)

    with pytest.raises(ConfigurationError) as refused:
        provision(settings)

    message = str(refused.value)
    assert f"container 'events' exists with partition key {named};" in message
    assert "the app needs /repository" in message
    assert existing.replaced == []


def test_provision_takes_a_container_partitioned_by_repository() -> None:
    """The one key the check lets through; the retention is then applied as before."""
    existing = ExistingContainer(
        {"id": "events", "partitionKey": {"paths": ["/repository"], "kind": "Hash"}}
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("acr_webhook.repository.create_cosmos_client", lambda *_a: existing)
        provision(
            Settings(REFUSING.cosmos_endpoint, "a2V5", "acr", "events", None, retention_days=1)
        )
    assert [options["default_ttl"] for options in existing.replaced] == [86400]


# --- repository.provision: unique keys as Cosmos DB gives them --------------------------------


def test_provision_takes_a_container_whose_unique_key_policy_lists_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cosmos DB gives every container a uniqueKeyPolicy, ``{"uniqueKeys": []}`` when it has
    none (the local server leaves the property out): such a container is the app's own. Kills
    the check by the policy's presence instead of its keys."""
    existing = ExistingContainer(
        {
            "id": "events",
            "partitionKey": {"paths": ["/repository"], "kind": "Hash"},
            "uniqueKeyPolicy": {"uniqueKeys": []},
            "defaultTtl": None,
        }
    )
    monkeypatch.setattr(repository_module, "create_cosmos_client", lambda *_a: existing)

    provision(REFUSING)

    assert existing.replaced == []


def test_provision_names_every_unique_key_path_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """provision refuses a container with a unique key "as it refuses one with another
    partition key": every path of every key named, and refused before the retention is
    applied. Kills the paths of the first key only, and the check made after the replace."""
    existing = ExistingContainer(
        {
            "id": "events",
            "partitionKey": {"paths": ["/repository"], "kind": "Hash"},
            "uniqueKeyPolicy": {
                "uniqueKeys": [{"paths": ["/digest"]}, {"paths": ["/tag", "/actor"]}]
            },
            "defaultTtl": None,
        }
    )
    monkeypatch.setattr(repository_module, "create_cosmos_client", lambda *_a: existing)

    with pytest.raises(ConfigurationError) as refused_container:
        provision(Settings(*SETTINGS_FIELDS, retention_days=30))

    assert "exists with a unique key on /digest, /tag, /actor;" in str(refused_container.value)
    assert existing.replaced == []


# --- __main__.provision: an outage is no set-up ------------------------------------------------


class UnreachableClient:
    def create_database_if_not_exists(self, *_args: Any, **_kwargs: Any) -> Any:
        raise ServiceRequestError("Connection refused")


def test_provision_says_an_outage_is_unavailable_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutant killed: every AzureError said as a refused set-up (exit 2). A server still
    starting is worth running provision again for (exit 1, "unavailable")."""
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr(
        "acr_webhook.repository.create_cosmos_client", lambda *_a, **_k: UnreachableClient()
    )

    status = cli.main(["provision"])

    assert status == 1
    assert "is unavailable or refused: ServiceRequestError: Connection refused" in (
        capsys.readouterr().err
    )


# --- __main__._provision: the queue warning --------------------------------------------------


def test_provision_s_queue_warning_names_the_failure_kind_and_only_the_first_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutant killed: the warning without failure_kind (the status says which fault: 403 a
    key, 404 an account). The service's XML after the first line stays out."""
    refused = ClientAuthenticationError(
        message="Server failed to authenticate the request.\nRequestId:1\n<?xml version='1.0'?>"
    )
    refused.status_code = 403

    def provision_queue(_settings: QueueSettings) -> None:
        raise refused

    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setattr("acr_webhook.repository.provision", lambda _settings: None)
    monkeypatch.setattr("acr_webhook.fallback.provision_queue", provision_queue)

    status = cli.main(["provision"])

    assert status == 0
    assert capsys.readouterr().err == (
        "warning: fallback queue 'acr-events-fallback' not created: "
        "ClientAuthenticationError 403: Server failed to authenticate the request.\n"
    )
