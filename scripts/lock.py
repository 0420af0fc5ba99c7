"""The locked sections of requirements.txt, requirements-dev.txt and requirements-checkov.txt:
every package the pins above them need, directly or not, at one version each.

Without them, the remote build and each CI run took the newest release of every package the
pins do not name (cryptography, msal, certifi, pydantic-core's neighbours, ...) on the day they
ran, so what was deployed was not what the tests had run on. ``scripts/lock`` resolves the pins
above the sections afresh in a new venv and runs ``write`` there; tests/unit/test_dependencies.py
checks, in the test venv, that the sections are the closure of the pins.

checkov has a venv of its own (.venv/checkov): it caps packaging below 24, which in the test
venv held back the packaging the deployed app installs (opentelemetry-instrumentation's).

Every requirement, pinned or locked, carries the sha256 of each file PyPI has for its version
that CPython 3.11 can install (any platform: developers' machines too), so pip installs nothing
else, wherever it is run from (pip turns on hash checking when a file has hashes: the remote
build, scripts/bootstrap, bench/.venv). ``write`` asks the index (LOCK_INDEX_URL, PyPI's Simple
API in JSON) for each pin's and each newly locked version's hashes, and keeps the rest.

``python scripts/lock.py write``: rewrites requirements.txt's and requirements-dev.txt's sections
from the packages installed in the running interpreter's environment;
``python scripts/lock.py write requirements-checkov.txt``: that file's, from checkov's venv.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.request
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIME = REPO_ROOT / "requirements.txt"
DEV = REPO_ROOT / "requirements-dev.txt"
CHECKOV = REPO_ROOT / "requirements-checkov.txt"
FILES = (RUNTIME, DEV, CHECKOV)
# checkov's own venv, which scripts/bootstrap makes from CHECKOV.
CHECKOV_PYTHON = REPO_ROOT / ".venv" / "checkov" / "bin" / "python"
MARK = "# --- Locked by scripts/lock"
INDEX_URL = os.environ.get("LOCK_INDEX_URL", "https://pypi.org/simple/")
HASH_OPTION = "--hash=sha256:"
_CONTINUED_HASH = re.compile(r"^\s+--hash=sha256:([0-9a-f]{64})( \\)?$")
SECTION_HEADER = {
    RUNTIME: (
        f"{MARK}: what the pins above need, at the versions the tests ran\n"
        "# on, so that the remote build installs them and not each one's newest release. Do not\n"
        "# edit: change a pin above, then run scripts/lock.\n"
    ),
    DEV: (
        f"{MARK}: what the pins above need beyond requirements.txt, at the versions\n"
        "# the tests ran on. Do not edit: change a pin above, then run scripts/lock.\n"
    ),
    CHECKOV: (
        f"{MARK}: what checkov needs, at the versions the tests ran on.\n"
        "# Do not edit: change the pin above, then run scripts/lock.\n"
    ),
}


def _joined(lines: Iterable[str]) -> list[str]:
    """Lines as pip reads them: a line ending in a backslash continued by the next, and each
    requirement's ``--hash`` options dropped (``file_hashes`` reads them)."""
    joined: list[str] = []
    pending = ""
    for line in lines:
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        joined.append(pending + line)
        pending = ""
    if pending:
        joined.append(pending)
    return [re.sub(r"\s+--hash=\S+", "", line).rstrip() for line in joined]


def _cut(path: Path) -> tuple[list[str], list[str]]:
    """The file's lines above its locked section, and the section from its mark on (none if
    the file has no mark), each line as pip reads it, without its hashes."""
    lines = _joined(path.read_text().splitlines())
    marks = [index for index, line in enumerate(lines) if line.startswith(MARK)]
    return (lines[: marks[0]], lines[marks[0] :]) if marks else (lines, [])


def pinned_part(path: Path) -> list[str]:
    """The file's lines above its locked section (all of them if it has none), without hashes."""
    return _cut(path)[0]


