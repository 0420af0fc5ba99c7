"""The deployed package as Azure runs it, against the local Cosmos DB server: on Flex
Consumption the package is mounted read-only (run from package), the worker's cwd is not the
app directory, operators set a time zone, and the locale, HOME and proxy variables are whatever
the machine has. Nothing here may write under the app directory or depend on the cwd."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acr_webhook.config import Settings
from acr_webhook.models import AcrEvent, EventQuery, to_document
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.results import utc_now
from tests.conftest import read_all
from tests.support import payloads
from tests.support.cosmos_server import REPO_ROOT
from tests.support.publish import core_tools_ships
from tests.support.repository import tracked_files
from tests.support.serve import app_environment

NON_ASCII_REPOSITORY = "team/\u0131stanbul-w\u00f6rld"

# Calls each function function_app registers, as the worker would, and prints the answers as
# JSON on its last line. Runs from the deployed copy alone (PYTHONPATH is that copy).
DRIVER = r"""
import json, logging, sys
logging.basicConfig(level=logging.INFO)  # the worker sends INFO on to the host
import azure.functions as func
from azure.functions.timer import TimerRequest
import function_app
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.results import utc_now
push, grid_event, parked_payload = json.loads(sys.argv[1])
answers = {}
def call(name, request):
    response = getattr(function_app, name)(request)
    answers.setdefault(name, []).append([response.status_code, response.get_body().decode()])
call("acr_webhook", func.HttpRequest("POST", "http://h/api/acr/webhook",
                                     body=json.dumps(push).encode(), headers={}))
call("acr_webhook", func.HttpRequest("POST", "http://h/api/acr/webhook",
                                     body=json.dumps(push).encode(), headers={}))
call("acr_eventgrid", func.HttpRequest("POST", "http://h/api/acr/eventgrid",
                                       body=json.dumps([grid_event]).encode(),
                                       headers={"aeg-event-type": "Notification"}))
parked = to_document(AcrEvent.model_validate(parked_payload), utc_now())
function_app.replay_fallback(func.QueueMessage(
    body=json.dumps({"document": parked, "attempts": 1}).encode()))
for params in ({"since": "PT1H"}, {"repository": push["target"]["repository"]}):
    call("acr_events", func.HttpRequest("GET", "http://h/api/acr/events", body=b"",
                                        params=params))
