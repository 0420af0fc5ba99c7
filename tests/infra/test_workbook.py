"""The Azure Monitor workbook (infra/modules/workbook.bicep + workbook.json): a shared workbook on
the Application Insights component, wired into main.bicep behind deployWorkbook, whose queries
are the ones docs/operations.md documents and read only fields the app sends."""

from __future__ import annotations

import json
import logging
import re
import uuid

import pytest

from acr_webhook.handlers import handle_webhook
from acr_webhook.telemetry import APP_LOGGER, DECISIONS_METRIC
from tests.infra.bicep import (
    INFRA,
    REPO_ROOT,
    Json,
    accessor,
    application_insights_module,
    module_path,
    output,
    param,
    resource,
    resources_of_type,
    template,
    var,
)
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.kusto import compiled_shipped_queries

WORKBOOK = "modules/workbook.bicep"
WORKBOOK_JSON = INFRA / "modules" / "workbook.json"
APP_INSIGHTS_TYPE = "microsoft.insights/components"
TIME_FILTER = "timestamp {TimeRange}"

# Query item name -> visualization: one panel per question the workbook answers.
EXPECTED_PANELS = {
    "decisions": "timechart",
    "rejected-queued-unavailable": "table",
    "store-latency": "table",
    "dependencies": "table",
    "pushes": "barchart",
}


def workbook_content() -> Json:
    content: Json = json.loads(WORKBOOK_JSON.read_text())
    return content


def query_items() -> dict[str, Json]:
    return {
        item["name"]: item["content"] for item in workbook_content()["items"] if item["type"] == 3
    }


def queries() -> dict[str, str]:
    return {name: content["query"] for name, content in query_items().items()}


def workbook_resource() -> Json:
    document = template(WORKBOOK)
    (name,) = resources_of_type(document, "Microsoft.Insights/workbooks")
    return resource(document, name)


# --- workbook.bicep ---------------------------------------------------------------------------


def test_the_module_declares_one_shared_workbook_on_application_insights() -> None:
    document = template(WORKBOOK)
    (entry,) = resources_of_type(document, "Microsoft.Insights/workbooks").values()
    assert entry["api_version"] == "2023-06-01"
    workbook = workbook_resource()
    assert workbook["kind"] == "shared"
    assert workbook["location"] == "location"
    properties = workbook["properties"]
    assert properties["category"] == "workbook"  # the portal's Workbooks gallery
    assert properties["sourceId"] == "applicationInsightsId"  # listed under the component
    assert properties["version"] == "Notebook/1.0" == workbook_content()["version"]
    assert properties["displayName"] == "displayName"
    assert param(document, "displayName")["default"] == "acr-webhook: decisions and pushes"


def test_the_workbook_name_is_a_guid_derived_from_the_component() -> None:
    """Deterministic: a redeployment updates the workbook instead of adding a second one."""
    name = workbook_resource()["name"]
    assert name["function"]["type"] == "guid"
    assert name["function"]["parameters"]["base_string"] == "applicationInsightsId"


def test_serialized_data_is_the_json_beside_the_module_pointed_at_the_component() -> None:
    document = template(WORKBOOK)
    assert workbook_resource()["properties"]["serializedData"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "content"}}
    }
    merged = var(document, "content")["function"]
    assert merged["type"] == "union"
    loaded, added = merged["parameters"].values()
    assert loaded["function"]["type"] == "load_json_content"
    assert (INFRA / "modules" / loaded["function"]["parameters"]["file_path"]) == WORKBOOK_JSON
    # Opened outside the component's blade, the queries still run against the component.
    assert added == {"fallbackResourceIds": ["applicationInsightsId"]}
    assert "/subscriptions/" not in WORKBOOK_JSON.read_text()  # no hard-coded resource ids


# --- main.bicep -------------------------------------------------------------------------------


def test_main_deploys_the_workbook_on_its_application_insights_unless_switched_off() -> None:
    params = application_insights_module("workbook", WORKBOOK, "deployWorkbook", "workbook")
    assert params["location"] == "location"
    monitoring = template(module_path(template("main.bicep"), "monitoring"))
    (insights,) = resources_of_type(monitoring, "Microsoft.Insights/components")
    assert output(monitoring, "applicationInsightsId") == accessor(insights, "id")


# --- workbook.json ----------------------------------------------------------------------------


