"""The CONTRACT blocks of issues 2 and 11, clause by clause, as a test outside the repository
checks them: ``python -m acr_webhook serve|provision|reconcile`` as processes, HTTP with
``?code=`` and ``x-functions-key``, the documents read back from the local Cosmos DB server.

This module covers the clauses nothing else pins black-box (a settings file with a byte order
mark is in tests/unit/test_config.py). The rest are pinned elsewhere and not repeated here:

- serve exits 0 on SIGINT and SIGTERM; a generated key is printed and required; a missing or
  wrong key is 401; the key by ``?code=`` or ``x-functions-key``; no COSMOS_ENDPOINT is exit 2;
  every recorded action 201, a duplicate push 200; another action 202 and the bad-input classes
  400/413 with nothing written; 503 within 4.5 s for a frozen or stopped database and the next
  event stored without a restart: test_webhook_e2e.py. With the fallback queue configured (as
  local.settings.sample.json does) an outage is 202 instead, and 503 only with the queue down
  too: test_reliability_e2e.py (the README's "Answers" table says so).
- provision: partition key ``/repository``, twice, exit 0: test_provision_e2e.py.
- reconcile: the summary as the last line, recorded/already/skipped/invalid, an id repeated in
  FILE, ``actor`` filled in on a stored event, exit 1 with the summary, exit 2 for a missing
  file, not JSON, not an array, no COSMOS_ENDPOINT: test_reconcile_e2e.py.
- how settings merge (file under environment, defaults): tests/unit/test_config.py, in process.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from acr_webhook.config import DEFAULT_CONTAINER, DEFAULT_DATABASE, Settings
from acr_webhook.models import ENRICHMENT_FIELDS
from acr_webhook.repository import provision, without_system_fields
from tests.conftest import container_for, fresh_settings
from tests.e2e.test_reconcile_e2e import cosmos_env, reconcile, write_history
from tests.support import payloads
from tests.support.cosmos_server import EMULATOR_KEY, LocalCosmosServer
from tests.support.history import history_entry
from tests.support.serve import ServeProcess, post_json, run_cli

# What the contract lets a test leave unset: everything but COSMOS_ENDPOINT.
OPTIONAL_SETTINGS = ("COSMOS_KEY", "COSMOS_DATABASE", "COSMOS_CONTAINER", "LOCAL_FUNCTION_KEY")
# "a body over 1 MiB (413)": the contract's figure, not the app's constant.
ONE_MIB = 1024 * 1024
# A database restarted this soon after a 503 is back while the app still remembers the
# failure (5 s today); slower than this, the next event cannot show the difference.
BACK_WITHIN_S = 4.0
# The README's stored form of an ISO 8601 UTC time: fixed width, microseconds, "Z".
STORED_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
# The receiving process's clock against this one's, and a request's own time: a bound, not a
# timing assertion (both are this machine's clock).
CLOCK_SLACK = timedelta(seconds=5)


def utc(text: str) -> datetime:
    """An ISO 8601 time (any number of fractional digits, an offset or Z) in UTC."""
    return datetime.fromisoformat(text).astimezone(UTC)


def stored_utc(value: object) -> datetime:
    """A stored time, checked to be an ISO 8601 UTC string, as a datetime."""
    assert isinstance(value, str) and STORED_UTC.fullmatch(value), value
    return utc(value)


# One client per container for the module: building one costs more than a read.
container_of = functools.cache(container_for)


def documents(settings: Settings) -> dict[str, dict[str, Any]]:
    """The stored documents by id, without Cosmos DB's own ``_`` fields."""
    return {d["id"]: without_system_fields(d) for d in container_of(settings).read_all_items()}


