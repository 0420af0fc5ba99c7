"""Personal data: which fields of an event are personal, where each ends up, how long it stays
there, and what an operator can erase.

ACR's events name who pushed (``actor.name``: a user name or e-mail, a token or service
principal), the client's address (``request.addr``) and its user agent (``request.useragent``).
Those three go into a document's ``actor``, ``clientAddress`` and ``userAgent`` and, while a
document waits for the database, into the fallback queue's message; they are answered by the
read endpoint and printed by the CLI's ``--json`` (``actor`` also by ``--pushes``). They must
reach no log record (so no Application Insights trace either: telemetry exports the app's log
records, their message and ``extra`` fields) and no 400 answer.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue import QueueMessage

import function_app
from acr_webhook import __main__ as cli
from acr_webhook.config import QueueSettings
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import SharedSecret, handle_webhook
from acr_webhook.local.queues import QueueFunction, QueueOptions, QueuePoller
from acr_webhook.models import (
    AcrEvent,
    InvalidQueuedEventError,
    ParkedEvent,
    to_document,
)
from acr_webhook.queries import handle_events_query
from acr_webhook.reconcile import StoredEvents, reconcile_entries, reconcile_webhooks
from acr_webhook.replay import replay_queued_event
from acr_webhook.store import FallbackUnavailableError
from tests.infra.test_deploy_docs import section
from tests.support import payloads
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.support.interleave import InlineExecutor
from tests.unit.test_database_health import DuplicateContainer, cosmos_over
from tests.unit.test_docs_commands import DOCS, REPO_ROOT
from tests.unit.test_eventgrid import NOW, TOPIC, event_grid
from tests.unit.test_reconcile import TARGET, ListedHistory, all_logged, no_record

# ENRICHED_PUSH's personal values, as distinctive parts: who pushed (an e-mail address), the
# client's IP address, and its user agent (which names the client machine's kernel).
ACTOR = "ci-bot@contoso.com"
CLIENT_IP = "203.0.113.7"
USER_AGENT = "kernel/4.10.0-27-generic"
PERSONAL = (ACTOR, CLIENT_IP, USER_AGENT)
PERSONAL_FIELDS = {"actor", "clientAddress", "userAgent"}
# A value of each personal field that the models refuse, still carrying the person's value.
REFUSED_PERSONAL_VALUES = {
    "actor.name with a control character": ("actor.name", f"{ACTOR}\x07"),
    "actor.name too long": ("actor.name", ACTOR * 20),
    "request.addr too long": ("request.addr", f"{CLIENT_IP}:51234" * 8),
    "request.addr with a line break": ("request.addr", f"{CLIENT_IP}\n"),
    "request.useragent not text": ("request.useragent", {"agent": USER_AGENT}),
}


def push() -> dict[str, Any]:
    """A push that names who made it, from where and with what client."""
    return payloads.with_new_id(payloads.ENRICHED_PUSH)


def found_in(text: str) -> list[str]:
    return [value for value in PERSONAL if value in text]


@pytest.fixture
def app_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of the app's loggers, DEBUG up."""
    caplog.set_level(logging.DEBUG, logger="acr_webhook")
    return caplog


def assert_nothing_personal_logged(caplog: pytest.LogCaptureFixture) -> None:
    """No record holds a personal value in what any sink sees of it: its message, arguments
    and ``extra`` fields (its trace's custom dimensions in Application Insights), and any
    exception it carries (``exc_info`` is in ``__dict__``)."""
    assert caplog.records, "nothing was logged: the test proves nothing"
    assert found_in(all_logged(caplog)) == []


def eventgrid(events: list[dict[str, Any]], repository: Any) -> tuple[int, Any]:
    result = handle_eventgrid(
        payloads.body(events), {}, repository, now=lambda: NOW, executor=InlineExecutor()
    )
    return result.status, result.body


# --- inventory: where each personal field goes ----------------------------------------------------


