"""Crash consistency: a process of the app killed (SIGKILL, as Azure ends an instance on a
timeout, a scale-in, an out-of-memory or a deployment swap) at a fixed step of its work, then
started again against the same local Cosmos DB server and Azurite.

Each kill comes at a point made deterministic by a proxy that holds one request (tests/support/
holds.py): before the server applies it, or after, with the answer never leaving. What the
docs promise, per step:
- webhook: ACR never retries a failed call; an event stored before the kill is stored once,
  one that was not is in ACR's history for reconcile (README "What is not guaranteed");
- Event Grid: a batch not answered is redelivered whole; the events already stored come back
  as duplicates, never twice (docs/delivery.md);
- the fallback queue: a parked message is replayed, idempotently by event id; only a message
  that can never be stored, or that the queue could not take back, reaches the poison queue
  (README "A database outage of any length loses nothing");
- redrive: a stop between the send and the delete leaves the message in both queues, replayed
  twice and stored once; running it again is safe (docs/operations.md);
- reconcile: running it again changes nothing and records what the last run did not
  (docs/delivery.md); provision: safe to run again.

Two waits have no setting: the local queue trigger's 30 s lease (queues.LEASE_SECONDS; the
Functions runtime's is 10 minutes) and redrive's 60 s (redrive.LEASE_SECONDS). The processes
whose lease must run out here start through tests.support.patched with a shorter one; the code
that reads it runs unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError

from acr_webhook import __main__ as cli
from acr_webhook.acr_history import ManagementApiHistory
from acr_webhook.config import FALLBACK_QUEUE_NAME, QueueSettings, Settings, reconcile_settings
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.fallback import (
    StorageQueueFallback,
    create_queue_client,
    decode_message,
)
from acr_webhook.local.queues import QueueOptions, QueuePoller, queue_functions
from acr_webhook.models import AcrEvent, parse_parked, to_document
from acr_webhook.reconcile import reconcile_webhooks
from acr_webhook.repository import CosmosEventRepository
from acr_webhook.results import utc_now
from tests.conftest import container_for, read_all
from tests.e2e.test_chaos_e2e import replace_endpoint
from tests.e2e.test_multi_instance_e2e import wait_until
from tests.integration.test_event_queries import cli_on
from tests.integration.test_reconcile_timer import (
    REGISTRY_ID,
    FakeCredential,
    list_events_path,
)
from tests.support import payloads
from tests.support.arm_stand_in import TOKEN, ListEventsStandIn
from tests.support.azurite import LocalAzurite, new_queue
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.cosmos_server import REPO_ROOT
from tests.support.history import history_entry
from tests.support.holds import Hold
from tests.support.queue_proxy import HoldingQueueProxy
from tests.support.serve import ServeProcess, app_environment
from tests.unit.test_eventgrid import event_grid

DOCUMENT_WRITE = r"^POST /dbs/[^/]+/colls/[^/]+/docs/?$"
PARKED_SEND = rf"^POST /\w+/{FALLBACK_QUEUE_NAME}/messages$"
QUEUE_RECEIVE = rf"^GET /\w+/{FALLBACK_QUEUE_NAME}/messages$"
POISON_DELETE = rf"^DELETE /\w+/{FALLBACK_QUEUE_NAME}-poison/messages/"
# Short enough for a test to see a lease end, long enough for a replay to finish inside it.
SHORT_LEASE_S = 2


def patched(*assignments: str) -> tuple[str, ...]:
    """A ServeProcess launcher: ``python -m acr_webhook`` with module constants set first."""
    return ("-m", "tests.support.patched", *assignments, "--")


def start_cli(args: list[str], workdir: Path, env: dict[str, str], *launcher: str) -> Any:
    """``python -m acr_webhook <args>`` started, not waited for (run_cli's environment)."""
    return subprocess.Popen(
        [sys.executable, *(launcher or ("-m", "acr_webhook")), *args],
        cwd=workdir,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def killed(process: Any) -> int:
    process.send_signal(signal.SIGKILL)
    code = int(process.wait(timeout=10))
    for stream in (process.stdout, process.stderr):
        if stream:
            stream.close()
    return code


def storage_of(queue: QueueSettings | HoldingQueueProxy) -> dict[str, str]:
    """The app setting that names the storage account of ``queue`` (or behind the proxy)."""
    assert queue.connection_string is not None
    return {"AzureWebJobsStorage": queue.connection_string}


def depth(queue: QueueSettings) -> tuple[int, int]:
    """Messages the queue holds (leased ones included) and how many of them are visible."""
    client = create_queue_client(queue, {}, base64_messages=False)
    count = int(client.get_queue_properties().approximate_message_count or 0)
    return count, len(client.peek_messages(max_messages=32))


def parked_ids(queue: QueueSettings) -> list[str]:
    """The event ids of the visible messages, in queue order."""
    client = create_queue_client(queue, {}, base64_messages=False)
    return [
        str(parse_parked(decode_message(str(message.content))).document["id"])
        for message in client.peek_messages(max_messages=32)
    ]


def stored_ids(settings: Settings) -> list[str]:
    return sorted(str(document["id"]) for document in read_all(settings))


def post_in_background(url: str, body: bytes, **headers: str) -> list[Any]:
    """POST on a thread; the list gets the answer's status, or the error (the killed host)."""
    outcome: list[Any] = []

    def send() -> None:
        try:
            outcome.append(requests.post(url, data=body, headers=headers, timeout=20).status_code)
        except requests.RequestException as error:
            outcome.append(type(error).__name__)

    threading.Thread(target=send, daemon=True).start()
    return outcome


def assert_no_answer(outcome: list[Any]) -> None:
    """The client of a killed host saw its connection end, with no HTTP answer at all: for ACR
    a failed delivery, for Event Grid one to retry."""
    wait_until(lambda: bool(outcome), 10, "the client to see the connection end")
    assert not isinstance(outcome[0], int), outcome


def test_a_webhook_killed_around_its_write_stores_the_event_once_or_leaves_it_to_reconcile(
    cosmos_settings: Settings,
    proxy: FaultyCosmosProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ACR's one try fails either way (no answer); what the kill leaves is either the document,
    once, or nothing, and the reconcile of ACR's history stores what is missing, once."""
    landed = payloads.with_new_id(payloads.PUSH, tag="landed")
    lost = payloads.with_new_id(payloads.PUSH, tag="lost")
    applied = Hold(DOCUMENT_WRITE, after_passing=True, limit=1)  # the first event's write
    unsent = Hold(DOCUMENT_WRITE)  # the second's
    proxy.holds = [applied, unsent]
    served = ServeProcess(replace_endpoint(cosmos_settings, proxy), tmp_path)
    answers = [post_in_background(served.url(), payloads.body(landed))]
    applied.wait()
    answers.append(post_in_background(served.url(), payloads.body(lost)))
    unsent.wait()
    assert served.stop(signal.SIGKILL) == -signal.SIGKILL
    applied.release()
    unsent.release()
    for answer in answers:
        assert_no_answer(answer)  # a failed delivery in ACR's history
    assert stored_ids(cosmos_settings) == [landed["id"]]

    history = tmp_path / "history.json"
    history.write_text(json.dumps([history_entry(landed), history_entry(lost)]))
    cli_on(cosmos_settings, monkeypatch, tmp_path)  # the next process: nothing in memory
    assert cli.main(["reconcile", "--events-file", str(history)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "recorded=1 already=1 skipped=0 invalid=0"
    assert stored_ids(cosmos_settings) == sorted([landed["id"], lost["id"]])


def test_an_event_grid_batch_killed_halfway_is_stored_once_when_event_grid_redelivers_it(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy, tmp_path: Path
) -> None:
    """10 events written concurrently; the host killed once 4 writes were applied and the others
    held. Event Grid saw no answer and redelivers the whole batch, here to the handler in this
    process (a process that starts with nothing in memory, as a restarted host)."""
    events = [payloads.with_new_id(payloads.PUSH, tag=f"batch-{n}") for n in range(10)]
    body = payloads.body([event_grid(event) for event in events])
    hold = Hold(DOCUMENT_WRITE, skip=4)
    proxy.holds = [hold]
    served = ServeProcess(replace_endpoint(cosmos_settings, proxy), tmp_path)
    answer = post_in_background(
        served.url("acr/eventgrid"), body, **{"aeg-event-type": "Notification"}
    )
    hold.wait(held=1, passed=4)
    served.stop(signal.SIGKILL)
    hold.release()
    # Killed before it answered; on a loaded machine a held write may time out first, and the
    # batch is then answered 503. Either way Event Grid redelivers it: no 2xx.
    wait_until(lambda: bool(answer), 10, "the client to see the connection end")
    assert not (isinstance(answer[0], int) and 200 <= answer[0] < 300), answer
    assert len(read_all(cosmos_settings)) == 4

    with ThreadPoolExecutor(max_workers=8) as executor:
        redelivered = handle_eventgrid(
            body,
            {"aeg-event-type": "Notification"},
            CosmosEventRepository(cosmos_settings),
            executor=executor,
        )
    assert (redelivered.status, redelivered.body) == (
        200,
        {"recorded": 6, "duplicate": 4, "ignored": 0},
    )
    assert stored_ids(cosmos_settings) == sorted(event["id"] for event in events)


def test_a_parked_event_survives_a_kill_while_parking_and_a_kill_while_replaying(
    cosmos_settings: Settings,
    proxy: FaultyCosmosProxy,
    queues: QueueSettings,
    queue_proxy: HoldingQueueProxy,
    tmp_path: Path,
    refusing_port: Callable[[], int],
) -> None:
    """1. Cosmos DB unreachable, the webhook parks the event: the host is killed once the queue
    has the message, before the 202 leaves. 2. The next host's queue trigger writes the event:
    killed before it deletes the message, which stays hidden for the lease. 3. The next host
    gets it again (dequeue count 2): a duplicate, deleted. One document, no poison entry."""
    unreachable = dataclasses.replace(
        cosmos_settings, cosmos_endpoint=f"https://127.0.0.1:{refusing_port()}/"
    )
    send = Hold(PARKED_SEND, after_passing=True)
    # The first host's queue trigger must not take the message before the kill: its receives
    # are held.
    queue_proxy.holds = [send, Hold(QUEUE_RECEIVE)]
    served = ServeProcess(unreachable, tmp_path, extra_env=storage_of(queue_proxy))
    event = payloads.with_new_id(payloads.PUSH, tag="parked")
    answer = post_in_background(served.url(), payloads.body(event))
    send.wait()
    served.stop(signal.SIGKILL)
    assert_no_answer(answer)
    assert parked_ids(queues) == [event["id"]]  # parked, though ACR never heard so

    write = Hold(DOCUMENT_WRITE, after_passing=True)
    proxy.holds = [write]
    short_lease = patched(f"acr_webhook.local.queues.LEASE_SECONDS={SHORT_LEASE_S}")
    served = ServeProcess(
        replace_endpoint(cosmos_settings, proxy),
        tmp_path,
        extra_env=storage_of(queues),
        launcher=short_lease,
    )
    write.wait()
    served.stop(signal.SIGKILL)
    write.release()
    assert stored_ids(cosmos_settings) == [event["id"]]
    assert depth(queues) == (1, 0)  # leased by the killed host: hidden, not lost

    served = ServeProcess(
        cosmos_settings, tmp_path, extra_env=storage_of(queues), launcher=short_lease
    )
    try:
        output = served.wait_for_output("replayed from fallback queue", timeout=15)
        wait_until(lambda: depth(queues) == (0, 0), 10, "the message to be deleted")
    finally:
        served.stop()
    assert "replayed from fallback queue: already recorded" in output
    assert stored_ids(cosmos_settings) == [event["id"]]
    assert depth(queues.poison) == (0, 0)


def test_a_message_delivered_more_often_than_max_dequeue_count_goes_to_poison_uncalled(
    azurite: LocalAzurite,
) -> None:
    """The Functions runtime (WebJobs' QueueProcessor.BeginProcessingMessageAsync) moves a
    message delivered more often than maxDequeueCount to poison without calling the function:
    five instances killed while replaying it are five deliveries. The local trigger called it
    on the 6th (calls [6], stored, deleted; poison empty)."""
    queue = new_queue(azurite)
    create_queue_client(queue, {}).send_message("parked event")
    raw = create_queue_client(queue, {}, base64_messages=False)
    for _ in range(5):  # each delivery ends with its instance killed: the lease runs out
        [message] = raw.receive_messages(max_messages=1, visibility_timeout=30)
        raw.update_message(message, visibility_timeout=0)  # the lease's end, without waiting
    calls: list[int] = []
    app = func.FunctionApp()
    app.queue_trigger(arg_name="message", queue_name=queue.queue_name, connection="Storage")(
        lambda message: calls.append(message.dequeue_count)
    )
    [function] = queue_functions(app)
    poller = QueuePoller(function, queue, QueueOptions(max_dequeue_count=5))

    assert poller.poll_once() == 1
    assert (calls, depth(queue), depth(queue.poison)) == ([], (0, 0), (1, 1))


def test_a_redrive_killed_between_send_and_delete_duplicates_one_message_and_loses_none(
    queues: QueueSettings,
    queue_proxy: HoldingQueueProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/operations.md: a stop between the send and the delete leaves the message in both
    queues; running it again moves the rest. The killed run's lease (60 s) holds every message
    of its batch, moved or not: this run has it at 1 s, the rest of the code unchanged."""
    events = [payloads.with_new_id(payloads.PUSH, tag=f"poisoned-{n}") for n in range(3)]
    poison = StorageQueueFallback(queues.poison)
    for event in events:
        poison.put(to_document(AcrEvent.model_validate(event), received_at=utc_now()))
    delete = Hold(POISON_DELETE)
    queue_proxy.holds = [delete]
    path = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    process = start_cli(
        ["redrive"],
        tmp_path,
        {**path, **storage_of(queue_proxy)},
        *patched("acr_webhook.redrive.LEASE_SECONDS=1"),
    )
    delete.wait()
    killed(process)
    [moved] = parked_ids(queues)  # sent to the fallback queue, never deleted from poison
    assert depth(queues.poison)[0] == 3  # all three still there, leased by the killed run

    wait_until(lambda: depth(queues.poison) == (3, 3), 10, "the killed run's lease to end")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AzureWebJobsStorage", storage_of(queues)["AzureWebJobsStorage"])
    assert cli.main(["redrive"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("Moved 3 message(s)")
    assert depth(queues.poison) == (0, 0)
    # One event twice, as documented: replay stores it once (its id is the document id).
    assert sorted(parked_ids(queues)) == sorted([moved, *(event["id"] for event in events)])


def test_a_reconcile_killed_mid_run_leaves_the_rest_to_the_next_run_which_rewrites_nothing(
    cosmos_settings: Settings,
    proxy: FaultyCosmosProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The CLI killed after 3 of 6 writes were applied (the 4th held before the server); the
    timer's next run (through the management API stand-in) records the other 3 and rewrites
    none; the CLI run after it changes nothing. The CLI and the timer share reconcile_entries:
    a killed timer run leaves what a killed CLI run leaves."""
    events = [payloads.with_new_id(payloads.PUSH, tag=f"history-{n}") for n in range(6)]
    entries = [history_entry(event) for event in events]
    history = tmp_path / "history.json"
    history.write_text(json.dumps(entries))
    arguments = ["reconcile", "--events-file", str(history)]
    hold = Hold(DOCUMENT_WRITE, skip=3)
    proxy.holds = [hold]
    process = start_cli(
        arguments, tmp_path, app_environment(replace_endpoint(cosmos_settings, proxy))
    )
    hold.wait(held=1, passed=3)
    killed(process)
    first = etags(cosmos_settings)
    assert len(first) == 3

    stand_in = ListEventsStandIn(tmp_path, TOKEN, page_size=4)
    stand_in.histories[list_events_path("acrwebhook")] = entries
    stand_in.start()
    try:
        target = reconcile_settings(
            {
                "ACR_REGISTRY_ID": REGISTRY_ID,
                "ACR_WEBHOOK_NAMES": "acrwebhook",
                "ARM_ENDPOINT": stand_in.endpoint,
            }
        )
        assert target is not None
        history_api = ManagementApiHistory(target, FakeCredential())
        timer_run = reconcile_webhooks(target, CosmosEventRepository(cosmos_settings), history_api)
    finally:
        stand_in.stop()
    assert timer_run["acrwebhook"].counts.summary() == "recorded=3 already=3 skipped=0 invalid=0"
    after = etags(cosmos_settings)
    assert sorted(after) == sorted(event["id"] for event in events)
    assert {id_: after[id_] for id_ in first} == first  # nothing written twice

    cli_on(cosmos_settings, monkeypatch, tmp_path)
    assert cli.main(arguments) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "recorded=0 already=6 skipped=0 invalid=0"
    assert etags(cosmos_settings) == after


def test_a_provision_killed_at_each_step_is_finished_by_the_next_run(
    cosmos_settings: Settings,
    proxy: FaultyCosmosProxy,
    queues: QueueSettings,
    queue_proxy: HoldingQueueProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Killed once the container was created (before the answer), then once the fallback queue
    was created and before its poison queue was; the third run says ready and all exist."""
    settings = dataclasses.replace(cosmos_settings, cosmos_container=f"crash-{uuid.uuid4().hex}")
    create_queue_client(queues.poison, {}).delete_queue()
    container_created = Hold(r"^POST /dbs/[^/]+/colls/?$", after_passing=True)
    proxy.holds = [container_created]
    process = start_cli(["provision"], tmp_path, app_environment(replace_endpoint(settings, proxy)))
    container_created.wait()
    killed(process)
    assert container_for(settings).read()["id"] == settings.cosmos_container

    poison_created = Hold(rf"^PUT /\w+/{FALLBACK_QUEUE_NAME}-poison$")
    queue_proxy.holds = [poison_created]
    process = start_cli(
        ["provision"], tmp_path, {**app_environment(settings), **storage_of(queue_proxy)}
    )
    poison_created.wait()
    killed(process)
    assert not queue_exists(queues.poison)

    cli_on(settings, monkeypatch, tmp_path)
    monkeypatch.setenv("AzureWebJobsStorage", storage_of(queues)["AzureWebJobsStorage"])
    assert cli.main(["provision"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"Fallback queues '{FALLBACK_QUEUE_NAME}' and '{FALLBACK_QUEUE_NAME}-poison' are ready"
    )
    assert queue_exists(queues) and queue_exists(queues.poison)
    properties = container_for(settings).read()
    assert properties["partitionKey"]["paths"] == ["/repository"]


def etags(settings: Settings) -> dict[str, str]:
    """Every stored document's etag by id: a rewrite changes it."""
    return {str(d["id"]): str(d["_etag"]) for d in read_all(settings)}


def queue_exists(queue: QueueSettings) -> bool:
    try:
        create_queue_client(queue, {}).get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True
