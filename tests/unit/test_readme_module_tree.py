"""Adding a module to acr_webhook, followed on 2026-12-07 (acr_webhook/digests.py, imported by
handlers): test_architecture asked for its group, test_package for `git add` (the shipped
copy is made from tracked files), and nothing for README's Development tree, the map a new
maintainer reads first. This keeps that tree and the package's modules the same."""

from __future__ import annotations

import re

from tests.infra.test_deploy_docs import README, section
from tests.support.repository import tracked_files

ENTRY = re.compile(r"^( *)(\S+)(?:\s{2,}\S.*)?$")
DESCRIPTION_COLUMN = 20  # a line indented this far continues the description above it


def readme_tree() -> set[str]:
    """The paths the Development section's tree names, folders ending in /."""
    block = section(README, "## Development").split("```")[1]
    paths: set[str] = set()
    parents: dict[int, str] = {}
    for line in block.splitlines():
        found = ENTRY.match(line)
        if not line.strip() or not found or len(found.group(1)) >= DESCRIPTION_COLUMN:
            continue
        level = len(found.group(1)) // 2
        parent = parents.get(level - 1, "") if level else ""
        path = parent + found.group(2)
        parents[level] = path
        paths.add(path)
    return paths


def package_modules() -> set[str]:
    return {
        path
        for path in tracked_files()
        if path.startswith("acr_webhook/")
        and path.endswith(".py")
        and not path.endswith("/__init__.py")
    }


def test_the_tree_reader_sees_nested_entries() -> None:
    """Control: a module, a nested one, and a folder are read with their full paths."""
    tree = readme_tree()
    assert {"function_app.py", "acr_webhook/models.py", "acr_webhook/local/host.py"} <= tree
    assert "acr_webhook/local/" in tree


def test_readmes_development_tree_lists_every_module_of_the_package() -> None:
    listed = {path for path in readme_tree() if path.startswith("acr_webhook/")}
    listed = {path for path in listed if path.endswith(".py")}
    assert listed == package_modules(), (
        "README's Development tree and acr_webhook's modules differ: "
        f"not listed {sorted(package_modules() - listed)}, "
        f"listed but absent {sorted(listed - package_modules())}"
    )
