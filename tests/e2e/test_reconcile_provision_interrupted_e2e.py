"""``reconcile --events-file`` and ``provision`` stopped by Ctrl+C part-way, as real processes
against the local Cosmos DB server and Azurite, at points the proxies fix (tests/support/
holds.py). SIGKILL at the same points is tests/e2e/test_crash_e2e.py's; Ctrl+C is the stop an
operator's own shell gives, answered "interrupted" with exit 130.

docs/delivery.md: reconcile prints `recorded=N already=N skipped=N invalid=N` as its last
line; stopped by the database, "it stops there and still prints what it did: run it again
later"; running it again changes nothing and records what the last run did not. README:
provision is idempotent; its --help: "Safe to run again."

An interrupted reconcile printed no counts (3 events stored, no line said so)."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from acr_webhook.config import FALLBACK_QUEUE_NAME, QueueSettings, Settings
from acr_webhook.fallback import create_queue_client
from acr_webhook.models import AcrEvent, to_document
from tests.conftest import container_for, read_all
from tests.e2e.test_chaos_e2e import replace_endpoint
from tests.e2e.test_crash_e2e import DOCUMENT_WRITE, queue_exists, start_cli, storage_of
from tests.support import payloads
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.history import history_entry
from tests.support.holds import Hold
from tests.support.queue_proxy import HoldingQueueProxy
from tests.support.serve import app_environment, run_cli

NOISE = ("Traceback", "Exception ignored")
INVALID = {"id": "no-target", "timestamp": "2026-11-23T16:52:01Z", "action": "push"}


def interrupted_at(hold: Hold, process: Any, **wait: int) -> subprocess.CompletedProcess[str]:
    """Ctrl+C to ``process`` once ``hold`` holds a request (and ``wait``'s counts are met)."""
    try:
        hold.wait(**wait)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert not any(noise in err for noise in NOISE), err
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


# --- reconcile -----------------------------------------------------------------------------


def history_of_six(workdir: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A ping, an invalid entry, then 6 pushes the record lacks."""
    events = [payloads.with_new_id(payloads.PUSH, tag=f"missed-{n}") for n in range(6)]
    entries = [history_entry({"action": "ping"}), history_entry(INVALID)]
    history = workdir / "history.json"
    history.write_text(json.dumps([*entries, *(history_entry(event) for event in events)]))
    return history, events


def reconcile_interrupted_after_three_writes(
    settings: Settings, proxy: FaultyCosmosProxy, workdir: Path
) -> tuple[subprocess.CompletedProcess[str], Path, list[dict[str, Any]]]:
    history, events = history_of_six(workdir)
    fourth = Hold(DOCUMENT_WRITE, skip=3)  # held before the server: not stored
    proxy.holds = [fourth]
    process = start_cli(
        ["reconcile", "--events-file", str(history)],
        workdir,
        app_environment(replace_endpoint(settings, proxy)),
    )
    return interrupted_at(fourth, process, held=1, passed=3), history, events


def test_a_reconcile_interrupted_after_three_of_six_writes_is_finished_by_running_it_again(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy, tmp_path: Path
) -> None:
    """The re-run stores the other 3, counts the 3 stored as already (as documented: its own
    counts), and leaves the documents an uninterrupted run leaves, but for receivedAt, the
    time each run read the history (README, Documents)."""
    stopped, history, events = reconcile_interrupted_after_three_writes(
        cosmos_settings, proxy, tmp_path
    )
    assert stopped.returncode == 130
    assert stopped.stderr.startswith("invalid entry 1 (id 'no-target'): ")
    assert stopped.stderr.endswith("\ninterrupted\n")
    assert len(read_all(cosmos_settings)) == 3

    again = run_cli(
        ["reconcile", "--events-file", str(history)], tmp_path, app_environment(cosmos_settings)
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "recorded=3 already=3 skipped=1 invalid=1"
    stored = {str(document["id"]): document for document in read_all(cosmos_settings)}
    assert sorted(stored) == sorted(str(event["id"]) for event in events)
    for event in events:
        document = stored[event["id"]]
        received_at = datetime.fromisoformat(document["receivedAt"])
        expected = to_document(AcrEvent.model_validate(event), received_at, source="reconcile")
        assert {k: v for k, v in document.items() if not k.startswith("_")} == expected


def test_an_interrupted_reconcile_prints_what_it_did(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy, tmp_path: Path
) -> None:
    stopped, _, _ = reconcile_interrupted_after_three_writes(cosmos_settings, proxy, tmp_path)
    assert stopped.stdout.splitlines()[-1:] == ["recorded=3 already=0 skipped=1 invalid=1"]


# --- provision -----------------------------------------------------------------------------


def test_provision_interrupted_at_each_step_is_finished_by_the_next_run(
    cosmos_settings: Settings,
    proxy: FaultyCosmosProxy,
    queues: QueueSettings,
    queue_proxy: HoldingQueueProxy,
    tmp_path: Path,
) -> None:
    """Ctrl+C 1. with RETENTION_DAYS set, the container found without a time-to-live, with
    its replace held before the server; 2. (without it, so no replace) with the poison queue's
    create held. Each: 130 "interrupted"; the next run ends with what one uninterrupted run
    leaves (README: the container's default time-to-live; both queues). A container created
    and a kill at each step: tests/e2e/test_crash_e2e.py."""
    create_queue_client(queues.poison, {}).delete_queue()
    through_proxies = {
        **app_environment(replace_endpoint(cosmos_settings, proxy)),
        **storage_of(queue_proxy),
    }
    steps: list[tuple[dict[str, str], FaultyCosmosProxy | HoldingQueueProxy, Hold]] = [
        ({"RETENTION_DAYS": "3"}, proxy, Hold(r"^PUT /dbs/[^/]+/colls/[^/]+/?$")),
        ({}, queue_proxy, Hold(rf"^PUT /\w+/{FALLBACK_QUEUE_NAME}-poison$")),
    ]
    for extra, holding, hold in steps:
        holding.holds = [hold]
        process = start_cli(["provision"], tmp_path, {**through_proxies, **extra})
        stopped = interrupted_at(hold, process)
        assert (stopped.returncode, stopped.stderr) == (130, "interrupted\n"), hold.pattern
        hold.release()
        holding.holds = []
    container = container_for(cosmos_settings)
    assert container.read().get("defaultTtl") is None  # the replace never reached the server
    assert not queue_exists(queues.poison)

    final = run_cli(
        ["provision"],
        tmp_path,
        {**app_environment(cosmos_settings), **storage_of(queues), "RETENTION_DAYS": "3"},
    )
    assert (final.returncode, final.stderr) == (0, "")
    assert final.stdout.splitlines()[-1] == (
        f"Fallback queues '{FALLBACK_QUEUE_NAME}' and '{FALLBACK_QUEUE_NAME}-poison' are ready"
    )
    properties = container.read()
    assert (properties["partitionKey"]["paths"], properties["defaultTtl"]) == (
        ["/repository"],
        3 * 86400,
    )
    assert queue_exists(queues) and queue_exists(queues.poison)
