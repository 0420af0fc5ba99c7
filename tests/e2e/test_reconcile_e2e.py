"""End to end: ``python -m acr_webhook reconcile --events-file FILE`` as a user runs it, on the
file ``az acr webhook list-events --output json`` writes, against the local Cosmos DB server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from acr_webhook.config import Settings
from acr_webhook.repository import provision
from tests.conftest import fresh_settings, read_all
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.history import LEAKABLE, history_entry
from tests.support.serve import ServeProcess, run_cli


def cosmos_env(settings: Settings) -> dict[str, str]:
    return {
        "COSMOS_ENDPOINT": settings.cosmos_endpoint,
        "COSMOS_KEY": settings.cosmos_key or "",
        "COSMOS_DATABASE": settings.cosmos_database,
        "COSMOS_CONTAINER": settings.cosmos_container,
    }


def write_history(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(entries, indent=2))  # az's --output json is indented too
    return path


def reconcile(events_file: Path, workdir: Path, env: dict[str, str]) -> tuple[int, str, str]:
    done = run_cli(["reconcile", "--events-file", str(events_file)], workdir, env)
    return done.returncode, done.stdout, done.stderr


def by_id(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every stored document, with its ``_etag``: a rewrite would change it."""
    return {
        document["id"]: {k: v for k, v in document.items() if k == "_etag" or k[0] != "_"}
        for document in read_all(settings)
    }


def test_an_event_sent_while_the_app_was_stopped_is_recorded_by_one_reconcile(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    served = ServeProcess(cosmos_settings, tmp_path)
    try:
        delivered = payloads.with_new_id(payloads.PUSH, repository="team/api", tag="v1")
        answer = requests.post(served.url(), data=payloads.body(delivered), timeout=10)
        assert answer.status_code == 201
    finally:
        served.stop()
    missed = payloads.with_new_id(payloads.PUSH, repository="team/api", tag="v2")
    missed_delete = payloads.with_new_id(payloads.DELETE, repository="team/web")
    broken = payloads.with_new_id(payloads.PUSH)
    del broken["target"]["repository"]
    events_file = write_history(
        tmp_path / "history.json",
        [
            history_entry(missed),  # 504: the app was not there to answer
            # ACR's history carries who pushed; the webhook delivery did not.
            history_entry({**delivered, "actor": {"name": "ci-bot"}}, status_code="201"),
            history_entry({**payloads.PUSH, "id": "ping-1", "action": "ping"}, "200"),
            history_entry(broken),
            history_entry(missed_delete),
            history_entry(missed),  # ACR's list holds it once; a concatenated file twice
        ],
    )
    env = cosmos_env(cosmos_settings)

    code, out, err = reconcile(events_file, tmp_path, env)

    assert code == 0, err
    assert out.splitlines()[-1] == "recorded=2 already=2 skipped=1 invalid=1"
    assert err.splitlines() == [
        f"invalid entry 3 (id {broken['id']!r}): "
        "eventRequestMessage.content.target.repository: Field required"
    ]
    stored = by_id(cosmos_settings)
    assert set(stored) == {delivered["id"], missed["id"], missed_delete["id"]}
    assert stored[delivered["id"]]["source"] == "webhook"
    assert stored[delivered["id"]]["actor"] == "ci-bot"  # filled in, not a second document
    for event in (missed, missed_delete):
        document = stored[event["id"]]
        assert document["source"] == "reconcile"
        assert document["repository"] == event["target"]["repository"]
        assert document["action"] == event["action"]
        assert document["receivedAt"] > stored[delivered["id"]]["receivedAt"]
    for secret in LEAKABLE:
        assert secret not in json.dumps(stored)
        assert secret not in out + err

    code, out, err = reconcile(events_file, tmp_path, env)

    assert (code, err) == (0, err)
    assert out.splitlines()[-1] == "recorded=0 already=4 skipped=1 invalid=1"
    assert by_id(cosmos_settings) == stored


def test_an_unreachable_database_stops_the_run_with_exit_1_and_the_summary(
    restartable_cosmos_server: LocalCosmosServer, tmp_path: Path
) -> None:
    settings = fresh_settings(restartable_cosmos_server)
    restartable_cosmos_server.stop()
    events_file = write_history(
        tmp_path / "history.json",
        [
            history_entry({**payloads.PUSH, "id": "ping-1", "action": "ping"}, "200"),
            history_entry(payloads.with_new_id(payloads.PUSH)),
            history_entry(payloads.with_new_id(payloads.PUSH)),
        ],
    )
    code, out, err = reconcile(events_file, tmp_path, cosmos_env(settings))

    assert code == 1
    assert out.splitlines()[-1] == "recorded=0 already=0 skipped=1 invalid=0"
    assert "is unavailable" in err
    assert "Traceback" not in err


def test_exit_2_for_a_file_that_is_not_the_az_output_or_missing_settings(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    provision(cosmos_settings)
    not_json = tmp_path / "not.json"
    not_json.write_text("recorded=1 already=0")
    an_object = write_history(tmp_path / "object.json", [])
    an_object.write_text('{"value": [], "nextLink": null}')  # the REST answer, not az's output
    env = cosmos_env(cosmos_settings)
    cases = [
        (tmp_path / "missing.json", env, "missing.json: no such file"),
        (not_json, env, "not.json: is not JSON"),
        (an_object, env, "object.json: must be a JSON array of webhook events"),
        (write_history(tmp_path / "ok.json", []), {}, "COSMOS_ENDPOINT is not set"),
    ]
    for events_file, case_env, reason in cases:
        code, out, err = reconcile(events_file, tmp_path, case_env)
        assert (code, out) == (2, ""), err
        assert len(err.splitlines()) == 1, err
        assert reason in err
    assert read_all(cosmos_settings) == []
