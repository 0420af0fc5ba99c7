"""What each resource declaration in infra/ sets, as far as the templates alone tell.

pycep gives literal strings and references alike as strings; here a string that names a
parameter, variable, resource, module or loop item of its file is a reference, anything else a
literal. References are followed: a variable to its value, a parameter with @allowed to those
values, a module's parameter to what each caller passes, ``cond ? a : b`` to both branches, a
loop item to each element of a literal array. What stays unknown (a runtime property, most
function results) keeps the kind Bicep would give it where that is plain (string, int, bool,
object, array), so the resource type check can still compare kinds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tests.infra.bicep import INFRA, Json, bicep_files, parse_bicep

# Keys of a resource body that are Bicep's own, not the resource type's.
BICEP_KEYWORDS = frozenset({"parent", "scope", "dependsOn"})

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
INTERPOLATION = re.compile(r"\$\{([^{}]*)\}")
TAKE = re.compile(r"take\(.*,\s*(\d+)\s*\)")


@dataclass(frozen=True)
class Literal:
    value: str | int | bool | None


@dataclass(frozen=True)
class Computed:
    """A value known only at deployment; ``kind`` is string/int/bool/object/array or None.
    ``longest``: the most characters a string can have, where the template bounds it."""

    kind: str | None
    text: str = ""
    longest: int | None = None


@dataclass
class ObjectShape:
    properties: dict[str, Shape]
    computed_keys: list[Shape] = field(default_factory=list)


@dataclass
class ArrayShape:
    items: list[Shape]


@dataclass
class Choice:
    """One of several values (a conditional, @allowed values, several callers)."""

    options: list[Shape]


Shape = Literal | Computed | ObjectShape | ArrayShape | Choice


@dataclass(frozen=True)
class Declaration:
    path: Path
    file: str
    line: int
    symbol: str
    type: str
    api_version: str
    existing: bool
    body: Json
    loop: Json | None

    @property
    def type_version(self) -> str:
        return f"{self.type}@{self.api_version}"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line} {self.symbol}"


def relative(path: Path) -> str:
    """A template's name in messages: its path under infra/ (a test's snippet: its name)."""
    return path.relative_to(INFRA).as_posix() if path.is_relative_to(INFRA) else path.name


@cache
def document(path: Path) -> Json:
    return parse_bicep(path)


def _unwrap(config: Json) -> tuple[Json, Json | None]:
    """(body, loop_type) of a resource or module config without its if/for wrapper."""
    if "loop_type" in config:
        body: Json = config["config"]
        return body, config["loop_type"]
    if set(config) == {"condition", "config"}:
        inner: Json = config["config"]
        return inner, None
    return config, None


def declarations(paths: list[Path] | None = None) -> list[Declaration]:
    """Every ``resource`` in infra/**/*.bicep (or ``paths``), existing ones included, in file
    order."""
    found: list[Declaration] = []
    for path in bicep_files() if paths is None else paths:
        text = path.read_text()
        for symbol, entry in document(path).get("resources", {}).items():
            match = re.search(rf"^\s*resource\s+{symbol}\s+'", text, re.MULTILINE)
            assert match, f"{relative(path)}: no line declares resource {symbol}"
            body, loop = _unwrap(entry["config"])
            found.append(
                Declaration(
                    path=path,
                    file=relative(path),
                    line=text.count("\n", 0, match.start()) + 1 + match.group().count("\n"),
                    symbol=symbol,
                    type=entry["type"],
                    api_version=entry["api_version"],
                    existing=bool(entry["existing"]),
                    body=body,
                    loop=loop,
                )
            )
    return sorted(found, key=lambda d: (d.file, d.line))


@dataclass(frozen=True)
class ListCall:
    """A list*() call on a resource id: listKeys('${app.id}/functions/x', version)."""

    file: str
    function: str
    resource_type: str
    api_version: str
    member: str | None  # what the template reads of the result: list(...).properties


@cache
def _callers() -> dict[Path, list[tuple[Path, Json]]]:
    """Module file -> (calling file, module params) for every module declaration."""
    callers: dict[Path, list[tuple[Path, Json]]] = {}
    for path in bicep_files():
        for _, target, params in module_calls(path):
            callers.setdefault(target, []).append((path, params))
    return callers


FUNCTION_KINDS = {
    "empty": "bool",
    "ends_with": "bool",
    "guid": "string",
    "length": "int",
    "replace": "string",
    "resource_id": "string",
    "split": "array",
    "string": "string",
    "subscription_resource_id": "string",
    "substring": "string",
    "to_lower": "string",
    "union": "object",
    "unique_string": "string",
}

OPERATOR_KINDS = {
    "and": "bool",
    "or": "bool",
    "not": "bool",
    "equals": "bool",
    "not_equals": "bool",
    "greater_than": "bool",
    "multiply": "int",
    "substract": "int",
}


@dataclass(frozen=True)
class Scope:
    path: Path
    loops: tuple[tuple[str, Any], ...] = ()

    @property
    def document(self) -> Json:
        return document(self.path)

    def with_loop(self, name: str, shape: Shape) -> Scope:
        return Scope(self.path, ((name, shape), *self.loops))

    def loop_item(self, name: str) -> Shape | None:
        for item, shape in self.loops:
            if item == name:
                result: Shape = shape
                return result
        return None


def _unquote(key: str) -> str:
    if len(key) >= 2 and key[0] == key[-1] == "'":
        return key[1:-1]
    return key


def resolve(value: Any, scope: Scope) -> Shape:
    """The shape a Bicep value (as pycep gives it) takes in ``scope``."""
    if value is None or isinstance(value, (bool, int)):
        return Literal(value)
    if isinstance(value, str):
        return _resolve_string(value, scope)
    if isinstance(value, list):
        return ArrayShape([resolve(item, scope) for item in value])
    if "loop_type" in value:
        return ArrayShape([_resolve_loop(value, scope)])
    if "operator" in value and isinstance(value["operator"], dict):
        return _resolve_operator(value["operator"], scope)
    if "function" in value and isinstance(value["function"], dict):
        function = value["function"]
        if function.get("property_name") or "index" in function:
            return Computed(None, f"{function['type']}()...")
        return Computed(FUNCTION_KINDS.get(function["type"]), f"{function['type']}()")
    properties: dict[str, Shape] = {}
    computed_keys: list[Shape] = []
    for key, item in value.items():
        name = _unquote(key)
        if "${" in name:
            computed_keys.append(resolve(item, scope))
        elif isinstance(item, str) and _quoted(scope.path, name, item):
            properties[name] = Literal(item)
        else:
            properties[name] = resolve(item, scope)
    return ObjectShape(properties, computed_keys)


def _quoted(path: Path, key: str, value: str) -> bool:
    """Whether the file writes ``key: 'value'``: pycep drops the quotes, so a literal that
    happens to be a symbol's name (category: 'workbook' beside resource workbook) would
    otherwise read as that symbol."""
    if "${" in value:
        return False  # an interpolation: a computed string
    pattern = rf"^\s*'?{re.escape(key)}'?\s*:\s*'{re.escape(value)}'\s*$"
    return re.search(pattern, path.read_text(), re.MULTILINE) is not None


def _resolve_string(value: str, scope: Scope) -> Shape:
    if not IDENTIFIER.fullmatch(value):
        if "${" not in value:
            return Literal(value)
        return Computed("string", value, _interpolation_longest(value, scope))
    loop_item = scope.loop_item(value)
    if loop_item is not None:
        return loop_item
    doc = scope.document
    if value in doc.get("variables", {}):
        return resolve(doc["variables"][value]["value"], scope)
    if value in doc.get("parameters", {}):
        return parameter_shape(scope.path, value)
    if value in doc.get("resources", {}) or value in doc.get("modules", {}):
        return Computed("object", value)
    return Literal(value)


def longest(shape: Shape) -> int | None:
    """The most characters ``shape`` can have as a string; None where nothing bounds it."""
    if isinstance(shape, Literal):
        return len(str(shape.value))
    if isinstance(shape, Computed):
        return shape.longest
    if isinstance(shape, Choice):
        lengths = [longest(option) for option in shape.options]
        return None if None in lengths else max(n for n in lengths if n is not None)
    return None


def _interpolation_longest(value: str, scope: Scope) -> int | None:
    """``'${a}-x'`` is at most a's @maxLength + 2; ``take(x, n)`` is at most n."""
    total = len(INTERPOLATION.sub("", value))
    for expression in (m.strip() for m in INTERPOLATION.findall(value)):
        taken = TAKE.fullmatch(expression)
        if taken:
            total += int(taken.group(1))
            continue
        part = _resolve_string(expression, scope) if IDENTIFIER.fullmatch(expression) else None
        part_longest = None if part is None else longest(part)
        if part_longest is None:
            return None
        total += part_longest
    return total


