"""End to end: ``python -m acr_webhook`` as a real process in pipelines and automation, against
the real local Cosmos DB server. Data goes to stdout only, diagnostics to stderr only; output
into a pipe whose reader has gone (``| head -1``, ``| grep -m1``), a full disk (``> /dev/full``)
or a closed stdout (``>&-``) ends with a message and the exit status a shell user expects,
never a traceback; Ctrl+C and SIGTERM while the database hangs stop the command at once.

Exit statuses (docs/queries.md, README, docs/operations.md): 0 done, 1 database or queue
unreachable, 2 bad option or setting, 130 Ctrl+C. A reader that went away is no failure of the
command: like coreutils (killed by SIGPIPE: 141 in the shell) or 0, and quiet either way."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from acr_webhook.config import FALLBACK_QUEUE_NAME, Settings
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.results import utc_now
from tests.conftest import container_for
from tests.support import history, payloads
from tests.support.serve import APP_SETTING_PREFIXES, app_environment, free_port, post_json

# The statuses a shell user accepts from a command whose reader went away: 0, or killed by
# SIGPIPE like coreutils (`seq 100000 | head -1`: PIPESTATUS 141).
READER_GONE_OK = (0, 128 + signal.SIGPIPE, -signal.SIGPIPE)
NOISE = ("Traceback", "Exception ignored", "BrokenPipeError")

# Stored as versions before 3ccf54c stored ACR's text (any characters), and as userAgent is.
ODD = {
    "repository": "team/a\n2026-12-01T00:00:00.000000Z  delete  forged",
    "tag": "v1\t\x1b[2J\x1b]0;title\x07\u202eevil\U0001f600\r",
    "userAgent": "docker/24\ufffd[31m \u200f\u00e9",
    "registry": "myregistry.azurecr.io\ud800",  # a lone surrogate, stored by 89721c0
}


def stored(settings: Settings, count: int, **fields: Any) -> list[dict[str, Any]]:
    """``count`` documents written straight into the container, as any version of the app
    wrote them, with ``fields`` over the webhook's own."""
    container = container_for(settings)
    documents = []
    for n in range(count):
        payload = payloads.with_new_id(payloads.PUSH, tag=f"v{n}")
        payload["timestamp"] = f"2026-11-{1 + n % 28:02d}T10:{n % 60:02d}:00Z"
        document = {**to_document(AcrEvent.model_validate(payload), utc_now()), **fields}
        container.create_item(document)
        documents.append(document)
    return documents


def cli(
    args: list[str], settings: Settings, cwd: Path, **run: Any
) -> subprocess.CompletedProcess[bytes]:
    """``python -m acr_webhook <args>`` to completion, settings from the environment only."""
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **run}
    env = options.pop("env", app_environment(settings))
    return subprocess.run(
        [sys.executable, "-m", "acr_webhook", *args],
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
        **options,
    )


