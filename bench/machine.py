"""What the figures were measured on: hardware, versions, and which code."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from tests.support.cosmos_server import NODE, REPO_ROOT

PACKAGES = ("azure-functions", "azure-cosmos", "azure-core", "pydantic", "pydantic-core")
PRODUCT_PATHS = ("acr_webhook", "function_app.py", "requirements.txt")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _command(*args: str) -> str:
    try:
        done = subprocess.run(
            args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def _code() -> str:
    commit = _command("git", "rev-parse", "--short", "HEAD")
    changed = _command("git", "status", "--porcelain", "--", *PRODUCT_PATHS)
    return f"{commit} + uncommitted product changes" if changed else commit


def _cosmos_server_version() -> str:
    manifest = REPO_ROOT / "node_modules" / "@vercel" / "cosmosdb-server" / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def describe_machine() -> dict[str, str]:
    description = {
        "Date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "CPU": _cpu_model(),
        "Cores": str(os.cpu_count()),
        "Memory": _memory(),
        # Other work on the machine skews every figure; ratios (interleaved runs) suffer least.
        "Load average at start (1/5/15 min)": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "Node": _command(NODE, "--version"),
        "@vercel/cosmosdb-server": _cosmos_server_version(),
    }
    description.update({name: metadata.version(name) for name in PACKAGES})
    description["Code (git)"] = _code()
    return description
