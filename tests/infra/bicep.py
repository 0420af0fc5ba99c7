"""Read the Bicep templates the way checkov does (pycep), for structural tests.

pycep turns a template into JSON: ``parameters``, ``variables``, ``resources``, ``modules``
and ``outputs`` keyed by symbolic name. Literal strings and references both come out as
plain strings ('acr' and ``cosmosDatabaseName`` look alike), so the tests check references
by name against the template's own parameters, variables and module wiring.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from lark.exceptions import LarkError
from pycep import BicepParser

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"

Json = dict[str, Any]


class BicepSyntaxError(Exception):
    """The text is not Bicep that pycep (and so checkov) can read."""


@cache
def _parser() -> BicepParser:
    return BicepParser()


def parse_bicep(path: Path) -> Json:
    """Parse one file; any syntax problem becomes BicepSyntaxError naming the file."""
    try:
        document = _parser().parse(file_path=path)
    except (LarkError, ValueError) as error:
        raise BicepSyntaxError(f"{path}: {error}") from error
    return dict(document)


@cache
def template(relative_path: str) -> Json:
    """A template under infra/, parsed once per test session."""
    return parse_bicep(INFRA / relative_path)


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def _body(config: Json) -> Json:
    """The object of a resource or module, without its ``if (...)`` wrapper."""
    if set(config) == {"condition", "config"}:
        body: Json = config["config"]
        return body
    return config


def resource(document: Json, name: str) -> Json:
    """Properties-level object of a resource: name, location, properties, ..."""
    return _body(document["resources"][name]["config"])


def resource_condition(document: Json, name: str) -> Any:
    return document["resources"][name]["config"].get("condition")


def resources_of_type(document: Json, resource_type: str) -> dict[str, Json]:
    return {
        name: entry
        for name, entry in document.get("resources", {}).items()
        if entry["type"] == resource_type
    }


def module(document: Json, name: str) -> Json:
    return _body(document["modules"][name]["config"])


def module_condition(document: Json, name: str) -> Any:
    return document["modules"][name]["config"].get("condition")


def module_path(document: Json, name: str) -> str:
    path: str = document["modules"][name]["detail"]["path"]
    return path


def param(document: Json, name: str) -> Json:
    entry: Json = document["parameters"][name]
    return entry


def decorators(entry: Json) -> dict[str, Any]:
    return {decorator["type"]: decorator["argument"] for decorator in entry["decorators"]}


def is_secure(entry: Json) -> bool:
    return any(decorator["type"] == "secure" for decorator in entry["decorators"])


def var(document: Json, name: str) -> Any:
    return document["variables"][name]["value"]


def output(document: Json, name: str) -> Any:
    return document["outputs"][name]["value"]


def accessor(*names: str) -> Json:
    """pycep's tree for ``a.b.c``: nested property_accessor operators."""
    if len(names) == 2:
        first, second = names
        return {
            "operator": {
                "type": "property_accessor",
                "operands": {"operand_1": first, "operand_2": second},
            }
        }
    return {
        "operator": {
            "type": "property_accessor",
            "operands": {"operand_1": names[0], "operand_2": accessor(*names[1:])},
        }
    }


def equals(left: Any, right: Any) -> Json:
    """pycep's tree for ``left == right``."""
    return {"operator": {"type": "equals", "operands": {"operand_1": left, "operand_2": right}}}


def not_empty(name: str) -> Json:
    """pycep's tree for ``!empty(name)``."""
    is_empty = {"function": {"type": "empty", "parameters": {"item_to_test": name}}}
    return {"operator": {"type": "not", "operands": {"bool_value": is_empty}}}


def application_insights_module(name: str, path: str, switch: str, described: str) -> Json:
    """Checks that main.bicep deploys module ``name`` (``path``) on its Application Insights
    component unless the bool parameter ``switch`` (default true, its description naming
    ``described``) turns it off; returns the module's parameters."""
    main = template("main.bicep")
    assert module_path(main, name) == path
    assert module_condition(main, name) == switch
    entry = param(main, switch)
    assert (entry["type"], entry["default"]) == ("bool", True)
    assert described in decorators(entry)["description"]
    params: Json = module(main, name)["params"]
    assert params["applicationInsightsId"] == accessor(
        "monitoring", "outputs", "applicationInsightsId"
    )
    return params


def conditional_branches(value: Any) -> tuple[Any, Any, Any] | None:
    """(condition, true_value, false_value) of ``cond ? a : b``; None for other values."""
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "conditional":
        operands = value["operator"]["operands"]
        return operands["condition"], operands["true_value"], operands["false_value"]
    return None