def test_the_personal_fields_are_three_document_fields_and_the_parked_message_holds_them() -> None:
    """An Event Grid event carries who pushed, the client's address and user agent, and the
    registry node's address (``source.addr``, not personal). The document keeps the first three
    in ``actor``, ``clientAddress``, ``userAgent`` and nothing else of them; the envelope's
    ``subject`` and ``source`` are not kept. A parked event is the whole document."""
    event = push()
    document = to_document(AcrEvent.model_validate(event), NOW, "eventgrid", TOPIC)
    assert {name: document[name] for name in sorted(PERSONAL_FIELDS)} == {
        "actor": ACTOR,
        "clientAddress": f"{CLIENT_IP}:51234",
        "userAgent": payloads.PUSH["request"]["useragent"],
    }
    others = {name: value for name, value in document.items() if name not in PERSONAL_FIELDS}
    assert found_in(json.dumps(others)) == []
    assert "myregistry-node-1" not in json.dumps(document)  # source.addr is not stored

    queue = FakeFallbackQueue()
    repository = FakeEventRepository()
    repository.unavailable = True
    assert handle_webhook(payloads.body(event), repository, fallback=queue).status == 202
    [parked] = queue.messages
    assert found_in(ParkedEvent(parked).to_message()) == list(PERSONAL)


