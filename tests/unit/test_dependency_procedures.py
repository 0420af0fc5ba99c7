"""README's procedure for changing a dependency, followed on 2026-12-07 for each kind of pin.

Python pins (requirements*.txt): edit the pin, ./scripts/lock, ./scripts/test, as README says;
pydantic 2.14.3 -> 2.14.4 moved pydantic-core in the locked section and the tests passed.
The Node packages (package.json's exact pins: the local Cosmos DB API server, Azurite, the Kusto
parser) have a lock too, package-lock.json, which scripts/lock does not touch. Followed as
README words it (azurite 3.37.0 -> 3.36.0, then ./scripts/lock, then ./scripts/test),
bootstrap's `npm ci` stopped the suite with EUSAGE and npm's usage text, advising a bare
`npm install`: the machine's npm, which the project never runs (tests/unit/
test_node_from_venv.py). `.venv/bin/npm install` was the step missing."""

from __future__ import annotations

from tests.infra.test_deploy_docs import README, section


def development() -> str:
    return section(README, "## Development")


def test_readme_gives_the_python_pin_procedure() -> None:
    """The control: the Python procedure is where a maintainer looks for it."""
    text = " ".join(development().split())
    assert "edit its pin and run `./scripts/lock`" in text
    assert "`./scripts/test` then installs and checks them" in text


def test_readme_gives_the_node_package_procedure() -> None:
    text = " ".join(development().split())
    assert "package.json" in text and ".venv/bin/npm install" in text
