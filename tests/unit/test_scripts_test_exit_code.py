"""scripts/test is what CI runs (.ci/run) and what every maintenance procedure ends with
(README: edit a pin, run ./scripts/lock, then ./scripts/test): each of its steps that fails
must fail the command, or a red step reads as green. Run here in a copy of scripts/ whose
bootstrap does nothing and whose .venv/bin tools are stand-ins that fail one step each."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cosmos_server import REPO_ROOT

# The step -> how its stand-in recognises being asked to run it ($0 and "$@").
STEPS = {
    "ruff check": ("ruff", '[ "$1" = check ]'),
    "ruff format --check": ("ruff", '[ "$1" = format ]'),
    "mypy": ("mypy", "true"),
    "pytest": ("python", '[ "$1 $2" = "-m pytest" ]'),
}


def run_scripts_test(tmp_path: Path, failing: str | None) -> tuple[int, str]:
    """scripts/test in a clone where only the step ``failing`` exits 1: its exit code and
    the steps that ran, in order."""
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "scripts" / "test", clone / "scripts" / "test")
    (clone / "scripts" / "bootstrap").write_text("# stand-in: everything is installed\n")
    tools = clone / ".venv" / "bin"
    tools.mkdir(parents=True)
    ran = tmp_path / "ran"
    tool, condition = STEPS[failing] if failing else ("", "")
    for name in ("ruff", "mypy", "python"):
        fails = f"if {condition}; then exit 1; fi\n" if name == tool else ""
        (tools / name).write_text(f'#!/bin/bash\necho "{name} $*" >>"{ran}"\n{fails}exit 0\n')
        (tools / name).chmod(0o755)
    result = subprocess.run(
        ["bash", str(clone / "scripts" / "test")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode, ran.read_text() if ran.exists() else ""


@pytest.mark.parametrize("failing", ["ruff format --check", "mypy", "pytest"])
def test_a_failing_step_fails_scripts_test(tmp_path: Path, failing: str) -> None:
    code, ran = run_scripts_test(tmp_path, failing)
    assert code != 0, f"{failing} failed, scripts/test exited 0; steps run:\n{ran}"


def test_a_failing_ruff_check_fails_scripts_test(tmp_path: Path) -> None:
    """Measured: exit 0, the format check skipped, mypy and pytest run as if all were well."""
    code, ran = run_scripts_test(tmp_path, "ruff check")
    assert code != 0, f"ruff check failed, scripts/test exited 0; steps run:\n{ran}"


def test_with_no_step_failing_each_runs_once_in_order(tmp_path: Path) -> None:
    """The control: the stand-ins see every step, and the exit is 0."""
    code, ran = run_scripts_test(tmp_path, None)
    assert code == 0
    assert [line.split(" -")[0] for line in ran.splitlines()] == [
        "ruff check .",
        "ruff format",
        "mypy .",
        "python",
    ]
