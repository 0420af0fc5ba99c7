"""Runs ``python -m acr_webhook serve`` as a real process, as a user would."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from acr_webhook.config import Settings
from tests.support.cosmos_server import REPO_ROOT


def run_python(
    args: list[str], workdir: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """``python <args>`` in a fresh process to completion, with ``env`` and the repository
    importable (PYTHONPATH); the caller checks the exit code."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=workdir,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_cli(
    args: list[str], workdir: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``python -m acr_webhook <args>`` to completion, with only ``env`` (and PYTHONPATH)."""
    path = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return run_python(["-m", "acr_webhook", *args], workdir, {**path, **env})


# Settings a child app process takes from its test alone, never from the caller's environment.
APP_SETTING_PREFIXES = ("COSMOS_", "LOCAL_", "WEBHOOK_", "AzureWebJobs")


def app_environment(settings: Settings, *also_own: str) -> dict[str, str]:
    """This process's environment without any app setting (those in APP_SETTING_PREFIXES and
    ``also_own``), plus PYTHONPATH and the Cosmos DB settings of ``settings``."""
    own = (*APP_SETTING_PREFIXES, *also_own)
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        COSMOS_ENDPOINT=settings.cosmos_endpoint,
        COSMOS_KEY=settings.cosmos_key or "",
        COSMOS_DATABASE=settings.cosmos_database,
        COSMOS_CONTAINER=settings.cosmos_container,
    )
    return env


def post_json(url: str, data: bytes, **headers: str) -> requests.Response:
    """POST ``data`` as JSON, as ACR and Event Grid do."""
    return requests.post(
        url, data=data, headers={"Content-Type": "application/json", **headers}, timeout=10
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServeProcess:
    """``serve`` with settings from the environment only: it runs in ``workdir``, where there
    is no local.settings.json, so a developer's own file cannot leak into the tests (unless the
    test writes one there). ``unset``: settings left out of its environment altogether, where
    ``settings`` would give them a value (an empty COSMOS_KEY, the database and container)."""

    def __init__(
        self,
        settings: Settings,
        workdir: Path,
        function_key: str | None = "e2e-key",
        extra_env: dict[str, str] | None = None,
        unset: tuple[str, ...] = (),
        launcher: tuple[str, ...] = ("-m", "acr_webhook"),
    ) -> None:
        """``launcher``: what runs the command after ``python`` (tests.support.patched)."""
        env = app_environment(settings)  # only what the test gives
        for name in unset:
            env.pop(name, None)
        if function_key is not None:
            env["LOCAL_FUNCTION_KEY"] = function_key
        env.update(extra_env or {})
        self.process = subprocess.Popen(
            [
                sys.executable,
                *launcher,
                "serve",
                "--host",
                "127.0.0.1",
                # Any free port, named by the banner: a port found free here first could be
                # taken by the other test worker's servers before serve binds it.
                "--port",
                "0",
            ],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.banner = self._read_banner()
        listening = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", self.banner)
        assert listening, self.banner
        self.base_url, self.port = listening.group(1), int(listening.group(2))
        match = re.search(r"\?code=(\S+)", self.banner)
        assert match, self.banner
        self.key = match.group(1)
        # serve logs a line per request: read them as they come, or the pipe fills (64 KiB) and
        # the server blocks on its next log line.
        self._output: list[str] = []
        self._reader = threading.Thread(target=self._keep_reading, daemon=True)
        self._reader.start()

    def _keep_reading(self) -> None:
        assert self.process.stdout is not None
        with contextlib.suppress(ValueError, OSError):  # closed by stop()
            for line in self.process.stdout:
                self._output.append(line)

    def output(self) -> str:
        """Everything printed so far, banner included."""
        return self.banner + "".join(self._output)

    def wait_for_output(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never printed:\n{self.output()}")
            time.sleep(0.05)
        return self.output()

    def _read_banner(self) -> str:
        """Everything printed up to the first route line, i.e. until it is listening."""
        assert self.process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("serve exited early:\n" + "".join(lines))
            lines.append(line)
            if "?code=" in line:
                return "".join(lines)
        raise RuntimeError("serve did not start:\n" + "".join(lines))

    def url(self, route: str = "acr/webhook", key: str | None = None) -> str:
        return f"{self.base_url}/api/{route}?code={self.key if key is None else key}"

    def rss_bytes(self) -> int:
        """The process's resident memory, from /proc (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match, status
        return int(match.group(1)) * 1024

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the process and return its exit code (with whatever it printed drained)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()  # a hung server must not outlive the test that found it
            raise
        self._reader.join(timeout=5)  # ends at the pipe's end
        if self.process.stdout:
            self.process.stdout.close()
        return code