def locked_part(path: Path) -> dict[str, str]:
    """The locked section: canonical name -> version."""
    locked: dict[str, str] = {}
    for line in _cut(path)[1]:
        if line and not line.startswith("#"):
            name, version = line.split("==")
            locked[canonicalize_name(name)] = version
    return locked


def file_hashes(path: Path) -> dict[tuple[str, str], list[str]]:
    """The hashes the file gives each pinned or locked requirement that has some: (canonical
    name, version) -> sha256 digests, in the file's order."""
    found: dict[tuple[str, str], list[str]] = {}
    current: list[str] = []
    for line in path.read_text().splitlines():
        continued = _CONTINUED_HASH.match(line)
        if continued:
            current.append(continued.group(1))
            continue
        requirement = line.split("#")[0].rstrip(" \\").strip()
        if requirement and not requirement.startswith("-"):
            parsed = Requirement(requirement)
            versions = {spec.version for spec in parsed.specifier}
            version = versions.pop() if len(versions) == 1 else ""  # a range has no one version
            current = found.setdefault((canonicalize_name(parsed.name), version), [])
    return {key: digests for key, digests in found.items() if digests}


def requirements(lines: Iterable[str]) -> list[Requirement]:
    """The requirements among ``lines``: no comments, blank lines or pip options (``-r``)."""
    return [
        Requirement(line.split("#")[0].strip())
        for line in _joined(lines)
        if line.strip() and not line.lstrip().startswith(("#", "-"))
    ]


def installable_on_cpython_3_11(filename: str) -> bool:
    """A source distribution, or a wheel with a tag CPython 3.11 accepts on some platform (the
    interpreter and ABI parts of packaging.tags' list for it: ``cp311`` with its own ABI, none
    or abi3; abi3 of an older CPython 3; ``py3`` and ``py30`` to ``py311`` with no ABI); not a
    wheel only for other Pythons."""
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        try:
            parse_sdist_filename(filename)
        except InvalidSdistFilename:
            return False
        return True
    return any(_tag_for_cpython_3_11(tag.interpreter, tag.abi) for tag in tags)


def _tag_for_cpython_3_11(interpreter: str, abi: str) -> bool:
    if interpreter == "cp311":
        return abi in ("cp311", "abi3", "none")
    older_cpython = re.fullmatch(r"cp3(\d+)", interpreter)
    if older_cpython:
        return abi == "abi3" and int(older_cpython.group(1)) <= 11
    python_3 = re.fullmatch(r"py3(\d*)", interpreter)
    return abi == "none" and python_3 is not None and int(python_3.group(1) or 0) <= 11


def index_hashes(name: str, version: str) -> list[str]:
    """The sha256 of each file the index has for ``name`` ``version`` that CPython 3.11 can
    install, yanked ones left out, sorted."""
    request = urllib.request.Request(  # noqa: S310 - an https URL, or a test's loopback one
        f"{INDEX_URL.rstrip('/')}/{name}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - as above
        files = json.load(answer)["files"]
    digests = sorted(
        file["hashes"]["sha256"]
        for file in files
        if not file.get("yanked")
        and _version_of(file["filename"]) == Version(version)
        and installable_on_cpython_3_11(file["filename"])
    )
    if not digests:
        raise SystemExit(f"{INDEX_URL} has no file of {name} {version} for CPython 3.11")
    return digests


def _version_of(filename: str) -> Version | None:
    try:
        return parse_wheel_filename(filename)[1]
    except InvalidWheelFilename:
        try:
            return parse_sdist_filename(filename)[1]
        except InvalidSdistFilename:
            return None


def closure(roots: Iterable[Requirement]) -> dict[str, str]:
    """Every installed distribution ``roots`` need, themselves included, directly or through
    others, with the markers evaluated here (Linux, Python 3.11 in Azure): canonical name ->
    installed version. A distribution met again with extras not asked before is followed again
    for what those add, whatever order the requirements come in."""
    found: dict[str, str] = {}
    followed: dict[str, set[str]] = {}  # name -> the extras its requirements were read for
    pending = [(requirement, {"", *requirement.extras}) for requirement in roots]
    while pending:
        requirement, extras = pending.pop()
        name = canonicalize_name(requirement.name)
        new_extras = extras - followed.get(name, set())
        if not new_extras:
            continue
        followed.setdefault(name, set()).update(new_extras)
        distribution = metadata.distribution(name)
        found[name] = distribution.version
        for needed in map(Requirement, distribution.requires or []):
            marker = needed.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in new_extras):
                pending.append((needed, {"", *needed.extras}))
    return found