function_app.reconcile_history(TimerRequest())
print(json.dumps(answers))
"""


def deployed_files() -> list[str]:
    """The tracked files `func azure functionapp publish` uploads, by Core Tools' own rules."""
    return core_tools_ships(list(tracked_files()), (REPO_ROOT / ".funcignore").read_text())


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file (size, time written) and directory under ``root`` but the interpreter's own
    __pycache__ (whose creation changes its directory's time, so directories count by name)."""
    found = {}
    for path in root.rglob("*"):
        if "__pycache__" not in path.parts:
            info = path.lstat()
            written = (0, 0) if path.is_dir() else (info.st_size, info.st_mtime_ns)
            found[str(path.relative_to(root))] = written
    return found


@pytest.fixture
def read_only_package(tmp_path: Path) -> Iterator[Path]:
    package = tmp_path / "wwwroot"
    for name in deployed_files():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, package / name)
    assert (package / "function_app.py").is_file() and (package / "host.json").is_file()
    assert not (package / "acr_webhook" / "local").exists()
    for path in [package, *package.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield package
    for path in [package, *package.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def operator_environment(settings: Settings, package: Path, proxy_port: int) -> dict[str, str]:
    """What an operator's Function App or machine may have: a time zone far from UTC, the C
    locale without UTF-8 mode, no HOME, a corporate proxy that loopback bypasses (the lowercase
    spelling), the bytecode cache allowed; the deployed copy alone on the path."""
    env = app_environment(settings, "PYTHON", "LC_", "LANG", "HOME", "TZ", "no_proxy", "NO_PROXY")
    env.update(
        PYTHONPATH=str(package),
        TZ="Pacific/Chatham",
        LC_ALL="C",
        PYTHONUTF8="0",
        HTTPS_PROXY=f"http://127.0.0.1:{proxy_port}",  # nothing listens: used, it fails
        no_proxy="127.0.0.1,localhost",
    )
    return env


def test_the_deployed_package_runs_read_only_from_another_cwd_in_an_operators_environment(
    cosmos_settings: Settings,
    read_only_package: Path,
    tmp_path: Path,
    refusing_port: Callable[[], int],
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    now = datetime.now(UTC)
    push = payloads.with_new_id(payloads.PUSH, repository=NON_ASCII_REPOSITORY)
    push["timestamp"] = (now - timedelta(minutes=10)).astimezone().isoformat()  # local offset
    grid_data = payloads.with_new_id(payloads.PUSH, repository="team/grid")
    grid_data["timestamp"] = now.isoformat()
    grid_event = {
        "id": "grid-delivery-1",
        "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry"
        "/registries/r",
        "subject": "team/grid:v1",
        "eventType": "Microsoft.ContainerRegistry.ImagePushed",
        "eventTime": now.isoformat(),
        "dataVersion": "1.0",
        "data": grid_data,
    }
    parked = payloads.with_new_id(payloads.PUSH, repository="team/parked")
    parked["timestamp"] = (now - timedelta(minutes=5)).isoformat()
    before, before_cwd = snapshot(read_only_package), snapshot(elsewhere)

    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-W",
            "error",
            "-c",
            DRIVER,
            json.dumps([push, grid_event, parked]),
        ],
        cwd=elsewhere,
        env=operator_environment(cosmos_settings, read_only_package, refusing_port()),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.splitlines()[-1])
    assert [status for status, _ in answers["acr_webhook"]] == [201, 200]
    assert answers["acr_eventgrid"][0][0] == 200
    assert json.loads(answers["acr_eventgrid"][0][1])["recorded"] == 1
    for status, body in answers["acr_events"]:
        assert status == 200, body
    recent = {e["id"] for e in json.loads(answers["acr_events"][0][1])["events"]}
    assert recent == {push["id"], grid_data["id"], parked["id"]}
    (listed,) = json.loads(answers["acr_events"][1][1])["events"]
    assert listed["repository"] == NON_ASCII_REPOSITORY
    # The log lines survive an ASCII stderr; the non-ASCII name comes out escaped.
    assert "repository='team/\\u0131stanbul-w\\xf6rld' recorded" in result.stderr
    assert "reconcile is not configured" in result.stderr

    stored = {d["id"]: d for d in read_all(cosmos_settings)}
    assert set(stored) == recent
    assert stored[push["id"]]["timestamp"] == (now - timedelta(minutes=10)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    for document in stored.values():  # received now in UTC, not now on Chatham's clock
        received = datetime.fromisoformat(document["receivedAt"].replace("Z", "+00:00"))
        assert abs(received - now) < timedelta(minutes=2), document

    # Nothing written where the package is (no temp file, cache, settings file or log) nor
    # in the cwd; the interpreter's __pycache__ aside (it cannot write it on Azure's mount).
    assert snapshot(read_only_package) == before
    assert snapshot(elsewhere) == before_cwd


def test_the_events_cli_answers_in_the_c_locale_from_the_read_only_package(
    cosmos_settings: Settings,
    read_only_package: Path,
    tmp_path: Path,
    refusing_port: Callable[[], int],
) -> None:
    payload = payloads.with_new_id(payloads.PUSH, repository=NON_ASCII_REPOSITORY)
    CosmosEventRepository(cosmos_settings).add(
        to_document(AcrEvent.model_validate(payload), utc_now())
    )
    env = operator_environment(cosmos_settings, read_only_package, refusing_port())
    result = subprocess.run(
        [sys.executable, "-m", "acr_webhook", "events"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode("ascii", "replace")[-400:]
    header, row = result.stdout.decode("ascii").splitlines()[:2]
    assert header.split()[:3] == ["TIMESTAMP", "ACTION", "REPOSITORY"]
    assert row.split()[2].startswith("team/")


@pytest.mark.parametrize(
    "bypass",
    [
        {"NO_PROXY": "127.0.0.1"},
        {"no_proxy": "localhost,127.0.0.1"},
        {"no_proxy": "127.0.0.0/8"},
    ],
    ids=["NO_PROXY", "no_proxy", "cidr"],
)
def test_a_corporate_proxy_with_loopback_bypassed_leaves_the_local_database_reachable(
    cosmos_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    bypass: dict[str, str],
    refusing_port: Callable[[], int],
) -> None:
    for name in ("NO_PROXY", "no_proxy", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{refusing_port()}")  # nothing listens
    for name, value in bypass.items():
        monkeypatch.setenv(name, value)
    repository = CosmosEventRepository(cosmos_settings)
    document = to_document(AcrEvent.model_validate(payloads.with_new_id(payloads.PUSH)), utc_now())
    assert repository.add(document) is True
    found = repository.find_events(EventQuery(repository=document["repository"]), 10)
    assert [event["id"] for event in found] == [document["id"]]
