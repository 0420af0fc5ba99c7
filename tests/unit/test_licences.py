"""The licences of what the Function App ships and of what only runs on developers' machines
and CI, read at test time from what each package declares, so that a lock refresh bringing a
package a platform team cannot ship without legal review fails here, by name.

- The runtime closure of requirements.txt (what the remote build installs into the Function
  App): permissive licences only, plus MPL-2.0 (below), each distribution carrying its licence
  text (the notice MIT, BSD and Apache-2.0 ask copies to keep).
- The dev closure (requirements-dev.txt beyond it), checkov's venv (requirements-checkov.txt,
  read by running its Python) and node_modules (the local Cosmos DB API server and Azurite):
  never deployed, so only no network copyleft (AGPL, SSPL: their terms
  reach whoever uses the program over a network), and every licence readable, so that none
  hides there.
"""

from __future__ import annotations

import email.message
import json
import re
import subprocess
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest

from scripts import lock
from tests.support.cosmos_server import REPO_ROOT
from tests.support.licences import (
    NETWORK_COPYLEFT,
    PERMISSIVE,
    UNKNOWN,
    Declared,
    category,
    classifiers_expression,
    declared,
    known_expression,
    npm_declared,
    satisfies,
)

# Licences whose package says nothing usable, read by hand: (registry, name) -> (the version
# read, SPDX expression, where it was read). A new version fails
# test_licences_read_by_hand_are_of_the_installed_versions until someone reads it again.
READ_BY_HAND: dict[tuple[str, str], tuple[str, str, str]] = {
    # package.json "license" is a URL (geraintluff.github.io/tv4/LICENSE.txt); the package's
    # README.md, "## License": "released as public-domain ... Anybody can modify or re-license
    # it for any purpose, without restriction." Reached through @vercel/cosmosdb-server.
    ("npmjs", "uri-templates"): ("0.2.0", "LicenseRef-Public-Domain", "node_modules README.md"),
}


def can_ship(licence_id: str) -> bool:
    """Permissive, or MPL-2.0: its copyleft is per file. It binds the MPL-covered files only
    (certifi's CA bundle and module), which ship unmodified with their source, and not the
    larger work that uses them (MPL-2.0 section 3.3), so the app's own code is untouched."""
    return category(licence_id) == PERMISSIVE or licence_id == "MPL-2.0"


def no_network_copyleft(licence_id: str) -> bool:
    return category(licence_id) not in {NETWORK_COPYLEFT, UNKNOWN}


def dev_only_closure() -> dict[str, str]:
    runtime = lock.runtime_closure()
    return {name: v for name, v in lock.dev_closure().items() if name not in runtime}


def read_by_hand(registry: str, name: str, version: str) -> Declared | None:
    """The table's entry, for the version it was read at only."""
    entry = READ_BY_HAND.get((registry, name))
    if entry is None or entry[0] != version:
        return None
    expression = known_expression(entry[1])
    assert expression is not None, entry
    return Declared(entry[1], f"read by hand: {entry[2]}", expression)


Metadata = email.message.Message | metadata.PackageMetadata


def python_licence(name: str, version: str, found: Metadata | None = None) -> Declared | None:
    """From ``found``, else from the test venv's metadata of ``name``."""
    read = found if found is not None else metadata.metadata(name)
    return declared(read) or read_by_hand("pypi", name, version)


# Run by checkov's own venv's Python: each distribution of its closure, its version and the
# metadata fields a licence is read from.
CHECKOV_METADATA = """
import json
from importlib import metadata
from scripts import lock
found = {}
for name, version in lock.closure(lock.requirements(lock.pinned_part(lock.CHECKOV))).items():
    read = metadata.metadata(name)
    fields = ("License-Expression", "License", "Classifier")
    found[name] = [version, {field: read.get_all(field) or [] for field in fields}]
print(json.dumps(found))
"""