def test_the_read_endpoint_and_the_cli_show_them_to_whoever_holds_the_read_key(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    """The read endpoint (``acr_events``'s key) answers whole documents; the CLI's table leaves
    the three out, ``--pushes`` shows ``actor``, ``--json`` all three."""
    event = push()
    cli_reader.add(to_document(AcrEvent.model_validate(event), NOW, "eventgrid", TOPIC))

    answer = handle_events_query({}, cli_reader, now=lambda: NOW)
    assert (answer.status, found_in(json.dumps(answer.body))) == (200, list(PERSONAL))

    printed = {}
    for options in ([], ["--pushes"], ["--json"]):
        assert cli.main(["events", *options]) == 0
        printed[" ".join(options)] = found_in(capsys.readouterr().out)
    assert printed == {"": [], "--pushes": [ACTOR], "--json": list(PERSONAL)}


# --- logs and telemetry: no record carries a personal value ---------------------------------------


def test_the_webhook_route_logs_no_personal_value_whatever_it_decides(
    app_log: pytest.LogCaptureFixture,
) -> None:
    """Recorded, duplicate, queued, unavailable, refused by the store, ignored: each decision's
    record names the event id, action and repository only."""
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    first = push()
    assert handle_webhook(payloads.body(first), repository).status == 201
    assert handle_webhook(payloads.body(first), repository).status == 200
    refused = push()
    repository.refused.add(refused["id"])
    assert handle_webhook(payloads.body(refused), repository).status == 400
    ignored = {**push(), "action": "untag"}
    assert handle_webhook(payloads.body(ignored), repository).status == 202
    repository.unavailable = True
    assert handle_webhook(payloads.body(push()), repository, fallback=queue).status == 202
    assert handle_webhook(payloads.body(push()), repository).status == 503
    assert_nothing_personal_logged(app_log)


def test_the_event_grid_route_logs_no_personal_value_whatever_it_decides(
    app_log: pytest.LogCaptureFixture,
) -> None:
    repository = FakeEventRepository()
    batch = [event_grid(push()), event_grid(push())]
    assert eventgrid(batch, repository)[0] == 200
    assert eventgrid(batch, repository)[0] == 200  # redelivered: duplicates
    refused = push()
    repository.refused.add(refused["id"])
    status, body = eventgrid([event_grid(refused)], repository)
    assert (status, found_in(json.dumps(body))) == (400, [])
    repository.unavailable = True
    assert eventgrid([event_grid(push())], repository)[0] == 503
    assert_nothing_personal_logged(app_log)


def test_filling_in_who_pushed_logs_the_field_names_not_their_values(
    monkeypatch: pytest.MonkeyPatch, app_log: pytest.LogCaptureFixture
) -> None:
    """The real repository over a container that already holds the webhook's document: Event
    Grid's copy fills in ``actor`` and ``clientAddress``; a copy of another event with the
    same id is warned of. Both records name fields, never values."""
    event = push()
    document = to_document(AcrEvent.model_validate(event), NOW, "eventgrid", TOPIC)
    stored = {**document, "actor": None, "clientAddress": None, "registryResourceId": None}
    container = DuplicateContainer(stored)
    assert cosmos_over(monkeypatch, container).add(document) is False
    [replaced] = container.replaced
    assert (replaced["actor"], replaced["clientAddress"]) == (ACTOR, f"{CLIENT_IP}:51234")

    other = DuplicateContainer({**stored, "action": "delete"})
    assert cosmos_over(monkeypatch, other).add(document) is False
    messages = [record.getMessage() for record in app_log.records]
    assert any("filled in actor, clientAddress" in message for message in messages)
    assert any("already stored with another action" in message for message in messages)
    assert_nothing_personal_logged(app_log)


def test_replay_logs_and_raises_no_personal_value(app_log: pytest.LogCaptureFixture) -> None:
    """What the replay logs, and the errors it raises, which the Functions worker logs with
    their message when a message goes back to the runtime (and on to the poison queue)."""
    document = to_document(AcrEvent.model_validate(push()), NOW)
    message = ParkedEvent(document).to_message()
    repository, queue = FakeEventRepository(), FakeFallbackQueue()
    assert replay_queued_event(message, repository, queue, 60) == "recorded"
    assert replay_queued_event(message, repository, queue, 60) == "duplicate"
    repository.unavailable = True
    assert replay_queued_event(message, repository, queue, 60) == "requeued"
    raised: list[Exception] = []
    with pytest.raises(FallbackUnavailableError) as unavailable:
        replay_queued_event(message, repository, None, 60)
    raised.append(unavailable.value)
    repository.unavailable = False
    repository.refused.add(document["id"])
    without_id = {name: value for name, value in document.items() if name != "id"}
    for refused in (message, ParkedEvent(without_id).to_message()):
        with pytest.raises(InvalidQueuedEventError) as invalid:
            replay_queued_event(refused, repository, queue, 60)
        raised.append(invalid.value)
    assert [found_in(repr(error)) for error in raised] == [[], [], []]
    assert_nothing_personal_logged(app_log)


def test_reconcile_logs_no_personal_value_of_the_entries_it_stores_or_refuses(
    app_log: pytest.LogCaptureFixture,
) -> None:
    good, no_timestamp, refused = push(), push(), push()
    del no_timestamp["timestamp"]
    repository = FakeEventRepository()
    repository.refused.add(refused["id"])
    entries = [history_entry(event) for event in (good, no_timestamp, refused)]
    history = ListedHistory({name: entries for name in TARGET.webhook_names})
    outcomes = reconcile_webhooks(TARGET, repository, history, now=lambda: NOW)
    summaries = {name: outcome.counts.summary() for name, outcome in outcomes.items()}
    assert summaries == {
        "acrwebhook": "recorded=1 already=0 skipped=0 invalid=2",
        "acrwebhook2": "recorded=0 already=1 skipped=0 invalid=2",
    }
    assert repository.documents[good["id"]]["actor"] == ACTOR
    assert_nothing_personal_logged(app_log)


def test_a_read_logs_its_filters_not_the_documents_it_answers(
    app_log: pytest.LogCaptureFixture,
) -> None:
    reader = FakeEventRepository()
    reader.add(to_document(AcrEvent.model_validate(push()), NOW, "eventgrid", TOPIC))
    for params in ({}, {"view": "pushes"}, {"repository": "hello-world", "limit": "x"}):
        handle_events_query(params, reader, now=lambda: NOW)
    assert_nothing_personal_logged(app_log)


# --- a 400 never echoes a personal value or a credential ------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"), REFUSED_PERSONAL_VALUES.values(), ids=REFUSED_PERSONAL_VALUES.keys()
)
def test_a_refused_personal_value_is_named_by_its_field_never_quoted(
    path: str, value: Any, app_log: pytest.LogCaptureFixture
) -> None:
    """Both routes answer 400 naming the field (``actor.name: ...``) and log the same; neither
    the answer nor the log quotes what the client sent."""
    repository = FakeEventRepository()
    event = payloads.mutated(path, value)
    webhook = handle_webhook(payloads.body(event), repository)
    answers: dict[str, tuple[int, Any]] = {"webhook": (webhook.status, webhook.body)}
    answers["eventgrid"] = eventgrid([event_grid(event)], repository)
    echoed = {
        route: (code, found_in(json.dumps(answer))) for route, (code, answer) in answers.items()
    }
    assert echoed == {"webhook": (400, []), "eventgrid": (400, [])}
    field = path.split(".", 1)[0]
    assert [route for route, (_, answer) in answers.items() if field not in answer["error"]] == []
    assert repository.documents == {}
    assert_nothing_personal_logged(app_log)


