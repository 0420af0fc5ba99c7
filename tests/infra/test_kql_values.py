"""Every value a shipped KQL query (docs' kusto blocks, the alert rules, the workbook) compares
a column with is one that reaches that column in Azure: compiling (test_kql_compiles) does not
see `decision == "enqueued"` or `name == "POST /api/webhook"`, and an alert filtering on a
value nobody sends never fires.

The comparisons come from Kusto.Language's syntax tree (tests/support/kusto_check.js): ==, !=,
=~, in, has, contains, startswith, matches regex..., whatever the column's spelling
(customDimensions.x, ["x"], ['x'], an extend alias, tostring(...)). What is sent is measured at
test time: tests/support/emitted_telemetry.py loads function_app with telemetry on, drives every
function through every decision it logs, and the Azure Monitor exporters send their envelopes to
a stand-in for the ingestion endpoint (tests/support/ingestion.py). Each literal must be sent
together with the values the comparisons and-ed with it ask for (`decision == "queued" and
route == "eventgrid"` matches nothing, though each value is sent), on the table the query reads.

Values only Azure sends are the Functions host's (function names in `requests`, the queue
extension's poison warning in `traces`), each with where it is documented; columns Azure fills
(`resultCode`, `success`, `timestamp`) are Azure's own and not checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

import function_app
from acr_webhook.config import FALLBACK_QUEUE_NAME, QueueSettings
from acr_webhook.local.app_index import indexed_functions
from acr_webhook.local.host import HOST_JSON
from acr_webhook.local.queues import QueueOptions
from tests.support.cosmos_server import REPO_ROOT
from tests.support.ingestion import Ingestion
from tests.support.kusto import (
    Compiled,
    Query,
    compile_queries,
    compiled_shipped_queries,
    shipped_queries,
)
from tests.support.serve import run_python
from tests.unit.test_telemetry import exporting_to

QUERIES = shipped_queries()

# The Functions host's own warning when a queue trigger's message has failed maxDequeueCount
# times: Azure/azure-sdk-for-net, sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Queues/
# src/QueueProcessor.cs, CopyMessageToPoisonQueueAsync (the same text in Azure/azure-webjobs-sdk
# before the extension moved). docs/operations.md: "The Functions host logs each move".
POISON_MOVE = "Message has reached MaxDequeueCount of {0}. Moving message to queue '{1}'."

# Columns whose values Azure sets, not the app: a comparison with them is Azure's own.
AZURE_COLUMNS = {
    "timestamp": "when the item was recorded",
    "resultCode": "the HTTP status the Functions host answered (requests) or the call got",
    "success": "whether the request or call succeeded",
    "duration": "how long it took",
}
# Comparisons that set a threshold, not a value to find.
ORDERING = {"<", "<=", ">", ">="}


@dataclass(frozen=True)
class Row:
    """One item as its table has it: columns, customDimensions, who sends it."""

    table: str
    columns: Mapping[str, Any]
    sender: str

    def value(self, column: str, key: str | None) -> Any:
        if key is None:
            return self.columns.get(column)
        return (self.columns.get(column) or {}).get(key)


def poison_queue() -> str:
    return QueueSettings(FALLBACK_QUEUE_NAME, "").poison.queue_name


def host_rows() -> list[Row]:
    """What the Functions host sends that the queries read: a request per function execution,
    named after the function (docs/operations.md "Answers per function": `requests` by
    `name`), and the poison warning for the fallback queue."""
    max_dequeue = QueueOptions.from_host_json(HOST_JSON).max_dequeue_count
    return [
        *(
            Row("requests", {"name": f.get_function_name()}, "Functions host")
            for f in indexed_functions(function_app.app)  # get_functions() once only
        ),
        Row(
            "traces",
            {"message": POISON_MOVE.format(max_dequeue, poison_queue()), "customDimensions": {}},
            "Functions host (queue extension)",
        ),
    ]


def app_rows(envelopes: list[dict[str, Any]]) -> list[Row]:
    """The exporters' envelopes as the rows of the classic tables (MessageData: traces,
    MetricData: customMetrics)."""
    rows = []
    for envelope in envelopes:
        kind, data = envelope["data"]["baseType"], envelope["data"]["baseData"]
        dimensions = data.get("properties") or {}
        if kind == "MessageData":
            columns = {
                "message": data["message"],
                "severityLevel": int(data["severityLevel"]),
                "customDimensions": dimensions,
            }
            rows.append(Row("traces", columns, "app"))
        elif kind == "MetricData":
            for metric in data["metrics"]:
                columns = {"name": metric["name"], "customDimensions": dimensions}
                rows.append(Row("customMetrics", columns, "app"))
    return rows


@dataclass(frozen=True)
class Sent:
    rows: list[Row]
    answers: dict[str, Any]


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sent]:
    ingestion = Ingestion()
    workdir = tmp_path_factory.mktemp("emitted")
    env = {**exporting_to(ingestion), "TMPDIR": str(workdir)}  # the exporter's files stay here
    try:
        result = run_python(["-m", "tests.support.emitted_telemetry"], workdir, env)
    finally:
        ingestion.close()
    assert result.returncode == 0, result.stderr
    yield Sent(app_rows(ingestion.envelopes) + host_rows(), json.loads(result.stdout))


# --- what a comparison means ---------------------------------------------------------------

ALNUM = "0-9A-Za-z"


def has(text: str, term: str, *, case: bool = False, start: bool = True, end: bool = True) -> bool:
    """Kusto's has (hasprefix: end=False, hassuffix: start=False): the RHS a whole term, or
    run of terms, of the LHS; a term is a maximal run of alphanumeric characters
    (https://learn.microsoft.com/kusto/query/datatypes-string-operators, "What is a term?")."""
    pattern = (
        (f"(?<![{ALNUM}])" if start else "") + re.escape(term) + (f"(?![{ALNUM}])" if end else "")
    )
    return re.search(pattern, text, 0 if case else re.IGNORECASE) is not None


def _ci(test: Callable[[str, str], bool]) -> Callable[[str, str], bool]:
    return lambda value, literal: test(value.lower(), literal.lower())


# Each positive operator on one literal; the negated ones are "!" + these.
ONE_LITERAL: dict[str, Callable[[str, str], bool]] = {
    "==": lambda v, lit: v == lit,
    "=~": _ci(lambda v, lit: v == lit),
    "in": lambda v, lit: v == lit,
    "in~": _ci(lambda v, lit: v == lit),
    "has": lambda v, lit: has(v, lit),
    "has_cs": lambda v, lit: has(v, lit, case=True),
    "has_any": lambda v, lit: has(v, lit),
    "has_all": lambda v, lit: has(v, lit),
    "hasprefix": lambda v, lit: has(v, lit, end=False),
    "hasprefix_cs": lambda v, lit: has(v, lit, case=True, end=False),
    "hassuffix": lambda v, lit: has(v, lit, start=False),
    "hassuffix_cs": lambda v, lit: has(v, lit, case=True, start=False),
    "contains": _ci(lambda v, lit: lit in v),
    "contains_cs": lambda v, lit: lit in v,
    "startswith": _ci(lambda v, lit: v.startswith(lit)),
    "startswith_cs": lambda v, lit: v.startswith(lit),
    "endswith": _ci(lambda v, lit: v.endswith(lit)),
    "endswith_cs": lambda v, lit: v.endswith(lit),
    "matches regex": lambda v, lit: re.search(lit, v) is not None,
}
NEGATED = {"!=": "==", "!~": "=~"} | {f"!{op}": op for op in ONE_LITERAL}


def positive(operator: str) -> str:
    return NEGATED.get(operator, operator)


def holds(comparison: Mapping[str, Any], row: Row) -> bool:
    """The comparison as written, on the row (a list operator: any literal; has_all: every
    one). A threshold holds: it is not what is checked here."""
    operator = comparison["operator"]
    if operator in ORDERING:
        return True
    # As tostring() reads it: customDimensions arrive as text; one the record lacks is "".
    value = row.value(comparison["column"], comparison["key"])
    value = "" if value is None else str(value)
    base = positive(operator)
    found = [ONE_LITERAL[base](value, str(lit["value"])) for lit in comparison["literals"]]
    result = all(found) if base == "has_all" else any(found)
    return result if base == operator else not result


def checked(comparison: Mapping[str, Any]) -> bool:
    """Whether the comparison is of a value the app or the host sends (and so to be checked):
    not a threshold, not a column Azure fills."""
    return comparison["operator"] not in ORDERING and comparison["column"] not in AZURE_COLUMNS


def unsent(result: Compiled, rows: list[Row]) -> list[str]:
    """Each literal of the query's comparisons that no row of the table carries together with
    what the comparisons and-ed with it ask for, and each comparison this check cannot read."""
    problems = []
    for comparison in result.comparisons:
        where = comparison["text"]
        if comparison["column"] is None:  # a computed value (a count): only numbers are fine
            if any(lit["type"] == "string" for lit in comparison["literals"]):
                problems.append(f"{where}: compares text with a computed value")
            continue
        if not checked(comparison):
            continue
        if positive(comparison["operator"]) not in ONE_LITERAL:
            problems.append(f"{where}: operator {comparison['operator']} not known here")
            continue
        table = [row for row in rows if row.table == comparison["table"]]
        siblings = [
            other
            for other in result.comparisons
            if other is not comparison
            and other["group"] == comparison["group"]
            and other["column"] is not None
            and checked(other)
            and positive(other["operator"]) in ONE_LITERAL
            and not other["negated"]
            and not other["nonliteral"]  # what else it lets through is not known here
        ]
        excludes = positive(comparison["operator"]) != comparison["operator"]
        for literal in comparison["literals"]:
            alone = {**comparison, "operator": positive(comparison["operator"])}
            alone["literals"] = [literal]
            if not any(holds(alone, row) for row in table):
                sent_values = sorted(
                    {str(row.value(comparison["column"], comparison["key"]))[:80] for row in table}
                )[:40]
                problems.append(f"{where}: {literal['value']!r} is never sent; sent: {sent_values}")
            elif excludes or comparison["negated"]:
                continue  # what it leaves out need only be sent at all
            elif not any(
                holds(alone, row) and all(holds(other, row) for other in siblings) for row in table
            ):
                together = " and ".join(other["text"] for other in siblings)
                problems.append(f"{where}: {literal['value']!r} is never sent with {together}")
    return problems


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_every_value_a_query_compares_with_is_one_that_is_sent(query: Query, sent: Sent) -> None:
    assert unsent(compiled_shipped_queries()[query], sent.rows) == [], query.text


def test_the_driver_took_every_path(sent: Sent) -> None:
    """Control: each decision path tests/support/emitted_telemetry.py drives answered as that
    path answers, so the rows above are the ones each outcome logs."""
    answers = sent.answers
    assert {k: v for k, v in answers.items() if k.startswith("webhook")} == {
        "webhook push": 201,
        "webhook delete": 201,
        "webhook chart_push": 201,
        "webhook chart_delete": 201,
        "webhook quarantine": 201,
        "webhook again": 200,
        "webhook ping": 204,
        "webhook unknown": 202,
        "webhook not json": 400,
        "webhook invalid": 400,
        "webhook no secret": 401,
        "webhook refused": 400,
        "webhook queued": 202,
        "webhook unavailable": 503,
    }
    assert [answers[f"eventgrid {k}"] for k in ("push", "again", "unknown", "invalid")] == [
        200,
        200,
        200,
        400,
    ]
    assert answers["eventgrid outage"] == 503
    assert answers["replay unavailable"] == "FallbackUnavailableError"
    assert answers["replay refused"] == answers["replay not json"] == "InvalidQueuedEventError"
    sent_decisions = {
        (row.value("customDimensions", "decision"), row.value("customDimensions", "route"))
        for row in sent.rows
        if row.table == "traces"
    }
    assert {("replayed", "replay"), ("reconciled", "reconcile"), ("queued", "replay")} <= (
        sent_decisions
    )
    app_messages = [row.columns["message"] for row in sent.rows if row.table == "traces"]
    assert any(has(message, "history unreadable") for message in app_messages)


def documented_vocabulary() -> tuple[set[str], set[str]]:
    """docs/operations.md, Telemetry: "`decision` is one of ...; `route` one of ..."."""
    text = (REPO_ROOT / "docs" / "operations.md").read_text()
    match = re.search(r"`decision` is one of (.*?);\s+`route` one of (.*?)\.", text, re.DOTALL)
    assert match, "the sentence listing decisions and routes is gone"
    decisions, routes = (set(re.findall(r"`(\w+)`", part)) for part in match.groups())
    return decisions, routes


def test_the_documented_decisions_and_routes_are_the_ones_sent(sent: Sent) -> None:
    """The values the docs tell an operator to filter on are the ones the app sends, in
    traces and in the decisions metric alike."""
    documented = documented_vocabulary()
    for table in ("traces", "customMetrics"):
        rows = [row for row in sent.rows if row.table == table and row.sender == "app"]
        decisions = {row.value("customDimensions", "decision") for row in rows} - {None}
        routes = {row.value("customDimensions", "route") for row in rows} - {None}
        assert (decisions, routes) == documented, table


# --- controls: the check reports what it is for ------------------------------------------


def shipped(fragment: str) -> str:
    return next(q.text for q in QUERIES if fragment in q.text)


MISTAKES = {
    "a decision never logged": ('"unavailable"', '"unreachable"'),
    "a decision logged on other routes only": ('decision) == "rejected"', 'decision) == "ignored"'),
    "a metric name": ('"acr_webhook.decisions"', '"acr_webhook.decision"'),
    "the host's poison queue message": ('"acr-events-fallback-poison"', '"acr-fallback-poison"'),
    "the reconcile's message": ('"history unreadable"', '"history unreachable"'),
    "an action": ('action) == "push"', 'action) == "pushed"'),
}
FORMS = [
    'traces | where customDimensions["decision"] == "nope"',
    "traces | where customDimensions['decision'] == 'nope'",
    "traces | where tostring(customDimensions.['decision']) =~ \"nope\"",
    'traces | where tostring(customDimensions[@"decision"]) in ("queued", "nope")',
    'traces | extend d = tostring(customDimensions.decision) | where d has "nope"',
    'traces | summarize n = count() by d = tostring(customDimensions.decision) | where d == "nope"',
    'traces | where parse_json(tostring(customDimensions)).decision == "nope"',
    'traces | where tostring(customDimensions.route) != "nope"',
    'traces | where tostring(customDimensions.decision) == "queued" and tostring(customDimensions.'
    'route) == "eventgrid"',
    'requests | where name == "POST /api/acr/webhook"',
    'customEvents | where name == "acr_webhook"',
    'traces | where message has "fallback-poiso"',
    'traces | summarize n = count() by message | where n == "3"',
]
SOUND = [
    'requests | where name == "acr_webhook" or name in~ ("ACR_EVENTGRID")',
    'traces | where message has "acr-events-fallback" and message !has "history"',
    'traces | where tostring(customDimensions.route) !in ("replay") and tostring(customDimensions'
    '.action) startswith "chart_"',
    'customMetrics | where name == "acr_webhook.store.duration" and tostring(customDimensions'
    '.decision) == "queued"',
    'traces | where message matches regex "history unreadable [(]" and severityLevel >= 3',
]


def test_a_value_that_is_not_sent_is_reported_in_any_spelling(sent: Sent) -> None:
    broken = []
    for name, (good, bad) in MISTAKES.items():
        base = shipped(good)
        assert unsent(compile_queries([base])[0], sent.rows) == [], name
        broken.append(base.replace(good, bad))
    results = compile_queries(broken + FORMS + SOUND)
    assert all(result.errors() == [] for result in results), [r.errors() for r in results]
    reported = [bool(unsent(result, sent.rows)) for result in results]
    assert reported == [True] * (len(broken) + len(FORMS)) + [False] * len(SOUND)


def test_has_matches_whole_terms_as_kusto_does() -> None:
    """The examples of the Kusto string operators page, and term boundaries."""
    assert has("North America", "america")
    assert not has("North America", "amer")
    assert has(
        "Moving message to queue 'acr-events-fallback-poison'.", "acr-events-fallback-poison"
    )
    assert not has("queue 'acr-events-fallback-poison2'", "acr-events-fallback-poison")
    assert has("reconcile: history unreadable (x)", "history unreadable")
    assert not has("history  unreadable", "history unreadable")
    assert has("Fabrikam", "fab", end=False) and has("Fabrikam", "kam", start=False)
    assert not has("Fabrikam", "fab", case=True, end=False)
