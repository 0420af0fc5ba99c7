"""The log alert rules' queries (infra/modules/alerts.bicep) as a log search alert runs them,
compiled by Kusto.Language (tests/support/kusto.py): what the rule reads of the result exists,
the query is of the kind a rule accepts, and it can come back empty, so that the rule fires
only when there is something to see.

Microsoft's rules for these queries: "Optimize log search alert queries",
https://learn.microsoft.com/azure/azure-monitor/alerts/alerts-log-query (start from a table;
search and union are refused; avoid take and limit; "the alerting logic appends count to the
query"), and "Create or edit a log search alert rule",
https://learn.microsoft.com/azure/azure-monitor/alerts/alerts-create-log-alert-rule ("The
alert time range is limited to a maximum of two days", whatever ago() the query has).
"""

from __future__ import annotations

import re

import pytest

from tests.infra.bicep import Json
from tests.infra.test_alerts import alerts, rule
from tests.support.kusto import (
    TABLES,
    Compiled,
    compile_queries,
    compiled_shipped_queries,
    timespan_seconds,
)

ALERTS = alerts()
TWO_DAYS_S = 2 * 86400
NUMERIC = {"int", "long", "real", "decimal"}
# Operators that make a rule slow or refused (search, union) or its result unsteady (take).
NOT_IN_AN_ALERT = {"SearchOperator", "UnionOperator", "TakeOperator", "FindOperator"}
ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")


def iso_seconds(duration: str) -> int:
    match = ISO_DURATION.match(duration)
    assert match and duration not in ("P", "PT"), duration
    days, hours, minutes = (int(part or 0) for part in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60


def compiled(alert: Json) -> Compiled:
    """The rule's query as compiled with every other shipped query (one Node.js run)."""
    return {q.text: c for q, c in compiled_shipped_queries().items()}[alert["query"]]


def reads_seconds(alert: Json) -> int:
    """How far back the rule lets its query read: overrideQueryTimeRange, else windowSize
    (numberOfEvaluationPeriods is 1)."""
    return iso_seconds(str(alert.get("overrideQueryTimeRange", alert["windowSize"])))


def criterion() -> Json:
    (only,) = rule()["properties"]["criteria"]["allOf"]
    assert isinstance(only, dict)
    return only


def per_alert(value: object, alert: Json) -> object:
    """A criterion's value for one alert: ``alert.<name>`` resolved, a literal as it is."""
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        operands = value["operator"]["operands"]
        assert operands["operand_1"] == "alert", value
        return alert.get(operands["operand_2"])
    return value


@pytest.mark.parametrize("alert", ALERTS, ids=[a["name"] for a in ALERTS])
def test_the_query_starts_from_one_table_without_search_union_or_take(alert: Json) -> None:
    """(Whether it compiles: test_kql_compiles, which reads every query of the templates.)"""
    result = compiled(alert)
    assert alert["query"].split()[0] in TABLES
    assert len(result.tables) == 1, result.tables
    assert set(result.operators) & NOT_IN_AN_ALERT == set()


def always_returns_a_row(operators: list[str]) -> bool:
    """A count, or a summarize without by, with no filter after it: one row, even of none."""
    last_aggregate = max(
        (i for i, op in enumerate(operators) if op in ("CountOperator", "SummarizeOperator")),
        default=None,
    )
    return last_aggregate is not None and "FilterOperator" not in operators[last_aggregate:]


@pytest.mark.parametrize("alert", ALERTS, ids=[a["name"] for a in ALERTS])
def test_the_query_comes_back_empty_when_there_is_nothing_to_see(alert: Json) -> None:
    """The rule counts the rows (Count, GreaterThan 0): a query that always returns one would
    fire at every evaluation."""
    assert not always_returns_a_row(compiled(alert).operators)


def unreadable(condition: Json, columns: dict[str, str]) -> list[str]:
    """What a rule's condition names that the query's result lacks. With Count and no measure
    column the rule counts rows, which any table has; a measure column must be a numeric
    column of the result, dimensions and the resource id column columns of it
    (scheduledQueryRules Condition: metricMeasureColumn, "the column containing the metric
    measure number"; resourceIdColumn; dimensions)."""
    missing = []
    measure = condition.get("metricMeasureColumn")
    if condition["timeAggregation"] != "Count" and not measure:
        missing.append(f"{condition['timeAggregation']} of no measure column")
    if measure and columns.get(str(measure)) not in NUMERIC:
        missing.append(f"measure {measure}: {columns.get(str(measure))}")
    resource_id = condition.get("resourceIdColumn")
    if resource_id and columns.get(str(resource_id)) != "string":
        missing.append(f"resource id {resource_id}")
    missing += [
        f"dimension {d['name']}"
        for d in condition.get("dimensions") or []
        if d["name"] not in columns
    ]
    return missing


@pytest.mark.parametrize("alert", ALERTS, ids=[a["name"] for a in ALERTS])
def test_what_the_rule_reads_of_the_result_is_there(alert: Json) -> None:
    condition = {key: per_alert(value, alert) for key, value in criterion().items()}
    columns = dict(compiled(alert).columns or [])
    assert columns, "the result is no table"
    assert unreadable(condition, columns) == []
    assert isinstance(condition["threshold"], int | float)


@pytest.mark.parametrize("alert", ALERTS, ids=[a["name"] for a in ALERTS])
def test_no_ago_reaches_past_what_the_rule_reads_nor_past_two_days(alert: Json) -> None:
    """Every ago() of the query, not only its timestamp filter (test_alerts checks that one),
    falls within the rule's time range, and that within the two days a log alert reads."""
    reads = reads_seconds(alert)
    assert reads <= TWO_DAYS_S, alert["name"]
    agos = [timespan_seconds(literal) for literal in compiled(alert).ago]
    assert agos, "no time filter of its own"
    assert max(agos) <= reads, (agos, reads)


def test_the_checks_catch_what_a_rule_should_not_have() -> None:
    """Controls for the checks above."""
    poison = compiled(ALERTS[0])
    counted, *refused = compile_queries(
        [
            ALERTS[0]["query"] + "| count",
            "traces | limit 3",
            'search "acr-events-fallback-poison"',
            "union traces, requests",
        ]
    )
    assert always_returns_a_row(counted.operators)
    assert all(set(r.operators) & NOT_IN_AN_ALERT for r in refused)
    assert always_returns_a_row([*poison.operators, "SummarizeOperator"])
    assert not always_returns_a_row([*poison.operators, "SummarizeOperator by"])
    (server_errors,) = [a for a in ALERTS if a["name"] == "server-errors"]
    columns = dict(compiled(server_errors).columns or [])
    count = {"timeAggregation": "Count"}
    assert unreadable({**count, "metricMeasureColumn": "failures"}, columns) == []
    assert unreadable({**count, "metricMeasureColumn": "failure"}, columns)
    assert unreadable({**count, "metricMeasureColumn": "name"}, columns)  # not a number
    assert unreadable({"timeAggregation": "Total"}, columns)
    assert unreadable({**count, "dimensions": [{"name": "resultcode"}]}, columns)
    assert unreadable({**count, "dimensions": [{"name": "resultCode"}]}, columns) == []
