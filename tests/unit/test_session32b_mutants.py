"""Mutation audit of session 32's later product changes (after 6661807): what the tests written
with them left unpinned (the first round is tests/unit/test_session32_mutants.py).

Each test below kills hand-made mutants that the earlier tests let through (named in its
docstring). Every one asserts what a doc, the SDK or the code's own comment says, not the mutant.
The strict xfails are defects found on the way: each says what happens today and what should.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.cosmos.exceptions import CosmosHttpResponseError

import function_app
from acr_webhook import __main__ as cli
from acr_webhook.config import ConfigurationError, QueueSettings, parse_registry_id
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.local.queues import QueueFunction, QueueOptions, QueuePoller, queue_functions
from acr_webhook.models import filters_fingerprint
from acr_webhook.reconcile import StoredEvents, reconcile_entries, reconcile_webhooks
from acr_webhook.repository import EVENTGRID_WRITE_OPTIONS
from acr_webhook.store import (
    StorePartitionFullError,
    StoreSetUpError,
    store_failure_reason,
    unavailable_reasons,
)
from acr_webhook.telemetry import CONNECTION_STRING_SETTING, DecisionTelemetry
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.support.interleave import InlineExecutor
from tests.support.logs import decisions
from tests.unit.test_database_health import cosmos_over
from tests.unit.test_eventgrid import event_grid
from tests.unit.test_full_partition import BUSY, StoringContainer
from tests.unit.test_messages import NOTIFICATION
from tests.unit.test_messages_more import serve_fails
from tests.unit.test_queries import call, event, forged, seed
from tests.unit.test_reconcile import NOW, TARGET, ListedHistory, no_record
from tests.unit.test_uncovered_paths import _pipeline

REGISTRY_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-acr"
    "/providers/Microsoft.ContainerRegistry/registries/contosoacr"
)


# --- __main__._serve: which module is missing -------------------------------------------------


@pytest.fixture
def serve_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``serve``'s settings; --app fails before anything listens. Modules from tmp_path."""
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("LOCAL_FUNCTION_KEY", "local-test-key")
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.usefixtures("serve_env")
def test_an_app_in_a_package_that_does_not_exist_is_said_as_the_app_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Mutant killed: only ``error.name == args.app`` taken for the app itself. For
    ``--app pkg.function_app`` Python names the missing package (``pkg``): the app is what is
    missing, not something it imports."""
    status, err = serve_fails(capsys, "--app", "no_such_app_package.function_app")

    assert (status, err) == (2, "--app: No module named 'no_such_app_package'\n")


@pytest.mark.usefixtures("serve_env")
def test_a_missing_dependency_whose_name_starts_the_apps_is_said_as_a_dependency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutant killed: the package test without its dot (``startswith(error.name)``). The app
    ``acrtest_helpers_app`` is there; ``acrtest_helpers``, which it imports, is not: run
    scripts/bootstrap, not fix --app."""
    (tmp_path / "acrtest_helpers_app.py").write_text("import acrtest_helpers\n")

    status, err = serve_fails(capsys, "--app", "acrtest_helpers_app")

    assert (status, err) == (
        2,
        "--app acrtest_helpers_app: importing it failed: No module named 'acrtest_helpers'\n",
    )


# --- __main__._provision: the queue warning --------------------------------------------------


def test_provision_s_queue_warning_names_the_failure_kind_and_only_the_first_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutant killed: the warning without failure_kind (the status says which fault: 403 a
    key, 404 an account). The service's XML after the first line stays out."""
    refused = ClientAuthenticationError(
        message="Server failed to authenticate the request.\nRequestId:1\n<?xml version='1.0'?>"
    )
    refused.status_code = 403

    def provision_queue(_settings: QueueSettings) -> None:
        raise refused

    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setattr("acr_webhook.repository.provision", lambda _settings: None)
    monkeypatch.setattr("acr_webhook.fallback.provision_queue", provision_queue)

    status = cli.main(["provision"])

    assert status == 0
    assert capsys.readouterr().err == (
        "warning: fallback queue 'acr-events-fallback' not created: "
        "ClientAuthenticationError 403: Server failed to authenticate the request.\n"
    )


# --- __main__._reconcile: events a full partition left unstored ------------------------------


class PartlyDownContainer(StoringContainer):
    """A full partition for BUSY, and then the database gone for ``team/down``."""

    def create_item(self, document: Any, **options: Any) -> None:
        if document["repository"] == "team/down":
            raise ServiceRequestError("Connection refused")
        super().create_item(document, **options)


