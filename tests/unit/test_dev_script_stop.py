"""scripts/dev's stop: one deadline for everything it started (serve and the servers), whatever
hangs, and no watchdog left once everything stopped in time; the dev script's tests hold its
lock while it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_dev_script_e2e as dev_script_e2e
from tests.support.cosmos_server import REPO_ROOT

# --- scripts/dev: one deadline for everything it started ---------------------------------------


DEV = REPO_ROOT / "scripts" / "dev"


def stop_functions() -> str:
    """scripts/dev's ``stop_pids`` and ``stop_started``, as written."""
    found = re.search(
        r"^stop_pids\(\) \{\n.*?^\}\n^stop_started\(\) \{\n.*?^\}\n", DEV.read_text(), re.M | re.S
    )
    assert found is not None
    return found.group(0)


# Runs ``stop_started`` on a sleep standing in for serve and two for the servers; the ones named
# in $HUNG are stopped (SIGSTOP: deaf to all but KILL). The watchdog's ``sleep`` waits for the
# file $OPEN, made at once, never, or when the stop waits for the pid $OPEN_ON; each
# ``kill -KILL`` is logged with the pids it names.
STOP_HARNESS = """\
set -euo pipefail
kill() { if [ "$1" = -KILL ]; then echo "${*:2}" >>"$KILLED"; fi; command kill "$@"; }
sleep() { until [ -e "$OPEN" ]; do command sleep 0.01; done; }
wait() { if [ "${1:-}" = "${open_on:-}" ]; then : >"$OPEN"; fi; builtin wait "$@"; }
@STOP_FUNCTIONS@
command sleep 300 & serve_pid=$!
command sleep 300 & first=$!
command sleep 300 & second=$!
servers=" $first $second"
cosmos_log=""
for role in $HUNG; do
  command kill -STOP "${!role}"  # asynchronous: a TERM sent before it stops is taken first
  until [ "$(cut -d' ' -f3 "/proc/${!role}/stat")" = T ]; do command sleep 0.01; done
done
case "$OPEN_ON" in now) : >"$OPEN" ;; never) ;; *) open_on=${!OPEN_ON} ;; esac
echo "$serve_pid $first $second"
stop_started
builtin wait  # the watchdog too, unless it was killed
echo stopped
"""


def stop_started(tmp_path: Path, hung: str, open_on: str) -> tuple[list[str], list[set[str]]]:
    """(serve's and the servers' pids, the pids each ``kill -KILL`` named) once
    ``stop_started`` returned and the watchdog is gone; fails if that takes 10 s."""
    killed = tmp_path / "killed"
    killed.touch()
    env = {**os.environ, "KILLED": str(killed), "OPEN": str(tmp_path / "open")}
    env.update(HUNG=hung, OPEN_ON=open_on)
    harness = subprocess.Popen(
        ["bash", "-c", STOP_HARNESS.replace("@STOP_FUNCTIONS@", stop_functions())],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = harness.communicate(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(harness.pid, signal.SIGKILL)  # a mutant's stop that never ends
        harness.wait()
    started, stopped = out.splitlines()
    assert (stopped, harness.returncode) == ("stopped", 0)
    return started.split(), [set(line.split()) for line in killed.read_text().splitlines()]


def test_one_deadline_kills_a_hung_serve_and_a_hung_server_together(tmp_path: Path) -> None:
    """Mutants killed: a watchdog per step (two deadlines, 6 s: the comment's "a deadline per
    step added up to 6 s"), and the one watchdog naming serve or the servers only (the other
    never dies: the stop never ends)."""
    started, killed = stop_started(tmp_path, hung="serve_pid first", open_on="now")
    assert killed == [set(started)]


def test_the_deadline_covers_a_server_hung_after_serve_stopped(tmp_path: Path) -> None:
    """Mutant killed: the watchdog ended once serve had stopped, before the servers' step (a
    server deaf to TERM is then waited for forever)."""
    started, killed = stop_started(tmp_path, hung="second", open_on="second")
    assert killed == [set(started)]


def test_a_stop_that_ends_in_time_leaves_no_watchdog(tmp_path: Path) -> None:
    """Mutant killed: the watchdog left running after everything stopped (it would outlive
    the script by up to 3 s, then KILL pids that may be another process's by then)."""
    assert stop_started(tmp_path, hung="", open_on="never")[1] == []


def test_the_dev_script_tests_hold_the_script_s_lock_while_it_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Mutants killed: no lock, and a shared one (two test processes would both hold it and
    share Azurite's fixed ports: the first one's stop takes it from the second)."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "dev").write_text("")
    monkeypatch.setattr(dev_script_e2e, "REPO_ROOT", tmp_path)
    held: list[bool] = []

    @contextlib.contextmanager
    def started(*_args: Any) -> Iterator[None]:
        with (tmp_path / "scripts" / "dev").open("rb") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(True)
            else:
                held.append(False)
        yield

    monkeypatch.setattr(dev_script_e2e, "_started_dev_script", started)

    with dev_script_e2e.started_dev_script(tmp_path, "https://127.0.0.1:1/"):
        pass

    assert held == [True]
