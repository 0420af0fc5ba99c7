"""What the deployed app stops being supported on, on a known date: the Python version the
Function App runs (the one version from the template to the type checker and bootstrap:
tests/infra/test_package.py), and Azure API versions, compared with today's date so that CI
says what to change LEAD before the date (tests/unit/test_time_bombs.py: Node.js).

Sources:
- Python on Azure Functions: learn.microsoft.com/azure/azure-functions/supported-languages and
  functions-versions (MicrosoftDocs/azure-docs, "Expected end-of-support date", Python tab):
  3.10 October 2026, 3.11 October 2027, 3.12 October 2028, 3.13 October 2029. After it, apps
  still run and deploy but get no security patches, and support asks for an upgrade first
  (learn.microsoft.com/azure/azure-functions/language-support-policy, "Retirement phase").
- CPython (what scripts/bootstrap insists on): devguide.python.org/versions, PEP 664 (3.11):
  3.11 end of life 2027-10, security fixes only until then.
Microsoft and CPython give a month; the first day of it is taken, to be early rather than late.
"""

from __future__ import annotations

import re
from datetime import date

import pytest

from tests.infra.bicep import bicep_files
from tests.infra.test_main_template import function_app
from tests.unit.test_time_bombs import LEAD, supported_through_lead

PYTHON_ON_FUNCTIONS_END = {
    "3.10": date(2026, 10, 1),
    "3.11": date(2027, 10, 1),
    "3.12": date(2028, 10, 1),
    "3.13": date(2029, 10, 1),
}

RESOURCE_API_VERSION = re.compile(r"'([A-Za-z]+\.[A-Za-z]+/[A-Za-z/]+)@([0-9-]+[A-Za-z-]*)'")


def test_the_function_apps_python_is_supported_for_a_quarter_more() -> None:
    """From 2027-07-03 (a quarter before October 2027) this fails while the template says
    3.11: move to 3.12 or later in infra/modules/function-app.bicep, pyproject.toml,
    scripts/bootstrap, README and docs/deploy.md together (test_package.py keeps them one)."""
    version = function_app()["properties"]["functionAppConfig"]["runtime"]["version"]
    assert version in PYTHON_ON_FUNCTIONS_END, (
        f"Python {version}: add its expected end-of-support date on Azure Functions "
        "(learn.microsoft.com/azure/azure-functions/supported-languages) to "
        "PYTHON_ON_FUNCTIONS_END"
    )
    late = supported_through_lead(
        f"Python {version} on Azure Functions (and CPython {version} itself)",
        PYTHON_ON_FUNCTIONS_END[version],
    )
    assert late is None, (
        f"{late}: move the Function App and the tests to a later Python "
        "(function-app.bicep runtime.version, pyproject.toml, scripts/bootstrap, scripts/lock "
        "then run it, .ci/run (its Debian python3.x-venv package: bookworm has 3.11 only, so "
        f"CI needs another source of Python), README, docs/deploy.md); {LEAD.days} days' notice"
    )


def resource_api_versions() -> dict[str, set[str]]:
    """Each resource type the templates declare: the API versions they name for it."""
    found: dict[str, set[str]] = {}
    for path in bicep_files():
        for kind, version in RESOURCE_API_VERSION.findall(path.read_text()):
            found.setdefault(kind, set()).add(version)
    return found


def test_the_templates_use_no_preview_api_version() -> None:
    """A preview API version can be retired on a few months' notice (App Configuration's
    policy: 90 days after a newer one; learn.microsoft.com/azure/azure-app-configuration/
    concept-preview-api-life-cycle), after which a deployment naming it fails; GA versions stay.
    Every resource here has a GA version."""
    versions = resource_api_versions()
    assert "Microsoft.Web/sites" in versions  # the pattern reads the templates
    previews = {kind: v for kind, v in versions.items() if any("preview" in x for x in v)}
    assert not previews, previews


@pytest.mark.parametrize(
    ("line", "kind", "version"),
    [
        ("resource a 'Microsoft.Web/sites@2024-11-01' = {", "Microsoft.Web/sites", "2024-11-01"),
        (
            "resource b 'Microsoft.Insights/components@2020-02-02-preview' existing = {",
            "Microsoft.Insights/components",
            "2020-02-02-preview",
        ),
    ],
)
def test_the_api_version_pattern_reads_a_resource_declaration(
    line: str, kind: str, version: str
) -> None:
    assert RESOURCE_API_VERSION.findall(line) == [(kind, version)]
