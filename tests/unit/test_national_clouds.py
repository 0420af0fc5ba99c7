"""The app in Azure US Government and in Azure operated by 21Vianet (China), as a platform team
there deploys it: the settings the template gives it in that cloud, the hosts it connects to
(seen through HTTPS_PROXY, no network), the token audiences it asks for, and registries whose
login servers are not ``*.azurecr.io``.

Each cloud's values, from Microsoft's pages:

- Management endpoint and token audience (Bicep ``environment().resourceManager`` and
  ``environment().authentication.audiences[0]``): management.usgovcloudapi.net /
  management.core.usgovcloudapi.net, management.chinacloudapi.cn /
  management.core.chinacloudapi.cn (learn.microsoft.com/azure/azure-government/
  compare-azure-government-global-azure; learn.microsoft.com/azure/china/resources-developer-
  guide).
- Sign-in host (azure-identity's AzureAuthorityHosts, AZURE_AUTHORITY_HOST):
  login.microsoftonline.us, login.chinacloudapi.cn.
- Cosmos DB endpoints ``<account>.documents.azure.us`` / ``.documents.azure.cn``; registry
  login servers ``<name>.azurecr.us`` / ``<name>.azurecr.cn``, geo-replicas' regional hosts
  ``<name>.<region>.data.azurecr.<suffix>``; storage ``core.usgovcloudapi.net`` /
  ``core.chinacloudapi.cn``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import ClientAuthenticationError

from acr_webhook import __main__ as cli
from acr_webhook.acr_history import ManagementApiHistory
from acr_webhook.config import DEFAULT_ARM_ENDPOINT, ConfigurationError, Settings, load_settings
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import handle_webhook
from acr_webhook.identity import default_credential
from acr_webhook.reconcile import reconcile_webhooks
from tests.infra.bicep import Json, conditional_branches, template, var
from tests.infra.test_main_template import FUNCTION_APP
from tests.integration.test_reconcile_timer import FakeCredential
from tests.support import payloads
from tests.support.arm_stand_in import TOKEN, ListEventsStandIn
from tests.support.connect_proxy import RecordingConnectProxy
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.support.interleave import InlineExecutor
from tests.unit.test_config import BASE
from tests.unit.test_eventgrid import event_grid
from tests.unit.test_queries import NOW, call

REGISTRY_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-registry"
    "/providers/Microsoft.ContainerRegistry/registries/contoso"
)
WEBHOOK = "acrfunccontoso"


@dataclass(frozen=True)
class Cloud:
    name: str
    arm_endpoint: str  # environment().resourceManager, without its trailing slash
    arm_audience: str  # environment().authentication.audiences[0], without its trailing slash
    authority_host: str
    cosmos_endpoint: str
    queue_endpoint: str
    registry: str  # the login server
    replica: str  # a geo-replica's regional host

    @property
    def arm_host(self) -> str:
        host = urlsplit(self.arm_endpoint).hostname
        assert host is not None
        return host

    def app_settings(self) -> dict[str, str]:
        """What infra/modules/function-app.bicep sets in this cloud (reconcile on)."""
        return {
            "COSMOS_ENDPOINT": self.cosmos_endpoint,
            "AzureWebJobsStorage__queueServiceUri": self.queue_endpoint,
            "ARM_ENDPOINT": self.arm_endpoint,
            "ARM_AUDIENCE": self.arm_audience,
            "ACR_REGISTRY_ID": REGISTRY_ID,
            "ACR_WEBHOOK_NAMES": WEBHOOK,
        }


US_GOVERNMENT = Cloud(
    name="AzureUSGovernment",
    arm_endpoint="https://management.usgovcloudapi.net",
    arm_audience="https://management.core.usgovcloudapi.net",
    authority_host="login.microsoftonline.us",
    cosmos_endpoint="https://cosmos-abc.documents.azure.us:443/",
    queue_endpoint="https://stabc.queue.core.usgovcloudapi.net/",
    registry="contoso.azurecr.us",
    replica="contoso.usgovarizona.data.azurecr.us",
)
CHINA = Cloud(
    name="AzureChinaCloud",
    arm_endpoint="https://management.chinacloudapi.cn",
    arm_audience="https://management.core.chinacloudapi.cn",
    authority_host="login.chinacloudapi.cn",
    cosmos_endpoint="https://cosmos-abc.documents.azure.cn:443/",
    queue_endpoint="https://stabc.queue.core.chinacloudapi.cn/",
    registry="contoso.azurecr.cn",
    replica="contoso.chinanorth3.data.azurecr.cn",
)
CLOUDS = pytest.mark.parametrize("cloud", [US_GOVERNMENT, CHINA], ids=lambda cloud: cloud.name)


def settings_in(cloud: Cloud, tmp_path: Path, **changes: str | None) -> Settings:
    values = {**cloud.app_settings(), **changes}
    given = {name: value for name, value in values.items() if value is not None}
    return load_settings(given, tmp_path / "absent.json")


def pushed_to(registry_host: str, tag: str = "v1", **changes: Any) -> dict[str, Any]:
    payload = payloads.with_new_id(payloads.PUSH, repository="team/api", tag=tag)
    payload["request"]["host"] = registry_host
    payload.update(changes)
    return payload


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every HTTPS connection of the test goes through HTTPS_PROXY, loopback included."""
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield


