"""Outages and the shared secret, end to end: serve + local Cosmos DB server + Azurite.

Nothing is lost: when Cosmos DB stops or freezes, events go to the fallback queue (202) and
the queue trigger writes them once it is back; only when the queue is down too is it 503.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from acr_webhook.config import FALLBACK_QUEUE_NAME, QueueSettings, Settings
from acr_webhook.fallback import create_queue_client, provision_queue
from acr_webhook.repository import provision
from tests.conftest import fresh_settings, read_all
from tests.support import payloads
from tests.support.azurite import LocalAzurite
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.serve import ServeProcess

# Loads the machine and holds time bounds: takes turns with the other such tests.
pytestmark = pytest.mark.usefixtures("machine_to_itself")

ANSWER_BUDGET_S = 4.5
SECRET = "e2e-shared-secret"
# Test-sized replay cap (production: 60 s), the same code path. After the database is back,
# a parked event is stored within the cap, plus host.json's 2 s polling interval, plus the
# 5 s the writers remember a failure.
REPLAY_CAP_S = 4
STORED_AFTER_THAW_S = REPLAY_CAP_S + 2 + 5
# Longer than the poison window before issue 10 (5 tries 5 s apart, ~30 s), and long enough
# for each event's replay to fail more often than maxDequeueCount (5) allows, at the 4 s cap.
LONG_OUTAGE_S = 40


@pytest.fixture
def storage(restartable_azurite: LocalAzurite) -> dict[str, str]:
    provision_queue(QueueSettings(FALLBACK_QUEUE_NAME, restartable_azurite.connection_string))
    return {"AzureWebJobsStorage": restartable_azurite.connection_string}


@pytest.fixture
def database(restartable_cosmos_server: LocalCosmosServer) -> Settings:
    return fresh_settings(restartable_cosmos_server)


@pytest.fixture
def served(database: Settings, storage: dict[str, str], tmp_path: Path) -> Iterator[ServeProcess]:
    process = ServeProcess(
        database, tmp_path, extra_env={**storage, "REPLAY_MAX_DELAY_SECONDS": str(REPLAY_CAP_S)}
    )
    yield process
    process.stop()


def poison_messages(storage: dict[str, str]) -> int:
    poison = QueueSettings(f"{FALLBACK_QUEUE_NAME}-poison", storage["AzureWebJobsStorage"])
    count = create_queue_client(poison, {}).get_queue_properties().approximate_message_count
    assert count is not None
    return count


def timed_push(process: ServeProcess) -> tuple[dict[str, object], int, float]:
    event = payloads.with_new_id(payloads.PUSH)
    started = time.monotonic()
    answer = requests.post(process.url(), data=payloads.body(event), timeout=10)
    return event, answer.status_code, time.monotonic() - started


def wait_for_ids(settings: Settings, expected: set[str], seconds: float = 30) -> list[str]:
    """The stored ids once every expected one is there (the replay runs in the background)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            stored = [str(d["id"]) for d in read_all(settings)]
        except Exception:  # the server may still be coming back
            stored = []
        if expected <= set(stored) or time.monotonic() > deadline:
            return stored
        time.sleep(0.25)


def test_stopped_database_queues_events_and_replays_them_exactly_once(
    served: ServeProcess, database: Settings, restartable_cosmos_server: LocalCosmosServer
) -> None:
    before, status, _ = timed_push(served)
    assert status == 201
    restartable_cosmos_server.stop()
    queued = []
    for _ in range(5):
        event, status, elapsed = timed_push(served)
        assert status == 202
        assert elapsed < ANSWER_BUDGET_S
        queued.append(str(event["id"]))

    restartable_cosmos_server.start()  # the in-memory server comes back empty: re-provision
    provision(database)
    stored = wait_for_ids(database, set(queued))
    assert sorted(stored) == sorted(queued)  # each queued event exactly once
    assert str(before["id"]) not in stored  # (lost with the in-memory server, not by the app)


def test_frozen_database_queues_events_and_none_is_stored_twice(
    served: ServeProcess, database: Settings, restartable_cosmos_server: LocalCosmosServer
) -> None:
    first, status, _ = timed_push(served)
    assert status == 201
    restartable_cosmos_server.freeze()
    queued = []
    try:
        for _ in range(3):
            event, status, elapsed = timed_push(served)
            assert status == 202
            assert elapsed < ANSWER_BUDGET_S
            queued.append(str(event["id"]))
    finally:
        restartable_cosmos_server.thaw()
    # A frozen server may still apply writes it had received; the replay then finds them
    # (409) and stores nothing twice.
    expected = {str(first["id"]), *queued}
    stored = wait_for_ids(database, expected)
    assert sorted(stored) == sorted(expected)


