"""The templates in Azure US Government and Azure operated by 21Vianet (China): what must come
from the cloud (``environment()``, the resources' own endpoints), what keeps the template in the
public cloud, and what the docs must then say. The app's side is
tests/unit/test_national_clouds.py; the storage suffix and the management endpoint are pinned in
test_main_template.py and test_reconcile_infra.py.
"""

from __future__ import annotations

import re

from tests.infra.bicep import INFRA, REPO_ROOT, decorators, param, template
from tests.infra.test_main_template import MAIN, app_settings

# Hosts of the public cloud that have another name in each sovereign cloud (core.windows.net,
# the storage suffix, has a test of its own in test_main_template.py).
PUBLIC_CLOUD_HOSTS = (
    "management.azure.com",
    "management.core.windows.net",
    "login.microsoftonline.com",
    "documents.azure.com",
    "azurecr.io",
    "azurewebsites.net",
    "applicationinsights.azure.com",
    "monitor.azure.com",
    "vault.azure.net",
    "servicebus.windows.net",
)
# A JSON file's "$schema" names the schema, not a host the deployment talks to.
SCHEMA_URL = re.compile(r'"\$schema"\s*:\s*"[^"]*"')
# Region names of the sovereign clouds (az account list-locations there).
SOVEREIGN_REGION = re.compile(r"^(usgov|usdod|usnat|ussec|china)")


def test_no_infra_file_names_a_public_cloud_host() -> None:
    """Endpoints come from environment() or from the resources themselves (primaryEndpoints,
    properties.ConnectionString, documentEndpoint, defaultHostName), so that the same template
    names the right hosts in every cloud. The hooks and azd's files included."""
    offenders = sorted(
        (path.relative_to(INFRA.parent).as_posix(), host)
        for path in [*INFRA.rglob("*"), REPO_ROOT / "azure.yaml"]
        if path.is_file()
        for host in PUBLIC_CLOUD_HOSTS
        if host in SCHEMA_URL.sub("", path.read_text(errors="replace")).lower()
    )
    assert offenders == []


def test_the_template_offers_no_sovereign_region() -> None:
    """The plan is Flex Consumption only (FC1), which US Government does not offer (Azure
    support, quoted in polymind-inc/acmebot#1102, June 2026): `location` allows public regions
    only, so a deployment there stops at validation, before anything is created. Whoever adds a
    sovereign region must add a plan that cloud offers too."""
    allowed = decorators(param(template(MAIN), "location"))["allowed"]
    assert allowed
    assert [region for region in allowed if SOVEREIGN_REGION.match(region)] == []


def test_deploy_md_says_which_clouds_the_template_supports() -> None:
    deploy = (REPO_ROOT / "docs" / "deploy.md").read_text()
    for cloud in ("Azure Government", "21Vianet"):
        assert cloud in deploy
    for setting in ("ARM_ENDPOINT", "AZURE_AUTHORITY_HOST", "az cloud set"):
        assert setting in deploy


def test_the_exporters_statistics_stay_out_of_the_public_cloud() -> None:
    assert "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL" in app_settings()
