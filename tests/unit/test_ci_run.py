""".ci/run on a machine that may have nothing installed: its list of what the suite needs holds
every program the tests start and everything scripts/bootstrap runs, and it installs with
apt-get exactly what is missing (through sudo when not root), nothing when all is there.
A bare Debian bookworm root (debootstrap --variant=minbase) lacked Python 3.11 with venv, git
and the CA bundle; with them .ci/run passed whole there. apt-get, sudo and id are stand-ins
here: no root, no network."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import lock
from tests.support.cosmos_server import REPO_ROOT
from tests.support.repository import tracked_files

CI_RUN = REPO_ROOT / ".ci" / "run"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STARTERS = {"run", "Popen", "call", "check_call", "check_output", "create_subprocess_exec"}


def required() -> dict[str, str]:
    """.ci/run's ``required`` list: each program it makes sure of, and the package that has it."""
    block = re.search(r"^required=\(\n(.*?)^\)", CI_RUN.read_text(), re.MULTILINE | re.DOTALL)
    assert block, ".ci/run has no required=( ... ) list"
    programs = {}
    for line in block.group(1).splitlines():
        entry = line.split("#", 1)[0].strip().strip('"')
        package, _, names = entry.partition(":")
        programs.update(dict.fromkeys(names.split(), package))
    return programs


def programs_started(tree: ast.AST) -> set[str]:
    """Programs a Python file starts by name: an argument list's first item given to
    subprocess's starters, or what shutil.which looks up."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        first = node.args[0]
        if name in STARTERS and isinstance(first, ast.List | ast.Tuple) and first.elts:
            first = first.elts[0]
        elif name != "which":
            continue
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            found.add(first.value.split(" ", 1)[0].rsplit("/", 1)[-1])
    return found


def test_the_python_check_finds_started_programs() -> None:
    code = 'subprocess.run(["git", "ls-files"]); Popen(("/bin/bash", "-c", s)); shutil.which("sh")'
    assert programs_started(ast.parse(code)) == {"git", "bash", "sh"}
    ignored = 'run([sys.executable, "-m", "x"]); run([NODE, "x.js"]); d.get("git"); ["ip"]'
    assert programs_started(ast.parse(ignored)) == set()


def test_every_program_the_python_files_start_is_one_ci_run_makes_sure_of() -> None:
    """Everything else is started as sys.executable or from .venv (Node.js included)."""
    started: dict[str, list[str]] = {}
    for name in tracked_files():
        path = REPO_ROOT / name
        if not name.startswith(("tests/", "acr_webhook/", "bench/")) or path.suffix != ".py":
            continue
        text = path.read_text()
        if ("subprocess" not in text and "which(" not in text) or path == Path(__file__):
            continue
        for program in programs_started(ast.parse(text)):
            started.setdefault(program, []).append(name)
    assert {"git", "bash"} <= started.keys()  # the scan still sees what it is for
    known = required().keys() | {"bash", "sh"}  # .ci/run runs in bash; sh is Essential
    assert {name: where for name, where in started.items() if name not in known} == {}


def linked_bin(tmp_path: Path, names: set[str]) -> Path:
    """A folder holding only ``names``, each linked to this machine's program of that name."""
    folder = tmp_path / "bin"
    folder.mkdir(parents=True)
    for name in sorted(names):
        # python3.11 may be a pyenv shim (a script that needs more): link the interpreter.
        found = os.path.realpath(sys.executable) if name == "python3.11" else shutil.which(name)
        assert found, f"{name} is not on this machine"
        (folder / name).symlink_to(found)
    return folder


