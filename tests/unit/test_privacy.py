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
from typing import Any

import azure.functions as func
import pytest

import function_app
from acr_webhook import __main__ as cli
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import SharedSecret, handle_webhook
from acr_webhook.models import (
    AcrEvent,
    InvalidQueuedEventError,
    ParkedEvent,
    to_document,
)
from acr_webhook.queries import handle_events_query
from acr_webhook.reconcile import reconcile_webhooks
from acr_webhook.replay import replay_queued_event
from acr_webhook.store import FallbackUnavailableError
from tests.support import payloads
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.support.interleave import InlineExecutor
from tests.unit.test_eventgrid import NOW, TOPIC, event_grid
from tests.unit.test_reconcile import TARGET, ListedHistory, all_logged
from tests.unit.test_session32_mutants import DuplicateContainer, cosmos_over

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
