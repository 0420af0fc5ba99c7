"""What each identity's code really asks of Cosmos DB and the Storage queues, recorded: every
path the deployed app runs, and the operator's commands, against the local servers behind the
recording proxies, each request mapped to the data action Microsoft's permission model names
for it (tests/support/data_actions.py). tests/infra/test_least_privilege.py holds the templates'
grants against these sets.

- The app's identity needs readMetadata, create, read, replace and (for queries) executeQuery
  and readChangeFeed: never delete, upsert, a stored procedure or a management operation.
- The operator (the template's principalId) needs the same and delete (erase).
- On the queues the app's code only puts messages (parking, a replay putting one back); the
  Functions runtime's queue trigger is the host's, not recorded here. The operator's redrive
  reads the queue's metadata, gets, puts, updates and deletes messages: all of them in Storage
  Queue Data Contributor, the role the template gives principalId, and not in the narrower
  Message Processor plus Message Sender (Get Queue Metadata and Update Message).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.acr_history import ManagementApiHistory
from acr_webhook.config import BATCH_WRITE_THREADS, QueueSettings, Settings
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.fallback import StorageQueueFallback, create_queue_client
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import AcrEvent, ParkedEvent, to_document
from acr_webhook.queries import handle_events_query
from acr_webhook.reconcile import StoredEvents, reconcile_webhooks
from acr_webhook.redrive import redrive
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import EVENTGRID_WRITE_OPTIONS, CosmosEventRepository
from acr_webhook.results import utc_now
from tests.integration.test_event_queries import cli_on
from tests.integration.test_reconcile_timer import (
    FakeCredential,
    list_events_path,
    target_from_settings,
)
from tests.support import payloads
from tests.support.arm_stand_in import ListEventsStandIn
from tests.support.azurite import LocalAzurite, new_queue
from tests.support.cosmos_proxy import FaultyCosmosProxy, Refusal
from tests.support.data_actions import (
    ALL_COSMOS_DATA_ACTIONS,
    APP_COSMOS_DATA_ACTIONS,
    COSMOS_DATA_CONTRIBUTOR,
    CREATE,
    DELETE,
    EXECUTE_QUERY,
    OPERATOR_COSMOS_DATA_ACTIONS,
    READ,
    READ_CHANGE_FEED,
    READ_METADATA,
    REPLACE,
    STORAGE_QUEUE_DATA_CONTRIBUTOR,
    allowed_of,
    cosmos_data_actions,
    queue_operation,
    queue_operation_allowed,
)
from tests.support.history import history_entry
from tests.support.queue_proxy import HoldingQueueProxy
from tests.unit.test_eventgrid import event_grid

ALICE = "alice@contoso.com"


def push(**target: Any) -> dict[str, Any]:
    return payloads.with_new_id(payloads.PUSH, **target)


def data_actions_of(proxy: FaultyCosmosProxy, action: Callable[[], object]) -> frozenset[str]:
    """The data actions of the Cosmos DB requests ``action`` made (ManagementOperationError if one
    is a request no data role allows)."""
    before = len(proxy.recorded)
    action()
    needed: set[str] = set()
    for method, path, headers in proxy.recorded[before:]:
        needed |= cosmos_data_actions(method, path, headers)
    return frozenset(needed)


# --- the app's identity ----------------------------------------------------------------------


# Each path gets its settings (through the proxy) and the management stand-in, stores what the
# path needs to find, and gives the path's run: only the run is recorded.
Action = Callable[[], object]


def webhook_new_and_duplicate(settings: Settings, _: ListEventsStandIn) -> Action:
    body = payloads.body(push())

    def run() -> None:
        repository = CosmosEventRepository(settings)
        assert handle_webhook(body, repository).status == 201
        assert handle_webhook(body, repository).status == 200

    return run


def event_grid_with_fill_in(settings: Settings, _: ListEventsStandIn) -> Action:
    """deliveryMode=both: the webhook stored each event first, Event Grid's delivery fills in
    what it lacks; then Event Grid delivers the batch again."""
    events = [push() for _ in range(3)]
    webhook = CosmosEventRepository(settings)
    for event in events:
        assert handle_webhook(payloads.body(event), webhook).status == 201
    batch = [event_grid(event) for event in events] + [event_grid(push())]

    def run() -> None:
        repository = CosmosEventRepository(settings, write_options=EVENTGRID_WRITE_OPTIONS)
        with ThreadPoolExecutor(max_workers=BATCH_WRITE_THREADS) as executor:
            for _ in range(2):
                answer = handle_eventgrid(payloads.body(batch), {}, repository, executor=executor)
                assert answer.status == 200

    return run


def read_endpoint(settings: Settings, _: ListEventsStandIn) -> Action:
    writer = CosmosEventRepository(settings)
    for number in range(3):
        assert handle_webhook(payloads.body(push(tag=f"v{number}")), writer).status == 201

    def run() -> None:
        reader = CosmosEventRepository(settings)
        first = handle_events_query({"limit": "1", "repository": "hello-world"}, reader)
        assert first.status == 200 and first.body is not None
        pages = [
            {"limit": "1", "repository": "hello-world", "continuation": first.body["continuation"]},
            {"limit": "2"},
            {"view": "pushes", "repository": "hello-world"},
        ]
        for params in pages:
            assert handle_events_query(params, reader).status == 200

    return run


def replay(settings: Settings, _: ListEventsStandIn) -> Action:
    document = to_document(AcrEvent.model_validate(push()), utc_now())
    message = ParkedEvent(document, 0).to_message()

    def run() -> None:
        repository = CosmosEventRepository(settings)
        assert replay_queued_event(message, repository, None, 60, 1) == "recorded"
        assert replay_queued_event(message, repository, None, 60, 2) == "duplicate"

    return run


def reconcile_timer(settings: Settings, stand_in: ListEventsStandIn) -> Action:
    """A history whose entries carry an actor, one of them stored by the webhook already."""
    events = [push() for _ in range(3)]
    assert handle_webhook(payloads.body(events[0]), CosmosEventRepository(settings)).status == 201
    stand_in.histories = {
        list_events_path("acrwebhook"): [
            history_entry({**event, "actor": {"name": "ci-bot"}}) for event in events
        ],
        list_events_path("acrwebhookeu"): [],
    }
    target = target_from_settings(stand_in)

    def run() -> None:
        history = ManagementApiHistory(target, FakeCredential())
        repository = CosmosEventRepository(settings)
        outcomes = reconcile_webhooks(target, repository, history, stored=StoredEvents())
        assert outcomes["acrwebhook"].counts.recorded == 2
        assert outcomes["acrwebhook"].unavailable is None

    return run


# Each path and the data actions it needs, as recorded (each builds its client: readMetadata).
APP_PATHS: dict[str, tuple[Callable[[Settings, ListEventsStandIn], Action], set[str]]] = {
    "webhook": (webhook_new_and_duplicate, {READ_METADATA, CREATE}),
    "eventgrid": (event_grid_with_fill_in, {READ_METADATA, CREATE, READ, REPLACE}),
    "read endpoint": (read_endpoint, {READ_METADATA, EXECUTE_QUERY, READ_CHANGE_FEED}),
    "replay": (replay, {READ_METADATA, CREATE}),
    "reconcile timer": (reconcile_timer, {READ_METADATA, CREATE, READ, REPLACE}),
}


@pytest.mark.parametrize("path", sorted(APP_PATHS))
def test_each_app_path_needs_only_these_data_actions(
    through_proxy: Settings, proxy: FaultyCosmosProxy, stand_in: ListEventsStandIn, path: str
) -> None:
    prepare, expected = APP_PATHS[path]
    needed = data_actions_of(proxy, prepare(through_proxy, stand_in))
    assert needed == expected
    # Nothing the deployed role (Cosmos DB Built-in Data Contributor) would refuse: no 403.
    assert needed <= allowed_of(COSMOS_DATA_CONTRIBUTOR, ALL_COSMOS_DATA_ACTIONS)


def test_the_app_needs_no_delete_upsert_or_stored_procedure() -> None:
    """The union of its paths is what a role of the app's own should hold, and no more."""
    union: set[str] = set()
    for _, actions in APP_PATHS.values():
        union |= actions
    assert union == APP_COSMOS_DATA_ACTIONS
    assert DELETE not in union