def assert_contract_document(
    document: dict[str, Any], payload: dict[str, Any], sent: datetime, answered: datetime
) -> None:
    """Issue 2's point 4 and issue 11's new fields, for an event the webhook route stored."""
    target, request = payload["target"], payload.get("request")
    assert document["id"] == payload["id"]
    assert document["action"] == payload["action"]
    assert document["repository"] == target["repository"]
    if target.get("tag"):
        assert document["tag"] == target["tag"]
    else:
        assert document["tag"] in ("", None)  # pushed by digest
    assert document["digest"] == target.get("digest")
    assert document["mediaType"] == target.get("mediaType")
    if "size" in target:
        assert type(document["size"]) is int
        assert document["size"] == target["size"]
    assert abs(stored_utc(document["timestamp"]) - utc(payload["timestamp"])) <= timedelta(
        microseconds=1
    )
    assert document["registry"] == (request["host"] if request else None)
    assert sent - CLOCK_SLACK <= stored_utc(document["receivedAt"]) <= answered + CLOCK_SLACK
    assert document["source"] == "webhook"
    assert {name: document[name] for name in ENRICHMENT_FIELDS} == dict.fromkeys(ENRICHMENT_FIELDS)


# --- settings: local.settings.json, the environment, defaults --------------------------------


def settings_file(workdir: Path, values: dict[str, str]) -> None:
    document = {"IsEncrypted": False, "Values": values}
    (workdir / "local.settings.json").write_text(json.dumps(document))


def test_every_command_reads_local_settings_json_the_environment_wins_and_defaults_apply(
    cosmos_server: LocalCosmosServer, tmp_path: Path, refusing_port: Callable[[], int]
) -> None:
    """The file gives the key, the function key and an endpoint where nothing listens; the
    environment gives only the real endpoint, which must win; database and container are set
    nowhere, so they are ``acr`` and ``events``. provision, serve and reconcile alike."""
    settings_file(
        tmp_path,
        {
            "COSMOS_ENDPOINT": f"https://127.0.0.1:{refusing_port()}/",
            "COSMOS_KEY": EMULATOR_KEY,
            "LOCAL_FUNCTION_KEY": "key-from-the-file",
        },
    )
    environment = {"COSMOS_ENDPOINT": cosmos_server.endpoint}
    provisioned = run_cli(["provision"], tmp_path, environment)
    assert provisioned.returncode == 0, provisioned.stderr
    defaults = Settings(
        cosmos_server.endpoint, EMULATOR_KEY, DEFAULT_DATABASE, DEFAULT_CONTAINER, None
    )
    assert (DEFAULT_DATABASE, DEFAULT_CONTAINER) == ("acr", "events")
    container = container_of(defaults)
    assert container.read()["partitionKey"]["paths"] == ["/repository"]

    repository = f"contract/{uuid.uuid4()}"
    by_history = payloads.with_new_id(payloads.DELETE, repository=repository)
    events_file = write_history(tmp_path / "history.json", [history_entry(by_history)])
    with ThreadPoolExecutor(1) as meanwhile:  # the two processes start at the same time
        reconciled = meanwhile.submit(reconcile, events_file, tmp_path, environment)
        served = ServeProcess(
            Settings(cosmos_server.endpoint, None, "", "", None),
            tmp_path,
            function_key=None,
            unset=OPTIONAL_SETTINGS,
        )
        try:
            assert served.key == "key-from-the-file"
            assert "generated" not in served.banner
            by_webhook = payloads.with_new_id(payloads.PUSH, repository=repository)
            assert post_json(served.url(), payloads.body(by_webhook)).status_code == 201
            ping = post_json(
                f"{served.base_url}/api/acr/webhook",
                b'{"action": "ping"}',
                **{"x-functions-key": "key-from-the-file"},
            )
            assert ping.status_code == 204
        finally:
            stopped = served.stop(signal.SIGINT)
        code, out, err = reconciled.result()
    assert stopped == 0
    assert "Traceback" not in served.output()
    assert (code, out.splitlines()[-1]) == (0, "recorded=1 already=0 skipped=0 invalid=0"), err

    stored = container.query_items(
        "SELECT c.id, c.source FROM c WHERE c.repository = @repository",
        parameters=[{"name": "@repository", "value": repository}],
        partition_key=repository,
    )
    assert {d["id"]: d["source"] for d in stored} == {
        by_webhook["id"]: "webhook",
        by_history["id"]: "reconcile",
    }


