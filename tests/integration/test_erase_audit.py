"""Audit of `python -m acr_webhook erase` against the local Cosmos DB server, as the platform
engineer answering a GDPR erasure request and as a privacy reviewer (docs/operations.md,
"Personal data"): it finds the person's events from every route and earlier version, deletes
no one else's, stops on a failing store in a way that running it again finishes, and logs no
personal value. The CLI runs in this process (cli.main), each run a fraction of a second.

Strict xfails: a value given with whitespace around it finds nothing; an IPv6 address given
in one written form misses the others and, unbracketed, matches another address; an erasure by
client address deletes other people's events without the preview saying so."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.config import Settings
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import AcrEvent, ParkedEvent, Person, StoredEvent, to_document
from acr_webhook.reconcile import reconcile_entries
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventEraser, CosmosEventRepository
from tests.conftest import container_for, read_all
from tests.integration.test_earlier_versions import old_documents
from tests.integration.test_event_queries import cli_on
from tests.support import payloads
from tests.support.cosmos_proxy import FaultyCosmosProxy, Refusal
from tests.support.cosmos_server import EMULATOR_KEY
from tests.support.history import history_entry
from tests.unit.test_eventgrid import NOW, event_grid
from tests.unit.test_privacy import ACTOR, CLIENT_IP, eventgrid, push
from tests.unit.test_reconcile import no_record

ALICE = "alice@contoso.com"
Document = tuple[str, str, str | None, str | None]  # id, repository, actor, clientAddress


@dataclasses.dataclass
class EraseCli:
    settings: Settings
    capsys: pytest.CaptureFixture[str]

    def run(self, *args: str) -> tuple[int, str, str]:
        """``erase <args>``: its exit status, stdout and stderr."""
        status = cli.main(["erase", *args])
        out = self.capsys.readouterr()
        return status, out.out, out.err

    def store(self, *documents: Document) -> None:
        container = container_for(self.settings)
        for event_id, repository, actor, address in documents:
            container.upsert_item(
                {"id": event_id, "repository": repository, "actor": actor, "clientAddress": address}
            )

    def left(self) -> set[str]:
        return {document["id"] for document in read_all(self.settings)}

    def nothing_of(self, actor: str) -> str:
        """The whole answer when no event names ``actor``."""
        return f"No events name actor '{actor}'.\n{cli.store_searched(self.settings)}\n"


@pytest.fixture
def erase_cli(
    cosmos_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[EraseCli]:
    cli_on(cosmos_settings, monkeypatch, tmp_path)
    yield EraseCli(cosmos_settings, capsys)


# --- completeness: every route, every earlier version ---------------------------------------


def test_the_persons_events_from_every_route_and_an_earlier_version_go_and_nothing_else(
    erase_cli: EraseCli,
) -> None:
    """One event naming ENRICHED_PUSH's actor stored by each path that writes documents (the
    webhook, had ACR's payload named them; Event Grid; reconcile from ACR's history; a replay of
    a parked copy), beside what 3ccf54c stored (one of its documents names the same actor, the
    others no one). Asked in another case, the preview counts exactly those five and --yes
    deletes exactly them."""
    repository = CosmosEventRepository(erase_cli.settings)
    webhook, grid, reconciled, replayed = push(), push(), push(), push()
    assert handle_webhook(payloads.body(webhook), repository, now=lambda: NOW).status == 201
    assert eventgrid([event_grid(grid)], repository)[0] == 200
    outcome = reconcile_entries(
        [history_entry(reconciled)], repository, received_at=NOW, report_invalid=no_record
    )
    assert outcome.counts.recorded == 1
    parked = ParkedEvent(to_document(AcrEvent.model_validate(replayed), NOW)).to_message()
    assert replay_queued_event(parked, repository, None, 60) == "recorded"
    legacy = old_documents("3ccf54c")
    container = container_for(erase_cli.settings)
    for document in legacy:
        container.upsert_item(document)
    earlier_persons = [doc["id"] for doc in legacy if doc["actor"] == ACTOR]
    assert len(earlier_persons) == 1
    persons = {webhook["id"], grid["id"], reconciled["id"], replayed["id"], *earlier_persons}
    everything = erase_cli.left()

    status, preview, errors = erase_cli.run("--actor", ACTOR.upper())
    assert (status, errors) == (0, "")
    assert preview.startswith(f"5 event(s) name actor '{ACTOR.upper()}' (as recorded: '{ACTOR}'):")
    assert "hello-world  5" in preview.splitlines()
    assert erase_cli.left() == everything

    status, erased, errors = erase_cli.run("--actor", ACTOR.upper(), "--yes")
    assert (status, errors) == (0, "")
    assert "Deleted 5 of 5." in erased
    assert erase_cli.left() == everything - persons
    assert all(doc.get("actor") is None for doc in read_all(erase_cli.settings))


# --- precision: no one else's events --------------------------------------------------------


def test_a_value_that_looks_like_a_pattern_or_sql_matches_only_itself(erase_cli: EraseCli) -> None:
    """The match is equality or STARTSWITH, never LIKE: nothing is found for a wildcard or a
    prefix of someone's value (that values never reach the query's text: the unit audit)."""
    erase_cli.store(
        ("a1", "team/api", ALICE, f"{CLIENT_IP}:51234"),
        ("b1", "team/api", "bob@contoso.com", f"{CLIENT_IP}0:443"),
    )
    for option, value in [
        ("--actor", "alice%"),
        ("--actor", "alice"),  # a prefix of an actor
        ("--client-address", "203.0.113"),  # a prefix of an address
    ]:
        status, out, errors = erase_cli.run(option, value, "--yes")
        assert (status, errors) == (0, ""), value
        assert out.startswith("No events name"), (value, out)
    assert erase_cli.left() == {"a1", "b1"}


def test_a_value_with_whitespace_around_it_finds_the_person(erase_cli: EraseCli) -> None:
    erase_cli.store(
        ("a1", "team/api", ALICE, f"{CLIENT_IP}:51234"),
        ("a2", "team/web", ALICE, f"{CLIENT_IP}:40000"),
    )

    for option, value in [("--actor", f" {ALICE} "), ("--client-address", f"{CLIENT_IP} ")]:
        status, out, _ = erase_cli.run(option, value)
        assert status == 0
        assert out.startswith("2 event(s) name"), (value, out)


# Stored forms of client addresses: ACR's request.addr is "the IP or hostname and possibly port"
# (Event Grid's schema); Go writes an IPv6 address with a port in brackets, a forwarded address
# (X-Forwarded-For) bare. v6-other is another host whose text starts with v6-bare's.
IPV6 = [
    ("v6-port", "team/v6", "carol", "[2001:db8::1]:443"),
    ("v6-bare", "team/v6", "carol", "2001:db8::1"),
    ("v6-other", "team/v6", "dave", "2001:db8::1:5"),
    ("v6-longer", "team/v6", "erin", "[2001:db8::10]:443"),
]


def test_an_ipv6_address_in_any_written_form_finds_its_events_and_no_other_hosts(
    erase_cli: EraseCli,
) -> None:
    erase_cli.store(*IPV6)

    for given in ("[2001:db8::1]", "2001:db8::1", "2001:DB8:0:0:0:0:0:1"):
        status, preview, errors = erase_cli.run("--client-address", given)
        assert (status, errors) == (0, "")
        assert preview.startswith(
            f"2 event(s) name client address {given!r} "
            "(as recorded: '2001:db8::1', '[2001:db8::1]:443'):"
        ), preview


def test_the_preview_of_an_address_says_that_other_actors_events_go_too(
    erase_cli: EraseCli,
) -> None:
    erase_cli.store(
        ("a1", "team/api", ALICE, f"{CLIENT_IP}:51234"),
        ("b1", "team/api", "bob@contoso.com", f"{CLIENT_IP}:51300"),
        ("n1", "team/web", None, f"{CLIENT_IP}:40000"),
    )

    status, preview, _ = erase_cli.run("--client-address", CLIENT_IP)

    assert status == 0
    assert preview.startswith(f"3 event(s) name client address '{CLIENT_IP}'")
    assert re.search(r"\b2\b[^\n]*\bactors\b", preview), preview
    assert "bob@contoso.com" not in preview  # another person's value is not printed


# --- faults: a store that fails part-way ----------------------------------------------------

THROTTLED = Refusal(429, 3200, "429", "Request rate is large", paths=r".*/docs/.+")


def test_a_store_throttling_after_the_first_delete_is_exit_1_and_running_again_finishes(
    erase_cli: EraseCli,
    proxy: FaultyCosmosProxy,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """Throttled past the SDK's retries after one delete (a 503 takes the same path):
    "Deleted 1 of 4", how many are left and "run erase again" on stderr (exit 1: a script may
    retry), no traceback, no key; the next run finds the 3 left and deletes them. No log
    record of the three runs carries the person's actor or address."""
    erase_cli.store(
        ("a1", "team/a", ALICE, f"{CLIENT_IP}:1"),
        ("a2", "team/a", ALICE, None),
        ("b1", "team/b", "Alice@Contoso.com", None),
        ("b2", "team/b", ALICE, None),
        ("o1", "team/b", "bob@contoso.com", None),
    )
    through_proxy = dataclasses.replace(erase_cli.settings, cosmos_endpoint=proxy.endpoint)
    cli_on(through_proxy, monkeypatch, tmp_path)
    delete = CosmosEventEraser.delete

    def failing_after_the_first(eraser: CosmosEventEraser, event: StoredEvent) -> bool:
        deleted = delete(eraser, event)
        proxy.refusal = THROTTLED
        return deleted

    monkeypatch.setattr(CosmosEventEraser, "delete", failing_after_the_first)
    caplog.clear()
    caplog.set_level(logging.DEBUG)

    status, out, errors = erase_cli.run("--actor", ALICE, "--yes")

    assert status == 1, out + errors
    assert "Deleted 1 of 4." in out
    assert errors.startswith("stopped with 3 left: the event store at")
    assert "run erase again to delete the rest" in errors
    assert "Traceback" not in errors and EMULATOR_KEY not in errors
    assert len(erase_cli.left()) == 4

    monkeypatch.setattr(CosmosEventEraser, "delete", delete)
    proxy.refusal = None
    status, out, errors = erase_cli.run("--actor", ALICE, "--yes")
    assert (status, errors) == (0, "")
    assert "Deleted 3 of 3." in out
    assert erase_cli.left() == {"o1"}
    proxied = EraseCli(through_proxy, erase_cli.capsys)  # the endpoint the runs were given
    assert erase_cli.run("--actor", ALICE)[:2] == (0, proxied.nothing_of(ALICE))

    logged = "\n".join(f"{record.getMessage()} {vars(record)}" for record in caplog.records)
    assert "alice" not in logged.lower() and CLIENT_IP not in logged


