"""Disaster recovery drill: the recovery paths the docs give, followed as the platform engineer
would, against what the app and the Bicep do and what Azure documents.

Azure's facts, each from Microsoft's own text (MicrosoftDocs/azure-databases-docs and
MicrosoftDocs/azure-docs, as published on learn.microsoft.com):

- Cosmos DB point-in-time restore (azure/cosmos-db/continuous-backup-restore-introduction)
  "restores all data and its index properties into a new account"; "The following
  configurations aren't restored ...: Firewall, ..., Data plane Role based access control
  RBAC, ... All the Regions from the source account. ... Role-based access control
  assignments."; "The default restore process restores all the properties of a container
  including its TTL configuration by default, this can result in deletion of data if restore
  is done without way to disable the TTL" (``--disable-ttl True``); "The restored account is
  created in the same region where your source account exists"; "The backups aren't
  automatically geo-disaster resistant. Another region should be explicitly added".
  azure/cosmos-db/restore-account-continuous-backup: "Deleting source account while a restore
  is in-progress could result in failure of the restore".
- Data-plane RBAC (azure/cosmos-db/how-to-setup-rbac) "covers only database operations that
  involve reading and writing data. It does not cover any kind of management operations ...
  Create/Replace/Delete Database, Create/Replace/Delete Container"; Cosmos DB answers such a
  request 403, sub-status 5300, "The given request [POST /dbs/catalogdb/colls] cannot be
  authorized by AAD token in data plane" (dotnet/efcore#32197).
- A single-region account (azure/cosmos-db/disaster-recovery-guidance): "if multiple
  availability zones or the entire region is impacted, single-region accounts lose read and
  write access until service is restored". Serverless, the template's default, cannot have a
  second region (azure/cosmos-db/throughput-serverless: "serverless accounts can only run in a
  single Azure region").
- The Functions host's storage (azure/azure-functions/storage-considerations): "Every function
  app requires a storage account to operate. If that account is deleted your function app won't
  run"; Blob storage keeps the function keys and, on Flex Consumption, the deployment package.
  A deleted storage account (azure/storage/common/storage-account-recover) can be recovered when
  "deleted within the past 14 days" and "A new storage account with the same name has not been
  created since"; recovery "is a best-effort attempt".
- Event Grid (azure/event-grid/delivery-and-retry): "If the dead-letter location is unavailable
  for four hours, the event is dropped."
- ACR's delivery history (rest/api/containerregistry/webhooks/listevents): "Lists recent events
  for the specified webhook"; how long or how many is not documented (docs/delivery.md says so).

What the app does is tested below with fakes and the management stand-in; what the docs or the
Bicep leave out is a strict xfail naming the missing step. Already tested elsewhere and not
repeated: a restored account that refuses the identity (403/5301) or lacks the container (404)
parks every webhook event, answers Event Grid 503 and names the role or setting to fix, and
stores once fixed (tests/integration/test_misconfiguration.py).
"""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos.exceptions import CosmosHttpResponseError

from acr_webhook import __main__ as cli
from acr_webhook.acr_history import ManagementApiHistory
from acr_webhook.config import DEFAULT_REPLAY_MAX_DELAY_S, ReconcileSettings, Settings
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import AcrEvent, ParkedEvent, iso_utc, to_document
from acr_webhook.reconcile import StoredEvents, reconcile_webhooks
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventRepository
from tests.infra.bicep import (
    Json,
    accessor,
    conditional_branches,
    module,
    not_empty,
    output,
    template,
)
from tests.infra.test_deploy_docs import main_table, parameter_rows
from tests.infra.test_main_template import (
    MAIN,
    RETENTION_ENABLED,
    cosmos_account,
    cosmos_container,
)
from tests.integration.test_reconcile_timer import (
    AUDIENCE,
    REGISTRY_ID,
    FakeCredential,
    list_events_path,
)
from tests.support import payloads
from tests.support.arm_stand_in import TOKEN, ListEventsStandIn
from tests.support.cosmos_server import EMULATOR_KEY
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.support.instances import EVENTGRID_HEADERS
from tests.support.interleave import InlineExecutor
from tests.support.logs import decisions
from tests.unit.test_docs_commands import DOCS, readme_deploy_variables
from tests.unit.test_eventgrid import event_grid
from tests.unit.test_privacy import said

# The account main.bicep made, deleted: its name no longer resolves while it is restored.
DELETED_HOST = "cosmos-acrhook.documents.azure.com"
STORED_BEFORE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # before the restore point
SWITCHED_AT = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # the app restarted on the restored one


def prose_said(*patterns: str) -> list[str]:
    """``file: first words`` of each paragraph of the docs, tables left out, that matches every
    pattern: a table row names many things at once (the parameter table of deploy.md has both
    "restore" and "Data Contributor"), a runbook step is said in prose."""
    return said(*patterns, tables=False)


