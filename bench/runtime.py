"""The interpreter cold starts run in: a venv with requirements.txt alone, as deployed.

The development venv also holds the dev tools' dependencies (bench's own aiohttp floor, which
azure-storage-queue then imports if present), so cold starts measured there would import
modules the Function App never has. This venv is made on first use and remade whenever
requirements.txt changes (about 10 s); if that fails (no package index), the cold starts run in
the development venv and the report says so.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass

from tests.support.cosmos_server import REPO_ROOT

REQUIREMENTS = REPO_ROOT / "requirements.txt"
# Ignored by git, ruff and mypy like the root .venv (their patterns match at any depth).
RUNTIME_VENV = REPO_ROOT / "bench" / ".venv"


@dataclass(frozen=True)
class Interpreter:
    python: str
    description: str


def _install() -> None:
    subprocess.run(
        [sys.executable, "-m", "venv", "--clear", str(RUNTIME_VENV)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            str(RUNTIME_VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


def runtime_interpreter() -> Interpreter:
    stamp = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    marker = RUNTIME_VENV / ".installed"
    try:
        if not marker.is_file() or marker.read_text().strip() != stamp:
            print("   creating bench/.venv from requirements.txt ...", flush=True)
            _install()
            marker.write_text(stamp + "\n")
    except (OSError, subprocess.SubprocessError) as error:
        stderr = getattr(error, "stderr", b"") or b""
        print(f"   could not make bench/.venv ({error}):\n{stderr.decode()[-2000:]}", flush=True)
        return Interpreter(
            sys.executable,
            "development .venv (bench/.venv could not be made): dev-only packages are "
            "importable, so some imports may not happen when deployed",
        )
    return Interpreter(
        str(RUNTIME_VENV / "bin" / "python"), "bench/.venv: requirements.txt only, as deployed"
    )