# --- the eraser's delete: what the server decides for each kind of id ---------------------------

# "a%41b": an id a delete by id cannot address in Azure (repository._NOT_ADDRESSABLE_ID).
IDS = ["e1", "a%41b"]
# Azure's answer to a delete by id of such a document (85b904d: "a delete by id is refused
# 401 in Azure"); the local server takes it, so the proxy answers as Azure does.
DELETE_BY_ID_REFUSED = Refusal(
    401,
    0,
    "Unauthorized",
    "The input authorization token can't serve the request. The wrong key is being used or "
    "the expected payload is not built as per the protocol.",
    paths=r".*/docs/a%(25)?41b/?$",
)


def _store(settings: Settings) -> None:
    """IDS stored in one repository, each naming ALICE."""
    container = container_for(settings)
    for event_id in IDS:
        container.upsert_item({"id": event_id, "repository": "team/api", "actor": ALICE})


def test_an_event_deleted_since_it_was_found_is_gone_whatever_its_id(
    cosmos_settings: Settings,
) -> None:
    """Mutants killed: the delete's 404 raised as an outage (erase would stop, exit 1, "run
    erase again", where erasure.Erasure.gone is "deleted by someone else between the finding
    and the deleting"), and an id with %XX whose link is no longer found deleted anyway
    (delete_item(None)), counted deleted, or failing on found[0]."""
    _store(cosmos_settings)
    eraser = CosmosEventEraser(cosmos_settings)
    found = sorted(eraser.events_naming(Person("actor", ALICE)), key=lambda event: event.id)
    assert [event.id for event in found] == sorted(IDS)
    container = container_for(cosmos_settings)
    for event_id in IDS:
        container.delete_item(event_id, partition_key="team/api")  # the local server takes %XX

    assert [eraser.delete(event) for event in found] == [False, False]