@pytest.mark.skipif(
    not (REPO_ROOT / ".venv" / ".installed").is_file()
    or not (REPO_ROOT / "node_modules" / ".installed").is_file(),
    reason="needs the bootstrapped .venv and node_modules of this clone",
)
def test_bootstrap_runs_with_only_what_ci_run_makes_sure_of(tmp_path: Path) -> None:
    """PATH holds .ci/run's list and nothing else: bootstrap checks Python, finds everything
    installed and is done."""
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copytree(REPO_ROOT / "scripts", clone / "scripts")
    for name in (*(path.name for path in lock.FILES), "package.json", "package-lock.json"):
        shutil.copy(REPO_ROOT / name, clone / name)
    for name in (".venv", "node_modules"):
        (clone / name).symlink_to(REPO_ROOT / name)
    path = linked_bin(tmp_path, set(required()) | {"bash"})
    result = subprocess.run(
        ["bash", str(clone / "scripts" / "bootstrap")],
        env={"PATH": str(path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert "Installing" not in result.stdout  # found, not reinstalled: the stamps matched


STAND_INS = {
    "apt-get": 'echo "apt-get $*" >>"$CALLS"',
    "sudo": 'echo "sudo $*" >>"$CALLS"; shift; exec "$@"',  # shift: -n
    "id": 'echo "$UID_HERE"',
}


def run_ci(tmp_path: Path, *, lacking: set[str], uid: int, sudo: bool = True) -> tuple[int, str]:
    """.ci/run in a clone whose scripts/test only reports, on a PATH of .ci/run's list less
    ``lacking``, with stand-ins for apt-get, id and (when ``sudo``) sudo: its exit code and
    what was printed and called."""
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    shutil.copy(CI_RUN, clone / ".ci" / "run")
    (clone / "scripts").mkdir()
    test = clone / "scripts" / "test"
    test.write_text('#!/bin/bash\necho "suite ran NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS"\n')
    test.chmod(0o755)
    path = linked_bin(tmp_path, (set(required()) - lacking) | {"bash"})
    for name, body in STAND_INS.items():
        if name != "sudo" or sudo:
            (path / name).unlink(missing_ok=True)
            (path / name).write_text(f"#!/bin/bash\n{body}\n")
            (path / name).chmod(0o755)
    calls = tmp_path / "calls"
    env = {"PATH": str(path), "CALLS": str(calls), "UID_HERE": str(uid)}
    result = subprocess.run(
        ["bash", str(clone / ".ci" / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    called = calls.read_text() if calls.exists() else ""
    return result.returncode, result.stdout + result.stderr + called


needs_bundle = pytest.mark.skipif(
    not CA_BUNDLE.is_file(), reason="a machine without Debian's CA bundle: .ci/run would add it"
)


@needs_bundle
def test_a_machine_that_has_everything_installs_nothing(tmp_path: Path) -> None:
    code, out = run_ci(tmp_path, lacking=set(), uid=0)
    assert (code, out) == (0, f"suite ran NODE_EXTRA_CA_CERTS={CA_BUNDLE}\n")


@needs_bundle
def test_a_missing_program_is_installed_quietly_through_sudo_when_not_root(
    tmp_path: Path,
) -> None:
    code, out = run_ci(tmp_path, lacking={"git"}, uid=1000)
    assert code == 0, out
    assert out.splitlines() == [
        "Installing what this machine lacks: git ...",
        f"suite ran NODE_EXTRA_CA_CERTS={CA_BUNDLE}",
        "sudo -n apt-get update -qq",
        "apt-get update -qq",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "--no-install-recommends git",
        "apt-get install -y -qq --no-install-recommends git",
    ]


@needs_bundle
def test_root_installs_without_sudo_and_no_sudo_stops_with_what_to_install(
    tmp_path: Path,
) -> None:
    code, out = run_ci(tmp_path / "root", lacking={"git"}, uid=0, sudo=False)
    assert code == 0, out
    assert "apt-get install -y -qq --no-install-recommends git" in out
    assert "sudo" not in out
    code, out = run_ci(tmp_path / "user", lacking={"git"}, uid=1000, sudo=False)
    assert code == 1
    assert out == (
        "Installing what this machine lacks: git ...\n"
        "Not root and no sudo: install git (Debian packages), then run again.\n"
    )
