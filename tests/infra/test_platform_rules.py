"""Platform rules the Azure type definitions do not show: the types allow these properties and
settings, Azure rejects or ignores them on a Flex Consumption app. Every Bicep file is checked,
and each rule is shown to fail on a snippet that breaks it.

Sources: ARM BadRequest 51021 messages quoted in microsoft/azure-pipelines-tasks#21032
(FtpsState, Use32BitWorkerProcess, NetFrameworkVersion, FunctionsRuntimeScaleMonitoringEnabled),
Azure/azure-functions-host#10643 (FunctionAppScaleLimit) and
Azure/terraform-azurerm-avm-res-web-site#345 (LinuxFxVersion); the deprecated app settings are
the "Flex Consumption plan deprecations" of the Functions app settings reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, Json, bicep_files, parse_bicep, resources_of_type

# siteConfig properties a Flex Consumption site rejects (BadRequest 51021). The runtime lives in
# functionAppConfig.runtime, scaling in functionAppConfig.scaleAndConcurrency, and FTP is turned
# off with the 'ftp' basicPublishingCredentialsPolicies resource.
FLEX_REJECTED_SITE_CONFIG = frozenset(
    {
        "ftpsState",
        "linuxFxVersion",
        "windowsFxVersion",
        "use32BitWorkerProcess",
        "netFrameworkVersion",
        "functionsRuntimeScaleMonitoringEnabled",
        "functionAppScaleLimit",
        "preWarmedInstanceCount",
    }
)

# App settings Flex Consumption replaced with functionAppConfig (or has no use for).
FLEX_DEPRECATED_APP_SETTINGS = frozenset(
    {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_MAX_HTTP_CONCURRENCY",
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
    }
)

FLEX_SITE = """\
param identityId string

resource app 'Microsoft.Web/sites@2024-11-01' = {{
  name: 'func-example'
  location: resourceGroup().location
  kind: 'functionapp,linux'
  properties: {{
    siteConfig: {{
      minTlsVersion: '1.2'
{extra}
    }}
    functionAppConfig: {{
      runtime: {{
        name: 'python'
        version: '3.11'
      }}
    }}
  }}
}}
"""


def _body(entry: Json) -> Json:
    config: Json = entry["config"]
    if set(config) == {"condition", "config"}:
        inner: Json = config["config"]
        return inner
    return config


def flex_violations(document: Json) -> list[str]:
    """Rejected siteConfig properties and deprecated literal app settings on Flex sites.

    A site is a Flex Consumption site when it has ``functionAppConfig`` (a Flex-only shape).
    """
    violations: list[str] = []
    for name, entry in resources_of_type(document, "Microsoft.Web/sites").items():
        properties = _body(entry).get("properties") or {}
        if "functionAppConfig" not in properties:
            continue
        site_config = properties.get("siteConfig") or {}
        violations += [
            f"{name}: siteConfig.{key}"
            for key in sorted(site_config)
            if key in FLEX_REJECTED_SITE_CONFIG
        ]
        settings = site_config.get("appSettings")
        if isinstance(settings, list):  # literal [{name: ..., value: ...}] lists
            violations += [
                f"{name}: app setting {item['name']}"
                for item in settings
                if isinstance(item, dict) and item.get("name") in FLEX_DEPRECATED_APP_SETTINGS
            ]
    return violations


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_flex_sites_set_nothing_flex_rejects(path: Path) -> None:
    assert flex_violations(parse_bicep(path)) == []


def test_the_app_is_checked_as_a_flex_site() -> None:
    """Control: the rule above really looks at the deployed app (it has functionAppConfig)."""
    document = parse_bicep(INFRA / "modules" / "function-app.bicep")
    sites = resources_of_type(document, "Microsoft.Web/sites")
    assert sites, "function-app.bicep declares no site"
    assert all("functionAppConfig" in _body(entry)["properties"] for entry in sites.values())


def test_flex_rule_passes_a_clean_site(tmp_path: Path) -> None:
    snippet = tmp_path / "clean.bicep"
    snippet.write_text(FLEX_SITE.format(extra="      http20Enabled: true"))
    assert flex_violations(parse_bicep(snippet)) == []


@pytest.mark.parametrize(
    ("extra", "violation"),
    [
        ("      ftpsState: 'Disabled'", "app: siteConfig.ftpsState"),
        ("      linuxFxVersion: 'Python|3.11'", "app: siteConfig.linuxFxVersion"),
        ("      use32BitWorkerProcess: false", "app: siteConfig.use32BitWorkerProcess"),
        (
            "      appSettings: [\n        {\n          name: 'FUNCTIONS_WORKER_RUNTIME'\n"
            "          value: 'python'\n        }\n      ]",
            "app: app setting FUNCTIONS_WORKER_RUNTIME",
        ),
    ],
    ids=["ftpsState", "linuxFxVersion", "use32BitWorkerProcess", "FUNCTIONS_WORKER_RUNTIME"],
)
def test_flex_rule_fails_on_a_rejected_property(tmp_path: Path, extra: str, violation: str) -> None:
    snippet = tmp_path / "rejected.bicep"
    snippet.write_text(FLEX_SITE.format(extra=extra))
    assert flex_violations(parse_bicep(snippet)) == [violation]
