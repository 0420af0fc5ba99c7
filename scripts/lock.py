"""The locked sections of requirements.txt, requirements-dev.txt and requirements-checkov.txt:
every package the pins above them need, directly or not, at one version each.

Without them, the remote build and each CI run took the newest release of every package the
pins do not name (cryptography, msal, certifi, pydantic-core's neighbours, ...) on the day they
ran, so what was deployed was not what the tests had run on. ``scripts/lock`` resolves the pins
above the sections afresh in a new venv and runs ``write`` there; tests/unit/test_dependencies.py
checks, in the test venv, that the sections are the closure of the pins.

checkov has a venv of its own (.venv/checkov): it caps packaging below 24, which in the test
venv held back the packaging the deployed app installs (opentelemetry-instrumentation's).

``python scripts/lock.py write``: rewrites requirements.txt's and requirements-dev.txt's sections
from the packages installed in the running interpreter's environment;
``python scripts/lock.py write requirements-checkov.txt``: that file's, from checkov's venv.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIME = REPO_ROOT / "requirements.txt"
DEV = REPO_ROOT / "requirements-dev.txt"
CHECKOV = REPO_ROOT / "requirements-checkov.txt"
FILES = (RUNTIME, DEV, CHECKOV)
# checkov's own venv, which scripts/bootstrap makes from CHECKOV.
CHECKOV_PYTHON = REPO_ROOT / ".venv" / "checkov" / "bin" / "python"
MARK = "# --- Locked by scripts/lock"
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


def _cut(path: Path) -> tuple[list[str], list[str]]:
    """The file's lines above its locked section, and the section from its mark on (none if
    the file has no mark)."""
    lines = path.read_text().splitlines()
    marks = [index for index, line in enumerate(lines) if line.startswith(MARK)]
    return (lines[: marks[0]], lines[marks[0] :]) if marks else (lines, [])


def pinned_part(path: Path) -> list[str]:
    """The file's lines above its locked section (all of them if it has none)."""
    return _cut(path)[0]


def locked_part(path: Path) -> dict[str, str]:
    """The locked section: canonical name -> version."""
    locked: dict[str, str] = {}
    for line in _cut(path)[1]:
        if line and not line.startswith("#"):
            name, version = line.split("==")
            locked[canonicalize_name(name)] = version
    return locked


def requirements(lines: Iterable[str]) -> list[Requirement]:
    """The requirements among ``lines``: no comments, blank lines or pip options (``-r``)."""
    return [
        Requirement(line.split("#")[0].strip())
        for line in lines
        if line.strip() and not line.lstrip().startswith(("#", "-"))
    ]


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
    runtime_pins, dev_pins = (
        {canonicalize_name(r.name) for r in roots if any(s.operator == "==" for s in r.specifier)}
        for roots in (runtime_roots, dev_roots)
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


def write(locked_sections: dict[Path, dict[str, str]]) -> None:
    for path, locked in locked_sections.items():
        lines = [*pinned_part(path)]
        while lines and not lines[-1].strip():
            lines.pop()
        body = "".join(f"{name}=={locked[name]}\n" for name in sorted(locked))
        path.write_text("\n".join(lines) + "\n" + SECTION_HEADER[path] + body)


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