def into_a_pipe_nobody_reads(
    command: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """``command`` writing into a pipe whose reader has already gone (``| head -1`` once head
    has its line): the first write fails with EPIPE, every time."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    finally:
        os.close(write_end)


def in_bash(script: str, settings: Settings, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """``script`` run by bash as a shell user types it, ``$0`` the Python of the tests."""
    return subprocess.run(
        ["/bin/bash", "-c", script, sys.executable],
        cwd=cwd,
        env=app_environment(settings),
        stderr=subprocess.PIPE,
        timeout=60,
        check=False,
    )


@pytest.fixture
def history_file(tmp_path: Path) -> Path:
    path = tmp_path / "history.json"
    entries = [history.history_entry(payloads.with_new_id(payloads.PUSH)) for _ in range(2)]
    path.write_text(json.dumps(entries))
    return path


# --- pipes, a full disk, a closed stdout ------------------------------------------------------

# The table here, --json through head below; --pushes prints as the table does.
COMMANDS = {"events": ["events"], "reconcile": ["reconcile", "--events-file", "history.json"]}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_reader_that_went_away_ends_the_command_quietly(
    cosmos_settings: Settings, tmp_path: Path, history_file: Path, command: list[str]
) -> None:
    stored(cosmos_settings, 2)
    result = into_a_pipe_nobody_reads(
        [sys.executable, "-m", "acr_webhook", *command],
        app_environment(cosmos_settings),
        history_file.parent,
    )
    stderr = result.stderr.decode(errors="replace")
    assert not [noise for noise in NOISE if noise in stderr], stderr[-600:]
    assert result.returncode in READER_GONE_OK, stderr[-600:]


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="the pipeline is bash's")
def test_events_json_piped_into_head_as_a_shell_user_types_it(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    """More than a pipe holds (64 KiB), so the command is still writing when head exits."""
    stored(cosmos_settings, 40, userAgent="docker/24.0.7 " * 150)
    script = (
        '"$0" -m acr_webhook events --json --limit 1000 | head -c 100 >/dev/null;'
        ' echo "status=${PIPESTATUS[0]}" >&2'
    )
    result = in_bash(script, cosmos_settings, tmp_path)
    stderr = result.stderr.decode(errors="replace")
    *noise, status = stderr.splitlines()
    assert noise == [], stderr[-600:]
    assert int(status.removeprefix("status=")) in READER_GONE_OK


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="Linux's full device")
def test_a_full_disk_is_a_one_line_error_and_a_failure(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    """`ls > /dev/full`: "ls: write error: No space left on device", exit 2."""
    stored(cosmos_settings, 2)
    with open("/dev/full", "wb") as full:
        result = cli(["events"], cosmos_settings, tmp_path, stdout=full)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0
    assert "Traceback" not in stderr, stderr[-600:]
    assert 1 <= len(stderr.splitlines()) <= 2, stderr


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="`>&-` is bash's")
def test_a_closed_stdout_is_an_error_not_a_silent_success(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    """`ls >&-`: "ls: write error: Bad file descriptor", exit 2. A job that loses the listing
    must not be told it succeeded."""
    stored(cosmos_settings, 2)
    result = in_bash('"$0" -m acr_webhook events >&-', cosmos_settings, tmp_path)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0
    assert stderr.strip() and "Traceback" not in stderr, stderr[-600:]


def test_serve_keeps_serving_when_its_output_reader_went_away(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    """A CI job waits for the banner (`serve | grep -m1 listening &`) and then posts events:
    grep is gone by the next banner line, and the host must go on answering, quietly."""
    port = free_port()
    env = {**app_environment(cosmos_settings), "LOCAL_FUNCTION_KEY": "pipeline-key"}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "acr_webhook", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    answered = None
    try:
        deadline = time.monotonic() + 20
        while answered is None and process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(requests.ConnectionError):
                answered = post_json(
                    f"http://127.0.0.1:{port}/api/acr/webhook?code=pipeline-key",
                    b'{"action": "ping"}',
                ).status_code
            time.sleep(0.1)
        alive = process.poll() is None
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    stderr = err.decode(errors="replace")
    assert alive and answered == 204, f"status {process.returncode}: {stderr[-600:]}"
    assert not [noise for noise in NOISE if noise in stderr], stderr[-600:]


def test_serve_on_a_port_in_use_says_so_in_one_line(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    """Two CI jobs on one runner, or a leftover host: the second one must say which port is
    taken, not print waitress's traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {**app_environment(cosmos_settings), "LOCAL_FUNCTION_KEY": "pipeline-key"}
        result = cli(["serve", "--port", str(port)], cosmos_settings, tmp_path, env=env)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0
    assert "Traceback" not in stderr and str(port) in stderr, stderr[-600:]


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="scripts/dev is bash")
def test_the_dev_script_names_an_unusable_setting_without_a_traceback(tmp_path: Path) -> None:
    """The CLI says "configuration error: COSMOS_ENDPOINT must be an https:// URL" (exit 2);
    ./scripts/dev reads the same settings first, in its own Python snippet."""
    from tests.e2e.test_dev_script_e2e import checkout_of_the_repository

    checkout = checkout_of_the_repository(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(APP_SETTING_PREFIXES)}
    env.pop("PYTHONPATH", None)
    env["COSMOS_ENDPOINT"] = "myaccount.documents.azure.com"  # the scheme forgotten
    result = subprocess.run(
        [str(checkout / "scripts" / "dev")],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert "COSMOS_ENDPOINT" in result.stderr


# --- stdout is data, stderr diagnostics, in a non-interactive environment ---------------------


def test_json_on_stdout_is_every_stored_value_and_stderr_is_empty_without_a_terminal(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    """A cron job: no TTY, stdin /dev/null, no HOME, TERM=dumb, NO_COLOR, the C locale, and a
    working directory of its own (settings from the environment alone). Odd characters come
    back exactly as stored; a lone surrogate, which jq refuses, as U+FFFD."""
    documents = stored(cosmos_settings, 3, **ODD)
    env = {
        **{k: v for k, v in app_environment(cosmos_settings).items() if k != "HOME"},
        "TERM": "dumb",
        "NO_COLOR": "1",
        "LANG": "C",
        "LC_ALL": "C",
    }
    as_json = cli(
        ["events", "--json"], cosmos_settings, tmp_path, env=env, stdin=subprocess.DEVNULL
    )
    assert as_json.returncode == 0, as_json.stderr[-600:]
    assert as_json.stderr == b""
    body = json.loads(as_json.stdout)
    assert body["continuation"] is None
    shown = [{**d, "registry": d["registry"].replace("\ud800", "\ufffd")} for d in documents]
    assert sorted(body["events"], key=lambda d: d["id"]) == sorted(shown, key=lambda d: d["id"])


# --- Ctrl+C and SIGTERM while the database or the queue hangs ---------------------------------


@contextlib.contextmanager
def hung_service() -> Iterator[socket.socket]:
    """A port that accepts connections and never answers (a frozen server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(20)
        yield listener


def stopped_while_waiting(
    command: list[str], env: dict[str, str], cwd: Path, listener: socket.socket, signum: int
) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """Runs ``command``, sends ``signum`` once it is waiting on ``listener``; the result and
    how long the command took to stop."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        connection, _ = listener.accept()  # it has connected and waits for an answer
        with connection:
            time.sleep(0.2)
            sent = time.monotonic()
            process.send_signal(signum)
            out, err = process.communicate(timeout=10)
            took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, out, err), took


@pytest.mark.parametrize(
    ("command", "service", "signum"),
    [
        (["events"], "cosmos", signal.SIGINT),
        (["events"], "cosmos", signal.SIGTERM),
        (["redrive"], "queue", signal.SIGINT),
    ],
    ids=["events-SIGINT", "events-SIGTERM", "redrive-SIGINT"],
)
def test_ctrl_c_or_sigterm_while_waiting_stops_at_once_without_a_traceback(
    cosmos_settings: Settings,
    tmp_path: Path,
    command: list[str],
    service: str,
    signum: int,
) -> None:
    """Ctrl+C: "interrupted", exit 130; SIGTERM: the default, killed by it (143 in a shell).
    redrive says what it moved before the stop, nothing here."""
    with hung_service() as listener:
        port = listener.getsockname()[1]
        env = app_environment(cosmos_settings)
        if service == "cosmos":
            env["COSMOS_ENDPOINT"] = f"https://127.0.0.1:{port}/"
        else:
            env["AzureWebJobsStorage"] = (
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
                + "QUJD" * 22
                + f";QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            )
        result, took = stopped_while_waiting(
            [sys.executable, "-m", "acr_webhook", *command], env, tmp_path, listener, signum
        )
    stderr = result.stderr.decode(errors="replace")
    assert took < 3
    moved = f"Moved 0 message(s) from '{FALLBACK_QUEUE_NAME}-poison' to '{FALLBACK_QUEUE_NAME}'"
    assert result.stdout == (f"{moved} for replay\n".encode() if command == ["redrive"] else b"")
    if signum == signal.SIGINT:
        assert (result.returncode, stderr) == (130, "interrupted\n")
    else:
        assert (result.returncode, stderr) == (-signal.SIGTERM, "")