def test_the_workbook_is_a_notebook_with_a_time_range_and_the_expected_panels() -> None:
    content = workbook_content()
    assert content["version"] == "Notebook/1.0"
    items = content["items"]
    names = [item["name"] for item in items]
    assert len(names) == len(set(names)), "item names must be unique"

    (parameters,) = [item["content"] for item in items if item["type"] == 9]
    assert parameters["version"] == "KqlParameterItem/1.0"
    (time_range,) = parameters["parameters"]
    assert (time_range["name"], time_range["type"]) == ("TimeRange", 4)  # time range picker
    assert time_range["isRequired"] is True
    uuid.UUID(time_range["id"])  # parameter ids are GUIDs
    assert time_range["value"] in time_range["typeSettings"]["selectableValues"]

    panels = query_items()
    assert {name: panel["visualization"] for name, panel in panels.items()} == EXPECTED_PANELS
    for name, panel in panels.items():
        assert panel["version"] == "KqlItem/1.0", name
        assert (panel["queryType"], panel["resourceType"]) == (0, APP_INSIGHTS_TYPE), name
        assert panel["title"], name


def test_every_query_follows_the_time_range_picker() -> None:
    for name, query in queries().items():
        assert query.count(TIME_FILTER) == 1, name
        assert "ago(" not in query, name


def test_counts_are_decisions_not_rows() -> None:
    """The counter's rows carry their count in valueSum; a sampled record stands for itemCount
    records (docs/operations.md, Telemetry)."""
    decisions = queries()["decisions"]
    assert f'name == "{DECISIONS_METRIC}"' in decisions
    assert "sum(valueSum)" in decisions
    for name, query in queries().items():
        assert "count()" not in query, name
        if query.startswith("traces"):
            assert "sum(itemCount)" in query, name


def normalized(query: str) -> str:
    """Whitespace collapsed, the docs' fixed time window written as the workbook's picker."""
    query = re.sub(r"timestamp > ago\(\w+\)", TIME_FILTER, query)
    return " ".join(query.split())


def documented_queries() -> set[str]:
    docs = (REPO_ROOT / "docs" / "operations.md").read_text()
    blocks = re.findall(r"```kusto\n(.*?)```", docs, flags=re.DOTALL)
    assert len(blocks) >= 5, "docs/operations.md lost its log queries"
    return {normalized(block) for block in blocks}


def test_every_workbook_query_is_a_documented_one() -> None:
    documented = documented_queries()
    undocumented = [
        name for name, query in queries().items() if normalized(query) not in documented
    ]
    assert not undocumented, f"not in docs/operations.md (as written there): {undocumented}"


def test_a_changed_query_is_caught() -> None:
    """Control for the test above: the comparison is not blind to a change in the KQL."""
    changed = queries()["decisions"].replace("sum(valueSum)", "count()")
    assert normalized(changed) not in documented_queries()


# --- custom dimensions ------------------------------------------------------------------------

_STANDARD_RECORD_FIELDS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def sent_dimensions(caplog: pytest.LogCaptureFixture) -> set[str]:
    """The extra fields of the decision records a recorded, a rejected and an unavailable
    event log: what the telemetry handler turns into custom dimensions."""
    caplog.set_level(logging.INFO, logger=APP_LOGGER)
    repository = FakeEventRepository()
    handle_webhook(payloads.body(payloads.PUSH), repository)
    handle_webhook(b"not json", repository)
    repository.unavailable = True
    handle_webhook(payloads.body(payloads.with_new_id(payloads.PUSH)), repository)
    records = [record for record in caplog.records if hasattr(record, "decision")]
    assert {record.decision for record in records} == {
        "recorded",
        "rejected",
        "unavailable",
    }
    return {key for record in records for key in vars(record)} - _STANDARD_RECORD_FIELDS


def test_the_workbook_reads_only_dimensions_the_app_sends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every name read, in any spelling Kusto takes (from Kusto.Language's syntax tree)."""
    used: dict[str | None, str] = {
        read["name"]: query.place
        for query, result in compiled_shipped_queries().items()
        if query.place.startswith("infra/modules/workbook.json")
        for read in result.dynamic
    }
    sent = sent_dimensions(caplog)
    assert {"decision", "route", "reason", "store_ms", "action", "repository"} <= sent
    assert set(used) <= sent, {key: name for key, name in used.items() if key not in sent}
