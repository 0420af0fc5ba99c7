"""The repository's own files, as a fresh clone has them."""

from __future__ import annotations

import subprocess
from functools import cache

from tests.support.cosmos_server import REPO_ROOT


@cache
def tracked_files() -> tuple[str, ...]:
    """A fresh clone's files, relative to the repository root: what CI sees, without what a
    run leaves in the work tree (.venv, bench's own venv, node_modules, caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    return tuple(sorted(path for path in listed.split("\0") if path))
