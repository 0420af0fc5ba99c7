"""checkov's Bicep checks pass; what is skipped is the reviewed list, each with a reason.

checkov runs once per module (about 5-20 s). Skips live next to the resource as
``// checkov:skip=CKV_...: reason`` comments, so the reason is in the template itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import INFRA, REPO_ROOT

# (check id, file under infra/) pairs that are skipped on purpose; see the comments in the
# templates for why. A new skip must be added here, so it gets reviewed.
REVIEWED_SKIPS = {
    ("CKV_AZURE_35", "modules/storage.bicep"),  # storage firewall: app has no VNet / fixed IPs
    ("CKV_AZURE_59", "modules/storage.bicep"),  # storage public access: same
    ("CKV_AZURE_206", "modules/storage.bicep"),  # GRS: skuName parameter, LRS by default
    ("CKV_AZURE_99", "modules/cosmos.bicep"),  # Cosmos IP/VNet filter: app has no VNet / fixed IPs
    ("CKV_AZURE_101", "modules/cosmos.bicep"),  # Cosmos public access: same
    ("CKV_AZURE_225", "modules/function-app.bicep"),  # zone redundancy: zoneRedundant parameter
    (
        "CKV_AZURE_222",
        "modules/function-app.bicep",
    ),  # public app: ACR/Event Grid call from internet
    ("CKV_AZURE_17", "modules/function-app.bicep"),  # client certs: ACR cannot send them
    ("CKV_AZURE_212", "modules/function-app.bicep"),  # numberOfWorkers: not a Flex setting
    ("CKV_AZURE_213", "modules/function-app.bicep"),  # health check: not for serverless Flex
    ("CKV_AZURE_78", "modules/function-app.bicep"),  # ftpsState: Flex rejects it; ftp policy off
}


def checkov_executable() -> Path:
    """checkov in its own venv, next to the test venv's (scripts/bootstrap makes it)."""
    scripts = Path(sys.prefix) / "checkov" / ("Scripts" if os.name == "nt" else "bin")
    executable = scripts / ("checkov.exe" if os.name == "nt" else "checkov")
    assert executable.exists(), f"checkov is not installed in {scripts}: run scripts/bootstrap"
    return executable


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    completed = subprocess.run(
        [
            str(checkov_executable()),
            "--framework",
            "bicep",
            "--directory",
            str(INFRA),
            "--output",
            "json",
            "--skip-download",  # no Prisma Cloud look-ups: offline and deterministic
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # 0 = all passed, 1 = failed checks; anything else is checkov itself failing.
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    parsed = json.loads(completed.stdout)
    reports = parsed if isinstance(parsed, list) else [parsed]
    (bicep,) = [entry for entry in reports if entry["check_type"] == "bicep"]
    yield bicep


def infra_relative(file_path: str) -> str:
    return file_path.lstrip("/")


def test_no_failed_checks(report: dict[str, Any]) -> None:
    failures = [
        f"{check['check_id']} {check['check_name']}: {check['resource']} in {check['file_path']}"
        for check in report["results"]["failed_checks"]
    ]
    assert not failures, "\n".join(failures)
    assert report["summary"]["failed"] == 0


def test_every_template_was_read(report: dict[str, Any]) -> None:
    assert report["summary"]["parsing_errors"] == 0
    checked_files = {
        infra_relative(check["file_path"])
        for outcome in ("passed_checks", "skipped_checks")
        for check in report["results"][outcome]
    }
    assert checked_files >= {
        "modules/function-app.bicep",
        "modules/storage.bicep",
        "modules/cosmos.bicep",
    }
    assert report["summary"]["passed"] >= 20


def test_skips_are_the_reviewed_ones_with_reasons(report: dict[str, Any]) -> None:
    skipped = report["results"]["skipped_checks"]
    assert {
        (check["check_id"], infra_relative(check["file_path"])) for check in skipped
    } == REVIEWED_SKIPS
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "").strip()
        assert len(reason) >= 20, f"{check['check_id']} in {check['file_path']} needs a reason"


def test_hardening_checks_pass(report: dict[str, Any]) -> None:
    """The settings this project relies on are also confirmed by checkov itself."""
    passed = {
        (check["check_id"], infra_relative(check["file_path"]))
        for check in report["results"]["passed_checks"]
    }
    assert passed >= {
        ("CKV_AZURE_70", "modules/function-app.bicep"),  # HTTPS only
        ("CKV_AZURE_145", "modules/function-app.bicep"),  # function app TLS 1.2
        ("CKV_AZURE_71", "modules/function-app.bicep"),  # managed identity
        ("CKV_AZURE_140", "modules/cosmos.bicep"),  # Cosmos local auth disabled
        ("CKV_AZURE_132", "modules/cosmos.bicep"),  # Cosmos key-based metadata writes disabled
        ("CKV_AZURE_44", "modules/storage.bicep"),  # storage TLS 1.2
        ("CKV_AZURE_3", "modules/storage.bicep"),  # HTTPS traffic only
        ("CKV_AZURE_34", "modules/storage.bicep"),  # deployment container is private
    }
