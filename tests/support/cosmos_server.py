"""Starts and controls the local Cosmos DB API server (scripts/cosmos-server.js) for tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The emulator's published, well-known key: not a secret.
EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DDJBQ9WyKQ5+Y9nC0WZgxS93i7ivjmsGuR1Aj9iDZn6/Uw=="
)


class LocalCosmosServer:
    """One node process; ``stop``/``start`` keep the port, ``freeze``/``thaw`` keep the data."""

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def start(self) -> None:
        process = subprocess.Popen(
            ["node", str(REPO_ROOT / "scripts" / "cosmos-server.js"), str(self.port)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"listening on https://127\.0\.0\.1:(\d+)/", line)
        if not match:
            process.kill()
            raise RuntimeError(f"local Cosmos DB API server did not start: {line!r}")
        self.port = int(match.group(1))
        self._process = process

    def stop(self) -> None:
        """Stop the process: connections are refused and the in-memory data is gone."""
        if self._process is not None:
            self.thaw()
            self._process.terminate()
            self._process.wait(timeout=10)
            if self._process.stdout:
                self._process.stdout.close()
            self._process = None

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but nothing ever answers."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)