def reconcile_cli(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    container: StoringContainer,
    repositories: list[str],
) -> int:
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    repository = cosmos_over(monkeypatch, container)
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _s: repository)
    entries = [
        history_entry(payloads.with_new_id(payloads.PUSH, repository=name)) for name in repositories
    ]
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(entries))
    return cli.main(["reconcile", "--events-file", str(events_file)])


def test_reconcile_past_a_full_partition_says_what_it_left_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutants killed: exit 0 (or 2) for events left unstored, the stderr line dropped, sent
    to stdout, or counting another count. docs: exit 1 is "run it again" (a full partition
    once there is room); the summary is stdout's one line."""
    container = StoringContainer()

    status = reconcile_cli(monkeypatch, tmp_path, container, [BUSY, "team/quiet", BUSY])

    out, err = capsys.readouterr()
    assert status == 1
    assert out == "recorded=1 already=0 skipped=0 invalid=0 unstored=2\n"
    [line] = [line for line in err.splitlines() if "not stored" in line]
    assert line.startswith("2 event(s) not stored: the repository's partition is full (20 GB)")
    assert line.endswith("; run reconcile again once there is room")


def test_reconcile_stopped_by_an_outage_still_says_what_a_full_partition_left(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutant killed: the unstored line as an ``elif`` of the stop's. A run that went past a
    full partition and then lost the database says both: running it again stores the one
    once the database is back, the other once there is room."""
    status = reconcile_cli(monkeypatch, tmp_path, PartlyDownContainer(), [BUSY, "team/down"])

    out, err = capsys.readouterr()
    assert status == 1
    assert out == "recorded=0 already=0 skipped=0 invalid=0 unstored=1\n"
    assert "is unavailable" in err and "run reconcile again when it is back" in err
    assert "1 event(s) not stored: the repository's partition is full" in err


# --- local/app_index.extension_settings and local/queues.QueueOptions --------------------------


def test_a_host_json_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Mutant killed: host.json read as plain utf-8 (json.loads refuses the BOM). Editors on
    Windows save one; local.settings.json is read the same way (utf-8-sig)."""
    host_json = tmp_path / "host.json"
    host_json.write_text(
        '{"version": "2.0", "extensions": {"queues": {"batchSize": 4}}}', encoding="utf-8-sig"
    )

    assert QueueOptions.from_host_json(host_json).batch_size == 4


def test_a_host_json_that_cannot_be_read_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutant killed: only a ValueError caught (an unreadable file then a traceback)."""
    host_json = tmp_path / "host.json"
    host_json.write_text("{}")

    def refused(*_args: Any, **_kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", refused)

    with pytest.raises(ConfigurationError, match=r"host\.json is not readable JSON: .*denied"):
        QueueOptions.from_host_json(host_json)


@pytest.mark.parametrize(
    ("queues", "named"),
    [
        ({"batchSize": [16]}, "batchSize must be a whole number"),  # int([16]): TypeError
        ({"visibilityTimeout": 30}, "visibilityTimeout must be a time span hh:mm:ss"),  # no split
    ],
)
def test_a_queue_setting_of_another_json_type_is_named(
    tmp_path: Path, queues: dict[str, Any], named: str
) -> None:
    """Mutants killed: TypeError (int of a list) and AttributeError (a number has no split)
    left out of what is said as the setting's fault."""
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}))

    with pytest.raises(ConfigurationError, match=rf"extensions\.queues\.{named}$"):
        QueueOptions.from_host_json(host_json)


@pytest.mark.parametrize("value", [1.5, True])
def test_a_queue_count_that_is_not_a_whole_number_is_refused(tmp_path: Path, value: Any) -> None:
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"extensions": {"queues": {"batchSize": value}}}))

    with pytest.raises(ConfigurationError, match=r"extensions\.queues\.batchSize"):
        QueueOptions.from_host_json(host_json)


# --- local/queues.QueuePoller._poll_failure ----------------------------------------------------


def poller() -> QueuePoller:
    [function] = queue_functions(function_app.app)
    settings = QueueSettings("acr-events-fallback", connection_string="UseDevelopmentStorage=true")
    return QueuePoller(function, settings, QueueOptions())


def answered(status: int, message: str) -> HttpResponseError:
    error = HttpResponseError(message=message)
    error.status_code = status
    return error