def test_the_reconcile_timer_calls_only_list_events_on_arm(
    through_proxy: Settings, stand_in: ListEventsStandIn
) -> None:
    """Of its registry role (registries/read, webhooks/read, webhooks/listEvents/action) the
    timer's code calls listEvents (a POST, and a GET per further page of the same path): never
    the registry or the webhook itself, nor getCallbackConfig."""
    reconcile_timer(through_proxy, stand_in)()
    assert stand_in.requests
    for request in stand_in.requests:
        assert request.path.endswith("/listEvents"), request
        assert request.method in ("POST", "GET")
        if request.method == "GET":
            assert "skip" in request.query, request  # a next page, not a read of the webhook


# --- the operator (principalId) ----------------------------------------------------------------


@pytest.fixture
def operator_cli(
    through_proxy: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Settings]:
    cli_on(through_proxy, monkeypatch, tmp_path)
    yield through_proxy


def test_the_operators_commands_need_delete_only_for_erase(
    operator_cli: Settings,
    proxy: FaultyCosmosProxy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    writer = CosmosEventRepository(operator_cli)
    stored = push()
    assert handle_webhook(payloads.body(stored), writer).status == 201
    events_file = tmp_path / "events.json"
    entries = [{**stored, "actor": {"name": ALICE}}, {**push(), "actor": {"name": ALICE}}]
    events_file.write_text(json.dumps([history_entry(entry) for entry in entries]))

    query = {EXECUTE_QUERY, READ_CHANGE_FEED}
    commands = {
        "events": (["events", "--repository", "hello-world", "--json"], query),
        "reconcile": (["reconcile", "--events-file", str(events_file)], {CREATE, READ, REPLACE}),
        "erase": (["erase", "--actor", ALICE, "--yes"], query | {DELETE}),
    }
    union: set[str] = set()
    statuses: list[int] = []
    for name, (argv, expected) in commands.items():
        needed = data_actions_of(proxy, partial(lambda a: statuses.append(cli.main(a)), argv))
        assert statuses.pop() == 0, (name, capsys.readouterr())
        assert needed == {READ_METADATA} | expected, name
        union |= needed
    assert union == OPERATOR_COSMOS_DATA_ACTIONS
    # Cosmos DB Built-in Data Contributor, the role the template gives principalId, has them.
    assert union <= allowed_of(COSMOS_DATA_CONTRIBUTOR, ALL_COSMOS_DATA_ACTIONS)


# --- the queues --------------------------------------------------------------------------------


@pytest.fixture
def recording_queue(azurite: LocalAzurite) -> Iterator[tuple[QueueSettings, HoldingQueueProxy]]:
    """A fresh queue and its poison queue, reached through a recording proxy."""
    queue_proxy = HoldingQueueProxy(azurite)
    queue_proxy.start()
    queue = new_queue(azurite)
    yield (
        QueueSettings(queue.queue_name, connection_string=queue_proxy.connection_string),
        queue_proxy,
    )
    queue_proxy.stop()


def operations_of(queue_proxy: HoldingQueueProxy, action: Callable[[], object]) -> set[str]:
    before = len(queue_proxy.recorded)
    action()
    return {queue_operation(*request) for request in queue_proxy.recorded[before:]}


def test_the_apps_code_only_puts_messages(
    through_proxy: Settings,
    proxy: FaultyCosmosProxy,
    recording_queue: tuple[QueueSettings, HoldingQueueProxy],
) -> None:
    """Parking an event while Cosmos DB is down, and a replay putting it back: Put Message
    alone (Storage Queue Data Message Sender's add/action). Getting and deleting the message
    is the Functions runtime's queue trigger."""
    queue, queue_proxy = recording_queue
    fallback = StorageQueueFallback(queue)
    repository = CosmosEventRepository(through_proxy)
    proxy.refusal = Refusal(503, 0, "ServiceUnavailable", "down", paths=".*/docs/?$")
    parked = push()

    def park_and_requeue() -> None:
        assert handle_webhook(payloads.body(parked), repository, fallback=fallback).status == 202
        document = to_document(AcrEvent.model_validate(parked), utc_now())
        message = ParkedEvent(document, 0).to_message()
        another = CosmosEventRepository(through_proxy)  # nothing remembered of the outage
        assert replay_queued_event(message, another, fallback, 60, 1) == "requeued"

    assert operations_of(queue_proxy, park_and_requeue) == {"Put Message"}


def test_redrive_needs_storage_queue_data_contributor(
    recording_queue: tuple[QueueSettings, HoldingQueueProxy], azurite: LocalAzurite
) -> None:
    queue, queue_proxy = recording_queue
    # Straight to Azurite, base64 as the runtime moves them there.
    poison = create_queue_client(
        QueueSettings(queue.poison.queue_name, connection_string=azurite.connection_string), {}
    )
    document = to_document(AcrEvent.model_validate(push()), utc_now())
    poison.send_message(ParkedEvent(document, 0).to_message())
    poison.send_message("not an event")  # stays, made visible again (Update Message)

    operations = operations_of(queue_proxy, lambda: redrive(queue))
    assert operations == {
        "Get Queue Metadata",
        "Get Messages",
        "Put Message",
        "Delete Message",
        "Update Message",
    }
    for operation in operations:
        assert queue_operation_allowed(STORAGE_QUEUE_DATA_CONTRIBUTOR, operation), operation
    # Message Processor (messages/read, process/action) and Message Sender (add/action)
    # together would refuse two of them.
    narrower = (
        "Microsoft.Storage/storageAccounts/queueServices/queues/messages/read",
        "Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action",
        "Microsoft.Storage/storageAccounts/queueServices/queues/messages/add/action",
    )
    refused = {op for op in operations if not queue_operation_allowed(narrower, op)}
    assert refused == {"Get Queue Metadata", "Update Message"}


def test_the_mapping_tells_an_upsert_from_a_create() -> None:
    """The mapping tells an upsert (which replaces without a condition) from a create, and
    takes no management request for a data one."""
    docs = "/dbs/acr/colls/events/docs"
    assert cosmos_data_actions("POST", docs, {"x-ms-documentdb-is-upsert": "True"}) == {
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/upsert"
    }
    assert cosmos_data_actions("POST", docs, {}) == {CREATE}
    assert cosmos_data_actions("GET", "/dbs/acr/colls/events/pkranges", {}) == {READ_METADATA}
    with pytest.raises(ValueError):
        cosmos_data_actions("POST", "/dbs/acr/colls", {})
