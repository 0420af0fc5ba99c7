from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from urllib3.exceptions import InsecureRequestWarning

from acr_webhook.config import (
    DEFAULT_CONTAINER,
    DEFAULT_DATABASE,
    FALLBACK_QUEUE_NAME,
    ConfigurationError,
    ca_bundle,
    load_settings,
    parse_registry_id,
    proxy_configured,
    queue_settings,
)
from acr_webhook.fallback import create_queue_client
from acr_webhook.repository import create_transport
from acr_webhook.tls import is_loopback, verify_tls


def write_settings(path: Path, values: dict[str, str]) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


def test_defaults_apply_when_only_the_endpoint_is_set(tmp_path: Path) -> None:
    settings = load_settings(
        {"COSMOS_ENDPOINT": "https://a.documents.azure.com:443/"}, tmp_path / "absent.json"
    )
    assert settings.cosmos_database == DEFAULT_DATABASE == "acr"
    assert settings.cosmos_container == DEFAULT_CONTAINER == "events"
    assert settings.cosmos_key is None
    assert settings.local_function_key is None


def test_local_settings_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    file = write_settings(
        tmp_path / "local.settings.json",
        {
            "COSMOS_ENDPOINT": "https://127.0.0.1:8081/",
            "COSMOS_KEY": "a2V5",
            "COSMOS_DATABASE": "db-from-file",
            "COSMOS_CONTAINER": "from-file",
            "LOCAL_FUNCTION_KEY": "file-key",
        },
    )
    settings = load_settings({"COSMOS_CONTAINER": "from-env"}, file)
    assert settings.cosmos_endpoint == "https://127.0.0.1:8081/"
    assert settings.cosmos_key == "a2V5"
    assert settings.cosmos_database == "db-from-file"
    assert settings.cosmos_container == "from-env"
    assert settings.local_function_key == "file-key"


def test_the_settings_file_is_local_settings_json_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where Core Tools reads it too: a local run needs no path."""
    write_settings(tmp_path / "local.settings.json", {"COSMOS_ENDPOINT": "https://127.0.0.1:8081/"})
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).cosmos_endpoint == "https://127.0.0.1:8081/"


def test_the_webhook_secret_and_its_header_are_read(tmp_path: Path) -> None:
    absent = tmp_path / "absent.json"
    settings = load_settings(BASE, absent)
    assert (settings.webhook_secret, settings.webhook_secret_header) == (None, "Authorization")
    values = {**BASE, "WEBHOOK_SECRET": "s3cret", "WEBHOOK_SECRET_HEADER": "X-Acr-Secret"}
    settings = load_settings(values, absent)
    assert (settings.webhook_secret, settings.webhook_secret_header) == ("s3cret", "X-Acr-Secret")


@pytest.mark.parametrize("endpoint", [None, "", "   "])
def test_missing_endpoint_is_a_configuration_error_naming_it(
    tmp_path: Path, endpoint: str | None
) -> None:
    environ = {} if endpoint is None else {"COSMOS_ENDPOINT": endpoint}
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ, tmp_path / "absent.json")
    # Not set, and where to set it: not "must be an https:// URL" about a value never given.
    assert str(error.value) == (
        "COSMOS_ENDPOINT is not set (environment or local.settings.json Values)"
    )


@pytest.mark.parametrize("endpoint", ["http://myaccount.documents.azure.com:443/", "x.com"])
def test_a_cosmos_endpoint_that_is_not_https_is_refused(endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"COSMOS_ENDPOINT must be an https:// URL"):
        load_settings({"COSMOS_ENDPOINT": endpoint}, tmp_path / "absent.json")


@pytest.mark.parametrize("endpoint", ["HTTPS://127.0.0.1:8081/", "Https://127.0.0.1:8081/"])
def test_a_cosmos_endpoint_s_scheme_is_read_in_any_case(endpoint: str, tmp_path: Path) -> None:
    """Schemes ignore case (RFC 3986): "HTTPS://" was refused as "must be an https:// URL"."""
    settings = load_settings({"COSMOS_ENDPOINT": endpoint}, tmp_path / "absent.json")
    assert settings.cosmos_endpoint == "https://127.0.0.1:8081/"


def test_a_settings_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Saved by Windows PowerShell 5's Out-File -Encoding utf8 and some editors: it was exit 2,
    "not readable JSON: Unexpected UTF-8 BOM", where Core Tools reads it."""
    file = write_settings(tmp_path / "local.settings.json", {"COSMOS_ENDPOINT": "https://x/"})
    file.write_bytes(b"\xef\xbb\xbf" + file.read_bytes())
    assert load_settings({}, file).cosmos_endpoint == "https://x/"


