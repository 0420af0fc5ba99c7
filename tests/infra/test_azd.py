"""azd wiring: azure.yaml, main.parameters.json and the postdeploy hook (with a fake az)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from tests.infra.bicep import INFRA, REPO_ROOT, module, template

HOOK = INFRA / "hooks" / "postdeploy.sh"


def azure_yaml() -> dict[str, object]:
    document = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())
    assert isinstance(document, dict)
    return document


def test_azure_yaml_deploys_the_python_function_app() -> None:
    document = azure_yaml()
    assert document["services"] == {
        "api": {"project": ".", "language": "python", "host": "function"}
    }
    assert document["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}


def test_azure_yaml_postdeploy_hook_scripts_exist() -> None:
    hooks = azure_yaml()["hooks"]
    assert isinstance(hooks, dict)
    postdeploy = hooks["postdeploy"]
    assert postdeploy["posix"]["shell"] == "sh"
    assert postdeploy["windows"]["shell"] == "pwsh"
    for platform in ("posix", "windows"):
        script = REPO_ROOT / postdeploy[platform]["run"]
        assert script.is_file(), script
        assert "webhook.bicep" in script.read_text()


def test_main_parameters_file_matches_main_bicep() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = template("main.bicep")["parameters"]
    assert set(parameters) <= set(declared), "unknown parameter in main.parameters.json"
    required = {name for name, entry in declared.items() if entry["default"] is None}
    assert required <= set(parameters), "a required parameter has no azd value"
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    # main.bicep (reconcile settings, registry role) and the hook read the same variables.
    assert parameters["registryName"]["value"] == "${ACR_REGISTRY_NAME}"
    assert parameters["registryResourceGroup"]["value"] == "${ACR_REGISTRY_RESOURCE_GROUP}"
    assert parameters["deliveryMode"]["value"] == "${ACR_DELIVERY_MODE=webhook}"
    assert parameters["webhookName"]["value"] == "${ACR_WEBHOOK_NAME}"


def test_azd_keeps_the_app_on_the_cosmos_db_account_its_last_provision_named() -> None:
    """After a point-in-time restore, `azd env set COSMOS_ACCOUNT_NAME <restored>` moves the
    app (operations.md): the parameter reads the variable that main.bicep's output of the same
    name keeps in azd's environment, so later provisions stay on that account, and an empty one
    (a first provision) is the template's own name."""
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    main = template("main.bicep")
    assert parameters["cosmosAccountName"]["value"] == "${COSMOS_ACCOUNT_NAME}"
    assert "COSMOS_ACCOUNT_NAME" in main["outputs"]
    assert main["parameters"]["cosmosAccountName"]["default"] == ""
    account_name = json.dumps(module(main, "cosmos")["params"]["accountName"])
    assert account_name.count("cosmosAccountName") == 2, account_name


# --- postdeploy.sh with a fake az on PATH -----------------------------------------------------

FAKE_AZ = """#!/bin/sh
# Records each call; fails the first $FAKE_AZ_FAILURES calls.
printf '%s\\n' "$@" > "$FAKE_AZ_DIR/call-$(ls "$FAKE_AZ_DIR" | grep -c call-)"
calls=$(ls "$FAKE_AZ_DIR" | grep -c call-)
if [ "$calls" -le "${FAKE_AZ_FAILURES:-0}" ]; then
  echo "ERROR: host not ready" >&2
  exit 1
fi
echo '{}'
"""

AZD_ENV = {
    "AZURE_ENV_NAME": "dev",
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-00000000abcd",
    "AZURE_RESOURCE_GROUP": "rg-app",
    "AZURE_FUNCTION_APP_NAME": "func-abc123",
}