def test_a_401_from_the_queue_service_is_said_as_refused_credentials() -> None:
    """Mutant killed: only 403 taken for refused credentials. Storage answers 401 for a
    missing or invalid token (NoAuthenticationInformation, InvalidAuthenticationInfo)."""
    line = poller()._poll_failure(answered(401, "Server failed to authenticate the request."))

    assert line == (
        "queue trigger replay_fallback: the queue service refused AzureWebJobsStorage's "
        "credentials for queue acr-events-fallback (HttpResponseError 401)"
    )


def test_another_poll_failure_is_one_line_with_its_kind() -> None:
    """Mutants killed: the unreachable line without failure_kind, or with the whole message
    (the service's XML on the lines after the first)."""
    error = answered(500, "Operation could not be completed.\n<?xml version='1.0'?><Error/>")

    assert poller()._poll_failure(error) == (
        "queue trigger replay_fallback: queue acr-events-fallback unreachable "
        "(HttpResponseError 500: Operation could not be completed.)"
    )


class FailingPoller(QueuePoller):
    """Every poll fails; the third asks the runner to stop."""

    polls = 0

    def poll_once(self) -> int:
        self.polls += 1
        if self.polls == 3:
            self._stop.set()
        raise ServiceRequestError("Connection refused")


def test_a_queue_that_stays_unreachable_is_warned_of_once(caplog: pytest.LogCaptureFixture) -> None:
    """Mutant killed: a warning on every failed poll (one a back-off interval, up to each
    maxPollingInterval, for as long as the queue is down). The first says it; a poll that
    succeeds again re-arms it."""
    caplog.set_level(logging.WARNING, logger="acr_webhook.local.queues")
    function = QueueFunction("replay_fallback", "q", "AzureWebJobsStorage", None)
    settings = QueueSettings("q", connection_string="UseDevelopmentStorage=true")
    runner = FailingPoller(function, settings, QueueOptions(max_polling_interval=0.001))

    runner._run()  # on this thread: returns once the third poll set the stop

    assert runner.polls == 3
    assert [r.getMessage() for r in caplog.records] == [
        "queue trigger replay_fallback: queue q unreachable (ServiceRequestError: Connection "
        "refused); retrying"
    ]


# --- telemetry: a connection string the exporter refuses ---------------------------------------


def test_an_unusable_connection_string_stops_every_handler_holding_and_says_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutants killed: _export_nothing left out after the connection string's error (each
    handler then holds every record in memory for the life of the process), only the first
    handler let go, and the exporter's message kept whole (a second line in the log)."""

    class RefusingExporter:
        def __init__(self, **_options: Any) -> None:
            raise ValueError("Invalid instrumentation key.\nIt should be a valid UUID.")

    monkeypatch.setattr(
        "azure.monitor.opentelemetry.exporter.AzureMonitorTraceExporter", RefusingExporter
    )
    caplog.set_level(logging.ERROR, logger="acr_webhook.telemetry")
    pipeline = _pipeline({CONNECTION_STRING_SETTING: "InstrumentationKey=0"})
    handlers = [DecisionTelemetry(pipeline), DecisionTelemetry(pipeline)]
    for handler in handlers:
        pipeline.add_handler(handler)

    pipeline._build()

    assert [(h._targets, list(h._held)) for h in handlers] == [((), []), ((), [])]
    [record] = caplog.records
    assert record.getMessage() == (
        f"Telemetry export could not be set up: {CONNECTION_STRING_SETTING} is not usable "
        "(Invalid instrumentation key.); nothing will be exported"
    )


# --- config.parse_registry_id ------------------------------------------------------------------


def test_a_registry_id_is_read_by_its_segments() -> None:
    """Mutants killed: the resource group read from another segment; a trailing slash (as
    a copied path has) refused; the provider segment left unchecked, or checked in one case
    only (ARM compares resource ids without regard to case)."""
    ref = parse_registry_id(REGISTRY_ID + "/")
    assert (ref.subscription_id, ref.resource_group, ref.name) == (
        "00000000-0000-0000-0000-000000000000",
        "rg-acr",
        "contosoacr",
    )
    lower = parse_registry_id(REGISTRY_ID.lower())
    assert (lower.resource_group, lower.name) == ("rg-acr", "contosoacr")
    with pytest.raises(ConfigurationError, match="ACR_REGISTRY_ID must be one registry's"):
        parse_registry_id(REGISTRY_ID.replace("Microsoft.ContainerRegistry", "Microsoft.Storage"))


