"""What the dev loop leaves in a checkout (scripts/bootstrap, scripts/test, ./scripts/dev, the CLI,
./scripts/bench, an azd environment) is ignored by git as git itself reads .gitignore: files are
made in a scratch repository holding the same .gitignore, and `git status` must list none of
them. tests/infra/test_package.py holds .funcignore to the same list; this holds .gitignore,
through git's own matcher and at the depths the files really appear (bench/.venv,
tests/support/__pycache__)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.cosmos_server import REPO_ROOT

# Seen in `git status --porcelain --ignored` after that loop, plus what the tests' runs and azd
# make (hypothesis, an azd environment, the remote build's packages, a pip install -e).
MADE_BY_THE_DEV_LOOP = [
    ".venv/pyvenv.cfg",
    ".venv/bin/node",
    "node_modules/.bin/azurite",
    "node_modules/azurite/package.json",
    "__pycache__/function_app.cpython-311.pyc",
    "acr_webhook/__pycache__/config.cpython-311.pyc",
    "acr_webhook/local/__pycache__/host.cpython-311.pyc",
    "tests/support/__pycache__/payloads.cpython-311.pyc",
    "bench/__pycache__/run.cpython-311.pyc",
    "bench/.venv/pyvenv.cfg",
    "bench/.venv/.installed",
    ".pytest_cache/v/cache/nodeids",
    ".mypy_cache/3.11/function_app.data.json",
    ".ruff_cache/CACHEDIR.TAG",
    ".hypothesis/examples/0a1b/2c3d",
    "local.settings.json",
    ".azure/config.json",
    ".azure/dev/.env",
    ".python_packages/lib/site-packages/x.py",
    "acr_webhook.egg-info/PKG-INFO",
]


def git(cwd: Path, *args: str) -> str:
    # Without the machine's or the user's git config: a global excludes file would hide what
    # the repository's own .gitignore misses.
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout


def untracked_and_not_ignored(tmp_path: Path, paths: list[str]) -> list[str]:
    """The paths `git status` would offer to add in a checkout holding them."""
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_bytes((REPO_ROOT / ".gitignore").read_bytes())
    for path in paths:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x\n")
    listed = git(tmp_path, "status", "--porcelain", "--untracked-files=all", "-z")
    shown = [entry[3:] for entry in listed.split("\0") if entry.startswith("?? ")]
    return sorted(path for path in shown if path != ".gitignore")


def test_what_the_dev_loop_makes_is_ignored(tmp_path: Path) -> None:
    assert untracked_and_not_ignored(tmp_path, MADE_BY_THE_DEV_LOOP) == []


def test_the_check_sees_a_file_gitignore_misses(tmp_path: Path) -> None:
    assert untracked_and_not_ignored(tmp_path, ["acr_webhook/new_module.py"]) == [
        "acr_webhook/new_module.py"
    ]


def test_no_tracked_file_is_one_gitignore_ignores() -> None:
    """A tracked file matched by .gitignore is one whose new siblings would silently stay out."""
    assert git(REPO_ROOT, "ls-files", "--cached", "--ignored", "--exclude-standard") == ""


def test_environment_files_with_secrets_are_ignored(tmp_path: Path) -> None:
    """.funcignore keeps `.env*` out of the deployment package as files with secrets (a
    WEBHOOK_SECRET or COSMOS_KEY for python-dotenv, direnv, VS Code); git should keep them out
    of a commit too."""
    assert untracked_and_not_ignored(tmp_path, [".env", ".env.local"]) == []
