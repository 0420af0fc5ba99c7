"""``provision`` racing another ``provision`` or a redeploy of the container: two operators
following the same runbook, a CI job and a person, or a second ``./scripts/dev`` starting while
the first still provisions. The proxy holds one run's request at a chosen moment, so that the
other run acts in between (not hoped for).

The command says "Safe to run again" (its help) and docs/operations.md: "Running `provision`
again with another value changes only the time-to-live: the documents and the container's
indexing policy stay."

A run whose container (or database) another run created meanwhile had failed (exit 1,
"unavailable or refused: CosmosResourceExistsError"); it now takes the 409 for what it wanted.
Left as a strict xfail: a run that changes
the time-to-live writes back the indexing policy it read, undoing one a redeploy set meanwhile;
docs/operations.md says so."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from azure.cosmos import PartitionKey

from acr_webhook import __main__ as cli
from acr_webhook.config import Settings
from acr_webhook.repository import PARTITION_KEY_PATH, create_cosmos_client, provision
from tests.conftest import container_for
from tests.integration.test_event_queries import cli_on
from tests.support.cosmos_proxy import FaultyCosmosProxy, Refusal
from tests.support.holds import Background, Hold


def not_yet_made(settings: Settings, proxy: FaultyCosmosProxy, created: str) -> Settings:
    """``settings`` through ``proxy``, naming a container (and, for ``created`` "database", a
    database) that does not exist yet."""
    return dataclasses.replace(
        settings,
        cosmos_endpoint=proxy.endpoint,
        cosmos_database=f"db-{uuid.uuid4().hex[:8]}" if created == "database" else "acr",
        cosmos_container=f"events-{uuid.uuid4().hex[:12]}",
    )


def retention_change_held(settings: Settings, proxy: FaultyCosmosProxy) -> tuple[Hold, Background]:
    """``RETENTION_DAYS=90 provision`` through ``proxy``, running, its replace of the container
    held until the Hold is released."""
    replace = Hold(r"^PUT /dbs/[^/]+/colls/[^/]+/?$", then_pass=True, limit=1)
    proxy.holds.append(replace)
    retention = dataclasses.replace(settings, cosmos_endpoint=proxy.endpoint, retention_days=90)
    command = Background(lambda: provision(retention))
    replace.wait()
    return replace, command


@pytest.mark.parametrize("created", ["container", "database"])
def test_two_provisions_at_once_on_a_fresh_account_both_succeed(
    cosmos_settings: Settings,
    proxy: FaultyCosmosProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    created: str,
) -> None:
    """Run A has found the container (or database) missing and its create is held; run B
    creates it meanwhile. Both must end "ready", exit 0: the second create's 409 means what
    the command wanted is there."""
    fresh = not_yet_made(cosmos_settings, proxy, created)
    path = r"^POST /dbs/?$" if created == "database" else r"^POST /dbs/[^/]+/colls/?$"
    hold = Hold(path, then_pass=True, limit=1)
    proxy.holds.append(hold)
    run_a = Background(lambda: provision(fresh))
    hold.wait()

    cli_on(fresh, monkeypatch, tmp_path)
    status_b = cli.main(["provision"])
    hold.release()

    assert status_b == 0, capsys.readouterr().err
    run_a.result()  # raises what the CLI prints as exit 1
    assert container_for(fresh).read()["partitionKey"]["paths"] == [PARTITION_KEY_PATH]


@pytest.mark.parametrize("created", ["container", "database"])
def test_a_create_refused_for_another_reason_is_no_race(
    cosmos_settings: Settings,
    proxy: FaultyCosmosProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    created: str,
) -> None:
    """Only a 409 means another run made it. An Entra ID identity's create is refused 403/5300
    ("cannot be authorized by AAD token in data plane", tests/unit/test_restore.py): provision
    says that refusal and its fix (exit 2, main.bicep or az cosmosdb), not a missing container
    (exit 1, "run provision", the command just run). Kills: the except widened to
    CosmosHttpResponseError or AzureError, for the database's create or the container's."""
    fresh = not_yet_made(cosmos_settings, proxy, created)
    path = "/dbs" if created == "database" else f"/dbs/{fresh.cosmos_database}/colls"
    proxy.refusal = Refusal(
        403,
        5300,
        "Forbidden",
        f"Request blocked by Auth cosmos-acr : The given request [POST {path}] cannot be "
        "authorized by AAD token in data plane. Learn more: https://aka.ms/cosmos-native-rbac.",
        paths=rf"^{path}/?$",
    )
    cli_on(fresh, monkeypatch, tmp_path)

    status = cli.main(["provision"])

    err = capsys.readouterr().err
    assert status == 2, err
    assert "az cosmosdb sql container" in err and "403/5300" in err, err
    assert "run provision" not in err, err
    assert proxy.refused == 1


REDEPLOYED_POLICY = {
    "indexingMode": "consistent",
    "includedPaths": [{"path": "/repository/?"}, {"path": "/registry/?"}],
    "excludedPaths": [{"path": "/*"}],
}


@pytest.mark.xfail(
    strict=True,
    reason="provision replaces the container with the indexing policy it read: a policy a "
    "redeploy set between its read and its replace is undone. Left on purpose: the SDK ignores "
    "an ETag on replace_container (DeprecationWarning) and the local server ignores If-Match on "
    "containers, so no conditional replace can be made or tested here; operations.md warns",
)
def test_a_retention_change_keeps_an_indexing_policy_set_meanwhile(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy
) -> None:
    """`RETENTION_DAYS=90 provision` has read the container; main.bicep (a redeploy adding
    `/registry/?` to the index, docs/operations.md "Upgrading") replaces its policy; then the
    provision's replace lands. Both changes must stay."""
    hold, run = retention_change_held(cosmos_settings, proxy)

    database = create_cosmos_client(cosmos_settings).get_database_client("acr")
    database.replace_container(
        cosmos_settings.cosmos_container,
        partition_key=PartitionKey(path=PARTITION_KEY_PATH),
        indexing_policy=REDEPLOYED_POLICY,
    )
    hold.release()

    run.result()
    properties = container_for(cosmos_settings).read()
    assert properties["defaultTtl"] == 90 * 86400
    assert properties["indexingPolicy"] == REDEPLOYED_POLICY
