"""The scripts the docs tell a user to run by path (`./scripts/dev`, `scripts/bootstrap`, azd's
`./infra/hooks/postdeploy.sh`) are executable in git and start with a shebang, so a fresh clone
runs them as written; no other file is executable or carries a shebang (a stray bit or `#!` is
a file nobody meant to run)."""

from __future__ import annotations

import re
import subprocess

from tests.support.cosmos_server import REPO_ROOT
from tests.support.repository import tracked_files

# Where a user or a tool is told what to run: the docs, azd's hooks, CI's own entry point.
RUN_BY_PATH = re.compile(r"(?:^|[\s`(\"'])(\.?/?(?:scripts|infra/hooks|\.ci)/[\w.-]+)", re.M)
INTERPRETERS = {"#!/usr/bin/env bash", "#!/bin/sh"}


def git_modes() -> dict[str, str]:
    """Each tracked file's mode as committed (100644 or 100755), not the work tree's."""
    listed = subprocess.run(
        ["git", "ls-files", "-s", "-z"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    modes = {}
    for entry in filter(None, listed.split("\0")):
        meta, path = entry.split("\t", 1)
        modes[path] = meta.split()[0]
    return modes


def named_to_run() -> set[str]:
    texts = [name for name in tracked_files() if name.endswith((".md", ".yaml"))]
    found = set()
    for name in [*texts, ".ci/run", "scripts/test", "scripts/dev", "scripts/bench"]:
        for match in RUN_BY_PATH.finditer((REPO_ROOT / name).read_text()):
            path = match.group(1).removeprefix("./").removeprefix("/")
            if path in tracked_files() and not path.endswith((".js", ".ps1")):
                found.add(path)  # .js runs as `node x.js`; azure.yaml runs .ps1 with pwsh
    return found


def test_every_script_the_docs_run_by_path_is_executable_with_a_shebang() -> None:
    named = named_to_run()
    # The scan still finds what it is for.
    assert {"scripts/dev", "scripts/test", "scripts/bootstrap"} <= named
    assert "infra/hooks/postdeploy.sh" in named
    modes = git_modes()
    assert {path: modes[path] for path in named} == dict.fromkeys(named, "100755")
    first_lines = {path: (REPO_ROOT / path).read_text().splitlines()[0] for path in named}
    assert {path: line for path, line in first_lines.items() if line not in INTERPRETERS} == {}


def test_only_scripts_are_executable_and_only_executables_have_a_shebang() -> None:
    modes = git_modes()
    executable = {path for path, mode in modes.items() if mode == "100755"}
    shebang = {path for path in modes if (REPO_ROOT / path).read_bytes().startswith(b"#!")}
    assert executable == shebang
    assert executable == named_to_run() | {".ci/run"}  # CI runs `bash .ci/run`: executable too
    assert set(modes.values()) <= {"100644", "100755"}  # no symlink or submodule committed
