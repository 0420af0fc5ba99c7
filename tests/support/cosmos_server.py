"""Starts and controls the local Cosmos DB API server (scripts/cosmos-server.js) for tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The Node.js scripts/bootstrap links into .venv (PyPI's build, pinned in requirements-dev.txt),
# never the machine's: the same supported version on every machine.
NODE = str(REPO_ROOT / ".venv" / "bin" / "node")
# The emulator's published, well-known key: not a secret.
EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DDJBQ9WyKQ5+Y9nC0WZgxS93i7ivjmsGuR1Aj9iDZn6/Uw=="
)


def bound_port(port: int = 0) -> socket.socket | None:
    """A loopback socket bound to ``port`` (0: any free one) that never listens: a connection
    to it is refused, and while it is open no bind to port 0 gets that port, the other test
    worker's servers, proxies and hosts included (a port found free and let go is theirs to
    take). SO_REUSEADDR: a stopped server's port may have connections in TIME_WAIT. None if
    the port is bound already."""
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        held.bind(("127.0.0.1", port))
    except OSError:
        held.close()
        return None
    return held


class KeepsItsPortWhileStopped:
    """A local server whose port stays its own while it is stopped (``bound_port``), so that a
    test expecting refused connections, or a restart on the same port, gets them."""

    _held: socket.socket | None = None

    def stop(self) -> None:
        raise NotImplementedError

    def _hold(self, port: int) -> None:
        self._held = bound_port(port)

    def close(self) -> None:
        """Stop for good, and let the port go."""
        self.stop()
        self._let_go()

    def _let_go(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None


class LocalCosmosServer(KeepsItsPortWhileStopped):
    """One node process; ``stop``/``start`` keep the port, ``freeze``/``thaw`` keep the data;
    ``close`` at the end lets the port go."""

    def __init__(self, keep_alive_s: float | None = None) -> None:
        """``keep_alive_s``: how long the server keeps a connection left idle (Node.js's 5 s if
        None)."""
        self.port = 0
        self._keep_alive_s = keep_alive_s
        self._process: subprocess.Popen[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self._let_go()
        process = subprocess.Popen(
            [NODE, str(REPO_ROOT / "scripts" / "cosmos-server.js"), str(self.port)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ
            if self._keep_alive_s is None
            else {**os.environ, "COSMOS_SERVER_KEEP_ALIVE_S": str(self._keep_alive_s)},
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
        """Stop the process: connections are refused and the in-memory data is gone. The port
        stays this server's (``bound_port``) until ``start`` or ``close``."""
        if self._process is not None:
            self.thaw()
            self._process.terminate()
            self._process.wait(timeout=10)
            if self._process.stdout:
                self._process.stdout.close()
            self._process = None
            self._hold(self.port)

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but nothing ever answers."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)