def _resolve_loop(value: Json, scope: Scope) -> Shape:
    loop = value["loop_type"]
    detail = loop.get("detail") or {}
    item_name = detail.get("item_name")
    item: Shape = Computed(None, f"{item_name}")
    if loop.get("type") == "array" and detail.get("array_name"):
        source = resolve(detail["array_name"], scope)
        if isinstance(source, ArrayShape):
            item = Choice(source.items)
    inner = scope.with_loop(item_name, item) if item_name else scope
    return resolve(value["config"], inner)


def _resolve_operator(operator: Json, scope: Scope) -> Shape:
    kind = operator["type"]
    operands = operator["operands"]
    if kind == "conditional":
        return Choice(
            [resolve(operands["true_value"], scope), resolve(operands["false_value"], scope)]
        )
    if kind == "property_accessor":
        return _resolve_accessor(operator, scope)
    if kind == "not" and _is_conditional(operands["bool_value"]):
        # pycep reads ``!empty(a) ? a : b`` as ``!(empty(a) ? a : b)``; in Bicep ``!`` binds
        # tighter, so the value is one of the branches.
        return resolve(operands["bool_value"], scope)
    return Computed(OPERATOR_KINDS.get(kind), kind)


def _is_conditional(value: Any) -> bool:
    return isinstance(value, dict) and value.get("operator", {}).get("type") == "conditional"