@pytest.fixture
def fake_az(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ)
    az.chmod(az.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls"
    calls.mkdir()
    return calls


def run_hook(calls: Path, **env: str) -> subprocess.CompletedProcess[str]:
    sh = shutil.which("sh")
    assert sh
    environment = {
        "PATH": f"{calls.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AZ_DIR": str(calls),
        "ACR_CONNECT_RETRY_SECONDS": "0",
        **env,
    }
    return subprocess.run(
        [sh, str(HOOK.relative_to(REPO_ROOT))],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def az_calls(calls: Path) -> list[list[str]]:
    return [path.read_text().splitlines() for path in sorted(calls.iterdir())]


def deployment_parameters(arguments: list[str]) -> dict[str, str]:
    start = arguments.index("--parameters") + 1
    end = next(i for i in range(start, len(arguments)) if arguments[i].startswith("--"))
    return dict(argument.split("=", 1) for argument in arguments[start:end])


def test_hook_without_registry_explains_and_deploys_nothing(fake_az: Path) -> None:
    result = run_hook(fake_az, **AZD_ENV)
    assert result.returncode == 0, result.stderr
    assert "azd env set ACR_REGISTRY_NAME" in result.stdout
    assert az_calls(fake_az) == []


def test_hook_deploys_webhook_bicep_with_azd_values(fake_az: Path) -> None:
    result = run_hook(fake_az, **AZD_ENV, ACR_REGISTRY_NAME="myregistry")
    assert result.returncode == 0, result.stderr
    (call,) = az_calls(fake_az)
    assert call[:3] == ["deployment", "group", "create"]
    assert call[call.index("--resource-group") + 1] == "rg-app"
    assert call[call.index("--subscription") + 1] == AZD_ENV["AZURE_SUBSCRIPTION_ID"]
    template_file = (REPO_ROOT / call[call.index("--template-file") + 1]).resolve()
    assert template_file == (INFRA / "webhook.bicep").resolve()

    parameters = deployment_parameters(call)
    assert set(parameters) <= set(template("webhook.bicep")["parameters"])
    assert parameters["functionAppName"] == "func-abc123"
    assert parameters["registryName"] == "myregistry"
    assert parameters["registryResourceGroup"] == "rg-app"  # default: the app's group
    assert parameters["deliveryMode"] == "webhook"


def test_hook_passes_registry_group_and_delivery_mode(fake_az: Path) -> None:
    result = run_hook(
        fake_az,
        **AZD_ENV,
        ACR_REGISTRY_NAME="myregistry",
        ACR_REGISTRY_RESOURCE_GROUP="rg-shared",
        ACR_DELIVERY_MODE="both",
        ACR_WEBHOOK_SCOPE="team/*:*",
    )
    assert result.returncode == 0, result.stderr
    (call,) = az_calls(fake_az)
    parameters = deployment_parameters(call)
    assert parameters["registryResourceGroup"] == "rg-shared"
    assert parameters["deliveryMode"] == "both"
    assert parameters["webhookScope"] == "team/*:*"


def test_hook_passes_the_webhook_name_main_bicep_also_reads(fake_az: Path) -> None:
    result = run_hook(fake_az, **AZD_ENV, ACR_REGISTRY_NAME="myregistry", ACR_WEBHOOK_NAME="mine")
    assert result.returncode == 0, result.stderr
    (call,) = az_calls(fake_az)
    assert deployment_parameters(call)["webhookName"] == "mine"


def test_hook_retries_while_the_host_starts(fake_az: Path) -> None:
    result = run_hook(fake_az, **AZD_ENV, ACR_REGISTRY_NAME="myregistry", FAKE_AZ_FAILURES="2")
    assert result.returncode == 0, result.stderr
    assert len(az_calls(fake_az)) == 3


def test_hook_gives_up_after_four_attempts(fake_az: Path) -> None:
    result = run_hook(fake_az, **AZD_ENV, ACR_REGISTRY_NAME="myregistry", FAKE_AZ_FAILURES="99")
    assert result.returncode != 0
    assert len(az_calls(fake_az)) == 4
    assert "failed 4 times" in result.stderr


def test_hook_requires_the_provisioned_app(fake_az: Path) -> None:
    environment = {**AZD_ENV, "ACR_REGISTRY_NAME": "myregistry"}
    del environment["AZURE_FUNCTION_APP_NAME"]
    result = run_hook(fake_az, **environment)
    assert result.returncode != 0
    assert "AZURE_FUNCTION_APP_NAME" in result.stderr
    assert az_calls(fake_az) == []