@pytest.mark.parametrize(
    "registry_id",
    [
        REGISTRY_ID.removesuffix("contosoacr"),
        REGISTRY_ID.replace("/rg-acr/", "//"),
    ],
)
def test_a_registry_id_with_an_empty_segment_is_refused_naming_the_setting(
    registry_id: str,
) -> None:
    with pytest.raises(ConfigurationError, match="ACR_REGISTRY_ID"):
        parse_registry_id(registry_id)


# --- models.filters_fingerprint: tokens from before the registry filter ------------------------

# What 6661807's filters_fingerprint gave for {repository: team/api} (sha256 of the six values
# as JSON, first 16 hex digits): a token a client held across the upgrade carries it.
EARLIER_FINGERPRINT = "47ec53df6dc80721"


def test_a_token_from_before_the_registry_filter_still_pages() -> None:
    """Mutants killed: the registry always appended (null when not given), or every filter
    hashed in FILTERS' new order: either changes every fingerprint, and a client paging
    across the upgrade gets a 400 (models.filters_fingerprint: "a token handed out before it
    existed still pages its query")."""
    reader = FakeEventRepository()
    older, newer = seed(reader, event(at="2026-11-23T09:00:00Z"), event(at="2026-11-23T11:00:00Z"))
    assert (
        hashlib.sha256(json.dumps(["team/api", None, None, None, None, None]).encode()).hexdigest()[
            :16
        ]
        == EARLIER_FINGERPRINT
    )
    token = forged(
        {"v": 2, "q": EARLIER_FINGERPRINT, "t": newer["timestamp"], "k": None, "w": [None, None]}
    )

    status, body = call({"repository": "team/api", "continuation": token}, reader)

    assert (status, [d["id"] for d in body["events"]]) == (200, [older["id"]])


def test_a_token_for_one_registry_does_not_page_another() -> None:
    """Mutant killed: the registry left out of the fingerprint (a dev token then pages prod,
    from dev's position)."""
    reader = FakeEventRepository()
    seed(reader, event(at="2026-11-23T09:00:00Z"))
    dev = {"registry": "contosodev.azurecr.io"}
    prod = {"registry": "contosoprod.azurecr.io"}
    assert filters_fingerprint(dev) != filters_fingerprint(prod) != filters_fingerprint({})
    token = forged(
        {
            "v": 2,
            "q": filters_fingerprint(dev),
            "t": "2026-11-23T10:00:00.000000Z",
            "k": None,
            "w": [None, None],
        }
    )

    status, body = call({**prod, "continuation": token}, reader)

    assert (status, body["error"][:14]) == (400, "continuation: ")


# --- store.unavailable_reasons: a refused set-up ----------------------------------------------


def test_a_refused_set_up_is_said_as_itself_not_as_an_outage() -> None:
    """Mutant killed: _said_as_itself without StoreSetUpError (then a wrong COSMOS_KEY is
    "database unavailable (...)" in every decision, as if waiting would help)."""
    refused = StoreSetUpError("401: the key was refused", cause="COSMOS_KEY refused")

    assert unavailable_reasons([refused]) == ("COSMOS_KEY refused", "401: the key was refused")
    assert store_failure_reason(refused) == "COSMOS_KEY refused"


