"""Check a resource body against Azure's type definition, as the Bicep compiler does.

The definitions are tests/fixtures/resource_types.json, an extract of Azure/bicep-types-az
(tests/support/resource_types_extract.py makes it). A type there is a kind ("string") or an
object with "type" and, where the templates need them, "enum" ("open": Bicep takes any
string, Azure decides), "minValue"/"maxValue", "minLength"/"maxLength"/"pattern",
"properties" (name -> type, with "flags"), "additionalProperties", "items", or
"discriminator" and "elements" (value -> the properties that value adds).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from tests.infra.bicep import REPO_ROOT, Json
from tests.infra.resource_bodies import (
    ArrayShape,
    Choice,
    Computed,
    Declaration,
    Literal,
    ObjectShape,
    Shape,
    body_shape,
)

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "resource_types.json"
REGENERATE = "regenerate it: tests/support/resource_types_extract.py"


@cache
def extract() -> Json:
    loaded: Json = json.loads(FIXTURE.read_text())
    return loaded


def as_node(node: Any) -> Json:
    return {"type": node} if isinstance(node, str) else dict(node)


def _kind(shape: Shape) -> str | None:
    if isinstance(shape, Literal):
        value = shape.value
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "bool"
        return "int" if isinstance(value, int) else "string"
    if isinstance(shape, Computed):
        return shape.kind
    return "object" if isinstance(shape, ObjectShape) else "array"


def _describe(shape: Shape) -> str:
    if isinstance(shape, Literal):
        return json.dumps(shape.value)
    if isinstance(shape, Computed):
        return f"{shape.kind or 'an'} expression ({shape.text})"
    return f"an {_kind(shape)}"


def check(shape: Shape, node: Any, path: str) -> list[str]:
    """What the type definition says is wrong with ``shape`` at ``path``."""
    node = as_node(node)
    if isinstance(shape, Choice):
        problems: list[str] = []
        for option in shape.options:
            problems += [p for p in check(option, node, path) if p not in problems]
        return problems
    kind = _kind(shape)
    expected = node["type"]
    if expected == "any" or kind is None or (kind == "null" and expected != "union"):
        return []  # null leaves the property out; only a required one is missed (below)
    if expected == "union":
        results = [check(shape, member, path) for member in node["of"]]
        return [] if any(not r for r in results) else results[0]
    if kind != expected:
        return [f"{path}: {_describe(shape)} where the type says {expected}"]
    if isinstance(shape, Literal):
        return _check_literal(shape, node, path)
    if isinstance(shape, ArrayShape):
        problems = []
        for item in shape.items:
            problems += [
                p for p in check(item, node.get("items", "any"), f"{path}[]") if p not in problems
            ]
        return problems
    if isinstance(shape, ObjectShape):
        return _check_object(shape, node, path)
    if shape.longest is not None and shape.longest > node.get("maxLength", shape.longest):
        return [
            f"{path}: {_describe(shape)} can be {shape.longest} characters,"
            f" over {node['maxLength']}"
        ]
    return []


def _check_literal(shape: Literal, node: Json, path: str) -> list[str]:
    value = shape.value
    if "enum" in node and value not in node["enum"]:
        if node.get("open"):
            return [
                f"{path}: {json.dumps(value)} is none of the values the spec lists {node['enum']}"
            ]
        return [f"{path}: {json.dumps(value)} is not one of {node['enum']}"]
    if isinstance(value, str) and value:  # '' is how the templates say "not set" (!empty())
        low, high = node.get("minLength", 0), node.get("maxLength", len(value))
        if not low <= len(value) <= high:
            return [f"{path}: {json.dumps(value)} is not {low}-{high} characters long"]
        if "pattern" in node and not re.search(node["pattern"], value):
            return [f"{path}: {json.dumps(value)} does not match {node['pattern']}"]
    if isinstance(value, int) and not isinstance(value, bool):
        low, high = node.get("minValue"), node.get("maxValue")
        if (low is not None and value < low) or (high is not None and value > high):
            return [f"{path}: {value} is outside {low}..{high}"]
    return []


def _check_object(shape: ObjectShape, node: Json, path: str) -> list[str]:
    if "properties" not in node:
        return [f"{path}: object not in the extract; {REGENERATE}"]
    declared: Json = dict(node["properties"])
    if "discriminator" not in node:
        return _check_members(shape, declared, node.get("additionalProperties"), path)
    discriminator = node["discriminator"]
    elements: Json = node["elements"]
    value = shape.properties.get(discriminator)
    options = value.options if isinstance(value, Choice) else [value]
    problems: list[str] = []
    if not all(isinstance(o, Literal) and isinstance(o.value, str) for o in options):
        merged = dict(declared)  # unknown discriminator: names are checked against all
        for element in elements.values():
            merged |= element or {}
        return _check_members(shape, merged, None, path, required=False)
    for option in options:
        assert isinstance(option, Literal)
        chosen = str(option.value)
        if chosen not in elements:
            problems.append(f"{path}.{discriminator}: {chosen!r} is not one of {sorted(elements)}")
        elif elements[chosen] is None:
            problems.append(f"{path}: {chosen} not in the extract; {REGENERATE}")
        else:
            members = _check_members(shape, declared | elements[chosen], None, path)
            problems += [p for p in members if p not in problems]
    return problems


def _check_members(
    shape: ObjectShape, declared: Json, additional: Any, path: str, *, required: bool = True
) -> list[str]:
    problems: list[str] = []
    for name, value in shape.properties.items():
        where = f"{path}.{name}" if path else name
        if name in declared:
            prop = as_node(declared[name])
            if "ReadOnly" in prop.get("flags", []):
                problems.append(f"{where}: read-only, the type ignores or refuses it")
            problems += check(value, prop, where)
        elif additional is not None:
            problems += check(value, additional, where)
        else:
            problems.append(f"{where}: no such property (the type has {sorted(declared)})")
    for value in shape.computed_keys:
        if additional is None:
            problems.append(f"{path}: a computed key where the type takes none")
        else:
            problems += check(value, additional, f"{path}[key]")
    if required:
        for name, prop in sorted(declared.items()):
            flags = as_node(prop).get("flags", [])
            if "Required" in flags and "ReadOnly" not in flags:
                given = shape.properties.get(name)
                if given is None or _may_be_null(given):
                    where = f"{path}.{name}" if path else name
                    problems.append(f"{where}: required, not set")
    return problems


def _may_be_null(shape: Shape) -> bool:
    if isinstance(shape, Choice):
        return any(_may_be_null(option) for option in shape.options)
    return isinstance(shape, Literal) and shape.value is None


def problems(declaration: Declaration) -> list[str]:
    """Everything the pinned type definition says is wrong with the declaration's body."""
    entry = extract()["resources"].get(declaration.type_version)
    if entry is None:
        return [f"{declaration.type_version}: not in the extract or not published; {REGENERATE}"]
    body = as_node(entry["body"])
    shape = body_shape(declaration)
    if declaration.existing:  # an existing resource names one; the rest is Azure's
        shape = ObjectShape({"name": shape.properties["name"]})
        return check(shape.properties["name"], body["properties"]["name"], "name")
    return check(shape, body, "")