# --- 1. Reconcile: the cloud's management endpoint, with a token for its audience -----------


@CLOUDS
def test_reconcile_reads_the_history_from_the_clouds_management_endpoint(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxied: None
) -> None:
    """With the settings the template gives the app in that cloud, the timer connects to that
    cloud's management host (and no other), asks its credential for that cloud's audience, and
    stores the missed push of a ``*.azurecr.us`` / ``*.azurecr.cn`` registry."""
    stand_in = ListEventsStandIn(tmp_path, TOKEN, page_size=10, dns_names=[cloud.arm_host])
    stand_in.start()
    proxy = RecordingConnectProxy(tunnel_to=int(stand_in.endpoint.rsplit(":", 1)[1]))
    proxy.start()
    try:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stand_in.certificate))
        settings = settings_in(cloud, tmp_path)
        target = settings.reconcile
        assert target is not None
        missed = pushed_to(cloud.registry)
        stand_in.histories = {
            f"{REGISTRY_ID}/webhooks/{WEBHOOK}/listEvents": [history_entry(missed)]
        }
        credential = FakeCredential()
        repository = FakeEventRepository()

        outcomes = reconcile_webhooks(target, repository, ManagementApiHistory(target, credential))
    finally:
        proxy.stop()
        stand_in.stop()

    assert outcomes[WEBHOOK].counts.summary() == "recorded=1 already=0 skipped=0 invalid=0"
    assert proxy.targets == [f"{cloud.arm_host}:443"]
    assert set(credential.scopes) == {(f"{cloud.arm_audience}/.default",)}
    [request] = stand_in.requests
    assert (request.method, request.authorization) == ("POST", f"Bearer {TOKEN}")
    [stored] = repository.documents.values()
    assert (stored["id"], stored["registry"], stored["source"]) == (
        missed["id"],
        cloud.registry,
        "reconcile",
    )


@CLOUDS
def test_arm_audience_defaults_to_the_endpoint_which_the_cloud_also_accepts(
    cloud: Cloud, tmp_path: Path
) -> None:
    """ARM_ENDPOINT alone (a hand-made deployment): the audience is the endpoint itself, the
    second of environment().authentication.audiences, valid in that cloud too."""
    settings = settings_in(
        cloud, tmp_path, ARM_AUDIENCE=None, ARM_ENDPOINT=cloud.arm_endpoint + "/"
    )
    assert settings.reconcile is not None
    assert settings.reconcile.arm_endpoint == cloud.arm_endpoint
    assert settings.reconcile.arm_scope == f"{cloud.arm_endpoint}/.default"


@CLOUDS
def test_a_sovereign_database_with_the_default_management_endpoint_is_not_the_public_cloud(
    cloud: Cloud, tmp_path: Path
) -> None:
    try:
        settings = settings_in(cloud, tmp_path, ARM_ENDPOINT=None, ARM_AUDIENCE=None)
    except ConfigurationError as error:
        assert "ARM_ENDPOINT" in str(error)
        assert cloud.arm_endpoint in str(error)
        return
    assert settings.reconcile is not None
    assert settings.reconcile.arm_endpoint == cloud.arm_endpoint


@CLOUDS
def test_with_arm_endpoint_unset_the_timer_goes_to_its_own_clouds_management_host(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxied: None
) -> None:
    """As seen on the wire: before the default followed COSMOS_ENDPOINT's cloud, every run
    connected to management.azure.com:443 with a token for https://management.azure.com."""
    proxy = RecordingConnectProxy()  # answers 502: nothing leaves the machine
    proxy.start()
    try:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        target = settings_in(cloud, tmp_path, ARM_ENDPOINT=None, ARM_AUDIENCE=None).reconcile
        assert target is not None
        credential = FakeCredential()
        outcomes = reconcile_webhooks(
            target, FakeEventRepository(), ManagementApiHistory(target, credential)
        )
    finally:
        proxy.stop()
    assert set(proxy.targets) == {f"{cloud.arm_host}:443"}
    assert set(credential.scopes) == {(f"{cloud.arm_endpoint}/.default",)}
    assert outcomes[WEBHOOK].counts.summary() == "recorded=0 already=0 skipped=0 invalid=0"


