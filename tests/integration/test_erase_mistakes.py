"""`erase` as an operator at 3 a.m. might get it slightly wrong (docs/operations.md, "Personal
data"), against the local Cosmos DB server, in this process.

Already covered, and sound: a blank value, a wildcard or SQL-looking value (`%`, `*`, `' OR
1=1 --`), a prefix of an actor or an address, another case, whitespace around the value, IPv6
in any written form (tests/unit/test_erase_audit.py, tests/integration/test_erase_audit.py); a
missing database or container, a role that cannot delete, an outage part-way
(tests/integration/test_erase_cli.py). Checked here and sound too: `*`, `-` (the table's empty
cell), `[]` and `::` match only themselves.

These tests found three defects, now fixed: the answer to keep (`No events name ...`) did not say
where it looked, `--yes` on an address several people share deleted their events in the same
run that first warned of them, and a COSMOS_CONTAINER naming another application's container
was a traceback."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.cosmos import PartitionKey

from acr_webhook import __main__ as cli
from acr_webhook.config import Settings
from acr_webhook.repository import create_cosmos_client
from tests.conftest import container_for, read_all
from tests.integration.test_event_queries import cli_on

ALICE = "alice@contoso.com"
BOB = "bob@contoso.com"
SHARED_ADDRESS = "198.51.100.23"  # a NAT gateway, or the build agents' outbound address


@pytest.fixture
def on_store(
    cosmos_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Settings]:
    cli_on(cosmos_settings, monkeypatch, tmp_path)
    container = container_for(cosmos_settings)
    for event_id, actor, port in [("a1", ALICE, 50001), ("a2", ALICE, 50002), ("b1", BOB, 50003)]:
        container.upsert_item(
            {
                "id": event_id,
                "repository": "team/api",
                "actor": actor,
                "clientAddress": f"{SHARED_ADDRESS}:{port}",
            }
        )
    yield cosmos_settings


def erase(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["erase", *args])
    out = capsys.readouterr()
    return status, out.out, out.err


def left(settings: Settings) -> set[str]:
    return {document["id"] for document in read_all(settings)}


def test_the_answer_to_keep_names_the_store_it_searched(
    on_store: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (["--actor", "carol@contoso.com"], ["--actor", ALICE]):
        status, out, err = erase(capsys, *args)
        assert status == 0
        said = out + err
        assert on_store.cosmos_endpoint in said and on_store.cosmos_container in said, said


def test_yes_on_an_address_other_actors_share_deletes_none_of_theirs_unasked(
    on_store: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """It deleted 3 of 3, bob's 1 included, in the run that first warned of him."""
    status, out, err = erase(capsys, "--client-address", SHARED_ADDRESS, "--yes")

    assert left(on_store) == {"a1", "a2", "b1"}, out
    assert "They name 2 different actors" in out
    assert (status, err) == (
        2,
        "Nothing deleted: erase each person by --actor, or add --every-actor to delete them all.\n",
    )

    status, out, err = erase(capsys, "--client-address", SHARED_ADDRESS, "--yes", "--every-actor")
    assert (status, err, "Deleted 3 of 3." in out) == (0, "", True)
    assert left(on_store) == set()


def test_the_preview_then_yes_by_actor_leaves_the_other_person_on_the_shared_address(
    on_store: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """What operations.md advises instead ("erase by actor where you can"): only alice's go."""
    status, out, _ = erase(capsys, "--client-address", SHARED_ADDRESS)
    assert status == 0 and "They name 2 different actors" in out, out
    assert left(on_store) == {"a1", "a2", "b1"}

    status, out, _ = erase(capsys, "--actor", ALICE.upper(), "--yes")
    assert (status, "Deleted 2 of 2." in out) == (0, True), out
    assert left(on_store) == {"b1"}


@pytest.mark.parametrize(
    ("option", "value"),
    [("--actor", "*"), ("--actor", "-"), ("--client-address", "*"), ("--client-address", "[]")],
)
def test_a_placeholder_looking_value_deletes_nothing(
    on_store: Settings, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    """`-` is how `events --pushes` shows an empty actor; `*` what a shell glob leaves when it
    matches no file; `[]` an address copied from an empty JSON list."""
    status, out, _ = erase(capsys, option, value, "--yes")
    assert (status, out.startswith("No events name")) == (0, True), out
    assert left(on_store) == {"a1", "a2", "b1"}


def test_another_applications_container_is_refused_in_one_line(
    cosmos_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = f"audit-{uuid.uuid4().hex[:8]}"
    database = create_cosmos_client(cosmos_settings).get_database_client("acr")
    other = database.create_container(name, partition_key=PartitionKey(path="/tenant"))
    other.upsert_item({"id": "1", "tenant": "contoso", "actor": ALICE, "action": "login"})
    cli_on(dataclasses.replace(cosmos_settings, cosmos_container=name), monkeypatch, tmp_path)

    try:
        status, _, err = erase(capsys, "--actor", ALICE, "--yes")
    finally:
        assert len(list(other.read_all_items())) == 1  # nothing of theirs deleted
    assert status == 2 and err.count("\n") == 1, err
    assert "COSMOS_CONTAINER" in err, err
