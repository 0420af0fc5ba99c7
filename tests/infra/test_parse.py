"""Every template parses with pycep, the parser checkov uses; a syntax error is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, BicepSyntaxError, bicep_files, parse_bicep

EXPECTED_TEMPLATES = {
    "main.bicep",
    "webhook.bicep",
    "modules/monitoring.bicep",
    "modules/storage.bicep",
    "modules/cosmos.bicep",
    "modules/role-assignments.bicep",
    "modules/function-app.bicep",
    "modules/acr-webhook.bicep",
    "modules/acr-eventgrid.bicep",
    "modules/registry-access.bicep",
}

VALID_SNIPPET = """\
param name string

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  name: name
  location: resourceGroup().location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
}
"""


def test_all_expected_templates_exist() -> None:
    found = {path.relative_to(INFRA).as_posix() for path in bicep_files()}
    assert found >= EXPECTED_TEMPLATES


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_template_parses(path: Path) -> None:
    document = parse_bicep(path)
    assert document.get("resources") or document.get("modules"), f"{path} declares nothing"


def test_valid_snippet_parses(tmp_path: Path) -> None:
    """Control for the next test: the snippet is fine until it is broken."""
    snippet = tmp_path / "valid.bicep"
    snippet.write_text(VALID_SNIPPET)
    assert "storage" in parse_bicep(snippet)["resources"]


@pytest.mark.parametrize(
    "broken",
    [
        VALID_SNIPPET.rstrip().removesuffix("}"),  # unclosed resource body
        VALID_SNIPPET.replace("name: name", "name name"),  # missing colon
        VALID_SNIPPET.replace("param name string", "param name"),  # parameter without type
    ],
    ids=["unclosed-brace", "missing-colon", "untyped-param"],
)
def test_syntax_error_is_reported(tmp_path: Path, broken: str) -> None:
    snippet = tmp_path / "broken.bicep"
    snippet.write_text(broken)
    with pytest.raises(BicepSyntaxError, match=r"broken\.bicep"):
        parse_bicep(snippet)
