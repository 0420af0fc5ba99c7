"""Starts and controls Azurite's queue service (npm) for tests of the fallback queue."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

from acr_webhook.config import QueueSettings
from acr_webhook.fallback import create_queue_client, provision_queue
from tests.support.cosmos_server import NODE, REPO_ROOT, KeepsItsPortWhileStopped

# Azurite's published development account: not a secret.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

WITHOUT_TELEMETRY_SDK = Path(__file__).with_name("azurite_without_telemetry_sdk.js")


class LocalAzurite(KeepsItsPortWhileStopped):
    """One azurite-queue process, in memory; ``stop``/``start`` keep the port, ``close`` at the
    end lets it go."""

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"QueueEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def start(self) -> None:
        self._let_go()
        process = subprocess.Popen(
            [
                NODE,
                "--require",
                str(WITHOUT_TELEMETRY_SDK),
                str(REPO_ROOT / "node_modules" / ".bin" / "azurite-queue"),
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                str(self.port),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                # As ./scripts/dev: nothing sent out, nothing left in /tmp. What lets
                # WITHOUT_TELEMETRY_SDK stand in for the SDK.
                "--disableTelemetry",
                "--loose",
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            seen.append(line)
            match = re.search(r"listens on http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                self._process = process
                return
            if not line and process.poll() is not None:
                break
        process.kill()
        raise RuntimeError("azurite-queue did not start:\n" + "".join(seen))

    def stop(self) -> None:
        """Connections are refused and the queues are gone; the port stays this Azurite's
        (``bound_port``) until ``start`` or ``close``."""
        if self._process is not None:
            # SIGKILL: Azurite's graceful stop waits for idle keep-alive connections to close.
            self._process.kill()
            self._process.wait(timeout=10)
            if self._process.stdout:
                self._process.stdout.close()
            self._process = None
            self._hold(self.port)


def new_queue(azurite: LocalAzurite, name: str | None = None) -> QueueSettings:
    """A queue on ``azurite``, created: a fresh name unless ``name`` is given."""
    queue = QueueSettings(
        name or f"q{uuid.uuid4().hex[:16]}", connection_string=azurite.connection_string
    )
    provision_queue(queue)
    return queue


def raw_messages(queue: QueueSettings) -> list[str]:
    """The visible messages, as stored, in queue order."""
    client = create_queue_client(queue, {}, base64_messages=False)
    return [str(m.content) for m in client.peek_messages(max_messages=32)]
