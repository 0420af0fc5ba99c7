"""Every resource in infra/ against Azure's published type definitions (resource type check).

The Bicep compiler checks each resource body against the types generated from the Azure REST
API specs (github.com/Azure/bicep-types-az); it cannot be installed here, and pycep and checkov
know no schemas. tests/fixtures/resource_types.json holds the part of those definitions the
templates use (its _source names the commit and files; tests/support/resource_types_extract.py
regenerates it), and these tests make the compiler's checks at each pinned API version:
unknown property, value outside an enum, integer bounds or string length/pattern (literals,
@allowed parameters, what a module's callers pass), read-only property set, required property
missing, wrong kind (string, int, bool, object, array); properties set from expressions are
checked by name and kind. Stricter than the compiler: a value outside an "open" enum (the
spec's modelAsString, which Bicep lets through and Azure decides on) is named too. Also: each
pinned version is still published, each resource may be deployed at its scope, and each
list*() call exists at its version.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.bicep import bicep_files
from tests.infra.resource_bodies import Declaration, declarations, list_calls
from tests.infra.resource_types import REGENERATE, extract, problems

DECLARATIONS = declarations()

# The spec gives Microsoft.Web/sites/functions listkeys a StringDictionary ({"properties":
# {...}}); Azure answers {"default": "<key>", ...} (Azure/azure-sdk-for-net#41218, whose SDK
# returned nothing until it read the real answer; the spec fix Azure/azure-rest-api-specs#33565
# was closed unmerged), which is what webhook.bicep reads.
SPEC_OMITS = {("listkeys", "Microsoft.Web/sites/functions"): {"default"}}


def _id(declaration: Declaration) -> str:
    return f"{declaration.file}:{declaration.symbol}"


def test_every_resource_line_is_checked() -> None:
    """Control: the inventory below is every ``resource`` line of infra/, existing ones too."""
    lines = sum(
        len(re.findall(r"^\s*resource\s+\w+\s+'", path.read_text(), re.MULTILINE))
        for path in bicep_files()
    )
    assert lines > 0 and len(DECLARATIONS) == lines
    assert any(d.existing for d in DECLARATIONS) and any(d.loop for d in DECLARATIONS)


def test_the_extract_holds_exactly_the_pinned_types() -> None:
    pinned = {d.type_version for d in DECLARATIONS}
    extracted = extract()["resources"]
    assert set(extracted) == pinned, REGENERATE
    assert {call_key(c.function, c.resource_type, c.api_version) for c in list_calls()} == set(
        extract()["functions"]
    ), REGENERATE


def call_key(function: str, resource_type: str, api_version: str) -> str:
    return f"{function.lower()} {resource_type}@{api_version}"


@pytest.mark.parametrize(
    "type_version",
    sorted(
        {d.type_version for d in DECLARATIONS}
        | {f"{c.resource_type}@{c.api_version}" for c in list_calls()}
    ),
)
def test_the_api_version_is_still_published(type_version: str) -> None:
    """A version the specs no longer carry is gone from Bicep's types and, retired, from ARM."""
    resource_type, _, version = type_version.partition("@")
    published = extract()["versions"].get(resource_type, [])
    assert version in published, f"{type_version}: published are {published}"


@pytest.mark.parametrize("declaration", DECLARATIONS, ids=_id)
def test_the_resource_may_be_deployed_at_its_scope(declaration: Declaration) -> None:
    """Every template here deploys into a resource group; ``scope: <resource>`` makes an
    extension resource (role assignments on the storage account, the registry...)."""
    text = declaration.path.read_text()
    target = re.search(r"^targetScope\s*=\s*'(\w+)'", text, re.MULTILINE)
    assert target is None or target[1] == "resourceGroup"
    entry = extract()["resources"][declaration.type_version]
    needed = "Extension" if "scope" in declaration.body else "ResourceGroup"
    scopes = entry["readableScopes" if declaration.existing else "writableScopes"]
    assert needed in scopes, f"{declaration.where}: {needed} not in {scopes}"


@pytest.mark.parametrize("declaration", DECLARATIONS, ids=_id)
def test_the_resource_body_matches_its_type(declaration: Declaration) -> None:
    found = problems(declaration)
    assert not found, f"{declaration.where} ({declaration.type_version}):\n" + "\n".join(found)


