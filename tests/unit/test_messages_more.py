"""What an operator reads from the commands' ``--help``, from ``serve`` when it cannot start, and
from the local host's trigger runners and the telemetry set-up when something is wrong, read as
a platform engineer at 3 a.m. reads it (the second part of tests/unit/test_messages.py): each
says what the docs say, names the thing and the problem (and the fix, where there is one), on
one line, with the documented exit status and no traceback unless the fault is a bug.

Each test drives the real path: ``cli.main`` (argparse, ``serve`` up to where it would listen
or start its triggers), the local host's pollers and timers against a real Azurite, the
telemetry pipeline's own set-up.
"""

from __future__ import annotations

import base64
import json
import logging
import signal
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import pytest

import function_app
from acr_webhook import __main__ as cli
from acr_webhook.config import STORAGE_CONNECTION, QueueSettings, queue_settings
from acr_webhook.eventgrid import handle_eventgrid, handle_eventgrid_options
from acr_webhook.fallback import provision_queue
from acr_webhook.handlers import handle_webhook
from acr_webhook.local import host as local_host
from acr_webhook.local.queues import QueueOptions, QueuePoller, queue_functions
from acr_webhook.local.queues import start_queue_pollers as start_pollers
from acr_webhook.local.timers import start_timer_runners
from acr_webhook.models import DEFAULT_LIMIT, RECORDED_ACTIONS
from acr_webhook.queries import MAX_LIMIT, SET_UP_REFUSED, handle_events_query
from acr_webhook.telemetry import CONNECTION_STRING_SETTING, DecisionTelemetry
from tests.support import payloads
from tests.support.azurite import ACCOUNT_KEY, LocalAzurite
from tests.support.fakes import FakeEventRepository
from tests.unit.test_messages import NOTIFICATION, WrongKeyRepository
from tests.unit.test_uncovered_paths import _pipeline


def help_text(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    """``python -m acr_webhook <command> --help``, its lines unwrapped into one."""
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())


# --- --help: what the docs say each command does, with the code's defaults and ranges ---------


def test_each_commands_help_says_what_the_readme_says_it_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    top = help_text(capsys)
    for command in ("serve", "provision", "events", "reconcile", "redrive"):
        assert command in top

    serve = help_text(capsys, "serve")
    assert "(127.0.0.1)" in serve and "(7071)" in serve  # the defaults README's commands use
    assert "LOCAL_FUNCTION_KEY" in serve

    provision = help_text(capsys, "provision")
    assert "acr-events-fallback" in provision and "acr-events-fallback-poison" in provision

    events = help_text(capsys, "events")
    # README: "limit (default 50, max 1000)"; the endpoint's own bounds, not a copy.
    assert f"1-{MAX_LIMIT} (default {DEFAULT_LIMIT})" in events
    assert (DEFAULT_LIMIT, MAX_LIMIT) == (50, 1000)
    assert ", ".join(sorted(RECORDED_ACTIONS)) in events
    assert "PT1H" in events and "view=pushes" in events

    reconcile = help_text(capsys, "reconcile")
    assert "az acr webhook list-events" in reconcile and "secret" in reconcile

    redrive = help_text(capsys, "redrive")
    assert STORAGE_CONNECTION in redrive and "Safe to run again" in redrive


def test_serve_help_gives_the_port_range_and_the_app_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    serve = help_text(capsys, "serve")

    assert "0-65535" in serve and "any free port" in serve
    assert "(function_app)" in serve


def test_provision_help_names_the_retention_it_sets(capsys: pytest.CaptureFixture[str]) -> None:
    assert "RETENTION_DAYS" in help_text(capsys, "provision")


# --- serve: what it says when it cannot start ------------------------------------------------