def test_a_400_behind_the_secret_echoes_neither_the_secret_nor_the_key(
    app_repository: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    app_log: pytest.LogCaptureFixture,
) -> None:
    """A delivery that passes the key and the shared secret but is invalid: the 400 answers
    what is wrong with the body, never the credentials it came with."""
    secret, key = "privacy-shared-secret", "privacy-function-key"
    monkeypatch.setattr(function_app, "shared_secret", lambda: SharedSecret(secret))
    monkeypatch.setattr(function_app, "eventgrid_repository", lambda: app_repository)
    monkeypatch.setattr(function_app, "batch_executor", InlineExecutor)
    event = payloads.mutated("actor.name", f"{ACTOR}\x07")
    headers = {"Authorization": f"Bearer {secret}", "x-functions-key": key}
    for route, body in (("webhook", event), ("eventgrid", [event_grid(event)])):
        request = func.HttpRequest(
            "POST",
            f"http://localhost/api/acr/{route}?code={key}",
            headers=headers,
            params={"code": key},
            body=payloads.body(body),
        )
        handler = function_app.acr_webhook if route == "webhook" else function_app.acr_eventgrid
        answer = handler(request)
        text = answer.get_body().decode()
        assert answer.status_code == 400, text
        assert [v for v in (secret, key, *PERSONAL) if v in text] == []
    assert [v for v in (secret, key) if v in all_logged(app_log)] == []
    assert_nothing_personal_logged(app_log)


# --- retention: how long each store keeps an event ------------------------------------------------


class _RecordingQueue:
    """A QueueClient that hands out ``received`` once and records what is sent to it."""

    def __init__(self, received: list[QueueMessage]) -> None:
        self.queue_name = "q"
        self.received = received
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.deleted: list[str] = []

    def receive_messages(self, **_options: Any) -> list[QueueMessage]:
        received, self.received = self.received, []
        return received

    def create_queue(self) -> None:
        pass

    def send_message(self, content: str, **options: Any) -> None:
        self.sent.append((content, options))

    def delete_message(self, message: QueueMessage) -> None:
        self.deleted.append(message.id)


