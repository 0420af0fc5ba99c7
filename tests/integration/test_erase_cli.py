"""`python -m acr_webhook erase` against the local Cosmos DB server (docs/operations.md,
"Personal data"): it lists before it deletes, deletes exactly the person's events in every
repository, and says what stopped it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from acr_webhook.__main__ import store_searched
from acr_webhook.config import Settings
from tests.conftest import container_for
from tests.support.cosmos_proxy import FaultyCosmosProxy, Refusal
from tests.support.serve import app_environment, run_cli

ALICE = "alice@contoso.com"
# id, repository, actor, clientAddress. "a%41b": an id a delete by id cannot address in Azure.
DOCUMENTS = [
    ("e1", "team/api", ALICE, "203.0.113.7:51234"),
    ("e2", "team/api", ALICE, "203.0.113.7:51300"),
    ("e3", "team/web", ALICE, None),
    ("a%41b", "team/web", ALICE, None),
    ("e4", "team/web", "bob@contoso.com", "203.0.113.70:443"),
    ("e5", "team/ops", None, "203.0.113.7:40000"),
    ("e6", "team/ops", "Alice@Contoso.com", "[2001:DB8::1]:443"),  # as another client sent it
]
# A reader's role: queries pass, deleting an item is refused (Cosmos DB's answer, shortened).
READER_ROLE_ONLY = Refusal(
    403,
    5301,
    "Forbidden",
    "Request blocked by Auth cosmos-acr : Request is blocked because principal "
    "[11111111-1111-1111-1111-111111111111] does not have required RBAC permissions to perform "
    "action [Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/delete].",
    paths=r".*/docs/.+",
)


def _stored(settings: Settings) -> list[str]:
    container = container_for(settings)
    for event_id, repository, actor, address in DOCUMENTS:
        container.upsert_item(
            {"id": event_id, "repository": repository, "actor": actor, "clientAddress": address}
        )
    return sorted(event_id for event_id, *_ in DOCUMENTS)


def _left(settings: Settings) -> list[str]:
    items = container_for(settings).query_items(
        "SELECT c.id FROM c", enable_cross_partition_query=True
    )
    return sorted(item["id"] for item in items)


def test_erase_lists_first_then_deletes_exactly_the_persons_events(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    everything = _stored(cosmos_settings)
    env = app_environment(cosmos_settings)

    preview = run_cli(["erase", "--actor", ALICE], tmp_path, env)
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.splitlines() == [
        f"5 event(s) name actor '{ALICE}' (as recorded: 'Alice@Contoso.com', '{ALICE}'):",
        "REPOSITORY  EVENTS",
        "team/api    2",
        "team/web    2",
        "team/ops    1",
        "Nothing deleted: run again with --yes to delete them.",
        store_searched(cosmos_settings),
    ]
    assert _left(cosmos_settings) == everything

    erased = run_cli(["erase", "--actor", ALICE, "--yes"], tmp_path, env)
    assert erased.returncode == 0, erased.stderr
    assert "Deleted 5 of 5." in erased.stdout
    assert _left(cosmos_settings) == ["e4", "e5"]

    again = run_cli(["erase", "--actor", ALICE, "--yes"], tmp_path, env)
    assert (again.returncode, again.stdout.splitlines()) == (
        0,
        [f"No events name actor '{ALICE}'.", store_searched(cosmos_settings)],
    )


def test_an_address_matches_in_any_case_with_any_port_and_not_a_longer_address(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    _stored(cosmos_settings)
    env = app_environment(cosmos_settings)

    erased = run_cli(["erase", "--client-address", "203.0.113.7", "--yes"], tmp_path, env)

    assert erased.returncode == 0, erased.stderr
    assert (
        "3 event(s) name client address '203.0.113.7' (as recorded: '203.0.113.7:40000', "
        "'203.0.113.7:51234', '203.0.113.7:51300'):" in erased.stdout
    )
    assert _left(cosmos_settings) == ["a%41b", "e3", "e4", "e6"]  # 203.0.113.70: someone else

    ipv6 = run_cli(["erase", "--client-address", "[2001:db8::1]", "--yes"], tmp_path, env)
    assert "1 event(s) name client address '[2001:db8::1]'" in ipv6.stdout, ipv6.stderr
    assert _left(cosmos_settings) == ["a%41b", "e3", "e4"]


def test_a_role_that_cannot_delete_stops_it_with_the_fix_and_exit_2(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy, tmp_path: Path
) -> None:
    everything = _stored(cosmos_settings)
    proxy.refusal = READER_ROLE_ONLY
    env = app_environment(dataclasses.replace(cosmos_settings, cosmos_endpoint=proxy.endpoint))

    refused = run_cli(["erase", "--actor", ALICE, "--yes"], tmp_path, env)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Deleted 0 of 5." in refused.stdout
    assert "stopped with 5 left" in refused.stderr
    assert "Cosmos DB Built-in Data Contributor" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _left(cosmos_settings) == everything


def test_an_unreachable_store_is_exit_1_and_a_missing_container_exit_2(
    cosmos_settings: Settings, refusing_port: Callable[[], int], tmp_path: Path
) -> None:
    unreachable = dataclasses.replace(
        cosmos_settings, cosmos_endpoint=f"https://127.0.0.1:{refusing_port()}/"
    )
    down = run_cli(["erase", "--actor", ALICE], tmp_path, app_environment(unreachable))
    assert down.returncode == 1, down.stderr
    assert "is unavailable" in down.stderr and "Traceback" not in down.stderr

    missing = dataclasses.replace(cosmos_settings, cosmos_container="no-such-container")
    absent = run_cli(["erase", "--actor", ALICE], tmp_path, app_environment(missing))
    assert absent.returncode == 2, absent.stderr
    assert "does not exist" in absent.stderr and "run provision" in absent.stderr