# --- 1. Restore to a new account ----------------------------------------------------------------


def test_the_restore_runbook_gives_the_app_s_identity_its_data_role_on_the_restored_account() -> (
    None
):
    assert prose_said(r"restor", r"role assignment|data role|Data Contributor")


def test_the_restore_runbook_keeps_what_it_restores_from_expiring_again() -> None:
    assert prose_said(r"restor", r"disable-ttl|DisableTtl|restoreWithTtlDisabled")


def test_the_account_the_restore_runbook_leaves_the_app_on_survives_the_next_deployment() -> None:
    main = template(MAIN)
    account_name = json.dumps(module(main, "cosmos")["params"]["accountName"])
    adoptable = any(re.search(rf"\b{name}\b", account_name) for name in main["parameters"])
    switched_by_hand = prose_said(
        r"restor",
        r"point the app at it with `?COSMOS_ENDPOINT|(point|set|switch)\w* (the app|it|"
        r"COSMOS_ENDPOINT) (at|to)\b.{0,80}\b(restored|new) account",
    )
    assert adoptable or not switched_by_hand, switched_by_hand


def restore_runbook() -> str:
    """operations.md's restore runbook: from "**Backup.**" to the next bold heading."""
    backup = DOCS["docs/operations.md"].split("**Backup.**", 1)[1]
    return backup.split("\n\n**", 1)[0]


def test_the_restore_runbook_names_every_variable_its_commands_take_from_elsewhere() -> None:
    """An engineer pasting the restore in a new shell: an unset ``RG`` makes
    ``az cosmosdb list --resource-group ""`` fail, and the runbook must say where it and any
    other variable it does not assign come from (the README's deploy section)."""
    text = restore_runbook()
    commands = "\n".join(re.findall(r"```bash\n(.*?)```", text, flags=re.S))
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    assigned = set(re.findall(r"^\s*(\w+)=", commands, flags=re.M))
    taken = set(re.findall(r"\$\{?(\w+)", commands)) - assigned
    assert taken, "the runbook's commands take no variable: this test proves nothing"
    assert [name for name in sorted(taken) if f"`{name}`" not in prose] == []
    assert taken <= readme_deploy_variables()


def test_the_restore_runbook_says_the_adopting_deployment_sets_the_time_to_live_again() -> None:
    """The container's ``defaultTtl`` is main.bicep's ``retentionDays``: the deployment that
    moves the app to the restored account sets again the time-to-live ``--disable-ttl`` left
    off, and a restored document older than it is deleted then."""
    ttl = conditional_branches(cosmos_container()["defaultTtl"])
    assert ttl is not None and ttl[0] == RETENTION_ENABLED
    assert prose_said(
        r"cosmosAccountName",
        r"time-to-live[^.]*`retentionDays`[^.]*\bagain\b|\bagain\b[^.]*`retentionDays`",
    )


def _fake_client_whose_account_refuses_container_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployed account as the app's identity meets it: the database and container can be
    read, creating or replacing a container is refused 403/5300 (Entra ID tokens carry no
    management operations, whatever the data role)."""
    refusal = CosmosHttpResponseError(  # type: ignore[no-untyped-call]
        status_code=403,
        sub_status=5300,
        message="Request blocked by Auth cosmos-acrhook : The given request [POST "
        "/dbs/acr/colls] cannot be authorized by AAD token in data plane. Learn more: "
        "https://aka.ms/cosmos-native-rbac.",
    )

    class Database:
        def create_container_if_not_exists(self, *_args: Any, **_kwargs: Any) -> None:
            raise refusal

    class Client:
        def create_database_if_not_exists(self, *_args: Any, **_kwargs: Any) -> Database:
            return Database()

    monkeypatch.setattr("acr_webhook.repository.create_cosmos_client", lambda *_a: Client())


def test_provision_on_a_deployed_account_does_not_send_the_engineer_after_a_role(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app's own advice for a missing container is "run provision"; an engineer following
    it on a restored account, or re-setting the time-to-live after a --disable-ttl restore,
    meets this."""
    monkeypatch.setenv("COSMOS_ENDPOINT", f"https://{DELETED_HOST}:443/")
    _fake_client_whose_account_refuses_container_writes(monkeypatch)

    status = cli.main(["provision"])

    err = capsys.readouterr().err
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "Data Contributor" not in err, err
    assert re.search(r"main\.bicep|az cosmosdb sql container", err), err


# --- 2. The gap: events after the restore point -------------------------------------------------


