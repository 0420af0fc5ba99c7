"""README: each pin and locked package "carries the sha256 of every file PyPI has for its version
that Python 3.11 can install, so pip (the remote build, scripts/bootstrap) refuses a file that
is not one of them". The files are checked here as pip reads them; scripts/lock.py's writing is
checked against a loopback stand-in of PyPI's Simple API (JSON, PEP 691), never PyPI itself."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.tags import Tag, compatible_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from scripts import lock
from tests.infra.test_deploy_docs import README, section
from tests.support.cosmos_server import REPO_ROOT

# Files of a release as the Simple API lists them: name -> (sha256, yanked).
RELEASE_FILES: dict[str, tuple[str, bool | str]] = {
    "azure_functions-1.25.0-py3-none-any.whl": ("1" * 64, False),
    "azure_functions-1.25.0.tar.gz": ("2" * 64, False),
    "azure_functions-1.25.0-cp311-cp311-manylinux_2_17_x86_64.whl": ("3" * 64, False),
    "azure_functions-1.25.0-cp311-cp311-win_amd64.whl": ("4" * 64, False),
    "azure_functions-1.25.0-cp38-abi3-macosx_11_0_arm64.whl": ("5" * 64, False),
    "azure_functions-1.25.0-cp312-cp312-manylinux_2_17_x86_64.whl": ("6" * 64, False),
    "azure_functions-1.25.0-cp312-abi3-manylinux_2_17_x86_64.whl": ("7" * 64, False),
    "azure_functions-1.25.0-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl": ("8" * 64, False),
    "azure_functions-1.25.0-py2-none-any.whl": ("9" * 64, False),
    "azure_functions-1.25.0-py3-none-manylinux_2_17_aarch64.whl": ("a" * 64, True),
    "azure_functions-1.26.0-py3-none-any.whl": ("b" * 64, False),
    "azure_functions-1.25.0.zip": ("c" * 64, False),
}
# What CPython 3.11 can install of 1.25.0, not yanked: py3, sdist, cp311 (any platform), an
# abi3 wheel built for 3.8; not cp312 nor abi3 from 3.12, PyPy, py2, the yanked one, 1.26.0's.
INSTALLABLE = sorted(["1" * 64, "2" * 64, "3" * 64, "4" * 64, "5" * 64, "c" * 64])


def _hashed_requirements(path: Path) -> dict[str, str]:
    """Every requirement the file gives, pinned or locked: canonical name -> version."""
    return {
        canonicalize_name(requirement.name): spec.version
        for requirement in lock.requirements(lock.pinned_part(path))
        for spec in requirement.specifier
    } | lock.locked_part(path)


@pytest.mark.parametrize("path", lock.FILES, ids=lambda path: path.name)
def test_every_pinned_and_locked_package_carries_its_hashes(path: Path) -> None:
    """pip checks hashes for all or none: one requirement without any fails the whole install
    (with --require-hashes, as bootstrap runs it), and a hash line torn from its requirement is
    a different requirement. Kills: write leaving the pins above the section or the section
    unhashed; a hash line written without the backslash before it."""
    hashed = lock.file_hashes(path)
    assert set(hashed) == set(_hashed_requirements(path).items())
    for digests in hashed.values():
        assert digests == sorted(set(digests))
    lines = path.read_text().splitlines()
    for before, line in itertools.pairwise(lines):
        if line.lstrip().startswith("--hash="):
            assert before.endswith(" \\"), before


def test_bootstrap_installs_every_file_with_hashes_required() -> None:
    """Each of bootstrap's pip installs of a requirements file says --require-hashes, so a pin
    added by hand without scripts/lock stops bootstrap ("run ./scripts/lock first") rather than
    installing that day's files unchecked. Kills: the flag dropped from install_pins or from
    the Node.js step."""
    bootstrap = (REPO_ROOT / "scripts" / "bootstrap").read_text()
    installs = [
        line for line in bootstrap.splitlines() if "pip_install " in line and " -r " in line
    ]
    assert len(installs) == 2
    assert all("--require-hashes -r" in line for line in installs)


def test_readme_makes_the_promise_these_tests_hold() -> None:
    """The module docstring's quote, and the rule the lock enforces (a comment after a pin
    stops it): where a maintainer changing a pin reads them. Kills: either sentence dropped."""
    text = " ".join(section(README, "## Development").split())
    assert (
        "Each pin and locked package carries the sha256 of every file PyPI has for its version "
        "that Python 3.11 can install, so pip (the remote build, `scripts/bootstrap`) refuses a "
        "file that is not one of them"
    ) in text
    assert "a comment goes on a line of its own, as pip drops a pin's hashes after one" in text


class _SimpleIndex(BaseHTTPRequestHandler):
    """PyPI's Simple API for azure-functions alone, in JSON; it counts the pages asked for.
    ``release``: the files it lists, in its order (a test may list others)."""

    asked: list[str]
    release: dict[str, tuple[str, bool | str]] = RELEASE_FILES

    def do_GET(self) -> None:
        type(self).asked.append(self.path)
        if self.path != "/simple/azure-functions/" or "pypi.simple.v1+json" not in (
            self.headers.get("Accept") or ""
        ):
            self.send_error(404)
            return
        files = [
            {"filename": name, "hashes": {"sha256": digest}, "yanked": yanked}
            for name, (digest, yanked) in type(self).release.items()
        ]
        body = json.dumps({"name": "azure-functions", "files": files}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads ``asked``."""


