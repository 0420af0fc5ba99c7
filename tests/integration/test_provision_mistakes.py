"""`provision` run against the deployed account after a slip in the settings, as the other
commands advise ("database 'acr' or container 'evnets' does not exist ...: run provision, or
check COSMOS_DATABASE and COSMOS_CONTAINER"). The deployed account refuses creating a container
to any Entra ID identity (403/5300); here a proxy in front of the local Cosmos DB server gives
that answer to the create, as Cosmos DB words it (tests/unit/test_restore.py).

Already covered: the refusal's wording for a restored account that lacks the container
(tests/unit/test_restore.py), another partition key or a unique key (exit 2 naming them), a bad
RETENTION_DAYS (refused before anything is asked). Checked here and sound: a RETENTION_DAYS
other than the template's `retentionDays` (or none) is refused by the deployed account before
the container changes, with the fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.config import Settings
from acr_webhook.repository import provision
from tests.conftest import container_for
from tests.integration.test_event_queries import cli_on
from tests.support.cosmos_proxy import FaultyCosmosProxy, Refusal

# Cosmos DB's answer to creating a container with an Entra ID token, whatever the data role.
NOT_A_DATA_OPERATION = Refusal(
    403,
    5300,
    "Forbidden",
    "Request blocked by Auth cosmos-acrhook : The given request [POST /dbs/acr/colls] cannot be "
    "authorized by AAD token in data plane. Learn more: https://aka.ms/cosmos-native-rbac.",
    paths=r"^/dbs/[^/]+/colls/?$",
)
DEPLOYED_RETENTION_DAYS = 90  # main.bicep's retentionDays, the container's defaultTtl


def test_a_container_name_with_a_typo_is_named_with_its_setting(
    cosmos_settings: Settings,
    proxy: FaultyCosmosProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    provision(cosmos_settings)  # the deployed container
    proxy.refusal = NOT_A_DATA_OPERATION
    cli_on(
        dataclasses.replace(
            cosmos_settings, cosmos_endpoint=proxy.endpoint, cosmos_container="evnets"
        ),
        monkeypatch,
        tmp_path,
    )

    status = cli.main(["provision"])

    err = capsys.readouterr().err
    assert status == 2, err
    assert "'evnets'" in err and "COSMOS_CONTAINER" in err, err


@pytest.mark.parametrize("given", ["30", ""], ids=["shorter", "unset"])
def test_a_retention_other_than_the_templates_leaves_the_deployed_container_as_it_is(
    cosmos_settings: Settings,
    proxy: FaultyCosmosProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: str,
) -> None:
    """30 days would expire every document older than that at once (deploy.md); none would keep
    everything forever. The account refuses changing the container as it refuses creating
    one, and provision says what does it."""
    ttl = DEPLOYED_RETENTION_DAYS * 86400
    provision(dataclasses.replace(cosmos_settings, retention_days=DEPLOYED_RETENTION_DAYS))
    proxy.refusal = dataclasses.replace(
        NOT_A_DATA_OPERATION, paths=r"^/dbs/[^/]+/colls/[^/]+/?$", method="PUT"
    )
    cli_on(
        dataclasses.replace(cosmos_settings, cosmos_endpoint=proxy.endpoint), monkeypatch, tmp_path
    )
    monkeypatch.setenv("RETENTION_DAYS", given)

    status = cli.main(["provision"])

    out, err = capsys.readouterr()
    assert (status, out) == (2, ""), err
    assert "infra/main.bicep" in err, err
    assert container_for(cosmos_settings).read().get("defaultTtl") == ttl