def runtime_closure() -> dict[str, str]:
    """requirements.txt's pins and everything they require: what the remote build installs."""
    return closure(requirements(pinned_part(RUNTIME)))


def dev_closure() -> dict[str, str]:
    """Both files' pins and everything they require: what the tests run on."""
    return closure(requirements([*pinned_part(RUNTIME), *pinned_part(DEV)]))


def sections() -> dict[Path, dict[str, str]]:
    """What each file's locked section should hold, from the installed distributions. The
    remote build reads requirements.txt alone, so its section holds all the runtime needs
    beyond its own pins, a package requirements-dev.txt also pins included."""
    runtime_roots = requirements(pinned_part(RUNTIME))
    dev_roots = requirements(pinned_part(DEV))
    runtime = runtime_closure()
    everything = dev_closure()
    # Each one exact version: write refuses any other, which pip refuses in a file with hashes.
    runtime_pins, dev_pins = (
        {canonicalize_name(r.name) for r in roots} for roots in (runtime_roots, dev_roots)
    )
    return {
        RUNTIME: {n: v for n, v in runtime.items() if n not in runtime_pins},
        DEV: {
            n: v
            for n, v in everything.items()
            if n not in runtime and n not in runtime_pins | dev_pins
        },
    }


def tool_section(path: Path) -> dict[str, str]:
    """What a tool's file (a venv of its own) should lock: its pins' closure beyond the pins."""
    roots = requirements(pinned_part(path))
    pins = {canonicalize_name(r.name) for r in roots}
    return {n: v for n, v in closure(roots).items() if n not in pins}


def _with_hashes(line: str, known: dict[tuple[str, str], list[str]]) -> str:
    """A requirement line with its version's hashes, those the files already give it or else
    the index's; any other line (a comment, an option) as it is."""
    requirement = line.split("#")[0].strip()
    if not requirement or requirement.startswith("-"):
        return line
    if "#" in line:
        # pip joins the hash lines to it first, then drops the comment and all after it.
        raise SystemExit(f"put the comment after {requirement} on a line of its own")
    parsed = Requirement(requirement)
    versions = [spec.version for spec in parsed.specifier if spec.operator == "=="]
    if len(parsed.specifier) != 1 or not versions:
        # pip checks hashes for a file only with every requirement pinned so.
        raise SystemExit(f"pin {requirement} to one version (==): hashes need one")
    key = (canonicalize_name(parsed.name), versions[0])
    if key not in known:
        known[key] = index_hashes(*key)
    options = "".join(f" \\\n    {HASH_OPTION}{digest}" for digest in known[key])
    return line.rstrip() + options


def write(locked_sections: dict[Path, dict[str, str]]) -> None:
    # A locked version's hashes are kept; a pin's are asked again, since a pin edited by hand
    # keeps the hash lines of the version it had.
    known: dict[tuple[str, str], list[str]] = {}
    for path in FILES:
        if path.exists():
            in_section = set(locked_part(path).items())
            known.update({key: got for key, got in file_hashes(path).items() if key in in_section})
    for path, locked in locked_sections.items():
        lines = [*pinned_part(path)]
        while lines and not lines[-1].strip():
            lines.pop()
        body = [f"{name}=={locked[name]}" for name in sorted(locked)]
        text = "\n".join(_with_hashes(line, known) for line in lines) + "\n" + SECTION_HEADER[path]
        path.write_text(text + "".join(_with_hashes(line, known) + "\n" for line in body))


def main(arguments: list[str]) -> int:
    if arguments == ["write"]:
        write(sections())
        return 0
    if arguments == ["write", CHECKOV.name]:
        write({CHECKOV: tool_section(CHECKOV)})
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
