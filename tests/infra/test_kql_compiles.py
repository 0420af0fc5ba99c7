"""Every KQL query the repository ships or documents (docs' kusto blocks, the alert rules, the
workbook) compiles with Kusto.Language, Microsoft's own parser and binder, against the
Application Insights tables (tests/support/kusto.py): a typo in a column, a wrong table, a
function that does not exist or a type error would otherwise show only in Azure, where a
workbook panel shows an error and an alert rule with a broken query never fires."""

from __future__ import annotations

import re

import pytest

from tests.support.cosmos_server import REPO_ROOT
from tests.support.kusto import (
    Compiled,
    Query,
    compile_queries,
    compiled_shipped_queries,
    shipped_queries,
)
from tests.support.repository import tracked_files

QUERIES = shipped_queries()

# What a KQL query looks like in any file: an Application Insights table piped into an
# operator (across a line break, or a JSON string's \n).
KQL_START = re.compile(
    r"\b(?:traces|requests|dependencies|customMetrics|customEvents|exceptions|pageViews"
    r"|availabilityResults|performanceCounters|App[A-Z]\w+)\s*(?:\\n)?\s*\|\s*"
    r"(?:where|summarize|extend|project|take|limit|count|order|sort|top|join|union|render"
    r"|distinct|make-series)\b"
)

# A customDimensions value is dynamic: read it through a conversion (the docs' convention; KQL
# refuses a dynamic group key or sort key), or only test whether the record carries it.
CONVERTED_OR_TESTED = {
    "tostring",
    "toint",
    "tolong",
    "todouble",
    "toreal",
    "todecimal",
    "tobool",
    "toboolean",
    "todatetime",
    "totimespan",
    "toguid",
    "isempty",
    "isnotempty",
    "isnull",
    "isnotnull",
}
NUMERIC = {"int", "long", "real", "decimal"}


def compiled(query: Query) -> Compiled:
    return compiled_shipped_queries()[query]


def test_every_query_in_the_repository_is_one_the_check_reads() -> None:
    """A query in a place the extraction misses (a ```sql fence, a Python string, a template
    property not named query) would go unchecked: each file has as many KQL-looking texts as
    queries found in it."""
    found: dict[str, set[str]] = {}
    for query in QUERIES:
        found.setdefault(query.place.split(":")[0], set()).add(query.place)
    looks_like: dict[str, int] = {}
    for path in tracked_files():
        if path.startswith("tests/") or path == "package-lock.json":
            continue
        try:
            text = (REPO_ROOT / path).read_text()
        except UnicodeDecodeError:
            continue
        if hits := len(KQL_START.findall(text)):
            looks_like[path] = hits
    assert looks_like == {path: len(places) for path, places in found.items()}
    # Control: the pattern sees each query found once, so the counts above compare like with like.
    assert all(len(KQL_START.findall(q.written)) == 1 for q in QUERIES)
    assert {"docs/operations.md", "infra/modules/alerts.bicep", "infra/modules/workbook.json"} <= (
        set(found)
    ), "the extraction lost a place it read before"


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_the_query_compiles_against_application_insights(query: Query) -> None:
    result = compiled(query)
    assert result.errors() == [], query.text
    assert result.tables, "reads no Application Insights table"
    assert result.columns is not None, "its result is no table"


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_each_custom_dimension_is_converted_or_only_tested_for_presence(query: Query) -> None:
    unconverted = [
        (read["name"], read["within"])
        for read in compiled(query).dynamic
        if read["within"] not in CONVERTED_OR_TESTED
    ]
    assert unconverted == [], query.text


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_a_chart_has_a_number_to_draw_and_a_time_chart_a_time_axis(query: Query) -> None:
    result = compiled(query)
    charts = [op.split()[1] for op in result.operators if op.startswith("RenderOperator")]
    types = {column_type for _, column_type in result.columns or []}
    for chart in charts:
        assert types & NUMERIC, f"render {chart} of columns {result.columns}"
        if chart == "timechart":
            assert "datetime" in types, f"render timechart of columns {result.columns}"


def test_the_check_reports_what_application_insights_would_refuse() -> None:
    """Control: each mistake below, made in a shipped query, is reported (so a clean pass
    above means something)."""
    grouped = "by decision, route = tostring(customDimensions.route)"
    base = next(q.text for q in QUERIES if grouped in q.text and q.text.startswith("traces"))
    mistakes = {
        "unknown table": ("traces", "trace"),
        "workspace table name, not the component's": ("traces", "AppTraces"),
        "unknown column": ("customDimensions.route", "customDimension.route"),
        "unknown function": ("tostring(customDimensions.route)", "tostr(customDimensions.route)"),
        "type error": ("timestamp >", "tostring(timestamp) >"),
        "syntax error": ("| where", "| wher"),
        "dynamic group key": ("tostring(customDimensions.route)", "customDimensions.route"),
    }
    broken = {}
    for name, (good, bad) in mistakes.items():
        assert good in base, name
        broken[name] = base.replace(good, bad, 1)
    results = dict(zip(broken, compile_queries(list(broken.values())), strict=True))
    unreported = [name for name, result in results.items() if not result.errors()]
    assert unreported == []
    assert compile_queries([base])[0].errors() == []


def test_a_custom_dimension_is_read_by_name_in_every_spelling_kusto_takes() -> None:
    """The names the tests hold against what the app sends (test_workbook, test_game_day)
    come from the syntax tree, so no spelling of a read escapes them: a dot, brackets with
    either quote or a verbatim string, a bracketed name after the dot, an alias of the column,
    a bag parsed again, and a key that is not a literal shows as None."""
    spellings = [
        "traces | project tostring(customDimensions.route)",
        'traces | project tostring(customDimensions["route"])',
        "traces | project tostring(customDimensions['route'])",
        "traces | project tostring(customDimensions.['route'])",
        'traces | project tostring(customDimensions[@"route"])',
        "traces | extend d = customDimensions | project tostring(d.route)",
        "traces | project tostring(parse_json(tostring(customDimensions)).route)",
        "traces | project x = tostring(customDimensions[message])",
    ]
    results = compile_queries(spellings)
    assert [r.errors() for r in results] == [[]] * len(spellings)
    names = [[read["name"] for read in result.dynamic] for result in results]
    assert names == [["route"]] * (len(spellings) - 1) + [[None]]