@cache
def checkov_venv() -> dict[str, tuple[str, email.message.Message]]:
    """checkov's closure, as installed in .venv/checkov: name -> (version, its metadata)."""
    completed = subprocess.run(
        [str(lock.CHECKOV_PYTHON), "-c", CHECKOV_METADATA],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = {}
    for name, (version, fields) in json.loads(completed.stdout).items():
        message = email.message.Message()
        for field, values in fields.items():
            for value in values:
                message[field] = value
        found[name] = (version, message)
    return found


def failing(
    closure: dict[str, str],
    allowed: Callable[[str], bool],
    read: Callable[[str], Metadata | None] = lambda _name: None,
) -> dict[str, str]:
    """The distributions whose licence ``allowed`` refuses (or that declare none): name ->
    what they declare and where (``read``: a distribution's metadata from elsewhere)."""
    found = {}
    for name, version in sorted(closure.items()):
        licence = python_licence(name, version, read(name))
        if licence is None or not satisfies(licence.expression, allowed):
            found[f"{name}=={version}"] = (
                f"{licence.text} ({licence.source})" if licence else "none"
            )
    return found


def test_every_shipped_distribution_is_under_a_licence_that_ships_without_review() -> None:
    closure = lock.runtime_closure()
    assert len(closure) >= 30  # the closure really was read (39 when written)
    assert failing(closure, can_ship) == {}


def test_no_licence_classifier_of_a_shipped_distribution_needs_review() -> None:
    """The classifiers too, even where License-Expression wins: an MIT expression beside a GPL
    classifier is a question for the package's authors before it ships."""
    refused = {}
    for name in lock.runtime_closure():
        expression = classifiers_expression(metadata.metadata(name))
        if expression is not None and not satisfies(expression, can_ship):
            refused[name] = expression
    assert refused == {}


LICENCE_FILE = re.compile(r"(LICEN[CS]E|COPYING|NOTICE)", re.IGNORECASE)


def test_every_shipped_distribution_carries_its_licence_text() -> None:
    """The installed files of each (its dist-info, which the remote build installs into the
    app) hold a licence file: the notice MIT, BSD and Apache-2.0 ask every copy to keep."""
    without = [
        name
        for name in lock.runtime_closure()
        if not any(
            ".dist-info/" in str(path) and LICENCE_FILE.search(Path(str(path)).name)
            for path in metadata.distribution(name).files or []
        )
    ]
    assert without == []


def test_the_dev_closure_has_no_network_copyleft_and_every_licence_is_read() -> None:
    """Its MPL-2.0 (hypothesis, orjson, pathspec, tqdm) binds only whoever distributes those
    files: they run on developers' machines and CI and are never handed on."""
    closure = dev_only_closure()
    assert len(closure) >= 25  # 33 when written (99 with checkov, now in its own venv)
    assert failing(closure, no_network_copyleft) == {}


def test_the_checkov_venv_has_no_network_copyleft_and_every_licence_is_read() -> None:
    venv = checkov_venv()
    assert len(venv) >= 80  # 95 when written
    closure = {name: version for name, (version, _) in venv.items()}
    assert failing(closure, no_network_copyleft, lambda name: venv[name][1]) == {}


def node_packages() -> dict[str, tuple[str, Declared | None]]:
    """Each package package-lock.json installs: its node_modules path -> (version, the
    licence its installed package.json declares)."""
    packages = json.loads((REPO_ROOT / "package-lock.json").read_text())["packages"]
    found: dict[str, tuple[str, Declared | None]] = {}
    for path, entry in packages.items():
        if not path:  # the project itself
            continue
        installed = json.loads((REPO_ROOT / path / "package.json").read_text())
        text = npm_declared(installed)
        expression = known_expression(text) if text else None
        licence = (
            Declared(text, "package.json", expression)
            if text and expression is not None
            else read_by_hand("npmjs", installed["name"], installed["version"])
        )
        found[path] = (entry["version"], licence)
    return found


def test_node_modules_have_no_network_copyleft_and_every_licence_is_read() -> None:
    packages = node_packages()
    assert len(packages) >= 500  # 895 when written
    refused = {
        f"{path}@{version}": licence.text if licence else "unreadable"
        for path, (version, licence) in packages.items()
        if licence is None or not satisfies(licence.expression, no_network_copyleft)
    }
    assert refused == {}


def test_licences_read_by_hand_are_of_the_installed_versions() -> None:
    """An entry for a version no longer installed is stale: read the new one again."""
    checkov = {name: version for name, (version, _) in checkov_venv().items()}
    python = {**checkov, **lock.runtime_closure(), **dev_only_closure()}
    installed = {("pypi", name): version for name, version in python.items()}
    for path, (version, _) in node_packages().items():
        installed[("npmjs", path.rsplit("node_modules/", 1)[1])] = version
    for key, (version, _, _) in READ_BY_HAND.items():
        assert installed.get(key) == version, f"{key}: read at {version}, read it again"


def fake_metadata(**fields: str | list[str]) -> email.message.Message:
    message = email.message.Message()
    for field, values in fields.items():
        for value in values if isinstance(values, list) else [values]:
            message[field.replace("_", "-")] = value
    return message


@pytest.mark.parametrize(
    ("fields", "ships"),
    [
        ({"License_Expression": "GPL-3.0-or-later"}, False),
        ({"License_Expression": "LGPL-2.1-only"}, False),
        ({"License_Expression": "MIT OR GPL-2.0-only"}, True),  # the licensee picks MIT
        ({"License_Expression": "MIT AND (GPL-2.0-only OR AGPL-3.0-only)"}, False),
        ({"License_Expression": "mpl-2.0 and (Apache-2.0 or MIT)"}, True),
        ({"License_Expression": "Apache-2.0 WITH LLVM-exception"}, True),
        ({"License_Expression": "MIT AND GPL-2.0-only WITH Classpath-exception-2.0"}, False),
        ({"License_Expression": "Commercial"}, False),  # not known here: a person reads it
        ({"License": "GNU GPL v3"}, False),  # unrecognised text is not passed over
        ({"License": "GNU GPL v3", "Classifier": "License :: OSI Approved :: MIT License"}, False),
        ({"License": "UNKNOWN", "Classifier": "License :: OSI Approved :: MIT License"}, True),
        ({"Classifier": "License :: OSI Approved :: GNU General Public License v3 (GPLv3)"}, False),
        ({"Classifier": "License :: Other/Proprietary License"}, False),
        (
            {
                "License": "Copyright (c) 2020 X\n\nRedistribution and use in source and binary "
                "forms, with or without modification, are permitted provided that ..."
            },
            True,
        ),
    ],
)
def test_a_licence_is_read_from_the_metadata_as_a_platform_team_would(
    fields: dict[str, str], ships: bool
) -> None:
    licence = declared(fake_metadata(**fields))
    assert licence is not None
    assert satisfies(licence.expression, can_ship) is ships


def test_a_gpl_classifier_beside_an_mit_expression_is_seen() -> None:
    message = fake_metadata(
        License_Expression="MIT",
        Classifier="License :: OSI Approved :: GNU General Public License v2 (GPLv2)",
    )
    expression = classifiers_expression(message)
    assert expression is not None and not satisfies(expression, can_ship)
    assert declared(fake_metadata()) is None