def test_an_id_with_percent_xx_is_deleted_by_its_link_and_any_other_by_its_id(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy, query_calls: list[dict[str, Any]]
) -> None:
    """Mutants killed: every id deleted by id (Azure refuses a%41b's with 401: erase stopped,
    exit 2, at the first such event), every id deleted through a query for its link (two
    requests per event where one does), the link's query sent to every partition (it knows
    the event's), and the find not allowed across partitions (it looks "in every repository",
    and the SDK's enable_cross_partition_query: "More than one request is necessary if the
    query is not scoped to single partition key value")."""
    _store(cosmos_settings)
    proxy.refusal = DELETE_BY_ID_REFUSED
    eraser = CosmosEventEraser(dataclasses.replace(cosmos_settings, cosmos_endpoint=proxy.endpoint))
    found = {event.id: event for event in eraser.events_naming(Person("actor", ALICE))}
    [find] = query_calls
    assert find["enable_cross_partition_query"] is True and "partition_key" not in find

    proxy.seen.clear()
    assert eraser.delete(found["e1"]) is True
    # Requests on documents: the SDK's own start-up check of the account (a GET / on a thread
    # of its own) may land here on a busy machine.
    assert [request.split()[0] for request in proxy.seen if "/docs/" in request] == ["DELETE"]
    assert eraser.delete(found["a%41b"]) is True
    [_, link] = query_calls
    assert link["partition_key"] == "team/api" and "enable_cross_partition_query" not in link

    assert read_all(cosmos_settings) == []
    assert proxy.refused == 0