def test_after_the_switch_the_timer_stores_into_the_restored_container_what_the_history_holds(
    tmp_path: Path,
) -> None:
    """Everything stored after the restore point is in the damaged account only. The restored
    container has what came before; the app, restarted on it by the change of COSMOS_ENDPOINT,
    has a reconcile memory that is empty, so its first timer run stores every event ACR's
    history still lists, whatever the answer ACR got then (201 included). What comes back is
    the webhook payload: ``source`` becomes "reconcile", ``receivedAt`` the time of that run,
    and what only Event Grid adds (region, client address, the registry's resource id) is not
    in it; an event the history does not list (delivered by Event Grid alone, another
    registry's) does not come back."""
    before = payloads.with_new_id(payloads.PUSH, tag="v1")
    delivered = payloads.with_new_id(payloads.PUSH, tag="v2")  # answered 201 at the time
    parked = payloads.with_new_id(payloads.DELETE)  # 202, replayed into the damaged account
    missed = payloads.with_new_id(payloads.PUSH, tag="v3")  # 504, reconciled there since
    pushed_by = {**payloads.with_new_id(payloads.PUSH, tag="v4"), "actor": {"name": "ci-bot"}}
    by_event_grid_alone = payloads.with_new_id(payloads.ENRICHED_PUSH)
    ping = {**payloads.with_new_id(payloads.PUSH), "action": "ping"}
    restored = FakeEventRepository()
    restored.add(to_document(AcrEvent.model_validate(before), STORED_BEFORE))
    stand_in = ListEventsStandIn(tmp_path, TOKEN, page_size=2)
    stand_in.histories = {
        list_events_path("acrwebhook"): [
            history_entry(before, "201"),
            history_entry(delivered, "201"),
            history_entry(parked, "202"),
            history_entry(missed, "504"),
            history_entry(pushed_by, "201"),
            history_entry(ping, "204"),
        ]
    }
    target = ReconcileSettings(REGISTRY_ID, ("acrwebhook",), stand_in.endpoint, AUDIENCE)
    stand_in.start()
    try:
        outcomes = reconcile_webhooks(
            target,
            restored,
            ManagementApiHistory(target, FakeCredential()),
            stored=StoredEvents(),  # a new process: the app restarted on the new setting
            now=lambda: SWITCHED_AT,
        )
    finally:
        stand_in.stop()

    assert outcomes["acrwebhook"].counts.summary() == "recorded=4 already=1 skipped=1 invalid=0"
    back = [restored.documents[e["id"]] for e in (delivered, parked, missed, pushed_by)]
    assert {(d["source"], d["receivedAt"]) for d in back} == {("reconcile", iso_utc(SWITCHED_AT))}
    assert restored.documents[pushed_by["id"]]["actor"] == "ci-bot"  # the history carried it
    for lost in ("location", "clientAddress", "registryResourceId", "connectedRegistry"):
        assert {d[lost] for d in back} == {None}, lost
    assert restored.documents[before["id"]]["source"] == "webhook"  # kept as restored
    assert by_event_grid_alone["id"] not in restored.documents
    assert len(restored.documents) == 5


def test_the_restore_runbook_says_what_becomes_of_events_after_the_restore_point() -> None:
    assert prose_said(
        r"restor",
        r"(after|since) the restore point|back into the (live|current|original|old|damaged|"
        r"existing) (account|container)",
    )
    assert prose_said(r"restor", r"reconcile")


# --- 3. During the restore ---------------------------------------------------------------------