def test_an_outage_longer_than_the_old_poison_window_loses_nothing(
    served: ServeProcess,
    database: Settings,
    storage: dict[str, str],
    restartable_cosmos_server: LocalCosmosServer,
) -> None:
    """Issue 10: frozen for 60 s, 3 events answered 202 all ended in the poison queue."""
    restartable_cosmos_server.freeze()
    frozen_at = time.monotonic()
    queued = []
    try:
        for _ in range(3):
            event, status, elapsed = timed_push(served)
            assert (status, elapsed < ANSWER_BUDGET_S) == (202, True)
            queued.append(str(event["id"]))
        time.sleep(max(0.0, LONG_OUTAGE_S - (time.monotonic() - frozen_at)))
        assert poison_messages(storage) == 0
    finally:
        restartable_cosmos_server.thaw()
    thawed_at = time.monotonic()
    stored = wait_for_ids(database, set(queued), seconds=STORED_AFTER_THAW_S + 10)
    assert sorted(stored) == sorted(queued)  # every event, exactly once
    assert time.monotonic() - thawed_at < STORED_AFTER_THAW_S + 2
    assert poison_messages(storage) == 0


def test_cold_start_with_the_database_frozen_answers_16_concurrent_events_in_time(
    database: Settings,
    storage: dict[str, str],
    restartable_cosmos_server: LocalCosmosServer,
    tmp_path: Path,
) -> None:
    """Issue 10: a fresh host answered these in 2 s steps, the last after 32.7 s."""
    process = ServeProcess(
        database, tmp_path, extra_env={**storage, "REPLAY_MAX_DELAY_SECONDS": "2"}
    )  # nothing is contacted before the first request
    try:
        restartable_cosmos_server.freeze()
        try:
            with ThreadPoolExecutor(max_workers=16) as pool:
                answers = list(pool.map(lambda _: timed_push(process), range(16)))
        finally:
            restartable_cosmos_server.thaw()
        assert [status for _, status, _ in answers] == [202] * 16
        assert max(elapsed for _, _, elapsed in answers) < ANSWER_BUDGET_S
        expected = {str(event["id"]) for event, _, _ in answers}
        stored = wait_for_ids(database, expected, seconds=30)
        assert sorted(stored) == sorted(expected)
    finally:
        process.stop()


def test_database_and_queue_down_is_503_in_time(
    served: ServeProcess,
    restartable_cosmos_server: LocalCosmosServer,
    restartable_azurite: LocalAzurite,
) -> None:
    restartable_cosmos_server.stop()
    restartable_azurite.stop()
    for _ in range(2):
        _, status, elapsed = timed_push(served)
        assert status == 503
        assert elapsed < ANSWER_BUDGET_S


def test_frozen_database_and_queue_down_is_503_in_time(
    served: ServeProcess,
    restartable_cosmos_server: LocalCosmosServer,
    restartable_azurite: LocalAzurite,
) -> None:
    restartable_azurite.stop()
    restartable_cosmos_server.freeze()
    try:
        _, status, elapsed = timed_push(served)
    finally:
        restartable_cosmos_server.thaw()
    assert (status, elapsed < ANSWER_BUDGET_S) == (503, True)


# WEBHOOK_SECRET_HEADER -> the headers a client sends with the right key, and the answer.
SECRET_CASES = {
    "": [
        ({"Authorization": f"Bearer {SECRET}"}, 201),
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"X-Acr-Secret": SECRET}, 401),
    ],
    "X-Acr-Secret": [
        ({"X-Acr-Secret": SECRET}, 201),
        ({"Authorization": f"Bearer {SECRET}"}, 401),
    ],
}


@pytest.mark.parametrize("header", sorted(SECRET_CASES))
def test_shared_secret_on_top_of_the_function_key(
    database: Settings, tmp_path: Path, header: str
) -> None:
    env = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_SECRET_HEADER": header}
    process = ServeProcess(database, tmp_path, extra_env=env)
    try:
        for headers, status in SECRET_CASES[header]:
            event = payloads.with_new_id(payloads.PUSH)
            body = payloads.body(event)
            answer = requests.post(process.url(), data=body, headers=headers, timeout=10)
            assert answer.status_code == status, headers
            # The right secret never makes up for a missing or wrong function key, and the
            # answer does not say which part failed: every 401 is Azure's, empty.
            for url in (process.url(key="wrong"), f"{process.base_url}/api/acr/webhook"):
                denied = requests.post(url, data=body, headers=headers, timeout=10)
                assert (denied.status_code, denied.content) == (401, b""), headers
            stored = {document["id"] for document in read_all(database)}
            assert (event["id"] in stored) == (status == 201), headers
            if status == 401:
                assert answer.content == b""
    finally:
        process.stop()