def _accessor_chain(operator: Json) -> list[Any]:
    """``a.b.c`` as [a, 'b', 'c'] (pycep nests the right-hand side)."""
    first = operator["operands"]["operand_1"]
    rest = operator["operands"]["operand_2"]
    chain = [first]
    while isinstance(rest, dict) and rest.get("operator", {}).get("type") == "property_accessor":
        chain.append(rest["operator"]["operands"]["operand_1"])
        rest = rest["operator"]["operands"]["operand_2"]
    chain.append(rest)
    return chain


def _member(shape: Shape, name: str) -> Shape:
    if isinstance(shape, ObjectShape):
        # A missing member of a literal object is what ``.?`` gives: null (pycep drops the ?).
        return shape.properties.get(name, Literal(None))
    if isinstance(shape, Choice):
        return Choice([_member(option, name) for option in shape.options])
    return Computed(None, name)


def _resolve_accessor(operator: Json, scope: Scope) -> Shape:
    base, *names = _accessor_chain(operator)
    text = ".".join(str(part) for part in [base, *names])
    if not isinstance(base, str) or not all(isinstance(name, str) for name in names):
        return Computed(None, text)
    doc = scope.document
    if scope.loop_item(base) is not None or base in doc.get("variables", {}):
        shape = resolve(base, scope)
        for name in names:
            shape = _member(shape, name)
        return shape
    if base in doc.get("resources", {}):
        if names in (["id"], ["name"], ["location"], ["type"]):
            return Computed("string", text)
        return Computed(None, text)
    if base in doc.get("modules", {}) and len(names) == 2 and names[0] == "outputs":
        target = (scope.path.parent / doc["modules"][base]["detail"]["path"]).resolve()
        outputs = document(target).get("outputs", {})
        if names[1] in outputs:
            return Computed(outputs[names[1]]["type"], text)
    return Computed(None, text)