def test_each_list_call_exists_and_is_read_where_azure_answers() -> None:
    calls = list_calls()
    assert calls, "webhook.bicep reads the function keys with listKeys()"
    for call in calls:
        entry = extract()["functions"][
            call_key(call.function, call.resource_type, call.api_version)
        ]
        assert entry is not None, f"{call}: no such function at that version"
        answered = set(entry["output"]["properties"])
        answered |= SPEC_OMITS.get((call.function.lower(), call.resource_type), set())
        assert call.member in answered, f"{call}: the answer has {sorted(answered)}"


# The checks themselves, on snippets of types the extract holds (storage 2024-01-01).
STORAGE = """\
@allowed([
  'Standard_LRS'
  {other_sku}
])
param skuName string = 'Standard_LRS'
param flag bool = true

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' = {{
  name: 'stexample'
  kind: 'StorageV2'
{location}
  sku: {{
    name: skuName
  }}
  properties: {{
{extra}
  }}
}}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' = {{
  parent: storage
  name: 'default'
}}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {{
  parent: blobService
  name: {container}
  properties: {{
    publicAccess: {access}
  }}
}}
"""


def snippet_problems(
    tmp_path: Path,
    extra: str = "",
    *,
    location: str = "  location: 'westeurope'",
    access: str = "'None'",
    other_sku: str = "'Standard_ZRS'",
    container: str = "'deadletters'",
) -> list[str]:
    path = tmp_path / "snippet.bicep"
    text = STORAGE.format(
        location=location, extra=extra, access=access, other_sku=other_sku, container=container
    )
    path.write_text(text)
    return [p for d in declarations([path]) for p in problems(d)]


def test_a_valid_snippet_passes(tmp_path: Path) -> None:
    assert snippet_problems(tmp_path, "    accessTier: flag ? 'Hot' : 'Cool'") == []


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("    allowBlobPublicAccces: false", "properties.allowBlobPublicAccces: no such property"),
        (
            "    allowBlobPublicAccess: 'false'",
            'properties.allowBlobPublicAccess: "false" where the type says bool',
        ),
        (
            "    accessTier: flag ? 'Hot' : 'Warm'",
            'properties.accessTier: "Warm" is not one of',
        ),
        ("    provisioningState: 'Succeeded'", "properties.provisioningState: read-only"),
        (
            "    networkAcls: {\n      bypass: 'AzureServices'\n    }",
            "properties.networkAcls.defaultAction: required, not set",
        ),
        (
            "    encryption: {\n      keySource: 'Microsoft.Storage'\n    }",
            "properties.encryption: object not in the extract",
        ),
    ],
    ids=["unknown", "kind", "enum", "read-only", "required", "not-extracted"],
)
def test_the_check_names_what_the_type_refuses(tmp_path: Path, extra: str, problem: str) -> None:
    found = snippet_problems(tmp_path, extra)
    assert len(found) == 1 and found[0].startswith(problem), found


def test_the_check_names_a_missing_location_and_a_closed_enum(tmp_path: Path) -> None:
    assert snippet_problems(tmp_path, location="", access="'Private'") == [
        "location: required, not set",
        "properties.publicAccess: \"Private\" is not one of ['Blob', 'Container', 'None']",
    ]


def test_an_allowed_parameter_value_is_checked_against_the_spec(tmp_path: Path) -> None:
    """sku.name is an open enum (Azure decides, Bicep takes any string): a value the spec does
    not list is still named, since Azure will most likely refuse it."""
    found = snippet_problems(tmp_path, other_sku="'Standard_XRS'")
    assert len(found) == 1, found
    assert found[0].startswith('sku.name: "Standard_XRS" is none of the values the spec lists')


def test_a_literal_named_like_a_symbol_stays_a_literal() -> None:
    """pycep drops quotes: category: 'workbook' beside resource workbook is still the text."""
    workbook = next(d for d in DECLARATIONS if d.type.endswith("/workbooks"))
    assert workbook.body["properties"]["category"] == workbook.symbol
    assert problems(workbook) == []


def test_the_check_names_a_literal_of_the_wrong_length(tmp_path: Path) -> None:
    assert snippet_problems(tmp_path, container="'dl'") == [
        'name: "dl" is not 3-63 characters long'
    ]