def test_a_poisoned_message_gets_the_queue_service_s_default_time_to_live_as_in_azure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Functions runtime copies a poisoned message without a time-to-live
    (Azure/azure-sdk-for-net, Microsoft.Azure.WebJobs.Extensions.Storage.Common
    QueueProcessor.CopyMessageToPoisonQueueAsync -> StorageQueueExtensions.
    AddMessageAndCreateIfNotExistsAsync: ``SendMessageAsync(body, cancellationToken)``), and
    Put Message's ``messagettl`` "If this parameter is omitted, the default time-to-live is 7
    days": a poisoned event, and the personal data in it, is gone 7 days later unless redriven
    (redrive sends it back with -1, never expires). The local host does the same."""
    message = QueueMessage(content="not base64 !!")
    message.id, message.dequeue_count = "m1", 1
    main, poison = _RecordingQueue([message]), _RecordingQueue([])
    clients = iter((main, poison))
    monkeypatch.setattr(
        "acr_webhook.local.queues.create_queue_client", lambda *_a, **_k: next(clients)
    )
    function = QueueFunction("replay_fallback", "q", "AzureWebJobsStorage", lambda _body: None)
    poller = QueuePoller(function, QueueSettings("q", "UseDevelopmentStorage=true"), QueueOptions())
    assert poller.poll_once() == 1
    assert poison.sent == [("not base64 !!", {})]  # no time_to_live: the service's 7 days
    assert main.deleted == ["m1"]


def paragraphs() -> dict[str, list[str]]:
    """Each file's paragraphs, with their line breaks as spaces."""
    return {
        name: [" ".join(part.split()) for part in re.split(r"\n\s*\n", text)]
        for name, text in DOCS.items()
    }


def said(*patterns: str, tables: bool = True) -> list[str]:
    """``file: first words`` of each paragraph of the docs that matches every pattern; with
    ``tables=False``, table rows left out."""
    return [
        f"{name}: {paragraph[:60]}"
        for name, texts in paragraphs().items()
        for paragraph in texts
        if (tables or not paragraph.startswith("|"))
        and all(re.search(pattern, paragraph, flags=re.I | re.S) for pattern in patterns)
    ]


def test_the_docs_say_parked_messages_never_expire_and_documents_by_retention_days() -> None:
    """What the docs say of the two stores they give a lifetime: the fallback queue's messages
    never expire (RETENTION_DAYS does not bound them: an outage must lose nothing), documents
    expire RETENTION_DAYS after their last write, and a backup restore brings back a deleted
    or expired document for the backup tier's 7 or 30 days."""
    assert said(r"Parked messages never expire")
    assert said(r"RETENTION_DAYS", r"Days a document is kept")
    assert said(r"Continuous7Days", r"Continuous30Days", r"deleted or expired brings it back")


def workspace_retention_days() -> int:
    text = (REPO_ROOT / "infra" / "modules" / "monitoring.bicep").read_text()
    match = re.search(r"param retentionInDays int = (\d+)", text)
    assert match, "monitoring.bicep no longer sets the workspace's retention"
    assert "retentionInDays" not in (REPO_ROOT / "infra" / "main.bicep").read_text()
    return int(match.group(1))


def test_the_docs_say_how_long_logs_and_telemetry_are_kept() -> None:
    """Passes once a paragraph of the docs names Log Analytics or Application Insights, the
    workspace's retention in days as monitoring.bicep sets it, and says it keeps them."""
    days = workspace_retention_days()
    assert said(r"Log Analytics|Application Insights", rf"\b{days} days\b", r"keep|kept|retain")


def test_the_docs_say_a_poisoned_event_is_deleted_after_7_days() -> None:
    """Passes once a paragraph of the docs names the poison queue and its 7 days."""
    assert said(r"acr-events-fallback-poison|poison queue", r"\b7 days\b")


# --- erasure: deleting one person's events --------------------------------------------------------


def erase(repository: FakeEventRepository, actor: str) -> int:
    """What an operator can do today: find the person's documents by ``actor`` (queries.md's
    "Who pushed") and delete each one (Data Explorer, or the SDK's ``delete_item``)."""
    keys = [key for key, document in repository.documents.items() if document["actor"] == actor]
    for key in keys:
        del repository.documents[key]
    return len(keys)


REDELIVERIES = ("eventgrid", "replay", "reconcile by a new instance", "reconcile command")


