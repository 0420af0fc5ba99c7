"""The app under the process environments it really meets, not only the test suite's own (UTC,
a UTF-8 locale, no proxy, a clone path without spaces): operators' time zones, consoles that are
not UTF-8, a Turkish locale, corporate machines with proxies and their own CA bundle, another
PYTHONHASHSEED or interpreter flags, a clone under a path with spaces and non-ASCII letters.
The deployed package on a read-only mount is in tests/integration/test_environments_integration.
"""

from __future__ import annotations

import contextlib
import io
import json
import locale
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import AzureError
from requests.adapters import HTTPAdapter

import function_app
from acr_webhook import __main__ as cli
from acr_webhook.config import Settings
from acr_webhook.local.host import LocalFunctionsHost
from acr_webhook.local.timers import _utc_now, next_occurrence
from acr_webhook.reconcile import reconcile_entries
from acr_webhook.repository import create_cosmos_client, create_transport
from scripts import lock
from tests.support import payloads
from tests.support.cosmos_server import EMULATOR_KEY, REPO_ROOT
from tests.support.fakes import FakeEventRepository
from tests.support.serve import run_python

KEY = "env-key"
# Not a name ACR itself would give (its names are ASCII), but the webhook stores it, so the
# record may hold it: dotless i (not in Latin-1 nor cp1252) and an o with diaeresis.
NON_ASCII_REPOSITORY = "team/\u0131stanbul-w\u00f6rld"
PROXY_NAMES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def webhook(body: bytes) -> func.HttpResponse:
    request = func.HttpRequest("POST", "http://h/api/acr/webhook", body=body, headers={})
    response: func.HttpResponse = function_app.acr_webhook(request)
    return response


def events(**params: str) -> dict[str, Any]:
    request = func.HttpRequest("GET", "http://h/api/acr/events", body=b"", params=params)
    response = function_app.acr_events(request)
    assert response.status_code == 200, response.get_body()
    answer: dict[str, Any] = json.loads(response.get_body())
    return answer


def push_at(moment: datetime, repository: str = "team/api", tag: str = "v1") -> dict[str, Any]:
    payload = payloads.with_new_id(payloads.PUSH, repository=repository, tag=tag)
    payload["timestamp"] = moment.isoformat()
    return payload


# --- time zones -----------------------------------------------------------------------------
# Operators set TZ / WEBSITE_TIME_ZONE on Function Apps. Chatham is UTC+12:45/+13:45 and St.
# John's UTC-03:30/-02:30: a time read or written as local time is off by hours and minutes.