@pytest.fixture
def simple_index() -> Iterator[tuple[str, list[str]]]:
    asked: list[str] = []
    handler = type("Index", (_SimpleIndex,), {"asked": asked})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/", asked
    finally:
        server.shutdown()
        server.server_close()


def answer_from_the_committed_files(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """lock.index_hashes answering with the committed files' hashes for the versions they
    give, and asking lock.INDEX_URL for any other: the versions asked, in order."""
    committed: dict[tuple[str, str], list[str]] = {}
    for path in lock.FILES:
        committed.update(lock.file_hashes(path))
    asked: list[tuple[str, str]] = []
    index = lock.index_hashes

    def from_committed(name: str, version: str) -> list[str]:
        asked.append((name, version))
        return committed.get((name, version)) or index(name, version)

    monkeypatch.setattr(lock, "index_hashes", from_committed)
    return asked


@pytest.fixture
def lock_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Copies of the three files that lock.py reads and writes, the index answering as the
    committed files do (no index reachable for other versions): the versions asked of it."""
    asked = answer_from_the_committed_files(monkeypatch)
    copies = {path: tmp_path / path.name for path in lock.FILES}
    for path, copy in copies.items():
        shutil.copyfile(path, copy)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refusing = f"http://127.0.0.1:{probe.getsockname()[1]}/simple/"
    headers = {copies[path]: header for path, header in lock.SECTION_HEADER.items()}
    monkeypatch.setattr(lock, "INDEX_URL", refusing)
    monkeypatch.setattr(lock, "SECTION_HEADER", headers)
    monkeypatch.setattr(lock, "RUNTIME", copies[lock.RUNTIME])
    monkeypatch.setattr(lock, "DEV", copies[lock.DEV])
    monkeypatch.setattr(lock, "CHECKOV", copies[lock.CHECKOV])
    monkeypatch.setattr(lock, "FILES", tuple(copies.values()))
    return asked


def edit_runtime(old: str, new: str) -> None:
    """requirements.txt's copy (lock_copies) edited by hand: ``old`` text made ``new``."""
    lock.RUNTIME.write_text(lock.RUNTIME.read_text().replace(old, new))


def _pins(path: Path) -> set[tuple[str, str]]:
    return {
        (canonicalize_name(requirement.name), spec.version)
        for requirement in lock.requirements(lock.pinned_part(path))
        for spec in requirement.specifier
    }


def test_writing_asks_the_index_for_the_pins_and_keeps_the_locked_hashes(
    lock_copies: list[tuple[str, str]],
) -> None:
    """scripts/lock with nothing changed: the files come back byte for byte. The pins' hashes
    are asked again (a pin edited by hand keeps its old version's hash lines), unless a section
    locks that version too; the locked ones are kept. Kills: write asking for every locked
    version too (a release's files added later would slip in unseen at each lock), or trusting
    the lines under a pin."""
    committed = {path: path.read_text() for path in lock.FILES}
    assert lock.main(["write"]) == 0
    assert {path: path.read_text() for path in lock.FILES} == committed
    locked = {item for path in lock.FILES for item in lock.locked_part(path).items()}
    pins = _pins(lock.RUNTIME) | _pins(lock.DEV)
    assert pins & locked  # requests, urllib3, ...: locked in checkov's venv at the same version
    assert set(lock_copies) == pins - locked


def test_a_changed_pin_gets_its_new_versions_installable_hashes_from_the_index(
    lock_copies: list[tuple[str, str]],
    simple_index: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pin moved to another version gets that version's hashes, of every file CPython 3.11
    can install (developers' platforms too), none of another version, Python or yanked file;
    the other requirements keep theirs and the index is asked once. Kills: the old version's
    hashes kept; the filter taking every file of the release, or the remote build's alone."""
    url, asked = simple_index
    monkeypatch.setattr(lock, "INDEX_URL", url)
    runtime = lock.RUNTIME  # the copy
    before = lock.file_hashes(runtime)
    # Edited as a person would: the version only, the old version's hash lines left under it.
    edit_runtime("azure-functions==1.26.0", "azure-functions==1.25.0")

    lock.write(lock.sections())

    after = lock.file_hashes(runtime)
    assert after.pop(("azure-functions", "1.25.0")) == INSTALLABLE
    before.pop(("azure-functions", "1.26.0"))
    assert after == before
    assert asked == ["/simple/azure-functions/"]


def test_a_version_the_index_has_no_installable_file_of_stops_the_lock(
    lock_copies: list[tuple[str, str]],
    simple_index: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pin with no file for CPython 3.11 (a typo'd version, one only yanked) would leave a
    requirement without hashes, which pip refuses: the lock says so and stops. Kills: an empty
    hash list written."""
    monkeypatch.setattr(lock, "INDEX_URL", simple_index[0])
    edit_runtime("azure-functions==1.26.0", "azure-functions==1.24.0")
    with pytest.raises(
        SystemExit, match=re.escape("no file of azure-functions 1.24.0 for CPython 3.11")
    ):
        lock.write(lock.sections())


def test_a_comment_after_a_pin_stops_the_lock(lock_copies: list[tuple[str, str]]) -> None:
    """pip joins a pin's hash lines to it first and then drops everything from a ``#`` on, so a
    comment after the pin would drop its hashes and fail every install. Kills: the check
    dropped."""
    edit_runtime("azure-cosmos==4.17.1", "azure-cosmos==4.17.1  # the SDK")
    with pytest.raises(
        SystemExit, match=re.escape("put the comment after azure-cosmos==4.17.1 on a line")
    ):
        lock.write(lock.sections())


def test_a_locked_package_without_hashes_gets_them_from_the_index(
    lock_copies: list[tuple[str, str]],
) -> None:
    """A locked line with no hash lines (added by hand, or a file from before the hashes) is
    asked of the index like a pin, not kept bare: pip refuses the whole file for one
    requirement without hashes. Kills: file_hashes returning the requirements it found no hash
    for (an empty list then "kept" for the locked version)."""
    committed = {path: path.read_text() for path in lock.FILES}
    runtime = lock.RUNTIME  # the copy
    elsewhere = {
        item for path in lock.FILES if path != runtime for item in lock.locked_part(path).items()
    }
    # One no other file locks too (whose hashes it would be given).
    name, version = min(set(lock.locked_part(runtime).items()) - elsewhere)
    bare = re.sub(
        rf"^{re.escape(name)}=={re.escape(version)} \\\n(?:\s+--hash=\S+ \\\n)*\s+--hash=\S+\n",
        f"{name}=={version}\n",
        runtime.read_text(),
        flags=re.MULTILINE,
    )
    assert bare != committed[lock.RUNTIME]
    runtime.write_text(bare)

    assert lock.main(["write"]) == 0

    assert (name, version) in lock_copies
    assert {path: path.read_text() for path in lock.FILES} == committed


def test_the_index_answer_is_read_as_pypi_writes_it(
    simple_index: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PEP 691: a yanked file's ``yanked`` is the reason (a string) when one was given, else
    true; files come in the index's order, and the hashes are written sorted, so that a lock
    with nothing changed rewrites the files byte for byte. Kills: only ``yanked: true`` left
    out; sorted dropped (this release listed backwards)."""
    monkeypatch.setattr(lock, "INDEX_URL", simple_index[0])
    listed = dict(reversed(RELEASE_FILES.items()))
    listed["azure_functions-1.25.0-cp311-cp311-musllinux_1_2_x86_64.whl"] = ("d" * 64, "broken")
    monkeypatch.setattr(_SimpleIndex, "release", listed)
    assert lock.index_hashes("azure-functions", "1.25.0") == INSTALLABLE


def test_a_pin_written_without_its_trailing_zero_gets_its_versions_hashes(
    simple_index: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip takes ``==1.25`` for 1.25.0 (PEP 440 pads with zeros) and installs 1.25.0's file,
    whose hash must then be there. Kills: versions compared as strings."""
    monkeypatch.setattr(lock, "INDEX_URL", simple_index[0])
    assert lock.index_hashes("azure-functions", "1.25") == INSTALLABLE


# Wheel tags as packaging.tags lists CPython 3.11's (pip's), any platform: cp311 with any ABI,
# abi3 from cp32 to cp311, py3 and py311; an sdist too. Not other Pythons' nor PyPy's.
WHEELS_FOR_3_11 = {
    "p-1.0-py3-none-any.whl": True,
    "p-1.0-py2.py3-none-any.whl": True,
    "p-1.0-py311-none-any.whl": True,
    "p-1.0-cp311-cp311-win_amd64.whl": True,
    "p-1.0-cp311-abi3-manylinux_2_34_x86_64.whl": True,
    "p-1.0-cp32-abi3-macosx_10_9_x86_64.whl": True,
    "p-1.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl": True,
    "p-1.0.tar.gz": True,
    "p-1.0.zip": True,
    "p-1.0-cp312-abi3-manylinux_2_17_x86_64.whl": False,
    "p-1.0-cp310-cp310-manylinux_2_17_x86_64.whl": False,
    "p-1.0-cp312-cp312-win_amd64.whl": False,
    "p-1.0-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl": False,
    "p-1.0-py2-none-any.whl": False,
    "p-1.0-py3.11.egg": False,
}


@pytest.mark.parametrize("filename", WHEELS_FOR_3_11)
def test_which_files_cpython_3_11_can_install(filename: str) -> None:
    """lock.installable_on_cpython_3_11, file by file. Kills: py311 wheels left out (pip
    prefers them, so pip would find no hash for the file it picks)."""
    assert lock.installable_on_cpython_3_11(filename) is WHEELS_FOR_3_11[filename]


@pytest.mark.parametrize(
    "filename", ["p-1.0-py38-none-any.whl", "p-1.0-py310-none-manylinux_2_17_x86_64.whl"]
)
def test_a_wheel_for_an_older_python_3_is_installable_on_3_11(filename: str) -> None:
    """packaging.tags (pip's list) gives CPython 3.11 the tags py311, py3, py310 ... py30 with
    no ABI, on any platform; README: "every file PyPI has for its version that Python 3.11
    can install"."""
    interpreter, _, platform = filename.removesuffix(".whl").split("-")[2:]
    assert Tag(interpreter, "none", platform) in set(compatible_tags((3, 11), "cp311", [platform]))
    assert lock.installable_on_cpython_3_11(filename)


def test_a_wheel_with_several_tags_is_judged_by_all_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wheel's compressed tag set (``cp38.cp312-abi3``) holds one tag per interpreter;
    packaging hands it back as a frozenset, in an order PYTHONHASHSEED sets. The answer must
    not depend on it: cp38-abi3 is CPython 3.11's. Both orders are forced here."""
    answers = {}
    for first in ("cp38", "cp312"):

        def in_order(filename: str, first: str = first) -> tuple[object, ...]:
            name, version, build, tags = parse_wheel_filename(filename)
            return name, version, build, sorted(tags, key=lambda tag: tag.interpreter != first)

        monkeypatch.setattr(lock, "parse_wheel_filename", in_order)
        answers[first] = lock.installable_on_cpython_3_11(
            "p-1.0-cp38.cp312-abi3-manylinux_2_17_x86_64.whl"
        )
    assert answers == {"cp38": True, "cp312": True}


@pytest.mark.parametrize("pin", ["azure-functions>=1", "azure-functions<2,>=1"])
def test_a_range_above_the_section_stops_the_lock(
    lock_copies: list[tuple[str, str]], pin: str
) -> None:
    """A file with hashes is read by pip in hash-checking mode, where every requirement must be
    ``==``: a range is no longer locked by the section below it but fails bootstrap and the
    remote build ("run ./scripts/lock first", which was just run). The lock should say so, as
    it does for a comment after a pin, for a range of two bounds too (which reading the files'
    hashes had failed on with a bare ValueError)."""
    edit_runtime("azure-functions==1.26.0", pin)
    with pytest.raises(SystemExit, match=re.escape(pin)):
        lock.write(lock.sections())
