"""Known advisories in the Node packages (dev only: the local servers, never deployed), settled
in package.json. @zeit/cosmosdb-query 0.7.2, which the local Cosmos DB API server uses to run
queries and which is its newest release, pins @babel/traverse 7.6.2: GHSA-67hx-6x53-jw92
(CVE-2023-45133, critical, code run through ``path.evaluate``; fixed in 7.23.2). Its own code
never calls ``evaluate``, but a lock holding a critical advisory is one every scanner flags, so
package.json overrides it, and the integration tests run the server on the fixed version."""

from __future__ import annotations

import json

from tests.support.cosmos_server import REPO_ROOT

FIXED = (7, 23, 2)


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_every_babel_traverse_the_lock_installs_has_the_fix() -> None:
    packages = json.loads((REPO_ROOT / "package-lock.json").read_text())["packages"]
    found = {
        path: entry["version"]
        for path, entry in packages.items()
        if path.endswith("node_modules/@babel/traverse")
    }
    assert found  # the local Cosmos DB API server's query library still brings it
    assert {path: v for path, v in found.items() if version(v) < FIXED} == {}


def test_the_installed_babel_traverse_is_the_locked_one() -> None:
    installed = REPO_ROOT / "node_modules" / "@zeit" / "cosmosdb-query" / "node_modules"
    nested = installed / "@babel" / "traverse" / "package.json"
    top = REPO_ROOT / "node_modules" / "@babel" / "traverse" / "package.json"
    path = nested if nested.exists() else top
    assert version(json.loads(path.read_text())["version"]) >= FIXED