@pytest.fixture(params=["Pacific/Chatham", "America/St_Johns"])
def local_time_zone(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    try:
        time.tzset()
        assert time.timezone != 0  # the zone is installed: otherwise this tests nothing
        yield request.param
    finally:  # also when the zone is missing: later tests in the process run in UTC again
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("local_time_zone")
def test_stored_times_and_relative_filters_are_utc_in_any_time_zone(
    app_repository: FakeEventRepository,
) -> None:
    now = datetime.now(UTC)
    recent, old = push_at(now - timedelta(minutes=30)), push_at(now - timedelta(hours=2))
    assert webhook(payloads.body(recent)).status_code == 201
    assert webhook(payloads.body(old)).status_code == 201
    stored = app_repository.documents[recent["id"]]
    received = datetime.fromisoformat(stored["receivedAt"].replace("Z", "+00:00"))
    assert abs(received - now) < timedelta(minutes=1)  # UTC, not the wall clock read as UTC
    assert stored["timestamp"] == (now - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    assert [e["id"] for e in events(since="PT1H")["events"]] == [recent["id"]]
    naive_until = (now - timedelta(hours=1)).replace(tzinfo=None).isoformat()  # naive is UTC
    assert [e["id"] for e in events(until=naive_until)["events"]] == [old["id"]]

    first = events(limit="1")
    assert [e["id"] for e in first["events"]] == [recent["id"]]
    rest = events(limit="1", continuation=first["continuation"])
    assert [e["id"] for e in rest["events"]] == [old["id"]]


@pytest.mark.usefixtures("local_time_zone")
def test_the_timer_schedule_and_reconcile_clock_are_utc_in_any_time_zone() -> None:
    after = datetime(2026, 4, 4, 14, 0, tzinfo=UTC)  # Chatham leaves summer time at 14:45 UTC
    assert next_occurrence("0 0 3 * * *", after) == datetime(2026, 4, 5, 3, 0, tzinfo=UTC)
    assert next_occurrence("0 */5 * * * *", after) == datetime(2026, 4, 4, 14, 5, tzinfo=UTC)
    assert abs(_utc_now() - datetime.now(UTC)) < timedelta(seconds=5)
    assert _utc_now().utcoffset() == timedelta(0)

    repository = FakeEventRepository()
    entry = {"id": "h1", "eventRequestMessage": {"content": push_at(after - timedelta(hours=1))}}
    outcome = reconcile_entries([entry], repository, received_at=after, report_invalid=print)
    assert outcome.counts.recorded == 1
    (document,) = repository.documents.values()
    assert (document["timestamp"], document["receivedAt"]) == (
        "2026-04-04T13:00:00.000000Z",
        "2026-04-04T14:00:00.000000Z",
    )


@pytest.mark.usefixtures("local_time_zone")
def test_the_cli_since_duration_counts_back_from_utc_now_in_any_time_zone(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    for moment in (now - timedelta(minutes=20), now - timedelta(hours=3)):
        webhook_document(cli_reader, push_at(moment))
    assert cli.main(["events", "--since", "PT1H", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["events"]
    assert [e["timestamp"][:16] for e in listed] == [
        (now - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M")
    ]


@pytest.mark.usefixtures("local_time_zone")
def test_cli_and_serve_log_lines_are_stamped_in_utc_in_any_time_zone(
    cli_reader: FakeEventRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's times compare with stored timestamps and Application Insights (UTC): a
    local time without its offset cannot."""
    monkeypatch.setattr(logging.root, "handlers", [])  # as in a new process: basicConfig acts
    assert cli.main(["events"]) == 0
    [handler] = logging.root.handlers
    record = logging.makeLogRecord({"msg": "stored", "levelno": logging.INFO})
    record.levelname, record.name = "INFO", "acr_webhook.handlers"
    record.created, record.msecs = 1795428000.25, 250.0  # 2026-11-23T10:00:00.250Z
    assert handler.format(record) == "2026-11-23T10:00:00.250Z INFO acr_webhook.handlers: stored"


# --- consoles that are not UTF-8 ------------------------------------------------------------


@pytest.fixture
def cli_reader(monkeypatch: pytest.MonkeyPatch, app_repository: FakeEventRepository) -> Any:
    """The CLI with its settings from the environment and the fake as its Cosmos DB."""
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr(
        "acr_webhook.repository.CosmosEventRepository", lambda _settings: app_repository
    )
    return app_repository


def webhook_document(repository: FakeEventRepository, payload: dict[str, Any]) -> None:
    """Stored through the webhook route, as a client with the key would store it."""
    assert webhook(payloads.body(payload)).status_code == 201
    assert payload["id"] in repository.documents


def console(monkeypatch: pytest.MonkeyPatch, encoding: str, errors: str) -> io.BytesIO:
    """sys.stdout as Python sets it up for that console: ``LC_ALL=C PYTHONUTF8=0`` gives
    ascii/surrogateescape, ``PYTHONIOENCODING=latin-1`` latin-1/strict, a redirected stdout on
    Windows cp1252/strict."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors=errors, write_through=True)
    monkeypatch.setattr(sys, "stdout", stream)
    return raw


NON_UTF8_CONSOLES = [
    pytest.param("ascii", "surrogateescape", id="LC_ALL=C,PYTHONUTF8=0"),
    pytest.param("ascii", "strict", id="PYTHONIOENCODING=ascii"),
    pytest.param("latin-1", "strict", id="PYTHONIOENCODING=latin-1"),
    pytest.param("cp1252", "strict", id="windows-redirected"),
]


def test_a_non_ascii_filter_typed_in_the_c_locale_finds_its_events(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    """``LC_ALL=C PYTHONUTF8=0``: Python hands the CLI each non-ASCII byte of the command line
    as a lone surrogate. The filter must still be the name the operator typed."""
    payload = push_at(datetime(2026, 11, 23, 10, tzinfo=UTC), NON_ASCII_REPOSITORY)
    webhook_document(cli_reader, payload)
    as_the_c_locale_reads_it = NON_ASCII_REPOSITORY.encode().decode("ascii", "surrogateescape")
    assert cli.main(["events", "--repository", as_the_c_locale_reads_it, "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)["events"]
    assert listed["id"] == payload["id"]

    # Bytes that are not UTF-8 are refused by name, not turned into a filter matching nothing.
    not_utf8 = b"team/\xff".decode("ascii", "surrogateescape")
    assert cli.main(["events", "--repository", not_utf8]) == 2
    assert capsys.readouterr().err == "--repository: is not UTF-8 text: b'team/\\xff'\n"


@pytest.mark.parametrize("pushes", [False, True], ids=["events", "pushes"])
@pytest.mark.parametrize(("encoding", "errors"), NON_UTF8_CONSOLES)
def test_the_cli_table_prints_non_ascii_names_on_any_console(
    cli_reader: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    encoding: str,
    errors: str,
    pushes: bool,
) -> None:
    payload = push_at(datetime(2026, 11, 23, 10, tzinfo=UTC), NON_ASCII_REPOSITORY, "v1\u0131")
    webhook_document(cli_reader, payload)
    raw = console(monkeypatch, encoding, errors)
    assert cli.main(["events", *(["--pushes"] if pushes else [])]) == 0
    lines = raw.getvalue().decode(encoding, "replace").splitlines()
    assert lines[0].split()[:3] == ["TIMESTAMP", "ACTION", "REPOSITORY"]
    timestamp, action, repository = lines[1].split()[:3]
    assert (timestamp, action) == ("2026-11-23T10:00:00.000000Z", "push")
    assert repository.startswith("team/")  # the rest as the console can show it


@pytest.mark.parametrize(("encoding", "errors"), NON_UTF8_CONSOLES)
def test_the_cli_json_is_ascii_and_exact_on_any_console(
    cli_reader: FakeEventRepository, monkeypatch: pytest.MonkeyPatch, encoding: str, errors: str
) -> None:
    webhook_document(cli_reader, push_at(datetime.now(UTC), NON_ASCII_REPOSITORY))
    raw = console(monkeypatch, encoding, errors)
    assert cli.main(["events", "--json"]) == 0
    assert raw.getvalue().isascii()
    (listed,) = json.loads(raw.getvalue())["events"]
    assert listed["repository"] == NON_ASCII_REPOSITORY


def test_key_and_parameter_names_fold_the_same_in_a_turkish_locale(
    app_repository: FakeEventRepository,
) -> None:
    """In a Turkish locale C's toupper makes i an I with a dot: the route (compared in upper
    case), ``CODE`` and ``X-FUNCTIONS-KEY`` must still match (str.lower/upper ignore the
    locale). Filter names are case-sensitive by design (docs/queries.md), so not tested here.
    Where tr_TR is missing: ``localedef -i tr_TR -f UTF-8 DIR/tr_TR.UTF-8`` and LOCPATH=DIR."""
    previous = locale.setlocale(locale.LC_ALL)
    try:
        locale.setlocale(locale.LC_ALL, "tr_TR.UTF-8")
    except locale.Error:
        pytest.skip("the tr_TR.UTF-8 locale is not installed (locale -a)")
    try:
        host = LocalFunctionsHost(function_app.app, KEY)
        body = payloads.body(payloads.with_new_id(payloads.PUSH, repository="istio/pilot"))
        assert host.dispatch("POST", f"/API/ACR/WEBHOOK?CODE={KEY}", {}, body, "h").status == 201
        reply = host.dispatch(
            "GET", "/API/ACR/EVENTS?repository=istio/pilot", {"X-FUNCTIONS-KEY": KEY}, b"", "h"
        )
        assert reply.status == 200
        assert len(json.loads(reply.body)["events"]) == 1
    finally:
        locale.setlocale(locale.LC_ALL, previous)


# --- corporate machines: a proxy, a CA bundle of their own ------------------------------------

CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def what_the_cosmos_client_verifies_against(monkeypatch: pytest.MonkeyPatch) -> set[Any]:
    """What the app's Cosmos client verifies a real account's certificate against: the
    ``verify`` that each of its requests reaches requests' adapter with, after requests has
    merged in the environment (each fails there, unsent)."""
    seen: set[Any] = set()

    def send(_: HTTPAdapter, request: Any, **options: Any) -> Any:
        seen.add(options.get("verify"))
        raise requests.ConnectionError("not sent")

    monkeypatch.setattr(HTTPAdapter, "send", send)
    account = Settings(
        cosmos_endpoint="https://acct.documents.azure.com:443/",
        cosmos_key=EMULATOR_KEY,
        cosmos_database="acr",
        cosmos_container="events",
        local_function_key=None,
    )
    with contextlib.suppress(AzureError):
        create_cosmos_client(account, {"retry_total": 0, "timeout": 1})
    assert seen, "the client made no request"
    return seen


@pytest.mark.parametrize("variable", CA_BUNDLE_VARIABLES)
def test_the_cosmos_client_verifies_against_the_machines_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    for name in (*PROXY_NAMES, *CA_BUNDLE_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("")
    monkeypatch.setenv(variable, str(bundle))
    assert what_the_cosmos_client_verifies_against(monkeypatch) == {str(bundle)}


def test_with_a_proxy_the_ca_bundle_and_no_proxy_are_honoured_in_either_case(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in (*PROXY_NAMES, *CA_BUNDLE_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("no_proxy", "127.0.0.1,.documents.azure.com")
    session = create_transport().session
    for url, proxied in (
        ("https://acct.documents.azure.com:443/", False),
        ("https://127.0.0.1:8081/", False),
        ("https://login.microsoftonline.com/", True),
    ):
        merged = session.merge_environment_settings(url, {}, None, True, None)
        assert merged["verify"] == str(bundle), url
        assert (merged["proxies"].get("https") == "http://proxy.invalid:3128") is proxied, url


# --- interpreter flags and hash seeds ---------------------------------------------------------

# Drives every HTTP function through the in-memory store and prints every answer, tokens
# included (receivedAt, the one field that depends on when it runs, masked).
TRANSCRIPT = """
import json, re
import azure.functions as func
import function_app
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
fake = FakeEventRepository()
function_app.event_repository = function_app.event_reader = lambda: fake
function_app.eventgrid_repository = lambda: fake
function_app.fallback_queue = function_app.shared_secret = lambda: None
def show(response):
    body = re.sub(r'"receivedAt": "[^"]*"', '"receivedAt": "-"', response.get_body().decode())
    print(response.status_code, body)
def post(route, body, **headers):
    show(getattr(function_app, route)(func.HttpRequest("POST", "http://h/", body=body,
         headers=headers)))
for index, payload in enumerate((payloads.PUSH, payloads.DELETE, payloads.CHART_PUSH)):
    post("acr_webhook", payloads.body(dict(payload, timestamp=f"2026-11-2{index}T00:00:00Z")))
post("acr_webhook", b'{"action": "push", "id": 1, "target": {"size": -1, "digest": 2}}')
post("acr_webhook", payloads.body({**payloads.PUSH, "timestamp": "2026-11-21T00:00:00Z"}))
post("acr_eventgrid", b'[{"id": "x"}]', **{"aeg-event-type": "Notification"})
def get(**params):
    request = func.HttpRequest("GET", "http://h/", body=b"", params=params)
    response = function_app.acr_events(request)
    show(response)
    return json.loads(response.get_body())
page = get(limit="1")
get(limit="1", continuation=page["continuation"])
get(view="pushes", limit="1")
get(zeta="1", alpha="2", Beta="3", limit="x", since="y", action="z", view="w")
"""


def run_transcript(tmp_path: Path, *flags: str, **environ: str) -> tuple[str, str]:
    """The answers (stdout) and the app's log lines (stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COSMOS_", "AzureWebJobs"))}
    env.update(environ)
    result = run_python([*flags, "-c", TRANSCRIPT], tmp_path, env)
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def test_answers_and_tokens_are_the_same_under_any_hash_seed_and_interpreter_flags(
    tmp_path: Path,
) -> None:
    """``-O`` strips asserts (none may guard behaviour), ``-X dev -W error`` makes every
    warning on the product path an error, and PYTHONHASHSEED reorders every set: the answers,
    keys and continuation tokens included, must not change."""
    plain, plain_log = run_transcript(tmp_path, PYTHONHASHSEED="0")
    flagged, flagged_log = run_transcript(
        tmp_path, "-O", "-X", "dev", "-W", "error", PYTHONHASHSEED="4242"
    )
    assert (plain, plain_log) == (flagged, flagged_log)
    assert "rejected" in plain_log
    lines = plain.splitlines()
    statuses = [line.split()[0] for line in lines]
    # 3 recorded, 1 invalid, 1 duplicate, 1 invalid batch, 3 pages, 1 list of problems
    assert statuses == ["201"] * 3 + ["400", "200", "400"] + ["200"] * 3 + ["400"], plain
    assert '"continuation": "ey' in lines[6]


# --- a clone under a path with spaces and non-ASCII letters ----------------------------------


@pytest.mark.skipif(
    not (REPO_ROOT / ".venv" / ".installed").is_file()
    or not (REPO_ROOT / "node_modules" / ".installed").is_file(),
    reason="needs the bootstrapped .venv and node_modules of this clone",
)
def test_the_scripts_run_from_a_clone_whose_path_has_spaces_and_non_ascii_letters(
    tmp_path: Path,
) -> None:
    """bash -n for every script; then scripts/bootstrap, which scripts/dev, scripts/test and
    scripts/bench source first, from such a path: it finds everything installed and is done."""
    clone = tmp_path / "my clone" / "d\u00e9p\u00f4t \u0131"
    clone.mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "scripts", clone / "scripts")
    for name in (*(path.name for path in lock.FILES), "package.json", "package-lock.json"):
        shutil.copy(REPO_ROOT / name, clone / name)
    for name in (".venv", "node_modules"):
        (clone / name).symlink_to(REPO_ROOT / name)
    scripts = [clone / "scripts" / name for name in ("bootstrap", "dev", "test", "bench")]
    scripts.append(REPO_ROOT / ".ci" / "run")
    for script in scripts:
        checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, check=False)
        assert checked.returncode == 0, checked.stderr
    result = subprocess.run(
        [str(clone / "scripts" / "bootstrap")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Installing" not in result.stdout  # found, not reinstalled: the stamps matched