def test_broken_settings_file_is_reported(tmp_path: Path) -> None:
    file = tmp_path / "local.settings.json"
    file.write_text("{oops")
    with pytest.raises(ConfigurationError, match=r"local\.settings\.json"):
        load_settings({"COSMOS_ENDPOINT": "https://x/"}, file)


def test_a_settings_file_whose_values_are_not_an_object_is_reported(tmp_path: Path) -> None:
    file = tmp_path / "local.settings.json"
    file.write_text(json.dumps({"Values": ["COSMOS_ENDPOINT=https://x/"]}))
    with pytest.raises(
        ConfigurationError, match=r'local\.settings\.json: "Values" must be an object'
    ):
        load_settings({}, file)


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("https://127.0.0.1:8081/", True),
        ("https://127.10.0.3:8081/", True),
        ("https://localhost:8081/", True),
        ("https://[::1]:8081/", True),
        ("https://myaccount.documents.azure.com:443/", False),
        ("https://10.0.0.4:8081/", False),
        ("https://127.0.0.1.evil.example/", False),
        ("https://localhost.evil.example/", False),
    ],
)
def test_tls_verification_is_skipped_only_for_loopback(
    endpoint: str, loopback: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    assert is_loopback(endpoint) is loopback
    assert verify_tls(endpoint) is (not loopback)  # the Cosmos DB and management clients' choice
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/corporate-ca.pem")
    assert verify_tls(endpoint) == (False if loopback else "/etc/corporate-ca.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/other-ca.pem")  # first, as requests has it
    assert verify_tls(endpoint) == (False if loopback else "/etc/other-ca.pem")


def unverified(host: str) -> str:
    """urllib3's warning on each request made without verifying the certificate."""
    return (
        f"Unverified HTTPS request is being made to host '{host}'. Adding certificate "
        "verification is strongly advised."
    )


def test_unverified_request_warnings_are_silenced_for_loopback_hosts_only() -> None:
    """One warning per request to the local stand-ins would bury everything else; a request
    to any other host unverified, or another warning with those words, is still reported."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert verify_tls("https://localhost:8081/") is False
        for host in ("127.0.0.1", "127.10.0.3", "localhost", "::1", "a.documents.azure.com"):
            warnings.warn(unverified(host), InsecureRequestWarning, stacklevel=1)
        warnings.warn(unverified("127.0.0.1"), UserWarning, stacklevel=1)
    assert [(str(warning.message), warning.category) for warning in caught] == [
        (unverified("a.documents.azure.com"), InsecureRequestWarning),
        (unverified("127.0.0.1"), UserWarning),
    ]


BASE = {"COSMOS_ENDPOINT": "https://a.documents.azure.com:443/"}
REGISTRY_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.ContainerRegistry/registries/myregistry"
)


def test_retention_days_is_read_and_checked(tmp_path: Path) -> None:
    absent = tmp_path / "absent.json"
    assert load_settings(BASE, absent).retention_days is None
    assert load_settings({**BASE, "RETENTION_DAYS": "1"}, absent).retention_days == 1
    assert load_settings({**BASE, "RETENTION_DAYS": "90"}, absent).retention_days == 90
    assert load_settings({**BASE, "RETENTION_DAYS": "24855"}, absent).retention_days == 24855
    for bad in ("0", "-1", "1.5", "ninety", "24856", "\u00b2", "\u0661\u0662", "9" * 5000):
        with pytest.raises(ConfigurationError, match="RETENTION_DAYS"):
            load_settings({**BASE, "RETENTION_DAYS": bad}, absent)


def test_the_replay_cap_defaults_to_60_s_and_is_checked(tmp_path: Path) -> None:
    absent = tmp_path / "absent.json"
    assert load_settings(BASE, absent).replay_max_delay_s == 60
    for good in ("1", "3600"):
        settings = load_settings({**BASE, "REPLAY_MAX_DELAY_SECONDS": good}, absent)
        assert settings.replay_max_delay_s == int(good)
    for bad in ("0", "-1", "1.5", "sixty", "3601", "\u00b2", "\u0661\u0662", "9" * 5000):
        with pytest.raises(ConfigurationError, match="REPLAY_MAX_DELAY_SECONDS"):
            load_settings({**BASE, "REPLAY_MAX_DELAY_SECONDS": bad}, absent)


def test_reconcile_settings_default_to_the_public_cloud(tmp_path: Path) -> None:
    values = {**BASE, "ACR_REGISTRY_ID": REGISTRY_ID, "ACR_WEBHOOK_NAMES": "hookone, hooktwo"}
    reconcile = load_settings(values, tmp_path / "absent.json").reconcile
    assert reconcile is not None
    assert reconcile.registry_id == REGISTRY_ID
    assert reconcile.webhook_names == ("hookone", "hooktwo")
    assert reconcile.arm_endpoint == "https://management.azure.com"
    assert reconcile.arm_scope == "https://management.azure.com/.default"


def test_reconcile_settings_take_a_sovereign_cloud_endpoint_and_audience(tmp_path: Path) -> None:
    values = {
        **BASE,
        "ACR_REGISTRY_ID": REGISTRY_ID,
        "ACR_WEBHOOK_NAMES": "hook",
        "ARM_ENDPOINT": "https://management.chinacloudapi.cn/",
        "ARM_AUDIENCE": "https://management.core.chinacloudapi.cn/",
    }
    reconcile = load_settings(values, tmp_path / "absent.json").reconcile
    assert reconcile is not None
    assert reconcile.arm_endpoint == "https://management.chinacloudapi.cn"
    assert reconcile.arm_scope == "https://management.core.chinacloudapi.cn/.default"


def test_an_arm_endpoint_s_scheme_is_read_in_any_case(tmp_path: Path) -> None:
    """The token's audience defaults to the endpoint, so it is written as Entra ID knows it."""
    values = {
        **BASE,
        "ACR_REGISTRY_ID": REGISTRY_ID,
        "ACR_WEBHOOK_NAMES": "hook",
        "ARM_ENDPOINT": "HTTPS://management.azure.com/",
    }
    reconcile = load_settings(values, tmp_path / "absent.json").reconcile
    assert reconcile is not None
    assert reconcile.arm_endpoint == "https://management.azure.com"
    assert reconcile.arm_scope == "https://management.azure.com/.default"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"ACR_REGISTRY_ID": "myregistry", "ACR_WEBHOOK_NAMES": "hook"}, "ACR_REGISTRY_ID"),
        (  # the resource group's id, not the registry's
            {"ACR_REGISTRY_ID": REGISTRY_ID.split("/providers/")[0], "ACR_WEBHOOK_NAMES": "hook"},
            "ACR_REGISTRY_ID",
        ),
        (  # no resource group: ARM has no such id, and every timer run would fail on it
            {
                "ACR_REGISTRY_ID": "/subscriptions/s/providers/Microsoft.ContainerRegistry"
                "/registries/r",
                "ACR_WEBHOOK_NAMES": "hook",
            },
            "ACR_REGISTRY_ID",
        ),
        ({"ACR_REGISTRY_ID": REGISTRY_ID}, "ACR_WEBHOOK_NAMES"),
        (
            {"ACR_REGISTRY_ID": REGISTRY_ID, "ACR_WEBHOOK_NAMES": "h", "ARM_ENDPOINT": "http://x"},
            "ARM_ENDPOINT",
        ),
    ],
)
def test_incomplete_reconcile_settings_name_the_setting(
    tmp_path: Path, extra: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        load_settings({**BASE, **extra}, tmp_path / "absent.json")


# As the deployed app gets it: the storage account's primaryEndpoints.queue, with its trailing
# slash, in a cloud whose suffix is not the public one, next to the public-cloud account name.
SOVEREIGN_QUEUE_ENDPOINT = "https://st123.queue.core.chinacloudapi.cn/"


def test_without_a_storage_connection_there_is_no_fallback_queue(tmp_path: Path) -> None:
    assert load_settings(BASE, tmp_path / "absent.json").fallback_queue is None
    blank = {"AzureWebJobsStorage": " ", "AzureWebJobsStorage__accountName": ""}
    assert queue_settings(blank) is None


def test_the_queue_service_uri_wins_over_the_account_name(tmp_path: Path) -> None:
    storage = {
        "AzureWebJobsStorage__queueServiceUri": SOVEREIGN_QUEUE_ENDPOINT,
        "AzureWebJobsStorage__accountName": "st123",
    }
    settings = load_settings({**BASE, **storage}, tmp_path / "absent.json")
    assert settings.fallback_queue is not None
    assert settings.fallback_queue.queue_service_uri == SOVEREIGN_QUEUE_ENDPOINT


def test_a_queue_service_uri_with_a_trailing_slash_addresses_the_queues(tmp_path: Path) -> None:
    storage = {"AzureWebJobsStorage__queueServiceUri": SOVEREIGN_QUEUE_ENDPOINT}
    queue = load_settings({**BASE, **storage}, tmp_path / "absent.json").fallback_queue
    assert queue is not None
    # Made with the identity; building the client makes no request.
    assert create_queue_client(queue, {}).url == (
        f"https://st123.queue.core.chinacloudapi.cn/{FALLBACK_QUEUE_NAME}"
    )
    assert create_queue_client(queue.poison, {}).url == (
        f"https://st123.queue.core.chinacloudapi.cn/{FALLBACK_QUEUE_NAME}-poison"
    )


@pytest.mark.parametrize(
    ("environ", "configured"),
    [
        ({}, False),
        ({"HTTPS_PROXY": ""}, False),
        ({"NO_PROXY": "localhost"}, False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, True),
        ({"http_proxy": "http://proxy:3128"}, True),
        # requests honours these in either case too; all_proxy alone used to be missed, and
        # the proxy then ignored (trust_env off).
        ({"all_proxy": "http://proxy:3128"}, True),
        ({"ALL_PROXY": "http://proxy:3128"}, True),
    ],
)
def test_a_proxy_in_the_environment_is_noticed_in_any_case(
    environ: dict[str, str], configured: bool
) -> None:
    assert proxy_configured(environ) is configured


def test_the_cosmos_transport_reads_the_environment_only_when_a_proxy_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corporate-ca.pem")  # verify_tls passes it on
    assert create_transport().session.trust_env is False
    monkeypatch.setenv("all_proxy", "http://proxy.invalid:3128")
    assert create_transport().session.trust_env is True


def test_no_secret_shows_in_a_settings_repr(tmp_path: Path) -> None:
    environ = {
        "COSMOS_ENDPOINT": "https://example.documents.azure.com:443/",
        "COSMOS_KEY": "cosmos-key-must-not-show",
        "LOCAL_FUNCTION_KEY": "function-key-must-not-show",
        "WEBHOOK_SECRET": "webhook-secret-must-not-show",
    }
    shown = repr(load_settings(environ, tmp_path / "absent.json"))
    assert "must-not-show" not in shown
    assert "cosmos_endpoint='https://example.documents.azure.com:443/'" in shown
    connection = "DefaultEndpointsProtocol=https;AccountKey=accountKeyMustNotShow000="
    assert "MustNotShow" not in repr(queue_settings({"AzureWebJobsStorage": connection}))


# --- config.ca_bundle: the CA bundle requests would pick ----------------------------------------


@pytest.mark.parametrize(
    ("environ", "bundle"),
    [
        ({}, None),
        ({"REQUESTS_CA_BUNDLE": "/etc/corp.pem"}, "/etc/corp.pem"),
        ({"CURL_CA_BUNDLE": "/etc/corp.pem"}, "/etc/corp.pem"),
        ({"REQUESTS_CA_BUNDLE": "/etc/a.pem", "CURL_CA_BUNDLE": "/etc/b.pem"}, "/etc/a.pem"),
        ({"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "/etc/b.pem"}, "/etc/b.pem"),
        ({"REQUESTS_CA_BUNDLE": ""}, None),  # requests ignores an empty one too
        ({"requests_ca_bundle": "/etc/corp.pem"}, None),  # "these it reads in this case only"
    ],
)
def test_the_ca_bundle_in_the_environment_is_the_one_requests_would_pick(
    environ: dict[str, str], bundle: str | None
) -> None:
    """config.CA_BUNDLE_VARIABLES: requests' own lookup (sessions.merge_environment_settings:
    REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE)."""
    assert ca_bundle(environ) == bundle


# --- config._check_https_url: a host, as urllib3 reads it ----------------------------------------


@pytest.mark.parametrize("endpoint", ["https://:443/", "https://@/", "https://user@:1/"])
def test_an_endpoint_whose_host_urllib3_reads_as_empty_is_refused(
    endpoint: str, tmp_path: Path
) -> None:
    """config._check_https_url: "must be an https:// URL with a host". urllib3 reads an empty
    host here, not None (test_uncovered_paths' "https:///" has none at all); requests cannot
    connect to either. Kills: `host is None` for `not host`."""
    absent = tmp_path / "absent.json"
    with pytest.raises(ConfigurationError, match=r"^COSMOS_ENDPOINT must .* with a host$"):
        load_settings({"COSMOS_ENDPOINT": endpoint}, absent)
    values = {**BASE, "ACR_REGISTRY_ID": REGISTRY_ID, "ACR_WEBHOOK_NAMES": "hook"}
    with pytest.raises(ConfigurationError, match=r"^ARM_ENDPOINT must .* with a host$"):
        load_settings({**values, "ARM_ENDPOINT": endpoint}, absent)


# --- config._https_url ---------------------------------------------------------------------------


def test_a_scheme_without_its_separator_is_refused_as_no_https_url(tmp_path: Path) -> None:
    """Mutant killed: the "://" test dropped (then "https" alone became "https://" and was
    refused for its missing host, a message about another mistake)."""
    with pytest.raises(ConfigurationError, match=r"^COSMOS_ENDPOINT must be an https:// URL$"):
        load_settings({"COSMOS_ENDPOINT": "HTTPS"}, tmp_path / "absent.json")


# --- config.parse_registry_id ------------------------------------------------------------------

CONTOSO_REGISTRY_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-acr"
    "/providers/Microsoft.ContainerRegistry/registries/contosoacr"
)


def test_a_registry_id_is_read_by_its_segments() -> None:
    """Mutants killed: the resource group read from another segment; a trailing slash (as
    a copied path has) refused; the provider segment left unchecked, or checked in one case
    only (ARM compares resource ids without regard to case)."""
    ref = parse_registry_id(CONTOSO_REGISTRY_ID + "/")
    assert (ref.subscription_id, ref.resource_group, ref.name) == (
        "00000000-0000-0000-0000-000000000000",
        "rg-acr",
        "contosoacr",
    )
    lower = parse_registry_id(CONTOSO_REGISTRY_ID.lower())
    assert (lower.resource_group, lower.name) == ("rg-acr", "contosoacr")
    with pytest.raises(ConfigurationError, match="ACR_REGISTRY_ID must be one registry's"):
        parse_registry_id(
            CONTOSO_REGISTRY_ID.replace("Microsoft.ContainerRegistry", "Microsoft.Storage")
        )


@pytest.mark.parametrize(
    "registry_id",
    [
        CONTOSO_REGISTRY_ID.removesuffix("contosoacr"),
        CONTOSO_REGISTRY_ID.replace("/rg-acr/", "//"),
    ],
)
def test_a_registry_id_with_an_empty_segment_is_refused_naming_the_setting(
    registry_id: str,
) -> None:
    with pytest.raises(ConfigurationError, match="ACR_REGISTRY_ID"):
        parse_registry_id(registry_id)
