"""Each module call against the module's parameter declarations, as the Bicep compiler checks
them at build: no parameter the module lacks, every parameter without a default passed, each
value of the declared type and within the module's @allowed, @minValue/@maxValue and
@minLength/@maxLength (literals, @allowed parameters of the caller, variables followed).
The resource bodies are checked against Azure's types in test_resource_types.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, Json, bicep_files
from tests.infra.resource_bodies import argument_shape, document, module_calls, relative
from tests.infra.resource_types import check

# pycep's decorator names -> the type keys resource_types.check reads.
LIMITS = {
    "allowed": "enum",
    "min_value": "minValue",
    "max_value": "maxValue",
    "min_length": "minLength",
    "max_length": "maxLength",
}


def declared_type(entry: Json) -> Json:
    node: Json = {"type": entry["type"]}
    if entry["type"] == "object":  # an untyped object: any members
        node |= {"properties": {}, "additionalProperties": "any"}
    for decorator in entry["decorators"]:
        if decorator["type"] in LIMITS:
            node[LIMITS[decorator["type"]]] = decorator["argument"]
    return node


def call_problems(path: Path) -> list[str]:
    found: list[str] = []
    for symbol, target, params in module_calls(path):
        declared = document(target)["parameters"]
        where = f"{relative(path)} module {symbol} ({relative(target)})"
        found += [f"{where}: {name}: no such parameter" for name in params if name not in declared]
        found += [
            f"{where}: {name}: required, not passed"
            for name, entry in declared.items()
            if entry.get("default") is None and name not in params
        ]
        for name, value in params.items():
            if name in declared:
                shape = argument_shape(path, name, value)
                found += [
                    f"{where}: {p}" for p in check(shape, declared_type(declared[name]), name)
                ]
    return found


@pytest.mark.parametrize(
    "path",
    [p for p in bicep_files() if document(p).get("modules")],
    ids=lambda p: p.relative_to(INFRA).as_posix(),
)
def test_module_calls_pass_what_the_module_declares(path: Path) -> None:
    assert call_problems(path) == []


CALLER = """\
@allowed([
  'Standard_LRS'
  {extra_sku}
])
param sku string = 'Standard_LRS'

module storage 'storage.bicep' = {{
  name: 'storage'
  params: {{
    location: 'westeurope'
    name: {name}
    deploymentContainerName: 'app-package'
    skuName: sku
{extra}
  }}
}}
"""


def caller_problems(
    tmp_path: Path, *, extra: str = "", name: str = "'stexample'", extra_sku: str = "'Standard_ZRS'"
) -> list[str]:
    """A caller of a copy of modules/storage.bicep (fallbackQueueName, required, unless
    ``extra`` passes it)."""
    (tmp_path / "storage.bicep").write_text((INFRA / "modules" / "storage.bicep").read_text())
    path = tmp_path / "main.bicep"
    path.write_text(CALLER.format(extra=extra, name=name, extra_sku=extra_sku))
    return [p.split(": ", 1)[1] for p in call_problems(path)]


def test_a_complete_call_passes(tmp_path: Path) -> None:
    assert caller_problems(tmp_path, extra="    fallbackQueueName: 'q'") == []


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({}, "fallbackQueueName: required, not passed"),
        ({"extra": "    fallbackQueueName: 'q'\n    colour: 'blue'"}, "colour: no such parameter"),
        ({"extra": "    fallbackQueueName: 1"}, "fallbackQueueName: 1 where the type says string"),
        (
            {"extra": "    fallbackQueueName: 'q'", "name": "'st'"},
            'name: "st" is not 3-24 characters long',
        ),
        (
            {"extra": "    fallbackQueueName: 'q'", "extra_sku": "'Premium_LRS'"},
            "skuName: \"Premium_LRS\" is not one of ['Standard_LRS', 'Standard_ZRS', "
            "'Standard_GRS', 'Standard_GZRS']",
        ),
    ],
    ids=["missing", "unknown", "kind", "length", "allowed"],
)
def test_the_check_names_what_the_module_refuses(
    tmp_path: Path, kwargs: dict[str, str], problem: str
) -> None:
    assert caller_problems(tmp_path, **kwargs) == [problem]