def parameter_shape(path: Path, name: str) -> Shape:
    """@allowed values; else what every caller passes (the default where one passes nothing);
    else, for a template deployed on its own, its default or any value of its type."""
    entry = document(path)["parameters"][name]
    allowed = next((d["argument"] for d in entry["decorators"] if d["type"] == "allowed"), None)
    if allowed is not None:
        return Choice([Literal(value) for value in allowed])
    max_length = next(
        (d["argument"] for d in entry["decorators"] if d["type"] == "max_length"), None
    )
    declared = Computed(entry["type"], name, max_length)
    callers = _callers().get(path.resolve(), [])
    options: list[Shape] = []
    for caller, params in callers:
        if name in params:
            options.append(argument_shape(caller, name, params[name]))
        elif entry.get("default") is not None:
            options.append(resolve(entry["default"], Scope(path)))
    if not callers:
        if entry.get("default") is not None:
            options.append(resolve(entry["default"], Scope(path)))
        options.append(declared)
    return Choice(options) if options else declared


def argument_shape(caller: Path, name: str, value: Any) -> Shape:
    """The shape of what ``caller`` passes as a module's parameter ``name``."""
    if isinstance(value, str) and _quoted(caller, name, value):
        return Literal(value)
    return resolve(value, Scope(caller))


def module_calls(path: Path) -> list[tuple[str, Path, Json]]:
    """(module symbol, module file, params) of each module ``path`` declares."""
    calls = []
    for symbol, entry in document(path).get("modules", {}).items():
        body, _ = _unwrap(entry["config"])
        target = (path.parent / entry["detail"]["path"]).resolve()
        calls.append((symbol, target, body.get("params") or {}))
    return calls


def body_shape(declaration: Declaration) -> ObjectShape:
    """The resource body's shape, Bicep keywords (parent, scope, dependsOn) left out."""
    scope = Scope(declaration.path)
    if declaration.loop is not None:
        wrapper = {"loop_type": declaration.loop, "config": declaration.body}
        shape = _resolve_loop(wrapper, scope)
    else:
        shape = resolve(declaration.body, scope)
    assert isinstance(shape, ObjectShape), declaration.where
    return ObjectShape(
        {k: v for k, v in shape.properties.items() if k not in BICEP_KEYWORDS},
        shape.computed_keys,
    )


def list_calls() -> list[ListCall]:
    """Every list*() call on ``'${symbol.id}/<child type>/<name>...'`` with its API version."""
    calls: list[ListCall] = []

    def visit(value: Any, path: Path, member: str | None = None) -> None:
        if isinstance(value, dict):
            function = value.get("function")
            if isinstance(function, dict) and function.get("type") == "list_func":
                calls.append(_list_call(function["parameters"], path, member))
                return
            operator = value.get("operator")
            if isinstance(operator, dict) and operator.get("type") == "property_accessor":
                operands = operator["operands"]
                name = operands["operand_2"]
                visit(operands["operand_1"], path, name if isinstance(name, str) else None)
                visit(name, path)
                return
            for item in value.values():
                visit(item, path)
        elif isinstance(value, list):
            for item in value:
                visit(item, path)

    for path in bicep_files():
        visit(document(path), path)
    return calls


def _list_call(parameters: Json, path: Path, member: str | None) -> ListCall:
    identifier = parameters["resource_identifier"]
    match = re.fullmatch(r"\$\{(\w+)\.id\}((?:/[^/]+/[^/]+)*)", identifier)
    assert match, f"{relative(path)}: list call on {identifier}, not '${{symbol.id}}/...'"
    owner = document(path)["resources"][match[1]]["type"]
    segments = match[2].strip("/").split("/") if match[2] else []
    resource_type = "/".join([owner, *segments[0::2]])
    version = resolve(parameters["api_version"], Scope(path))
    assert isinstance(version, Literal) and isinstance(version.value, str), identifier
    return ListCall(relative(path), parameters["func_name"], resource_type, version.value, member)
