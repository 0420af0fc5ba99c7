"""``./scripts/dev`` as the README runs it: from a checkout it starts the local Cosmos DB server
and Azurite, provisions and serves; Ctrl+C stops everything it started within 5 s and leaves no
files behind (issue 13's "Done when"); so does a SIGTERM to the script itself."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support import payloads
from tests.support.cosmos_server import REPO_ROOT
from tests.support.repository import tracked_files
from tests.support.serve import APP_SETTING_PREFIXES, free_port, post_json

STARTED_WITHIN_S = 120  # the first run of bootstrap in a fresh clone installs nothing here
STOPPED_WITHIN_S = 5
SAMPLE_KEY = "local-dev-key"  # local.settings.sample.json's LOCAL_FUNCTION_KEY


def checkout_of_the_repository(target: Path) -> Path:
    """The tracked files as they are in the work tree, with this run's .venv and node_modules:
    the script writes local.settings.json into its checkout, and must not into this one."""
    for name in tracked_files():
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for installed in (".venv", "node_modules"):
        (target / installed).symlink_to(REPO_ROOT / installed)
    return target


def files_in(root: Path) -> set[Path]:
    return {
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.parts[len(root.parts)] not in (".venv", "node_modules")
    }


def process_group(group: int) -> list[str]:
    """The command lines of the live processes in ``group``."""
    return [command for _, command in group_members(group)]


def group_members(group: int) -> list[tuple[int, str]]:
    """The pids and command lines of the live processes in ``group``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended meanwhile
        state, process_group_id = fields[0], int(fields[2])
        if process_group_id == group and state != "Z":
            members.append((int(stat.parent.name), command.strip()))
    return members


@dataclass(frozen=True)
class DevScript:
    process: subprocess.Popen[str]
    checkout: Path
    files_before: set[Path]  # the checkout's, before the script ran
    temp: Path  # its TMPDIR
    port: int  # the host's


@contextlib.contextmanager
def started_dev_script(tmp_path: Path, cosmos_endpoint: str) -> Iterator[DevScript]:
    """``scripts/dev`` from a checkout in ``tmp_path``, its Cosmos DB server at
    ``cosmos_endpoint`` (one that listens there already is used and left alone); killed with
    whatever of its process group is left when the block ends. One at a time across test
    processes: the script starts Azurite on its fixed ports (10000-10002), or uses one that
    listens there already, so two at once would share an Azurite that the first one's stop
    takes from the second (the lock is on the script itself, so it leaves no file behind)."""
    with (REPO_ROOT / "scripts" / "dev").open("rb") as script_file:
        fcntl.flock(script_file, fcntl.LOCK_EX)
        with _started_dev_script(tmp_path, cosmos_endpoint) as started:
            yield started


@contextlib.contextmanager
def _started_dev_script(tmp_path: Path, cosmos_endpoint: str) -> Iterator[DevScript]:
    checkout = checkout_of_the_repository(tmp_path / "checkout")
    files_before = files_in(checkout)
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(APP_SETTING_PREFIXES)}
    env.update(COSMOS_ENDPOINT=cosmos_endpoint, PORT=str(port), TMPDIR=str(temp))
    script = subprocess.Popen(
        ["bash", "scripts/dev"],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        yield DevScript(script, checkout, files_before, temp, port)
    finally:
        # Whatever of its group is left, the script included, when the test failed.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(script.pid, signal.SIGKILL)
        script.wait()
        # Its pipe too: left to the garbage collector, each run was an unclosed-file
        # ResourceWarning (python -X dev) in whichever test ran next.
        if script.stdout is not None:
            script.stdout.close()


@pytest.fixture
def dev_script(tmp_path: Path) -> Iterator[DevScript]:
    # Its own ports for the Cosmos DB server and the host; Azurite's are fixed (10000-10002):
    # if one already listens there, the script uses it and leaves it alone.
    with started_dev_script(tmp_path, f"https://127.0.0.1:{free_port()}/") as script:
        yield script


def ctrl_c(script: subprocess.Popen[str]) -> None:
    os.killpg(script.pid, signal.SIGINT)  # a terminal sends it to the whole foreground job


def sigterm_to_the_script_alone(script: subprocess.Popen[str]) -> None:
    script.terminate()  # a process manager's stop: the servers get nothing from it


def ctrl_c_with_serve_and_the_database_hung(script: subprocess.Popen[str]) -> None:
    """Ctrl+C while serve and the local Cosmos DB server heed no signal but KILL (stopped):
    the script's 3 s before killing covers both, not 3 s each (6 s in all, past the bound)."""
    for pid, command in group_members(script.pid):
        if "acr_webhook serve" in command or "cosmos-server.js" in command:
            os.kill(pid, signal.SIGSTOP)
            # Asynchronous: a SIGINT sent before it has stopped is taken first (the lower
            # number), and the case would test a stop that did not hang.
            while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
                time.sleep(0.01)
    ctrl_c(script)


def printed_until_serving(script: subprocess.Popen[str]) -> str:
    """What ``scripts/dev`` printed up to its "listening" line; fails if that never comes."""
    assert script.stdout is not None
    output = []
    deadline = time.monotonic() + STARTED_WITHIN_S
    while time.monotonic() < deadline:
        line = script.stdout.readline()
        output.append(line)
        if not line or line.startswith("Local Functions host listening on"):
            break
    printed = "".join(output)
    assert output[-1].startswith("Local Functions host listening on"), printed
    return printed


def left_running_after_stop(script: subprocess.Popen[str]) -> list[str]:
    """The commands of the script's process group still running STOPPED_WITHIN_S after it was
    told to stop (none, once everything has stopped)."""
    deadline = time.monotonic() + STOPPED_WITHIN_S
    while process_group(script.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return process_group(script.pid)


@pytest.mark.parametrize(
    "stop", [ctrl_c, sigterm_to_the_script_alone, ctrl_c_with_serve_and_the_database_hung]
)
def test_a_stopped_dev_script_leaves_no_process_and_no_file_behind(
    dev_script: DevScript, stop: Callable[[subprocess.Popen[str]], None]
) -> None:
    script = dev_script.process
    printed_until_serving(script)

    url = f"http://127.0.0.1:{dev_script.port}/api/acr/webhook?code={SAMPLE_KEY}"
    assert post_json(url, payloads.body({"action": "ping"})).status_code == 204
    assert post_json(url, payloads.body(payloads.with_new_id(payloads.PUSH))).status_code == 201
    running = process_group(script.pid)
    assert any("cosmos-server.js" in command for command in running), running
    assert any("acr_webhook serve" in command for command in running), running

    stop(script)
    assert left_running_after_stop(script) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)
    assert list(dev_script.temp.iterdir()) == []
    # The one file it makes on purpose, from the sample (gitignored).
    made = files_in(dev_script.checkout) - dev_script.files_before
    assert made == {Path("local.settings.json")}