def test_a_full_partition_s_replay_put_back_is_said_as_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutant killed: store_failure_reason back to set-ups only (a replayed event put back
    for a full partition then says "database unavailable", and nothing says what to do)."""
    [full] = partition_full_errors(monkeypatch)

    assert store_failure_reason(full) == full.cause
    assert full.cause.startswith("the repository's partition is full (20 GB)")


def partition_full_errors(monkeypatch: pytest.MonkeyPatch) -> list[StorePartitionFullError]:
    """What the real repository raises for a create in a full partition (403/1014)."""
    repository = cosmos_over(monkeypatch, StoringContainer())
    try:
        repository.add({"id": "e1", "repository": BUSY, "action": "push"})
    except StorePartitionFullError as error:
        return [error]
    raise AssertionError("no StorePartitionFullError")


# --- eventgrid: a full partition in a batch ---------------------------------------------------


class RefusingContainer(StoringContainer):
    """As StoringContainer, and a 413 (too large: refused) for ``team/refused``."""

    def create_item(self, document: Any, **options: Any) -> None:
        if document["repository"] == "team/refused":
            raise CosmosHttpResponseError(  # type: ignore[no-untyped-call]
                status_code=413, message="Request size is too large"
            )
        super().create_item(document, **options)


def eventgrid_batch(
    monkeypatch: pytest.MonkeyPatch, container: StoringContainer, *events: dict[str, Any]
) -> int:
    answer = handle_eventgrid(
        payloads.body([event_grid(e) for e in events]),
        NOTIFICATION,
        cosmos_over(monkeypatch, container, write_options=EVENTGRID_WRITE_OPTIONS),
        now=lambda: NOW,
        executor=InlineExecutor(),
    )
    return answer.status


def test_each_copy_a_full_partition_left_gets_an_unavailable_decision_and_the_id_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutants killed: no decision for the unstored copies, one for the first copy only, a
    warning (the decisions metric and the alert count errors), "rejected" (that says the
    event is bad), and ``break`` for ``continue`` (the same id's document in another
    repository then neither written nor decided). Each copy gets exactly one decision
    (eventgrid._BatchProgress)."""
    caplog.set_level(logging.INFO, logger="acr_webhook")
    busy = payloads.with_new_id(payloads.PUSH, repository=BUSY)
    elsewhere = payloads.with_new_id(payloads.PUSH, repository="team/quiet")
    elsewhere["id"] = busy["id"]  # the same id in another repository: another document
    container = StoringContainer()

    status = eventgrid_batch(monkeypatch, container, busy, busy, elsewhere)

    assert status == 503
    assert container.created == [busy["id"]]
    said = [(d["decision"], d["repository"], d.get("reason", "")[:33]) for d in decisions(caplog)]
    full = "the repository's partition is ful"
    assert said == [
        ("unavailable", BUSY, full),
        ("unavailable", BUSY, full),
        ("recorded", "team/quiet", ""),
    ]
    levels = [r.levelno for r in caplog.records if hasattr(r, "decision")]
    assert levels == [logging.ERROR, logging.ERROR, logging.INFO]


def test_a_batch_with_a_refused_event_and_a_full_partition_is_400(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutant killed: 503 before 400. A refused event is refused on every delivery: a 503
    would have Event Grid deliver the batch again for 24 hours to the same answer; the
    400 is what a refusal gets alone (eventgrid: "one the store refuses → 400")."""
    busy = payloads.with_new_id(payloads.PUSH, repository=BUSY)
    refused = payloads.with_new_id(payloads.PUSH, repository="team/refused")

    assert eventgrid_batch(monkeypatch, RefusingContainer(), busy, refused) == 400


# --- reconcile: the timer past a full partition -----------------------------------------------


def test_the_timer_says_a_full_partition_and_goes_on_to_the_next_webhook(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutants killed: the webhook's summary logged as info without the cause (the alert on
    errors would not see events left unstored), and the timer stopping at it (a full
    partition is one repository's: the other webhooks' events still get stored)."""
    entries = [
        history_entry(payloads.with_new_id(payloads.PUSH, repository=name))
        for name in (BUSY, "team/quiet")
    ]
    history = ListedHistory({"acrwebhook": entries, "acrwebhook2": []})
    repository = cosmos_over(monkeypatch, StoringContainer())

    reconcile_webhooks(TARGET, repository, history, now=lambda: NOW)

    assert history.asked == ["acrwebhook", "acrwebhook2"]
    [summary] = [
        r for r in caplog.records if r.getMessage().startswith("reconcile of webhook 'acrwebhook'")
    ]
    assert summary.levelno == logging.ERROR
    message = summary.getMessage()
    assert message.startswith("reconcile of webhook 'acrwebhook': the repository's partition is")
    assert message.endswith("; recorded=1 already=0 skipped=0 invalid=0 unstored=1")


def test_an_event_a_full_partition_left_is_tried_again_by_the_next_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutant killed: the unstored event remembered as stored (every later timer run would
    count it already=1 and never write it, even once there is room)."""
    container = StoringContainer()
    repository = cosmos_over(monkeypatch, container)
    entries = [history_entry(payloads.with_new_id(payloads.PUSH, repository=BUSY))]
    stored = StoredEvents()
    for _run in range(2):
        outcome = reconcile_entries(
            entries, repository, received_at=NOW, report_invalid=no_record, stored=stored
        )

    assert len(container.calls) == 2
    assert outcome.counts.summary() == "recorded=0 already=0 skipped=0 invalid=0 unstored=1"