@pytest.fixture
def serve_settings(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``serve``'s settings from the environment; the signal handlers it would install are
    recorded instead, so the test process keeps its own, and a serve that does start fails the
    test once its banner is out instead of serving until a signal that never comes."""
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("LOCAL_FUNCTION_KEY", "local-test-key")
    installed: list[Any] = []
    monkeypatch.setattr(signal, "signal", lambda *args: installed.append(args))

    def serving() -> NoReturn:
        raise AssertionError("serve started serving")

    monkeypatch.setattr(local_host, "console_log_on_its_own_thread", serving)
    return installed


def serve_fails(capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str]:
    status = cli.main(["serve", *options])
    return status, capsys.readouterr().err


def test_a_host_that_does_not_resolve_is_one_line_and_exit_1(
    serve_settings: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = serve_fails(capsys, "--host", "0.0.0.0:7071", "--port", "0")

    assert status == 1
    assert err.startswith("cannot listen on 0.0.0.0:7071:0: ") and err.count("\n") == 1


def test_an_app_module_without_app_is_one_line_and_exit_2(
    serve_settings: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = serve_fails(capsys, "--app", "json")

    assert status == 2
    assert err.startswith("--app json: ") and "app" in err.removeprefix("--app json: ")
    assert err.count("\n") == 1


def test_an_app_whose_dependency_is_missing_names_the_app_and_the_dependency(
    serve_settings: list[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "app_needing_a_package.py").write_text("import package_not_installed_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    status, err = serve_fails(capsys, "--app", "app_needing_a_package")

    assert status == 2
    assert "app_needing_a_package" in err and "package_not_installed_here" in err


def test_an_app_module_that_does_not_exist_is_one_line_and_exit_2(
    serve_settings: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = serve_fails(capsys, "--app", "no_such_app_module")

    assert (status, err) == (2, "--app: No module named 'no_such_app_module'\n")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "local.settings.json is not readable JSON: "),
        ('{"Values": []}', 'local.settings.json: "Values" must be an object'),
    ],
)
def test_a_broken_local_settings_file_is_one_line_and_exit_2(
    serve_settings: list[Any], text: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("local.settings.json").write_text(text)  # the working directory is the test's own

    status, err = serve_fails(capsys, "--port", "0")

    assert status == 2
    assert err.startswith(f"configuration error: {problem}") and err.count("\n") == 1


@pytest.fixture
def host_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The host.json serve reads (beside function_app.py, as deployed), here the test's own."""
    path = tmp_path / "host.json"
    monkeypatch.setattr(local_host, "HOST_JSON", path)
    monkeypatch.setattr(local_host.route_prefix, "__defaults__", (path,))
    return path


def test_a_null_route_prefix_is_one_line_that_says_what_to_write(
    serve_settings: list[Any], host_json: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host_json.write_text('{"version": "2.0", "extensions": {"http": {"routePrefix": null}}}')

    status, err = serve_fails(capsys, "--port", "0")

    assert status == 2
    assert err == (
        f'configuration error: {host_json}: extensions.http.routePrefix is null; write "" for '
        "no prefix\n"
    )


def test_a_host_json_that_is_not_json_is_one_line_and_exit_2(
    serve_settings: list[Any], host_json: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host_json.write_text("{")

    status, err = serve_fails(capsys, "--port", "0")

    assert status == 2
    assert err.startswith(f"configuration error: {host_json} is not readable JSON: ")


@pytest.mark.parametrize(
    ("setting", "value"), [("visibilityTimeout", '"30"'), ("maxDequeueCount", '"five"')]
)
def test_a_queue_setting_host_json_cannot_give_is_named_in_one_line(
    serve_settings: list[Any],
    host_json: Path,
    setting: str,
    value: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host_json.write_text(
        f'{{"version": "2.0", "extensions": {{"queues": {{"{setting}": {value}}}}}}}'
    )

    status, err = serve_fails(capsys, "--port", "0")

    assert status == 2
    assert err.startswith(f"configuration error: {host_json}: extensions.queues.{setting}")
    assert err.count("\n") == 1


# --- the HTTP routes: the handshakes and the read endpoint ------------------------------------

HANDSHAKE = {"aeg-event-type": "SubscriptionValidation"}


def eventgrid_answer(body: bytes, headers: Mapping[str, str]) -> tuple[int, Any]:
    with ThreadPoolExecutor(max_workers=1) as executor:
        answer = handle_eventgrid(body, headers, FakeEventRepository(), executor=executor)
    return answer.status, answer.body


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "body is empty; expected JSON"),
        (b"\xff{}", "body is not valid UTF-8 (byte 0)"),
        (b"{", "body is not valid JSON: "),
    ],
)
def test_a_body_fault_is_worded_the_same_on_every_delivery_route(body: bytes, error: str) -> None:
    """The webhook, an Event Grid delivery and Event Grid's validation handshake: the same
    body is the same 400 in the same words, and none shows the body as a Python bytes repr."""
    webhook = handle_webhook(body, FakeEventRepository())
    answers = [
        (webhook.status, webhook.body),
        eventgrid_answer(body, NOTIFICATION),
        eventgrid_answer(body, HANDSHAKE),
    ]

    assert {status for status, _ in answers} == {400}
    texts = {answer["error"] for _, answer in answers}
    assert len(texts) == 1
    [text] = texts
    assert text.startswith(error) and "b'" not in text


def test_the_handshakes_refusals_name_the_header_or_the_field_at_fault() -> None:
    validation = {
        "id": "1",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "subject": "",
        "eventTime": "2026-01-01T00:00:00Z",
        "dataVersion": "1",
    }
    two = json.dumps([{**validation, "data": {"validationCode": "c"}}] * 2).encode()
    no_code = json.dumps([{**validation, "data": {}}]).encode()

    assert eventgrid_answer(two, HANDSHAKE) == (
        400,
        {
            "error": "aeg-event-type: SubscriptionValidation needs a body of exactly one "
            "Microsoft.EventGrid.SubscriptionValidationEvent"
        },
    )
    assert eventgrid_answer(no_code, HANDSHAKE) == (
        400,
        {"error": "events[0].data.validationCode: Field required"},  # as the webhook says it
    )
    assert handle_webhook(b'{"action": "push"}', FakeEventRepository()).body == {
        "error": "id: Field required; timestamp: Field required; target: Field required"
    }
    for origin, problem in [
        (None, "required header for the CloudEvents abuse-protection handshake"),
        ("\x01", "must be 1 to 255 visible ASCII characters"),
    ]:
        answer = handle_eventgrid_options(
            {} if origin is None else {"webhook-request-origin": origin}
        )
        assert (answer.status, answer.body) == (
            400,
            {"error": f"WebHook-Request-Origin: {problem}"},
        )


def test_the_read_endpoint_says_a_refused_key_without_the_sdk_s_words_and_logs_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 503 to the caller with no SDK text and no key (the webhook's in its own words, the
    read endpoint's saying an operator must act), the fix in the log, on one line."""
    caplog.set_level(logging.ERROR, logger="acr_webhook")

    read = handle_events_query({"repository": "hello-world"}, WrongKeyRepository())
    write = handle_webhook(payloads.body(payloads.PUSH), WrongKeyRepository())

    assert (read.status, write.status) == (503, 503)
    assert isinstance(read.body, dict) and isinstance(write.body, dict)
    assert read.body["error"] == SET_UP_REFUSED
    assert write.body["error"].startswith("the event store is unavailable; ")
    [logged] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("events query")]
    assert "COSMOS_KEY" in logged and "\n" not in logged


# --- the local host's trigger runners: what they log ------------------------------------------


def test_triggers_left_unstarted_say_which_setting_is_missing_or_wrong(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="acr_webhook.local")

    assert start_pollers(function_app.app, {}, QueueOptions()) == []
    assert start_timer_runners(function_app.app, {}) == []
    assert start_timer_runners(function_app.app, {"RECONCILE_SCHEDULE": "*/5 * * * *"}) == []

    assert [r.getMessage() for r in caplog.records] == [
        "queue trigger replay_fallback not started: AzureWebJobsStorage is not configured",
        "timer trigger reconcile_history not started: setting RECONCILE_SCHEDULE is not set",
        "timer trigger reconcile_history not started: '*/5 * * * *' is not an NCRONTAB "
        "schedule (six fields, seconds first, e.g. '0 */5 * * * *')",
    ]


def replay_poller(
    connection_string: str, queue_name: str, options: QueueOptions | None = None
) -> tuple[QueuePoller, QueueSettings]:
    """The replay_fallback trigger's poller of ``queue_name``, not started, and its queue."""
    [function] = queue_functions(function_app.app)
    values = {STORAGE_CONNECTION: connection_string}
    queue = queue_settings(values, function.connection, queue_name)
    assert queue is not None
    return QueuePoller(function, queue, options or QueueOptions()), queue


def first_poll_warning(
    connection_string: str, queue_name: str, caplog: pytest.LogCaptureFixture
) -> str:
    """What the replay_fallback trigger's poller logs when its first poll of ``queue_name``
    fails."""
    caplog.set_level(logging.WARNING, logger="acr_webhook.local.queues")
    poller, _ = replay_poller(connection_string, queue_name)
    poller.start()
    try:
        deadline = time.monotonic() + 20
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        poller.stop()
    [record] = caplog.records
    return record.getMessage()


def test_a_queue_that_comes_back_is_said_once_after_its_failure(
    azurite: LocalAzurite, caplog: pytest.LogCaptureFixture
) -> None:
    """The poller warned once that the queue failed, then said nothing when it came back: a
    reader of the log could not tell whether replays had resumed."""
    caplog.set_level(logging.INFO, logger="acr_webhook.local.queues")
    name = f"acr-events-fallback-{uuid.uuid4().hex[:8]}"
    poller, queue = replay_poller(
        azurite.connection_string, name, QueueOptions(max_polling_interval=0.2)
    )
    poller.start()
    try:
        wait_for = time.monotonic() + 20
        while not caplog.records and time.monotonic() < wait_for:
            time.sleep(0.05)
        provision_queue(queue)
        while len(caplog.records) < 2 and time.monotonic() < wait_for:
            time.sleep(0.05)
    finally:
        poller.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith(f"queue trigger replay_fallback: queue {name} does not exist")
    assert messages[1:] == [f"queue trigger replay_fallback: queue {name} answers again"]


def test_a_missing_queue_is_one_line_naming_the_queue_and_provision(
    azurite: LocalAzurite, caplog: pytest.LogCaptureFixture
) -> None:
    never_created = f"acr-events-fallback-{uuid.uuid4().hex[:8]}"

    line = first_poll_warning(azurite.connection_string, never_created, caplog)

    assert never_created in line and "provision" in line
    assert "\n" not in line and "<?xml" not in line


def test_a_refused_storage_key_is_one_line_naming_the_setting(
    azurite: LocalAzurite, caplog: pytest.LogCaptureFixture
) -> None:
    another_key = base64.b64encode(b"another account's key" * 3).decode()
    connection_string = azurite.connection_string.replace(ACCOUNT_KEY, another_key)

    line = first_poll_warning(connection_string, "acr-events-fallback", caplog)

    assert "acr-events-fallback" in line and STORAGE_CONNECTION in line
    assert "\n" not in line and "<?xml" not in line
    assert another_key not in line


def test_provision_says_a_queue_it_could_not_create_in_one_line(
    azurite: LocalAzurite, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    another_key = base64.b64encode(b"another account's key" * 3).decode()
    monkeypatch.setenv(
        STORAGE_CONNECTION, azurite.connection_string.replace(ACCOUNT_KEY, another_key)
    )
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    # The database part is another test's (test_messages.py); here it is ready.
    monkeypatch.setattr("acr_webhook.repository.provision", lambda _settings: None)

    status = cli.main(["provision"])

    err = capsys.readouterr().err
    assert status == 0  # the database is what events need: a warning, not a failure
    assert err.startswith("warning: fallback queue 'acr-events-fallback' not created: ")
    assert err.count("\n") == 1 and "<?xml" not in err and another_key not in err


# --- telemetry: a connection string the exporter refuses ------------------------------------


def test_a_connection_string_the_exporter_refuses_is_named_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="acr_webhook.telemetry")
    pipeline = _pipeline({CONNECTION_STRING_SETTING: "InstrumentationKey=0;IngestionEndpoint=x"})

    pipeline._build()

    [record] = caplog.records
    assert CONNECTION_STRING_SETTING in record.getMessage()
    assert record.exc_info is None
    assert "InstrumentationKey=0" not in record.getMessage()  # the string itself stays out


def test_the_modules_under_test_are_the_ones_serve_runs() -> None:
    """The host.json fixture patches the names serve reads at run time: if they move, the
    tests above would pass on the real file and test nothing."""
    assert local_host.route_prefix.__defaults__ == (local_host.HOST_JSON,)
    assert local_host.HOST_JSON.name == "host.json" and local_host.HOST_JSON.is_file()


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
