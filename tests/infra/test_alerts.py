"""The log alert rules (infra/modules/alerts.bicep): the alerts docs/operations.md recommends,
deployed by main.bicep behind deployAlerts, each query the documented one word for word, each
rule reading as much time as its query asks for."""

from __future__ import annotations

import re

from acr_webhook.store import one_line
from tests.infra.bicep import (
    REPO_ROOT,
    Json,
    accessor,
    application_insights_module,
    not_empty,
    param,
    resource,
    resource_condition,
    resources_of_type,
    template,
    var,
)
from tests.infra.test_deploy_docs import section

ALERTS = "modules/alerts.bicep"
RULE_TYPE = "Microsoft.Insights/scheduledQueryRules"
OPERATIONS = REPO_ROOT / "docs" / "operations.md"
KUSTO = re.compile(r"```kusto\n(.*?)```", re.DOTALL)
# ISO 8601 durations the rules use, in minutes.
MINUTES = {"PT5M": 5, "PT10M": 10, "PT15M": 15, "P2D": 2 * 24 * 60}


def documented_queries() -> list[str]:
    """The queries of operations.md's "Recommended alerts", white space folded."""
    alerts_section = section(OPERATIONS.read_text(), "## Recommended alerts")
    return [one_line(block) for block in KUSTO.findall(alerts_section)]


def alerts() -> list[Json]:
    value: list[Json] = var(template(ALERTS), "alerts")
    return value


def rule() -> Json:
    """The rule of each alert: a loop over ``alerts``, its body the loop's."""
    (_, entry), *others = resources_of_type(template(ALERTS), RULE_TYPE).items()
    assert not others
    assert entry["config"]["loop_type"]["detail"] == {"item_name": "alert", "array_name": "alerts"}
    body: Json = entry["config"]["config"]
    return body


def looks_back_minutes(query: str) -> int:
    """The furthest back the query's own ``timestamp > ago(...)`` filter reaches."""
    amount, unit = re.findall(r"timestamp > ago\((\d+)([md])\)", query)[0]
    return int(amount) * (1 if unit == "m" else 24 * 60)


def test_every_recommended_alert_is_deployed_with_its_documented_query() -> None:
    assert sorted(one_line(alert["query"]) for alert in alerts()) == sorted(documented_queries())
    assert len(alerts()) == 6


def test_each_rule_reads_as_far_back_as_its_query_looks() -> None:
    """A log alert's query sees only the rule's window (or overrideQueryTimeRange): shorter
    than the query's own ago(...), it would miss what the query is written to find."""
    for alert in alerts():
        reads = MINUTES[str(alert.get("overrideQueryTimeRange", alert["windowSize"]))]
        assert reads == looks_back_minutes(alert["query"]), alert["name"]
        assert MINUTES[alert["windowSize"]] >= 5, alert["name"]  # the evaluation frequency


def test_a_rule_fires_on_any_row_every_5_minutes_and_resolves_itself() -> None:
    body = rule()
    assert body["kind"] == "LogAlert"
    properties = body["properties"]
    assert properties["evaluationFrequency"] == "PT5M"
    assert properties["scopes"] == ["applicationInsightsId"]
    assert properties["autoMitigate"] is True
    assert properties["enabled"] is True
    (criterion,) = properties["criteria"]["allOf"]
    assert criterion["query"] == accessor("alert", "query")
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == (
        "Count",
        "GreaterThan",
        0,
    )
    assert criterion["failingPeriods"] == {
        "numberOfEvaluationPeriods": 1,
        "minFailingPeriodsToAlert": 1,
    }
    assert {alert["severity"] for alert in alerts()} <= {0, 1, 2, 3, 4}


def test_an_e_mail_address_gets_every_alert_and_none_means_no_action_group() -> None:
    document = template(ALERTS)
    (group, _), *others = resources_of_type(document, "Microsoft.Insights/actionGroups").items()
    assert not others
    assert resource_condition(document, group) == not_empty("alertEmail")
    receivers = resource(document, group)["properties"]["emailReceivers"]
    assert [receiver["emailAddress"] for receiver in receivers] == ["alertEmail"]
    assert len(resource(document, group)["properties"]["groupShortName"]) <= 12  # ARM's limit
    groups = rule()["properties"]["actions"]["actionGroups"]
    assert "actionGroup" in str(groups) and "alertEmail" in str(groups)
    assert param(document, "alertEmail")["default"] == ""


def test_main_deploys_the_alerts_on_its_application_insights_unless_switched_off() -> None:
    params = application_insights_module("alerts", ALERTS, "deployAlerts", "alert")
    assert params["alertEmail"] == "alertEmail"
    assert param(template("main.bicep"), "alertEmail")["default"] == ""