def test_a_key_set_by_hand_works_in_the_printed_url_as_printed(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    """A LOCAL_FUNCTION_KEY with "+", "&", "#" and a space was printed raw in ?code=: the URL
    as printed was a 401 (or cut at the "#")."""
    key = "a+b&c#d e/f%"
    served = ServeProcess(cosmos_settings, tmp_path, function_key=key)
    try:
        [printed_url] = re.findall(r"\bPOST (http://\S+/api/acr/webhook\?code=\S+)", served.banner)
        answer = post_json(printed_url, b'{"action": "ping"}')
        assert (answer.status_code, answer.content) == (204, b"")
    finally:
        served.stop()


def test_only_the_endpoint_set_serve_prints_a_usable_key_and_answers_503_json(
    tmp_path: Path, refusing_port: Callable[[], int]
) -> None:
    """COSMOS_KEY is optional (Microsoft Entra ID then); LOCAL_FUNCTION_KEY unset gives a
    printed key that works as printed, in the URL and in the header. The database is
    unreachable, so a recorded event is a 503 with a JSON error (its 4.5 s bound is pinned with
    a key in test_webhook_e2e.py: here the time depends on which credentials this machine
    has)."""
    nowhere = Settings(f"https://127.0.0.1:{refusing_port()}/", None, "", "", None)
    served = ServeProcess(nowhere, tmp_path, function_key=None, unset=OPTIONAL_SETTINGS)
    try:
        assert "generated key" in served.banner
        [printed_url] = re.findall(r"\bPOST (http://\S+/api/acr/webhook\?code=\S+)", served.banner)
        answer = post_json(printed_url, b'{"action": "ping"}')
        assert (answer.status_code, answer.content) == (204, b"")
        by_header = post_json(
            f"{served.base_url}/api/acr/webhook",
            b'{"action": "ping"}',
            **{"x-functions-key": served.key},
        )
        assert by_header.status_code == 204

        answer = post_json(printed_url, payloads.body(payloads.with_new_id(payloads.PUSH)))
        assert answer.status_code == 503
        assert answer.headers["Content-Type"].startswith("application/json")
        assert isinstance(answer.json()["error"], str) and answer.json()["error"]
    finally:
        stopped = served.stop()
    assert stopped == 0


def test_the_next_event_once_the_database_is_back_is_stored(
    restartable_cosmos_server: LocalCosmosServer, tmp_path: Path
) -> None:
    """The database stopped, then started and provisioned again ~1.1 s after a 503: the next
    events were 503 as well (in 0.02 s, from the remembered failure) until 5 s after it
    (UNAVAILABLE_MEMORY_S). A refused connection costs milliseconds and is not remembered."""
    settings = fresh_settings(restartable_cosmos_server)
    served = ServeProcess(settings, tmp_path)
    try:
        assert post_json(served.url(), payloads.body(payloads.PUSH)).status_code == 201
        restartable_cosmos_server.stop()
        refused = post_json(served.url(), payloads.body(payloads.with_new_id(payloads.PUSH)))
        assert refused.status_code == 503
        failed_at = time.monotonic()
        restartable_cosmos_server.start()
        provision(settings)  # the local server keeps nothing across a restart
        if time.monotonic() - failed_at > BACK_WITHIN_S:
            pytest.skip("the database took too long to come back to tell the next event apart")
        following = payloads.with_new_id(payloads.PUSH)
        answer = post_json(served.url(), payloads.body(following))
        assert answer.status_code == 201, answer.text
        assert following["id"] in documents(settings)
    finally:
        served.stop()


# --- POST /api/acr/webhook: one host (served_per_module) for the rest of the module ---------


def test_ping_is_204_with_an_empty_body_and_writes_nothing(
    served_per_module: tuple[ServeProcess, Settings],
) -> None:
    served, settings = served_per_module
    before = documents(settings)
    for body in (b'{"action": "ping"}', payloads.body({**payloads.PUSH, "action": "ping"})):
        answer = post_json(served.url(), body)
        assert (answer.status_code, answer.content) == (204, b"")
    assert documents(settings) == before


@pytest.mark.parametrize("name", sorted(payloads.RECORDED))
def test_each_recorded_action_is_201_then_200_one_document_with_the_contract_fields(
    served_per_module: tuple[ServeProcess, Settings], name: str
) -> None:
    served, settings = served_per_module
    event = payloads.with_new_id(payloads.RECORDED[name])
    sent = datetime.now(UTC)
    first = post_json(served.url(), payloads.body(event))
    answered = datetime.now(UTC)
    assert first.status_code == 201, first.text
    stored = documents(settings)
    assert_contract_document(stored[event["id"]], event, sent, answered)

    again = post_json(served.url(), payloads.body(event))
    assert again.status_code == 200, again.text
    assert documents(settings) == stored  # no second document, the first one untouched


@pytest.mark.parametrize(
    ("sent_as", "stored_as"),
    [
        # Seven and nine fractional digits, as ACR writes them; the seventh is below 5, so the
        # microseconds are the same whether they are cut or rounded.
        ("2026-11-23T18:52:01.1234564+02:00", "2026-11-23T16:52:01.123456Z"),
        ("2026-11-23T16:52:01.123456489Z", "2026-11-23T16:52:01.123456Z"),
        ("2026-11-23T11:52:01-05:00", "2026-11-23T16:52:01.000000Z"),
    ],
)
def test_the_timestamp_is_the_events_own_time_in_utc(
    served_per_module: tuple[ServeProcess, Settings], sent_as: str, stored_as: str
) -> None:
    served, settings = served_per_module
    event = {**payloads.with_new_id(payloads.PUSH), "timestamp": sent_as}
    assert post_json(served.url(), payloads.body(event)).status_code == 201
    stored = documents(settings)[event["id"]]["timestamp"]
    assert stored_utc(stored) == utc(stored_as)
    assert stored == stored_as


def without(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """A copy of ``payload`` with a fresh id and the field at the dotted ``path`` removed."""
    copy = payloads.with_new_id(payload)
    *parents, last = path.split(".")
    node = copy
    for key in parents:
        node = node[key]
    del node[last]
    return copy


@pytest.mark.parametrize("action", ["push", "delete", "chart_push", "chart_delete", "quarantine"])
def test_a_recorded_action_with_a_missing_or_ill_typed_field_is_400_and_writes_nothing(
    served_per_module: tuple[ServeProcess, Settings], action: str
) -> None:
    served, settings = served_per_module
    event = payloads.RECORDED[action]
    broken = [
        (without(event, "id"), "id"),
        (without(event, "target.repository"), "target.repository"),
        (without(event, "target"), "target"),
        (without(event, "timestamp"), "timestamp"),
        ({**payloads.with_new_id(event), "target": "hello-world"}, "target"),
        ({**payloads.with_new_id(event), "id": 42}, "id"),
    ]
    before = documents(settings)
    for body, field in broken:
        answer = post_json(served.url(), payloads.body(body))
        assert answer.status_code == 400, (field, answer.text)
        assert answer.json()["error"].startswith(f"{field}: "), answer.text
    assert documents(settings) == before


def test_a_body_of_1_mib_is_taken_and_one_byte_more_is_413(
    served_per_module: tuple[ServeProcess, Settings],
) -> None:
    served, settings = served_per_module
    taken = payloads.with_new_id(payloads.PUSH)
    answer = post_json(served.url(), payloads.padded_body(taken, ONE_MIB))
    assert answer.status_code == 201, answer.text
    refused = payloads.with_new_id(payloads.PUSH)
    answer = post_json(served.url(), payloads.padded_body(refused, ONE_MIB + 1))
    assert answer.status_code == 413
    assert answer.json()["error"]
    stored = documents(settings)
    assert taken["id"] in stored
    assert refused["id"] not in stored


def test_a_body_with_nan_or_infinity_is_invalid_json(
    served_per_module: tuple[ServeProcess, Settings],
) -> None:
    """NaN, Infinity and -Infinity are not JSON (RFC 8259), but both of the webhook's parsers
    took them (pydantic-core's and json.loads): a push with an extra field NaN was 201 and
    stored, a ping with Infinity 204, another action with -Infinity 202."""
    served, settings = served_per_module
    event = payloads.with_new_id(payloads.PUSH)
    for body in (
        payloads.body(event)[:-1] + b', "x": NaN}',
        b'{"action": "ping", "x": Infinity}',
        b'{"action": "artifact_signed", "x": -Infinity}',
    ):
        answer = post_json(served.url(), body)
        assert answer.status_code == 400, (body[-30:], answer.status_code)
        assert answer.json()["error"]
    assert event["id"] not in documents(settings)


# --- reconcile --events-file -------------------------------------------------------------------


def enriched(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with a fresh id and what ACR's history may carry beyond the webhook's."""
    event = payloads.with_new_id(payload)
    event.update(
        actor={"name": "ci-bot"}, location="westeurope", connectedRegistry={"name": "edge01"}
    )
    if "request" in event:
        event["request"]["addr"] = "203.0.113.7:51234"
    return event


# The attributes of the management SDK's Target and Request models (EventContent's parts).
SDK_TARGET = (
    "mediaType",
    "size",
    "digest",
    "length",
    "repository",
    "url",
    "tag",
    "name",
    "version",
)
SDK_REQUEST = ("id", "addr", "host", "method", "useragent")


def as_az_prints_it(payload: dict[str, Any]) -> dict[str, Any]:
    """A history entry for ``payload`` as ``az acr webhook list-events --output json`` prints
    it: the SDK's models with every attribute, null where ACR sent none, and the time as
    Python's isoformat (an offset, microseconds)."""
    target, request = payload["target"], payload["request"]
    content = {
        "id": payload["id"],
        "timestamp": utc(payload["timestamp"]).isoformat(),
        "action": payload["action"],
        "target": {
            **dict.fromkeys(SDK_TARGET),
            **{k: v for k, v in target.items() if v not in ("", None)},
        },
        "request": {**dict.fromkeys(SDK_REQUEST), **request},
        "actor": {"name": None},
        "source": {"addr": None, "instanceId": None},
    }
    entry = history_entry(content)
    entry["eventResponseMessage"].update(content=None, reasonPhrase=None)
    return entry


def test_reconcile_stores_what_the_webhook_route_would_and_reports_every_entry(
    served_per_module: tuple[ServeProcess, Settings], tmp_path: Path
) -> None:
    served, settings = served_per_module
    actions = ["push", "delete", "chart_push", "chart_delete", "quarantine"]
    # The same content each action's way: once by the webhook route, once from the history.
    twins = {action: enriched(payloads.RECORDED[action]) for action in actions}
    missed = {action: enriched(payloads.RECORDED[action]) for action in actions}
    for event in twins.values():
        assert post_json(served.url(), payloads.body(event)).status_code == 201
    by_az = payloads.with_new_id(payloads.PUSH_BY_DIGEST_OCI)
    delivered = payloads.with_new_id(payloads.PUSH)  # stored before, without who pushed
    assert post_json(served.url(), payloads.body(delivered)).status_code == 201
    before = documents(settings)

    bad_id = {**payloads.with_new_id(payloads.PUSH), "id": "a/b"}
    no_action = payloads.with_new_id(payloads.PUSH)
    del no_action["action"]
    no_message = history_entry(payloads.with_new_id(payloads.PUSH))
    del no_message["eventRequestMessage"]
    entries = [
        history_entry({**payloads.with_new_id(payloads.PUSH), "action": "ping"}, "200"),
        history_entry({**payloads.with_new_id(payloads.PUSH), "action": "artifact_signed"}),
        no_message,
        history_entry(42),
        history_entry(no_action),
        history_entry(without(payloads.PUSH, "target.repository")),
        history_entry(bad_id),
        history_entry({**delivered, "actor": {"name": "ci-bot"}}, "201"),
        *(history_entry(event) for event in missed.values()),
        as_az_prints_it(by_az),
    ]
    events_file = write_history(tmp_path / "history.json", entries)

    started = datetime.now(UTC)
    code, out, err = reconcile(events_file, tmp_path, cosmos_env(settings))
    finished = datetime.now(UTC)

    assert code == 0, err
    assert out.splitlines()[-1] == "recorded=6 already=1 skipped=2 invalid=5"
    assert [line.split(" ", 3)[:3] for line in err.splitlines()] == [
        ["invalid", "entry", str(index)] for index in (2, 3, 4, 5, 6)
    ], err
    stored = documents(settings)
    assert set(stored) - set(before) == {by_az["id"], *(event["id"] for event in missed.values())}
    assert stored[by_az["id"]]["timestamp"] == "2024-05-02T08:15:42.123456Z"
    assert (stored[by_az["id"]]["tag"], stored[by_az["id"]]["actor"]) == (None, None)
    for action in actions:
        by_history, by_webhook = stored[missed[action]["id"]], stored[twins[action]["id"]]
        assert by_history["source"] == "reconcile"
        assert (
            started - CLOCK_SLACK <= stored_utc(by_history["receivedAt"]) <= finished + CLOCK_SLACK
        )
        assert by_history["actor"] == "ci-bot"
        assert by_history["location"] == "westeurope"
        assert by_history["connectedRegistry"] == "edge01"
        carried = "request" in missed[action]
        assert by_history["clientAddress"] == ("203.0.113.7:51234" if carried else None)
        mine = {k: v for k, v in by_history.items() if k not in ("id", "source", "receivedAt")}
        theirs = {k: v for k, v in by_webhook.items() if k not in ("id", "source", "receivedAt")}
        assert mine == theirs
    # Already stored: counted once as such, who pushed filled in, nothing else changed.
    assert stored[delivered["id"]] == {**before[delivered["id"]], "actor": "ci-bot"}
    # The path that stored an event first stays its source when the webhook delivers it late.
    late = post_json(served.url(), payloads.body(missed["push"]))
    assert late.status_code == 200
    assert documents(settings)[missed["push"]["id"]]["source"] == "reconcile"


def test_reconcile_of_a_file_that_cannot_be_read_is_exit_2_in_one_line(
    served_per_module: tuple[ServeProcess, Settings], tmp_path: Path
) -> None:
    _, settings = served_per_module
    unreadable = tmp_path / "a-directory.json"
    unreadable.mkdir()
    code, out, err = reconcile(unreadable, tmp_path, cosmos_env(settings))
    assert (code, out) == (2, ""), err
    [line] = err.splitlines()
    assert "a-directory.json" in line
    assert "Traceback" not in err


def test_reconcile_into_a_container_that_does_not_exist_is_exit_2_naming_it(
    served_per_module: tuple[ServeProcess, Settings], tmp_path: Path
) -> None:
    """A COSMOS_CONTAINER that does not exist (a typo, or provision not run) was exit 1, "run
    reconcile again when it is back", though the database answered and a rerun cannot help;
    exit 1 is for a database that became unreachable."""
    _, settings = served_per_module
    missing = dataclasses.replace(settings, cosmos_container=f"missing-{uuid.uuid4().hex[:8]}")
    events_file = write_history(
        tmp_path / "history.json", [history_entry(payloads.with_new_id(payloads.PUSH))]
    )
    code, _, err = reconcile(events_file, tmp_path, cosmos_env(missing))
    assert code == 2, err
    assert missing.cosmos_container in err.splitlines()[-1]
    assert "Traceback" not in err
