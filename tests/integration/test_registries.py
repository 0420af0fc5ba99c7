"""Several registries feeding one app (dev and prod, one per region or business unit), against
the local Cosmos DB API server.

Nothing stops a platform team from running infra/webhook.bicep once per registry and pointing
every registry at one deployed app. What a platform engineer then asks of the record is "what
was pushed to prod's team/api yesterday, and by whom": these tests deliver the same repository
from two registries, by the webhook and by Event Grid, and ask the read endpoint, the CLI and
the Data Explorer queries of docs/queries.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.config import ConfigurationError, reconcile_settings
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import SharedSecret, handle_webhook
from acr_webhook.queries import handle_events_query
from acr_webhook.repository import CosmosEventRepository, without_system_fields
from acr_webhook.results import Result
from tests.conftest import container_for, fresh_settings, read_all
from tests.infra.test_main_template import cosmos_container
from tests.integration.test_event_queries import cli_on
from tests.integration.test_ordering import AZURE_ONLY, D4C, documented_queries
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.interleave import InlineExecutor
from tests.unit.test_eventgrid import event_grid

REPO_ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = SharedSecret("one-secret-for-the-whole-app")
SECRET_HEADERS = {"Authorization": f"Bearer {SECRET.value}"}

DEV = "contosodev.azurecr.io"
PROD = "contosoprod.azurecr.io"
DEV_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-registries"
    "/providers/Microsoft.ContainerRegistry/registries/contosodev"
)
PROD_ID = DEV_ID.replace("contosodev", "contosoprod")
# docs/queries.md's example values, so its Data Explorer queries find these events.
REPOSITORY = "team/api"
DIGEST_V2 = "sha256:" + "b" * 64


def push(
    event_id: str,
    host: str,
    at: str,
    *,
    tag: str = "v1",
    digest: str = D4C,
    **extra: Any,
) -> dict[str, Any]:
    payload = payloads.with_new_id(payloads.PUSH, repository=REPOSITORY, tag=tag, digest=digest)
    payload.update(id=event_id, timestamp=at, **extra)
    payload["request"]["host"] = host
    return payload


# team/api:v1 built in dev at 10:00 and promoted to prod (the same image, `az acr import` or a
# second push) at 10:05; v2 in dev only. dev uses deliveryMode both (webhook, then Event Grid's
# copy of the same event); prod uses Event Grid. Event Grid carries who pushed and the region.
DEV_V1 = push(
    "dev-v1", DEV, "2026-11-23T10:00:00Z", actor={"name": "ci-bot"}, location="westeurope"
)
PROD_V1 = push("prod-v1", PROD, "2026-11-23T10:05:00Z", actor={"name": "ci-bot"}, location="eastus")
DEV_V2 = push("dev-v2", DEV, "2026-11-23T11:00:00Z", tag="v2", digest=DIGEST_V2)


def webhook(repository: CosmosEventRepository, payload: dict[str, Any]) -> Result:
    return handle_webhook(
        payloads.body(payload),
        repository,
        headers=SECRET_HEADERS,
        secret=SECRET,
        now=lambda: NOW,
    )


def eventgrid(repository: CosmosEventRepository, topic: str, *events: dict[str, Any]) -> Result:
    envelopes = [{**event_grid(event), "topic": topic} for event in events]
    return handle_eventgrid(
        payloads.body(envelopes),
        SECRET_HEADERS,
        repository,
        now=lambda: NOW,
        executor=InlineExecutor(),
        secret=SECRET,
    )


@pytest.fixture(scope="module")
def two_registries(cosmos_server: LocalCosmosServer) -> Iterator[Any]:
    settings = fresh_settings(cosmos_server)
    repository = CosmosEventRepository(settings)
    without_eventgrid_fields = {k: v for k, v in DEV_V1.items() if k not in ("actor", "location")}
    assert webhook(repository, without_eventgrid_fields).status == 201
    assert webhook(repository, DEV_V2).status == 201
    assert eventgrid(repository, DEV_ID, DEV_V1).body == {
        "recorded": 0,
        "duplicate": 1,
        "ignored": 0,
    }
    assert eventgrid(repository, PROD_ID, PROD_V1).body == {
        "recorded": 1,
        "duplicate": 0,
        "ignored": 0,
    }
    yield settings


def by_id(settings: Any) -> dict[str, dict[str, Any]]:
    return {doc["id"]: without_system_fields(doc) for doc in read_all(settings)}


# --- 1. The same repository in two registries ------------------------------------------------


def test_the_same_repository_in_two_registries_is_a_document_per_event_each_naming_its_registry(
    two_registries: Any,
) -> None:
    """One partition (team/api) holds both registries' events, each its own document; `registry`
    (request.host) is filled in by both routes, `registryResourceId` by Event Grid only."""
    stored = by_id(two_registries)
    assert {event_id: doc["registry"] for event_id, doc in stored.items()} == {
        "dev-v1": DEV,
        "prod-v1": PROD,
        "dev-v2": DEV,
    }
    assert {doc["repository"] for doc in stored.values()} == {REPOSITORY}
    # The webhook stored dev-v1 first; Event Grid's copy filled in its topic and who pushed.
    assert stored["dev-v1"]["source"] == "webhook"
    assert stored["dev-v1"]["registryResourceId"] == DEV_ID
    assert stored["dev-v1"]["actor"] == "ci-bot"
    assert stored["prod-v1"]["registryResourceId"] == PROD_ID
    # A webhook-only event names its registry by login server alone.
    assert stored["dev-v2"]["registryResourceId"] is None


def test_without_a_registry_filter_the_read_endpoint_mixes_both_registries(
    two_registries: Any,
) -> None:
    """What the endpoint answers today for "what was pushed to team/api": both registries'
    events, told apart only by reading each document's `registry`."""
    result = handle_events_query(
        {"repository": REPOSITORY, "action": "push"}, CosmosEventRepository(two_registries)
    )
    assert result.status == 200 and result.body is not None
    assert [(e["id"], e["registry"]) for e in result.body["events"]] == [
        ("dev-v2", DEV),
        ("prod-v1", PROD),
        ("dev-v1", DEV),
    ]


