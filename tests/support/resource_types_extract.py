"""Regenerate tests/fixtures/resource_types.json: the part of Azure's Bicep type definitions
(github.com/Azure/bicep-types-az, generated/<provider>/<namespace>/<apiVersion>/types.json)
that infra/ uses, for tests/infra/test_resource_types.py. CI cannot reach GitHub, so the
extract is committed; run this after changing a resource's API version or adding a property:

    git clone --filter=blob:none https://github.com/Azure/bicep-types-az /tmp/bicep-types-az
    .venv/bin/python -m tests.support.resource_types_extract /tmp/bicep-types-az

(a bare clone or any git directory of that repository works too; files are read from its
HEAD commit). What is kept: every API version the repository has for each resource type the
templates declare (generated/index.json lists the same, built from these files), and for each
pinned type@apiVersion the object types the templates enter: all property names there with
flags and kinds, and the enums, integer bounds and nested objects of the properties set.
Descriptions are dropped.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.infra.resource_bodies import (
    ArrayShape,
    Choice,
    ObjectShape,
    Shape,
    body_shape,
    declarations,
    list_calls,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "resource_types.json"
REPOSITORY = "https://github.com/Azure/bicep-types-az"

SCOPES = {1: "Tenant", 2: "ManagementGroup", 4: "Subscription", 8: "ResourceGroup", 16: "Extension"}
FLAGS = {1: "Required", 2: "ReadOnly", 4: "WriteOnly", 8: "DeployTimeConstant", 16: "Identifier"}

Json = dict[str, Any]
Node = Json | str


class Source:
    """Files of a bicep-types-az git directory (bare, a mirror or a clone) at HEAD."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.commit = self._git("rev-parse", "HEAD").strip()
        self.cache: dict[str, list[Json]] = {}

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.directory), *args], capture_output=True, text=True, check=True
        ).stdout

    def types_files(self, namespaces: set[str]) -> list[str]:
        listed = self._git("ls-tree", "-r", "--name-only", self.commit, "generated/")
        pattern = re.compile(r"generated/[^/]+/([^/]+)/[^/]+/types\.json")
        return sorted(
            path
            for path in listed.splitlines()
            if (match := pattern.fullmatch(path)) and match[1] in namespaces
        )

    def read(self, path: str) -> list[Json]:
        if path not in self.cache:
            self.cache[path] = json.loads(self._git("show", f"{self.commit}:{path}"))
        return self.cache[path]


def labels(bits: int, names: dict[int, str]) -> list[str]:
    return [label for bit, label in names.items() if bits & bit]


def flatten(shapes: list[Shape]) -> list[Shape]:
    flat: list[Shape] = []
    for shape in shapes:
        if isinstance(shape, Choice):
            flat += flatten(shape.options)
        else:
            flat.append(shape)
    return flat


class Extractor:
    def __init__(self, types: list[Json]) -> None:
        self.types = types

    def at(self, reference: Json) -> Json:
        return self.types[int(reference["$ref"].removeprefix("#/"))]

    def summary(self, reference: Json) -> Node:
        """The kind of an unused property, nothing more."""
        return self.kind(self.at(reference))

    def kind(self, node: Json) -> str:
        kinds = {
            "StringType": "string",
            "StringLiteralType": "string",
            "IntegerType": "int",
            "BooleanType": "bool",
            "AnyType": "any",
            "NullType": "null",
            "ObjectType": "object",
            "DiscriminatedObjectType": "object",
            "ArrayType": "array",
        }
        if node["$type"] == "UnionType":
            members = {self.kind(self.at(e)) for e in node["elements"]}
            return members.pop() if len(members) == 1 else "union"
        return kinds[node["$type"]]

    def expand(self, reference: Json, shapes: list[Shape]) -> Node:
        """A type as the test reads it: a kind ("string") or an object with "type" and what
        the templates need of it."""
        expanded = self._expand(reference, shapes)
        return expanded["type"] if set(expanded) == {"type"} else expanded

    def _expand(self, reference: Json, shapes: list[Shape]) -> Json:
        node = self.at(reference)
        shapes = flatten(shapes)
        kind = node["$type"]
        if kind == "ObjectType":
            return self.object(node, shapes)
        if kind == "DiscriminatedObjectType":
            return self.discriminated(node, shapes)
        if kind == "ArrayType":
            items = [item for s in shapes if isinstance(s, ArrayShape) for item in s.items]
            result = {"type": "array", "items": self.expand(node["itemType"], items)}
            return result | {k: node[k] for k in ("minLength", "maxLength") if k in node}
        if kind == "UnionType":
            members = [self.at(e) for e in node["elements"]]
            if all(m["$type"] in ("StringLiteralType", "StringType") for m in members):
                values = sorted(m["value"] for m in members if m["$type"] == "StringLiteralType")
                if any(m["$type"] == "StringType" for m in members):
                    # modelAsString in the REST spec: Bicep takes any string, Azure decides.
                    return {"type": "string", "enum": values, "open": True}
                return {"type": "string", "enum": values}
            return {"type": "union", "of": [self.expand(e, shapes) for e in node["elements"]]}
        if kind == "StringLiteralType":
            return {"type": "string", "enum": [node["value"]]}
        if kind == "StringType":
            limits = ("minLength", "maxLength", "pattern")
            return {"type": "string"} | {k: node[k] for k in limits if k in node}
        if kind == "IntegerType":
            return {"type": "int"} | {k: node[k] for k in ("minValue", "maxValue") if k in node}
        return {"type": self.kind(node)}

    def properties(self, declared: Json, shapes: Sequence[Shape]) -> Json:
        objects = [s for s in shapes if isinstance(s, ObjectShape)]
        result: Json = {}
        for name, prop in sorted(declared.items()):
            used = [o.properties[name] for o in objects if name in o.properties]
            node = self.expand(prop["type"], used) if used else self.summary(prop["type"])
            flags = labels(prop["flags"], FLAGS)
            if flags:
                node = (node if isinstance(node, dict) else {"type": node}) | {"flags": flags}
            result[name] = node
        return result

    def object(self, node: Json, shapes: list[Shape]) -> Json:
        objects = [s for s in shapes if isinstance(s, ObjectShape)]
        if not objects:
            return {"type": "object"}
        result: Json = {
            "type": "object",
            "properties": self.properties(node["properties"], objects),
        }
        if "additionalProperties" in node:
            extra = [
                value
                for o in objects
                for key, value in o.properties.items()
                if key not in node["properties"]
            ] + [value for o in objects for value in o.computed_keys]
            result["additionalProperties"] = self.expand(node["additionalProperties"], extra)
        return result

    def discriminated(self, node: Json, shapes: list[Shape]) -> Json:
        objects = [s for s in shapes if isinstance(s, ObjectShape)]
        if not objects:
            return {"type": "object"}
        discriminator = node["discriminator"]
        chosen: dict[str, list[Shape]] = {}
        for shape in objects:
            values = (
                flatten([shape.properties[discriminator]])
                if discriminator in shape.properties
                else []
            )
            literal = [getattr(v, "value", None) for v in values]
            if values and all(isinstance(v, str) for v in literal):
                for value in literal:
                    chosen.setdefault(str(value), []).append(shape)
            else:  # unknown discriminator: every element may apply
                for value in node["elements"]:
                    chosen.setdefault(value, []).append(shape)
        elements: Json = {}
        for value, reference in sorted(node["elements"].items()):
            element = self.at(reference)
            elements[value] = (
                self.properties(element["properties"], chosen[value]) if value in chosen else None
            )
        return {
            "type": "object",
            "discriminator": discriminator,
            "properties": self.properties(node["baseProperties"], objects),
            "elements": elements,
        }


