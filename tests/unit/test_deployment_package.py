"""What is deployed stands apart from the local stand-ins for Azure (issue 13): the function app
imports nothing from acr_webhook.local nor any development-only package, and .funcignore keeps
the stand-ins out of the deployment package."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.cosmos_server import REPO_ROOT
from tests.support.publish import azd_ships, core_tools_ships
from tests.support.serve import run_python

# Packages only requirements-dev.txt installs (the local host, its timers, the tests).
DEV_ONLY = ("acr_webhook.local", "waitress", "croniter", "pytest", "hypothesis", "aiohttp")


def test_the_function_app_imports_no_local_stand_in_and_no_dev_package(tmp_path: Path) -> None:
    """function_app as the worker imports it, in a fresh process."""
    probe = (
        "import json, sys; import function_app; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({DEV_ONLY!r}))))"
    )
    result = run_python(["-c", probe], tmp_path, os.environ)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_funcignore_leaves_the_local_stand_ins_out_of_the_package() -> None:
    ignored = (REPO_ROOT / ".funcignore").read_text().split()
    assert "acr_webhook/local" in ignored
    runtime = (REPO_ROOT / "requirements.txt").read_text()
    for package in ("waitress", "croniter", "aiohttp"):
        assert package not in runtime  # dev-only: the deployed app must not need them


def test_funcignore_leaves_files_with_secrets_out_of_the_package() -> None:
    """``func azure functionapp publish`` uploads what .funcignore does not name: azd keeps an
    environment's values, WEBHOOK_SECRET included, in .azure/<env>/.env, and the local host's
    keys are in local.settings.json."""
    funcignore = (REPO_ROOT / ".funcignore").read_text()
    # Each tool's own matching (tests/support/publish.py): an fnmatch of the patterns passed
    # while Core Tools, which reads `.env*` as ".env and one character or more", shipped .env.
    for path in (".azure/dev/.env", ".azure/config.json", "local.settings.json", ".env"):
        assert path not in core_tools_ships([path], funcignore), path
        assert path not in azd_ships([path], funcignore), path


def test_host_json_sets_nothing_its_telemetry_mode_ignores() -> None:
    """With telemetryMode OpenTelemetry the host ignores logging.applicationInsights, sampling
    included (Azure/azure-functions-host#10770, #11496): a setting there would only mislead."""
    host = json.loads((REPO_ROOT / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"
    assert "applicationinsights" not in {key.lower() for key in host["logging"]}
