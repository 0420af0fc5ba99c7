"""Every KQL query the repository ships or documents, compiled by Kusto.Language (Microsoft's
parser and binder, npm @kusto/language-service-next, run by kusto_check.js beside this file)
against the Application Insights tables declared here.

Where the queries are, found at test time (a new one is checked without editing a test):
``kusto``/``kql`` fenced blocks of every tracked Markdown file, every string ``query`` of the
Bicep templates (the log alert rules), and every ``query`` of the JSON under infra/ (the
workbook, its time range picker expanded as the portal expands it).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.infra.bicep import INFRA, bicep_files, parse_bicep
from tests.support.cosmos_server import NODE, REPO_ROOT
from tests.support.repository import tracked_files

CHECKER = Path(__file__).with_name("kusto_check.js")

# The tables as the Application Insights resource's Logs, its workbooks and its log alerts see
# them (the alerts and the workbook are scoped to the component, so the classic names apply,
# also for a workspace-based component: "The classic Application Insights experience includes
# backward compatibility for your resource queries, workbooks, and log-based alerts").
# Columns and types: "Migrate to workspace-based Application Insights resources", Table schemas,
# the ApplicationInsights columns of each legacy table,
# https://learn.microsoft.com/azure/azure-monitor/app/convert-classic-resource#table-schemas
# That page types `success` of requests and dependencies as string, the table reference pages
# as bool (https://learn.microsoft.com/azure/azure-monitor/reference/tables/requests and
# .../tables/dependencies), and Microsoft's own component-scoped workbook template filters
# `success == false` on both (microsoft/Application-Insights-Workbooks, Workbooks/Failures/
# Failure Insights): bool here. (Kusto.Language accepts `success == false` with either.)
_COMMON = (
    "appId:string, application_Version:string, appName:string, client_Browser:string, "
    "client_City:string, client_CountryOrRegion:string, client_IP:string, client_Model:string, "
    "client_OS:string, client_StateOrProvince:string, client_Type:string, "
    "cloud_RoleInstance:string, cloud_RoleName:string, customDimensions:dynamic, iKey:string, "
    "itemId:string, itemType:string, operation_Id:string, operation_Name:string, "
    "operation_ParentId:string, operation_SyntheticSource:string, sdkVersion:string, "
    "session_Id:string, timestamp:datetime, user_AccountId:string, "
    "user_AuthenticatedId:string, user_Id:string"
)
_SAMPLED = "customMeasurements:dynamic, itemCount:int"
_CALL = "duration:real, id:string, name:string, performanceBucket:string, resultCode:string"
TABLES = {
    "traces": f"({_COMMON}, {_SAMPLED}, message:string, severityLevel:int)",
    "requests": f"({_COMMON}, {_SAMPLED}, {_CALL}, source:string, success:bool, url:string)",
    "dependencies": (
        f"({_COMMON}, {_SAMPLED}, {_CALL}, data:string, success:bool, target:string, type:string)"
    ),
    "customEvents": f"({_COMMON}, {_SAMPLED}, name:string)",
    "customMetrics": (
        f"({_COMMON}, name:string, value:real, valueCount:int, valueMax:real, valueMin:real, "
        "valueSum:real, valueStdDev:real)"
    ),
    "exceptions": (
        f"({_COMMON}, {_SAMPLED}, assembly:string, details:dynamic, handledAt:string, "
        "innermostAssembly:string, innermostMessage:string, innermostMethod:string, "
        "innermostType:string, message:string, method:string, outerAssembly:string, "
        "outerMessage:string, outerMethod:string, outerType:string, problemId:string, "
        "severityLevel:int, type:string)"
    ),
}

# Workbook time range picker, in a query: `where timestamp {TimeRange}` "expands on query
# evaluation time to `| where timestamp > ago(1d)`", the parameter's value
# (https://learn.microsoft.com/azure/azure-monitor/visualize/workbooks-time); a custom range to
# `between(datetime("...")..datetime("..."))` (maintainer, microsoft/Application-Insights-
# Workbooks#146).
CUSTOM_RANGE = 'between(datetime("2026-03-14T04:12:00.000Z")..datetime("2026-03-15T04:12:00.000Z"))'

KUSTO_FENCE = re.compile(
    r"^[ \t]*```(?:kusto|kql)[ \t]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE | re.IGNORECASE
)


@dataclass(frozen=True)
class Query:
    place: str  # file and where in it: docs/operations.md:90, alerts.bicep:poison, ...
    text: str  # as compiled: a workbook's parameters expanded
    written: str  # as the file has it
    variant: str = ""  # which parameter values were expanded: TimeRange=custom

    @property
    def id(self) -> str:
        return f"{self.place} {self.variant}".strip()


def markdown_queries() -> list[Query]:
    found = []
    for path in tracked_files():
        if not path.endswith(".md") or path.startswith("tests/"):
            continue
        text = (REPO_ROOT / path).read_text()
        for block in KUSTO_FENCE.finditer(text):
            line = text.count("\n", 0, block.start()) + 1
            found.append(Query(f"{path}:{line}", block.group(1), block.group(1)))
    return found


def _string_queries(node: Any, label: str) -> list[tuple[str, str]]:
    """(label, query) for every string under a key ``query``, labelled by the nearest
    enclosing ``name``."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("name"), str):
            label = node["name"]
        for key, value in node.items():
            if key == "query" and isinstance(value, str):
                found.append((label, value))
            else:
                found += _string_queries(value, label)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _string_queries(value, f"{label}[{index}]")
    return found