def extract(source: Source) -> Json:
    declared = declarations()
    calls = list_calls()
    # Type names are case-insensitive; the extract spells them as the templates do.
    spelled = {d.type.lower(): d.type for d in declared}
    spelled |= {c.resource_type.lower(): c.resource_type for c in calls}
    wanted = set(spelled)
    namespaces = {t.split("/")[0] for t in wanted}
    versions: dict[str, set[str]] = {}
    located: dict[str, tuple[str, int]] = {}
    functions: dict[str, tuple[str, int]] = {}
    for path in source.types_files(namespaces):
        for index, node in enumerate(source.read(path)):
            if node["$type"] == "ResourceType":
                name, _, version = node["name"].partition("@")
                if name.lower() in wanted:
                    versions.setdefault(name.lower(), set()).add(version)
                    located[f"{name.lower()}@{version}"] = (path, index)
            elif node["$type"] == "ResourceFunctionType":
                owner = node["resourceType"].lower()
                if owner in wanted:
                    functions[f"{node['name'].lower()} {owner}@{node['apiVersion']}"] = (
                        path,
                        index,
                    )

    by_type: dict[str, list[Shape]] = {}
    for declaration in declared:
        by_type.setdefault(declaration.type_version, []).append(
            ObjectShape({"name": body_shape(declaration).properties["name"]})
            if declaration.existing
            else body_shape(declaration)
        )
    resources: Json = {}
    used_paths: set[str] = set()
    for type_version, shapes in sorted(by_type.items()):
        name, _, version = type_version.partition("@")
        key = f"{name.lower()}@{version}"
        if key not in located:
            resources[type_version] = None  # not published: the test reports it
            continue
        path, index = located[key]
        used_paths.add(path)
        types = source.read(path)
        extractor = Extractor(types)
        resource = types[index]
        resources[type_version] = {
            "path": path,
            "body": extractor.expand(resource["body"], shapes),
            "readableScopes": labels(resource.get("readableScopes", 0), SCOPES),
            "writableScopes": labels(resource.get("writableScopes", 0), SCOPES),
        }
    listed: Json = {}
    for call in calls:
        key = f"{call.function.lower()} {call.resource_type.lower()}@{call.api_version}"
        label = f"{call.function.lower()} {call.resource_type}@{call.api_version}"
        if key not in functions:
            listed[label] = None
            continue
        path, index = functions[key]
        used_paths.add(path)
        types = source.read(path)
        listed[label] = {
            "path": path,
            "output": Extractor(types).expand(types[index]["output"], [ObjectShape({})]),
        }
    return {
        "_source": {
            "repository": REPOSITORY,
            "commit": source.commit,
            "paths": sorted(used_paths),
            "versions_from": f"every generated/*/<namespace>/<apiVersion>/types.json of "
            f"{', '.join(sorted(namespaces))} ({len(source.types_files(namespaces))} files)",
            "regenerate": ".venv/bin/python -m tests.support.resource_types_extract "
            "<bicep-types-az git directory>",
        },
        "versions": {spelled[t]: sorted(v) for t, v in sorted(versions.items())},
        "resources": resources,
        "functions": listed,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    extracted = extract(Source(Path(argv[0])))
    FIXTURE.write_text(json.dumps(extracted, indent=1, sort_keys=True) + "\n")
    print(f"{FIXTURE}: {FIXTURE.stat().st_size} bytes from {extracted['_source']['commit']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