def _name_gone(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """``host`` does not resolve, as a deleted account's name: the resolver answers at once."""
    resolve = socket.getaddrinfo

    def getaddrinfo(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name == host:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return resolve(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_while_a_deleted_account_is_restored_webhook_events_wait_and_reach_the_restored_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The account was deleted; its restore takes hours. The app still names it (the real
    repository and SDK, the name unresolvable): each webhook event is parked (202, "database
    unavailable"), Event Grid gets 503 and keeps its events for its own 24 hours of retries (then
    dead-letters them), and each parked event is replayed about once a minute and put back, so
    30 hours of restore poison none of them. Once the app names the restored account (and its
    identity has its role there), every parked event is stored, once."""
    _name_gone(monkeypatch, DELETED_HOST)
    deleted = CosmosEventRepository(
        Settings(f"https://{DELETED_HOST}:443/", EMULATOR_KEY, "acr", "events", None)
    )
    queue = FakeFallbackQueue()
    cap_s = DEFAULT_REPLAY_MAX_DELAY_S  # 60 s: the longest a parked event waits for a replay
    events = [payloads.with_new_id(payloads.PUSH, tag=f"v{n}") for n in range(3)]
    caplog.set_level("INFO", logger="acr_webhook")

    for event in events:
        answer = handle_webhook(payloads.body(event), deleted, fallback=queue)
        assert (answer.status, answer.body) == (202, {"status": "queued", "id": event["id"]})
    reasons = {d["reason"] for d in decisions(caplog) if d["decision"] == "queued"}
    assert all(r.startswith("database unavailable (") for r in reasons), reasons
    grid = handle_eventgrid(
        payloads.body([event_grid(payloads.with_new_id(payloads.PUSH))]),
        EVENTGRID_HEADERS,
        deleted,
        executor=InlineExecutor(),
    )
    assert grid.status == 503

    waiting = [(document, 0) for document in queue.messages]
    hours = 30
    for _ in range(hours * 60 * len(events)):  # each replayed once a minute at least
        document, attempts = waiting.pop(0)
        message = ParkedEvent(document, attempts).to_message()
        assert replay_queued_event(message, deleted, queue, cap_s) == "requeued"
        waiting.append((queue.messages[-1], queue.puts[-1][0]))
    assert max(delay for _, delay in queue.puts) == cap_s
    assert {attempts for _, attempts in waiting} == {hours * 60}

    restored = FakeEventRepository()  # COSMOS_ENDPOINT names the restored account now
    outcomes = [
        replay_queued_event(ParkedEvent(d, n).to_message(), restored, queue, cap_s)
        for d, n in waiting
    ]
    assert outcomes == ["recorded"] * len(events)
    assert set(restored.documents) == {event["id"] for event in events}


# --- 4. A region outage ------------------------------------------------------------------------


def test_the_template_keeps_the_account_in_one_region_without_failover() -> None:
    """What the region analysis rests on: one location, not zone-redundant, no automatic
    failover and no second write region. The app, its storage (LRS by default) and the Flex plan
    are in the same region (main.bicep's one ``location``)."""
    _, account = cosmos_account()
    properties = account["properties"]
    assert properties["locations"] == [
        {"locationName": "location", "failoverPriority": 0, "isZoneRedundant": False}
    ]
    assert "enableAutomaticFailover" not in properties
    assert "enableMultipleWriteLocations" not in properties


def test_the_docs_say_what_a_region_outage_does_to_the_app_and_its_backup() -> None:
    assert prose_said(r"region", r"outage", r"backup|restor")


# --- 5. The storage account lost ---------------------------------------------------------------


def test_the_docs_say_what_losing_the_storage_account_loses_and_how_to_get_it_back() -> None:
    assert prose_said(r"storage account", r"14 days", r"main\.bicep")
    assert prose_said(r"storage account", r"\bkeys?\b", r"webhook\.bicep|connect the registry")


# --- infra/main.bicep: cosmosAccountName and the output azd keeps ------------------------------


def as_bicep_reads_it(value: Any) -> Any:
    """pycep reads ``!a ? b : c`` as ``!(a ? b : c)``; Bicep's ``!`` binds tighter than
    ``?:`` (its operator precedence), so the template means ``(!a) ? b : c``."""
    negated = value.get("operator", {}) if isinstance(value, dict) else {}
    if negated.get("type") == "not":
        branches = conditional_branches(negated["operands"]["bool_value"])
        if branches is not None:
            condition, true_value, false_value = branches
            negation: Json = {"operator": {"type": "not", "operands": {"bool_value": condition}}}
            return {
                "operator": {
                    "type": "conditional",
                    "operands": {
                        "condition": negation,
                        "true_value": true_value,
                        "false_value": false_value,
                    },
                }
            }
    return value


def test_an_empty_cosmos_account_name_is_the_documented_generated_one_and_a_given_one_is_used() -> (
    None
):
    """Mutants killed: the condition flipped (``empty(...) ? cosmosAccountName : ...``: the
    restored account ignored and a first provision given an empty name), the branches
    swapped, and another generated name than deploy.md's ``cosmos-<token>``."""
    main = template("main.bicep")
    assert parameter_rows(main_table())["cosmosAccountName"][0] == "empty (`cosmos-<token>`)"
    account_name = as_bicep_reads_it(module(main, "cosmos")["params"]["accountName"])
    assert conditional_branches(account_name) == (
        not_empty("cosmosAccountName"),
        "cosmosAccountName",
        "cosmos-${resourceToken}",
    )


def test_the_output_azd_keeps_is_the_account_the_deployment_used() -> None:
    """Mutants killed: the output as the generated name (after a restore, ``azd env set
    COSMOS_ACCOUNT_NAME`` would be overwritten by the next provision and the one after would
    move the app back to the damaged account) and as the parameter (empty on a first
    provision, where deploy.md's ``COSMOS=$COSMOS_ACCOUNT_NAME`` names the account)."""
    main = template("main.bicep")
    assert output(main, "COSMOS_ACCOUNT_NAME") == accessor("cosmos", "outputs", "accountName")
    assert output(template("modules/cosmos.bicep"), "accountName") == accessor("account", "name")