def bicep_queries() -> list[Query]:
    found = []
    for path in bicep_files():
        where = path.relative_to(REPO_ROOT)
        for label, text in _string_queries(parse_bicep(path), ""):
            found.append(Query(f"{where}:{label}", text, text))
    return found


def _time_ranges(document: Any) -> dict[str, dict[str, str]]:
    """Each time range parameter (type 4) of a workbook -> what `{name}` becomes in a query,
    by what was picked: its default (a duration, as every selectable value is) or a custom
    range."""
    ranges: dict[str, dict[str, str]] = {}
    for parameters in _values_of(document, "parameters"):
        for parameter in parameters if isinstance(parameters, list) else []:
            if isinstance(parameter, dict) and parameter.get("type") == 4:
                default = parameter["value"]["durationMs"]
                ranges[parameter["name"]] = {
                    "default": f"> ago({default}ms)",
                    "custom": CUSTOM_RANGE,
                }
    return ranges


def _values_of(node: Any, key: str) -> list[Any]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [
            found for value in node.values() for found in _values_of(value, key)
        ]
    if isinstance(node, list):
        return [found for value in node for found in _values_of(value, key)]
    return []


def workbook_queries() -> list[Query]:
    """Every query of the JSON under infra/, once per value of each time range it uses."""
    found = []
    for path in sorted(INFRA.rglob("*.json")):
        document = json.loads(path.read_text())
        ranges = _time_ranges(document)
        where = path.relative_to(REPO_ROOT)
        for label, text in _string_queries(document, ""):
            variants = {"": text}
            for name, values in ranges.items():
                if f"{{{name}}}" in text:
                    variants = {
                        f"{tag} {name}={picked}".strip(): variant.replace(f"{{{name}}}", value)
                        for tag, variant in variants.items()
                        for picked, value in values.items()
                    }
            for tag, variant in variants.items():
                found.append(Query(f"{where}:{label}", variant, text, tag))
    return found


def shipped_queries() -> list[Query]:
    return markdown_queries() + bicep_queries() + workbook_queries()


@dataclass(frozen=True)
class Compiled:
    diagnostics: list[dict[str, str]]
    analyzer: list[dict[str, str]]
    columns: list[tuple[str, str]] | None
    tables: list[str]
    operators: list[str]
    functions: list[str]
    dynamic: list[dict[str, str | None]]
    ago: list[str]
    comparisons: list[dict[str, Any]]

    def errors(self) -> list[str]:
        """The parser's and binder's errors, and the analyzers' warnings (a suggestion, such
        as `has` for `contains`, is not one)."""
        return [
            f"{d['severity']} {d['code']} {d['message']} at {d['text']!r}"
            for d in self.diagnostics + self.analyzer
            if d["severity"] in ("Error", "Warning")
        ]


def compile_queries(texts: list[str]) -> list[Compiled]:
    """Kusto.Language's verdict on each query, in one Node.js run."""
    request = json.dumps({"tables": TABLES, "queries": texts})
    answer = subprocess.run(
        [NODE, str(CHECKER)], input=request, capture_output=True, text=True, check=True
    ).stdout
    return [
        Compiled(
            diagnostics=r["diagnostics"],
            analyzer=r["analyzer"],
            columns=None if r["columns"] is None else [tuple(c) for c in r["columns"]],
            tables=r["tables"],
            operators=r["operators"],
            functions=r["functions"],
            dynamic=r["dynamic"],
            ago=r["ago"],
            comparisons=r["comparisons"],
        )
        for r in json.loads(answer)
    ]


@cache
def compiled_shipped_queries() -> dict[Query, Compiled]:
    queries = shipped_queries()
    return dict(zip(queries, compile_queries([q.text for q in queries]), strict=True))


TIMESPAN = re.compile(r"^(\d+(?:\.\d+)?)(d|h|m|s|ms)$")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def timespan_seconds(literal: str) -> float:
    """A KQL timespan literal such as 10m or 2d, in seconds."""
    match = TIMESPAN.match(literal)
    assert match, f"not a plain timespan literal: {literal!r}"
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