def test_the_read_endpoint_answers_for_one_registry(two_registries: Any) -> None:
    reader = CosmosEventRepository(two_registries)
    result = handle_events_query(
        {"registry": PROD, "repository": REPOSITORY, "action": "push"}, reader
    )
    assert result.status == 200, result.body
    assert result.body is not None
    assert [(e["id"], e["actor"]) for e in result.body["events"]] == [("prod-v1", "ci-bot")]
    pushes = handle_events_query({"registry": DEV, "view": "pushes"}, reader)
    assert pushes.status == 200 and pushes.body is not None
    assert [(p["tag"], p["registry"]) for p in pushes.body["pushes"]] == [("v2", DEV), ("v1", DEV)]


def run_cli(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as error:  # argparse refuses an option it does not know
        return int(error.code or 0)


def test_the_cli_answers_for_one_registry(
    two_registries: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli_on(two_registries, monkeypatch, tmp_path)
    code = run_cli(["events", "--registry", PROD, "--repository", REPOSITORY, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [e["id"] for e in json.loads(out)["events"]] == ["prod-v1"]


def test_the_pushes_view_keeps_one_image_pushed_to_two_registries_apart(
    two_registries: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = handle_events_query(
        {"repository": REPOSITORY, "digest": D4C, "view": "pushes"},
        CosmosEventRepository(two_registries),
    )
    assert result.status == 200 and result.body is not None
    rows = [
        (p["tag"], p["registry"], [r["location"] for r in p["regions"]])
        for p in result.body["pushes"]
    ]
    assert sorted(rows) == [("v1", DEV, ["westeurope"]), ("v1", PROD, ["eastus"])]
    cli_on(two_registries, monkeypatch, tmp_path)
    assert run_cli(["events", "--pushes", "--digest", D4C]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 3  # the header and a row per registry
    assert any(DEV in line for line in table) and any(PROD in line for line in table)


# --- 3. Where a registry's name comes from ---------------------------------------------------


def test_registry_is_the_host_as_sent_and_event_grid_topics_tell_registries_apart(
    cosmos_settings: Any,
) -> None:
    """`registry` is request.host verbatim: a client that pushed through another host name of
    the same registry (a regional endpoint, an upper-case login server) is recorded under that
    name, so an exact `registry` filter by login server would not find it. Event Grid's topic
    names the registry whatever host the client used."""
    repository = CosmosEventRepository(cosmos_settings)
    regional = push("regional", "contosoprod.eastus.geo.azurecr.io", "2026-11-23T10:00:00Z")
    upper = push("upper", "ContosoProd.azurecr.io", "2026-11-23T10:01:00Z")
    assert eventgrid(repository, PROD_ID, regional, upper).status == 200
    stored = by_id(cosmos_settings)
    assert {k: (d["registry"], d["registryResourceId"]) for k, d in stored.items()} == {
        "regional": ("contosoprod.eastus.geo.azurecr.io", PROD_ID),
        "upper": ("ContosoProd.azurecr.io", PROD_ID),
    }


# --- 2. Reconcile: one registry --------------------------------------------------------------


def test_acr_registry_id_naming_two_registries_is_refused_not_read_as_the_last() -> None:
    two = f"{DEV_ID},{PROD_ID}"
    with pytest.raises(ConfigurationError, match="ACR_REGISTRY_ID"):
        reconcile_settings({"ACR_REGISTRY_ID": two, "ACR_WEBHOOK_NAMES": "acrfuncapp"})


# --- 4. The Data Explorer queries and the index ----------------------------------------------


def _matched_registries(container: Any, sql: str) -> set[str | None]:
    """The registries of the documents a query's WHERE matches (its select list swapped)."""
    probe = re.sub(
        r"^SELECT\s+(TOP \d+\s+)?.*?\bFROM c\b",
        r"SELECT \1c.registry FROM c",  # an unmatched TOP group is replaced by nothing
        sql,
        count=1,
        flags=re.S,
    )
    rows = container.query_items(probe, enable_cross_partition_query=True)
    return {row.get("registry") for row in rows}


def test_documented_queries_say_which_registry_each_row_is_from(two_registries: Any) -> None:
    container = container_for(two_registries)
    mixed = []
    for heading, queries in documented_queries().items():
        for sql in queries:
            if AZURE_ONLY.search(sql):
                continue
            if len(_matched_registries(container, sql)) < 2:
                continue
            rows = list(container.query_items(sql, enable_cross_partition_query=True))
            filters_registry = re.search(r"\bc\.registry\s*=", sql) is not None
            if not filters_registry and any("registry" not in row for row in rows):
                mixed.append(heading)
    assert mixed == [], mixed


def test_the_registry_field_is_indexed() -> None:
    paths = {entry["path"] for entry in cosmos_container()["indexingPolicy"]["includedPaths"]}
    assert "/registry/?" in paths
    assert "`/registry/?`" in (REPO_ROOT / "docs" / "queries.md").read_text()


# --- 5. One key and one secret for every registry --------------------------------------------


def test_any_connected_registry_can_write_events_in_another_registrys_name(
    cosmos_settings: Any,
) -> None:
    """webhook.bicep gives every registry the same acr_webhook key and reads the one
    WEBHOOK_SECRET back from the app: whoever can read dev's webhook config (its callback URL
    and custom headers: Contributor on dev) holds prod's credentials too. Neither route can
    check a delivery's host or topic against the registry that sent it."""
    repository = CosmosEventRepository(cosmos_settings)
    forged = push("forged-by-dev", PROD, "2026-11-23T10:00:00Z")
    assert webhook(repository, forged).status == 201
    forged_eg = push("forged-eg", PROD, "2026-11-23T10:01:00Z", actor={"name": "release-bot"})
    assert eventgrid(repository, PROD_ID, forged_eg).status == 200
    stored = by_id(cosmos_settings)
    assert stored["forged-by-dev"]["registry"] == PROD
    assert (stored["forged-eg"]["registryResourceId"], stored["forged-eg"]["actor"]) == (
        PROD_ID,
        "release-bot",
    )


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^(#{2,4} .*)$", text, flags=re.M)
    return {parts[i].lstrip("#").strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_the_docs_say_what_several_registries_share_and_lose() -> None:
    texts = [(REPO_ROOT / "README.md").read_text()] + [
        path.read_text() for path in sorted((REPO_ROOT / "docs").glob("*.md"))
    ]
    sections = {
        heading: body
        for text in texts
        for heading, body in _sections(text).items()
        if re.search(r"\bregistries\b", heading, flags=re.I)
    }
    about_several = [
        body
        for body in sections.values()
        if "reconcile" in body.lower()
        and "secret" in body.lower()
        and "webhook.bicep" in body
        and "registry" in body
    ]
    assert about_several, sorted(sections)


def test_connecting_two_registries_in_one_resource_group_names_two_deployments() -> None:
    text = (REPO_ROOT / "infra" / "webhook.bicep").read_text()
    [suffix] = re.findall(r"^var registryDeploymentSuffix = (.*)$", text, flags=re.M)
    assert "registryName" in suffix
