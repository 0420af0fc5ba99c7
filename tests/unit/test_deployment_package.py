"""What is deployed stands apart from the local stand-ins for Azure (issue 13): the function app
imports nothing from acr_webhook.local nor any development-only package, and .funcignore keeps
the stand-ins out of the deployment package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Packages only requirements-dev.txt installs (the local host, its timers, the tests).
DEV_ONLY = ("acr_webhook.local", "waitress", "croniter", "pytest", "hypothesis", "aiohttp")


def test_the_function_app_imports_no_local_stand_in_and_no_dev_package(tmp_path: Path) -> None:
    """function_app as the worker imports it, in a fresh process."""
    probe = (
        "import json, sys; import function_app; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({DEV_ONLY!r}))))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_funcignore_leaves_the_local_stand_ins_out_of_the_package() -> None:
    ignored = (REPO_ROOT / ".funcignore").read_text().split()
    assert "acr_webhook/local" in ignored
    runtime = (REPO_ROOT / "requirements.txt").read_text()
    for package in ("waitress", "croniter", "aiohttp"):
        assert package not in runtime  # dev-only: the deployed app must not need them
