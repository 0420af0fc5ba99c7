"""``python -m acr_webhook erase --yes`` stopped part-way, as a real process against the local
Cosmos DB server: Ctrl+C (SIGINT), a cancelled CI job (SIGTERM, then SIGKILL), a connection
that drops under a delete. The stop point is fixed by the Cosmos DB proxy (tests/support/
holds.py): after 2 of the person's 5 events were deleted, the 3rd delete held.

docs/operations.md, "Personal data": the erase is safe to run again and running it again
deletes the rest; if the store fails part-way, the command says how many are left; for the
request's file, keep the preview's counts and the `Deleted N of N.` line (the app keeps no
record of an erasure). tests/e2e/test_crash_e2e.py has the other commands killed; this has
erase, which it had not.

An interrupted erase (SIGINT, SIGTERM) printed no line saying what it deleted, and a delete
whose answer was lost was counted as not done ("stopped with 3 left" with 2 left)."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from acr_webhook.__main__ import store_searched
from acr_webhook.config import Settings
from tests.conftest import container_for, read_all
from tests.e2e.test_chaos_e2e import replace_endpoint
from tests.e2e.test_crash_e2e import start_cli
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.holds import Hold
from tests.support.serve import app_environment, run_cli

ALICE = "alice@contoso.com"
ERASE = ["erase", "--actor", ALICE, "--yes"]
DELETE = r"^DELETE /dbs/[^/]+/colls/[^/]+/docs/"
BOBS = "bob-1"  # another person's event: no stop may take it
NOISE = ("Traceback", "Exception ignored")


def alices_events(settings: Settings, count: int) -> None:
    container = container_for(settings)
    for n in range(count):
        container.upsert_item({"id": f"alice-{n}", "repository": f"team/r{n % 2}", "actor": ALICE})
    container.upsert_item({"id": BOBS, "repository": "team/r0", "actor": "bob@contoso.com"})


def left(settings: Settings) -> list[str]:
    return sorted(str(document["id"]) for document in read_all(settings))


def stopped_after_two_deletes(
    settings: Settings, proxy: FaultyCosmosProxy, workdir: Path, signum: int
) -> subprocess.CompletedProcess[str]:
    """erase --yes of 5 events, sent ``signum`` once 2 deletes were applied and answered and
    the 3rd is held before it reaches the server."""
    alices_events(settings, 5)
    third = Hold(DELETE, skip=2)
    proxy.holds = [third]
    process = start_cli(ERASE, workdir, app_environment(replace_endpoint(settings, proxy)))
    try:
        third.wait(held=1, passed=2)
        process.send_signal(signum)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(ERASE, process.returncode, out, err)


@pytest.mark.parametrize(
    ("signum", "status", "stderr"),
    [(signal.SIGINT, 130, "interrupted\n"), (signal.SIGKILL, -signal.SIGKILL, "")],
    ids=["SIGINT", "SIGKILL"],
)
def test_an_erase_stopped_after_two_of_five_deletes_is_finished_by_running_it_again(
    cosmos_settings: Settings,
    proxy: FaultyCosmosProxy,
    tmp_path: Path,
    signum: int,
    status: int,
    stderr: str,
) -> None:
    stopped = stopped_after_two_deletes(cosmos_settings, proxy, tmp_path, signum)
    assert stopped.returncode == status
    assert stopped.stderr.endswith(stderr) if stderr else stopped.stderr == ""
    assert not any(noise in stopped.stderr for noise in NOISE)
    # Exactly the 2 answered deletes took effect: the held one never reached the server.
    remaining = left(cosmos_settings)
    assert (len(remaining), BOBS in remaining) == (4, True)

    env = app_environment(cosmos_settings)
    again = run_cli(ERASE, tmp_path, env)
    assert (again.returncode, again.stderr) == (0, "")
    lines = again.stdout.splitlines()
    assert lines[0].startswith(f"3 event(s) name actor '{ALICE}'")
    assert "Deleted 3 of 3." in lines
    assert left(cosmos_settings) == [BOBS]
    # docs/operations.md: "No events name ..." is the answer to keep.
    preview = run_cli(ERASE[:-1], tmp_path, env)
    assert preview.stdout.splitlines() == [
        f"No events name actor '{ALICE}'.",
        store_searched(cosmos_settings),
    ]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_erase_says_how_many_it_deleted(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy, tmp_path: Path, signum: int
) -> None:
    """The operator keeps the `Deleted N of N.` lines for the request's file (operations.md):
    what an interrupted run deleted must be in one, or the erasure's record is short by it.
    (SIGKILL cannot be answered; the preview's count before it and the re-run's still show
    how many went.)"""
    stopped = stopped_after_two_deletes(cosmos_settings, proxy, tmp_path, signum)
    assert "Deleted 2 of 5." in stopped.stdout.splitlines()
    assert not any(noise in stopped.stderr for noise in NOISE)
    # Ctrl+C: 130 "interrupted"; SIGTERM: ended by it after all, as any command (143 in a shell).
    assert stopped.returncode == (130 if signum == signal.SIGINT else -signal.SIGTERM)
    assert "stopped with 3 left" in stopped.stderr


def test_a_delete_whose_answer_was_lost_is_counted_and_the_left_count_is_true(
    cosmos_settings: Settings, proxy: FaultyCosmosProxy, tmp_path: Path
) -> None:
    """operations.md: "If the store fails part-way, the command says how many are left." The
    app's own writes send a request whose connection closed unanswered once more (note 23);
    a delete sent again finds the document gone (404), which erase counts "already gone"."""
    container = container_for(cosmos_settings)
    for n in range(3):
        container.upsert_item({"id": f"alice-{n}", "repository": "team/r0", "actor": ALICE})
    lost_answer = Hold(DELETE, after_passing=True, limit=1)
    lost_answer.release()  # applied by the server, then the connection closed unanswered
    proxy.holds = [lost_answer]
    run = run_cli(ERASE, tmp_path, app_environment(replace_endpoint(cosmos_settings, proxy)))
    assert lost_answer.held == 1
    actually_left = len(read_all(cosmos_settings))
    done = re.search(r"^Deleted (\d+) of 3(?: \((\d+) already gone\))?\.$", run.stdout, re.M)
    assert done is not None, run.stdout
    said_left = re.search(r"stopped with (\d+) left", run.stderr)
    assert (
        int(done[1]) + int(done[2] or 0),
        int(said_left[1]) if said_left else 0,
    ) == (3 - actually_left, actually_left)