def test_with_arm_endpoint_unset_a_public_database_keeps_the_public_management_endpoint(
    tmp_path: Path,
) -> None:
    public = dataclasses.replace(
        US_GOVERNMENT, cosmos_endpoint="https://cosmos-abc.documents.azure.com:443/"
    )
    settings = settings_in(public, tmp_path, ARM_ENDPOINT=None, ARM_AUDIENCE=None)
    assert settings.reconcile is not None
    assert settings.reconcile.arm_endpoint == "https://management.azure.com"
    assert settings.reconcile.arm_audience == "https://management.azure.com"


# --- Sign-in outside the managed identity: AZURE_AUTHORITY_HOST ------------------------------


@CLOUDS
def test_a_service_principal_signs_in_at_the_clouds_authority_host(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch, proxied: None
) -> None:
    """The CLI (provision, redrive, events) or a pipeline signed in as a service principal:
    identity.py leaves the authority to AZURE_AUTHORITY_HOST, so the token request goes to
    that cloud's Microsoft Entra ID, never login.microsoftonline.com."""
    proxy = RecordingConnectProxy()  # 502: the request fails after its CONNECT is recorded
    proxy.start()
    try:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", f"https://{cloud.authority_host}")
        monkeypatch.setenv("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000001")
        monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000002")
        monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-a-secret")
        with pytest.raises(ClientAuthenticationError):
            default_credential().get_token(f"{cloud.arm_audience}/.default")
    finally:
        proxy.stop()
    assert proxy.targets
    assert set(proxy.targets) == {f"{cloud.authority_host}:443"}


# --- 2. Registry hosts: stored, filtered, grouped and shown as any other ---------------------


@CLOUDS
def test_a_sovereign_registrys_events_are_stored_filtered_grouped_and_listed(
    cloud: Cloud, cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    """A push delivered by the webhook from the login server and by Event Grid from a
    geo-replica's regional host: both stored with their host; the registry filter takes the
    login server; the pushes view counts one push (the registry by its name); the CLI shows it."""
    by_webhook = pushed_to(cloud.registry, timestamp="2026-11-23T10:00:00Z")
    result = handle_webhook(payloads.body(by_webhook), cli_reader, now=lambda: NOW)
    assert result.status == 201, result.body
    from_replica = {**by_webhook, "id": "replica-event", "request": dict(by_webhook["request"])}
    from_replica["request"]["host"] = cloud.replica
    from_replica["timestamp"] = "2026-11-23T10:00:01Z"
    grid = handle_eventgrid(
        payloads.body([event_grid(from_replica)]),
        {},
        cli_reader,
        now=lambda: NOW,
        executor=InlineExecutor(),
    )
    assert grid.body == {"recorded": 1, "duplicate": 0, "ignored": 0}

    status, body = call({"registry": cloud.registry}, cli_reader)
    assert status == 200
    assert [(e["id"], e["registry"]) for e in body["events"]] == [
        (by_webhook["id"], cloud.registry)
    ]
    status, body = call({"view": "pushes"}, cli_reader)
    assert status == 200
    [push] = body["pushes"]
    assert (push["registry"], len(push["regions"])) == (cloud.registry, 2)

    assert cli.main(["events", "--registry", cloud.registry]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert row.split()[header.lower().split().index("registry")] == cloud.registry


# --- config: the management endpoint of the Cosmos DB account's cloud ---------------------------


def test_a_host_that_only_contains_a_national_cloud_s_suffix_keeps_the_public_endpoint(
    tmp_path: Path,
) -> None:
    """Mutant killed: the suffix looked for anywhere in the host (``in`` for ``endswith``): an
    account reached by a name of the public cloud's (a custom domain that merely starts with a
    Government account's host) is no Government account."""
    values = {
        **BASE,
        "COSMOS_ENDPOINT": "https://acct.documents.azure.us.contoso.com:443/",
        "ACR_REGISTRY_ID": REGISTRY_ID,
        "ACR_WEBHOOK_NAMES": "hook",
    }
    reconcile = load_settings(values, tmp_path / "absent.json").reconcile
    assert reconcile is not None
    assert reconcile.arm_endpoint == DEFAULT_ARM_ENDPOINT


# --- infra/modules/function-app.bicep: statsbeat outside the public cloud ---------------------


def test_statsbeat_is_turned_off_in_every_cloud_but_the_public_one() -> None:
    """Mutants killed: the condition flipped (off in the public cloud, on where it leaves the
    cloud), never off, and a value the exporter does not read as off (it disables statsbeat
    only for ``true``, in any case: azure-monitor-opentelemetry-exporter's
    ``is_statsbeat_enabled``)."""
    statsbeat = var(template(FUNCTION_APP), "statsbeatAppSettings")
    in_the_cloud: Json = {"function": {"type": "environment", "property_name": "name"}}
    assert conditional_branches(statsbeat) == (
        {
            "operator": {
                "type": "equals",
                "operands": {"operand_1": in_the_cloud, "operand_2": "AzureCloud"},
            }
        },
        {},
        {"APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"},
    )