@pytest.mark.parametrize("path", REDELIVERIES)
def test_an_erased_event_is_stored_again_by_any_later_delivery_of_it(path: str) -> None:
    """The event id is the only memory of an event, and the document was it: once deleted, any
    later delivery of the same event stores it again, who pushed and from where included.
    Event Grid redelivers for 24 hours (and a dead-lettered blob posted back is the same
    delivery); a parked copy is replayed; ACR's history still holds it for reconcile."""
    event = push()
    repository = FakeEventRepository()
    assert eventgrid([event_grid(event)], repository)[0] == 200
    assert erase(repository, ACTOR) == 1

    if path == "eventgrid":
        assert eventgrid([event_grid(event)], repository)[1]["recorded"] == 1
    elif path == "replay":
        parked = to_document(AcrEvent.model_validate(event), NOW)
        assert replay_queued_event(ParkedEvent(parked).to_message(), repository, None, 60) == (
            "recorded"
        )
    else:
        outcome = reconcile_entries(
            [history_entry(event)],
            repository,
            received_at=NOW,
            report_invalid=no_record,
            stored=StoredEvents() if path == "reconcile by a new instance" else None,
        )
        assert outcome.counts.recorded == 1
    assert [document["actor"] for document in repository.documents.values()] == [ACTOR]


def test_only_the_reconcile_timer_that_saw_an_erased_event_leaves_it_out() -> None:
    """delivery.md: "an event removed from the record (by RETENTION_DAYS, or by hand) while
    still in the history is stored again only by an instance that has not seen it, or by the
    command"."""
    event = push()
    repository, remembered = FakeEventRepository(), StoredEvents()
    history = ListedHistory({name: [history_entry(event)] for name in TARGET.webhook_names})
    reconcile_webhooks(TARGET, repository, history, stored=remembered, now=lambda: NOW)
    assert erase(repository, ACTOR) == 1
    reconcile_webhooks(TARGET, repository, history, stored=remembered, now=lambda: NOW)
    assert repository.documents == {}
    assert said(r"removed from the record", r"by hand", r"stored again")


def erasure_sections() -> dict[str, str]:
    """Sections of the docs whose heading speaks of personal data or erasing it."""
    found = {}
    for name, text in DOCS.items():
        for heading in re.findall(r"^#{2,4} .*$", text, flags=re.M):
            if re.search(r"personal|erase|erasure|privacy|GDPR", heading, flags=re.I):
                found[f"{name} {heading}"] = section(text, heading)
    return found


def test_the_docs_say_how_to_erase_one_persons_events() -> None:
    """Passes once a section of the docs whose heading says personal data, erasure, privacy or
    GDPR names the three fields, the stores that keep copies, backups, how to delete, and that
    reconcile and the other deliveries store an erased event again."""
    sections = erasure_sections()
    assert sections, "no section of the docs is about personal data"
    text = "\n".join(sections.values())
    wanted = (
        "actor",
        "clientAddress",
        "userAgent",
        "acr-events-fallback-poison",
        "eventgrid-deadletter",
        "backup",
        "reconcile",
        "delete",
        r"\bagain\b",  # a later delivery stores an erased event again
    )
    assert [word for word in wanted if not re.search(word, text)] == []


def test_the_bicep_sets_no_lifecycle_rule_so_dead_letter_blobs_stay_until_deleted() -> None:
    """operations.md: "The blobs stay; deleting them takes Storage Blob Data Contributor, which
    the template gives no person": no management policy deletes them, and a deleted one is kept
    for the blob service's soft delete (7 days)."""
    infra = {path.name: path.read_text() for path in (REPO_ROOT / "infra").rglob("*.bicep")}
    assert [name for name, text in infra.items() if "managementPolicies" in text] == []
    assert re.search(r"deleteRetentionPolicy: \{\s*enabled: true\s*days: 7", infra["storage.bicep"])
    assert said(r"The blobs stay", r"Storage Blob Data\s+Contributor")
