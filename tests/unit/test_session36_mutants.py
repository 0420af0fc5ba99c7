"""Mutation audit of stop 36's product changes: what the tests written with them left unpinned.

Each test below kills hand-made mutants that the earlier tests let through (named in its
docstring). Every one asserts what a doc or the code's own comment says, not the mutant.
The ones that need a real server are in tests/integration/test_session36_mutants.py.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import subprocess
import threading
from http.client import RemoteDisconnected
from importlib import metadata
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from urllib3.exceptions import ProtocolError

from acr_webhook.connections import caused_by, closed_without_answer
from acr_webhook.fallback import QUEUE_BUDGET_S, QUEUE_WAITS
from acr_webhook.repository import CLIENT_TIMEOUTS, _on_time
from scripts import lock
from tests.support.cosmos_server import REPO_ROOT
from tests.support.stepped_calls import FailingCalls, SteppedClock, bounds
from tests.unit.test_connections import failure, read_request

# --- connections.closed_without_answer: an answer cut off is an answer -----------------------


def test_an_answer_cut_off_in_its_body_is_not_closed_without_answer(
    listener: socket.socket,
) -> None:
    """connections.closed_without_answer: "broke off after the request went out and before an
    answer". Here the status line came (201), then the connection closed 97 bytes short of the
    body: azure-core's IncompleteReadError, whose causes hold urllib3's ProtocolError too. The
    queue took that message; sent again, the event would be parked twice for nothing. Kills:
    the ``isinstance(error, ServiceResponseError)`` check dropped."""

    def answer_short() -> None:
        connection, _ = listener.accept()
        with connection:
            read_request(connection)
            connection.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\nabc")

    threading.Thread(target=answer_short, daemon=True).start()
    error = failure(listener.getsockname()[1])
    assert isinstance(error, HttpResponseError)
    assert caused_by(error, ProtocolError)  # what makes the check above it needed
    assert not closed_without_answer(error)


# --- repository._on_time: once more when the connection closed without an answer ----------


def _closed() -> ServiceResponseError:
    """As azure-core's requests transport raises a request whose connection the other side
    closed without an answer (tests/unit/test_connections.py gets it from a real socket)."""
    try:
        try:
            try:
                raise RemoteDisconnected("Remote end closed connection without response")
            except RemoteDisconnected as error:
                raise ProtocolError("Connection aborted.", error)  # noqa: B904, as urllib3 does
        except ProtocolError as error:
            raise requests.ConnectionError(error)  # noqa: B904, as requests does
    except requests.ConnectionError as error:
        closed = ServiceResponseError(error, error=error)
    assert closed_without_answer(closed)
    return closed


def closing(clock: SteppedClock, took_s: float, failures: int) -> FailingCalls:
    """An SDK call that takes ``took_s`` on the monotonic clock, then fails as a connection
    closed without an answer the first ``failures`` times, else answers "stored"."""
    return FailingCalls(clock, took_s, failures, _closed)


ABOUT = {"event_id": "e-36", "action": "push", "repository": "team/api"}


def test_a_call_closed_without_answer_is_made_once_more_with_what_is_left(
    monotonic: SteppedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """repository._on_time: "made once more ... The second call gets what is left of the
    bound" when "the connection was closed without an answer"; ``about`` is "the log's extra".
    Here the connection broke off 1.5 s into a 2 s bound: the second call gets 0.5 s, and an
    INFO record says so with the event's structured fields. Kills: the closed branch's second
    call given the first call's options; its log record dropped, lowered to DEBUG, or without
    its extra."""
    call = closing(monotonic, took_s=1.5, failures=1)
    with caplog.at_level(logging.INFO, logger="acr_webhook.repository"):
        assert _on_time(call, bounds(monotonic, monotonic.now + 2.0), ABOUT) == "stored"
    assert [options["timeout"] for options in call.options] == [2.0, 0.5]
    records = [r for r in caplog.records if "closed the connection" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.INFO]
    assert {name: getattr(records[0], name, None) for name in ABOUT} == ABOUT


def test_a_call_closed_without_answer_twice_is_raised(monotonic: SteppedClock) -> None:
    """repository._on_time: "made once more (never more)": a second connection closed without
    an answer is the write's failure (parked), not a third try. Kills: the closed branch
    calling _on_time again (a try after every close, until the bound runs out)."""
    call = closing(monotonic, took_s=0.1, failures=5)
    with pytest.raises(ServiceResponseError):
        _on_time(call, bounds(monotonic, monotonic.now + 2.0), ABOUT)
    assert len(call.options) == 2


# --- fallback.QUEUE_BUDGET_S: inside the documented answer --------------------------------


def test_the_write_bound_and_the_put_bound_fit_the_documented_answer() -> None:
    """README: "Every webhook answer comes within 4.5 s", the write's ~2 s then the put's
    bound, which fallback.py gives as "a second send included: one connection's wait and one
    answer's". tests/unit/test_doc_figures.py adds QUEUE_TIMEOUTS' waits, not the bound a put
    keeps to since it sends twice. Kills: QUEUE_BUDGET_S raised (+1 s: a 5.5 s answer) or set
    to less than one send's waits (max of them: 1.5 s)."""
    documented = re.search(r"Every webhook answer comes within ([\d.]+) s", readme())
    assert documented is not None
    assert CLIENT_TIMEOUTS["timeout"] + QUEUE_BUDGET_S <= float(documented[1])
    assert QUEUE_WAITS["connection_timeout"] + QUEUE_WAITS["read_timeout"] == QUEUE_BUDGET_S


def readme() -> str:
    return (REPO_ROOT / "README.md").read_text()


# --- scripts/lock.py: the locked sections --------------------------------------------------


@pytest.fixture
def lock_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Copies of requirements.txt and requirements-dev.txt that lock.py reads and writes."""
    runtime, dev = tmp_path / "requirements.txt", tmp_path / "requirements-dev.txt"
    shutil.copyfile(lock.RUNTIME, runtime)
    shutil.copyfile(lock.DEV, dev)
    headers = {runtime: lock.SECTION_HEADER[lock.RUNTIME], dev: lock.SECTION_HEADER[lock.DEV]}
    monkeypatch.setattr(lock, "RUNTIME", runtime)
    monkeypatch.setattr(lock, "DEV", dev)
    monkeypatch.setattr(lock, "SECTION_HEADER", headers)
    return runtime, dev


@pytest.mark.parametrize("section", ["locked", "none yet, blank lines after the pins"])
def test_writing_the_sections_gives_the_committed_files_back(
    lock_files: tuple[Path, Path], section: str
) -> None:
    """``python scripts/lock.py write`` (what scripts/lock runs) in the test venv, whose
    packages test_dependencies holds to the sections, rewrites each file as committed, byte
    for byte: the pins, no blank line, the header once, the names sorted. From a file that has
    no section yet too. Kills: write keeping trailing blank lines, adding one before the mark,
    dropping the header, not sorting; pinned_part keeping the mark line (two marks)."""
    committed = {path: path.read_text() for path in lock_files}
    if section != "locked":
        for path in lock_files:
            path.write_text("\n".join(lock.pinned_part(path)) + "\n\n\n")
    assert lock.main(["write"]) == 0
    assert {path: path.read_text() for path in lock_files} == committed


def test_the_lock_module_writes_only_when_told_to(lock_files: tuple[Path, Path]) -> None:
    """lock.py's usage: ``write`` rewrites the sections; anything else prints the usage (2)
    and changes nothing. Kills: main writing on any argument."""
    for path in lock_files:
        path.write_text("\n".join(lock.pinned_part(path)) + "\n")
    before = {path: path.read_text() for path in lock_files}
    assert lock.main(["--check"]) == 2
    assert lock.main([]) == 2
    assert {path: path.read_text() for path in lock_files} == before


def test_a_pin_that_is_no_exact_version_is_locked_too(lock_files: tuple[Path, Path]) -> None:
    """README: "Every package is pinned, the ones nothing names too". A requirement above the
    section that allows a range (``>=``) is no pin: the section locks it at the installed
    version, else the remote build takes its newest release. Kills: pinned_above counting
    every requirement above the section, ``==`` or not."""
    runtime, _ = lock_files
    runtime.write_text(runtime.read_text().replace("azure-functions==1.26.0", "azure-functions>=1"))
    assert lock.sections()[runtime]["azure-functions"] == "1.26.0"


def test_a_runtime_dependency_pinned_for_the_tests_stays_locked_for_the_deployment(
    lock_files: tuple[Path, Path],
) -> None:
    """README: requirements.txt (deployed) holds "everything they need", so that "the remote
    build installs what was tested", and the remote build reads requirements.txt alone.
    sections() drops every name pinned above either file from both sections, so a dev pin of
    something the runtime needs (typing-extensions, here) leaves it in neither the deployed
    pins nor its locked section."""
    runtime, dev = lock_files
    dev.write_text(
        dev.read_text().replace("pytest==8.4.2\n", "pytest==8.4.2\ntyping-extensions==4.16.0\n")
    )
    assert lock.sections()[runtime].get("typing-extensions") == "4.16.0"


def test_requirement_lines_drop_comments_and_pip_options() -> None:
    """lock.requirements: "no comments, blank lines or pip options (-r)", a comment after a
    pin included, as pip reads it. Kills: the inline comment kept (an InvalidRequirement)."""
    lines = ["# why", "", "-r requirements.txt", "azure-core==1.41.0  # imported directly"]
    assert lock.requirements(lines) == [Requirement("azure-core==1.41.0")]


@pytest.fixture
def needs_jwt_crypto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed distribution that needs PyJWT with its crypto extra and nothing else."""
    info = tmp_path / "needs_jwt_crypto-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: needs-jwt-crypto\nVersion: 1.0\n"
        "Requires-Dist: PyJWT[crypto]>=2\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "needs-jwt-crypto"


def test_the_closure_follows_the_extras_asked(needs_jwt_crypto: str) -> None:
    """lock.closure: "every installed distribution roots need ... directly or through others":
    an extra asked of a root or of a dependency brings what it adds (PyJWT's crypto:
    cryptography), which the lock must hold. Kills: the roots' extras dropped, the
    dependencies' extras dropped."""
    assert "cryptography" in lock.closure([Requirement("pyjwt[crypto]")])
    assert "cryptography" in lock.closure([Requirement(needs_jwt_crypto)])
    assert "cryptography" not in lock.closure([Requirement("pyjwt")])


def test_the_closure_does_not_depend_on_the_order_of_its_roots() -> None:
    """lock.closure skips a package it has found, whatever extras a later requirement asks of
    it: a pin of PyJWT above the section (as azure-core and requests are pinned, for being
    imported) would leave what msal's PyJWT[crypto] adds out of the lock, if the pin is met
    first. Today msal also names cryptography itself, so the files are whole."""
    with_crypto, plain = Requirement("pyjwt[crypto]"), Requirement("pyjwt")
    assert lock.closure([with_crypto, plain]) == lock.closure([plain, with_crypto])


def test_each_requirements_file_holds_every_package_its_packages_need() -> None:
    """README: a locked section "holds everything they need at the versions the tests run
    on, so the remote build installs what was tested". Checked without lock.closure, which
    writes the sections and so cannot find its own gaps: every dependency of every package
    listed in requirements.txt (with requirements-dev.txt: the test venv's), markers taken on
    this Python 3.11 on Linux with the extras asked of it, is listed, at a version its
    specifier admits. pip then has nothing to choose."""
    runtime = _listed(lock.RUNTIME)
    for listed in (runtime, {**runtime, **_listed(lock.DEV)}):
        asked: dict[str, set[str]] = {name: set() for name in listed}
        unmet: list[str] = []
        changed = True
        while changed:
            changed = False
            for name in listed:
                for needed in map(Requirement, _requires(name)):
                    extras = asked[name] | {""}
                    marker = needed.marker
                    if marker is not None and not any(
                        marker.evaluate({"extra": e}) for e in extras
                    ):
                        continue
                    dependency = canonicalize_name(needed.name)
                    if dependency not in listed or not needed.specifier.contains(
                        listed[dependency], prereleases=True
                    ):
                        unmet.append(f"{name} needs {needed}")
                    elif not needed.extras <= asked[dependency]:
                        asked[dependency] |= needed.extras
                        changed = True
        assert sorted(set(unmet)) == []


def _listed(path: Path) -> dict[str, str]:
    """A requirements file's packages, pinned above its section or locked in it."""
    pins: dict[str, str] = {
        canonicalize_name(r.name): str(next(iter(r.specifier)).version)
        for r in lock.requirements(lock.pinned_part(path))
    }
    return {**pins, **lock.locked_part(path)}


def _requires(name: str) -> list[str]:
    return metadata.distribution(name).requires or []


# --- scripts/lock: what it resolves ---------------------------------------------------------


def test_the_lock_script_resolves_the_pins_and_nothing_locked(tmp_path: Path) -> None:
    """scripts/lock "resolves the pins above the sections afresh": the files it hands pip are
    each file's lines above the mark (lock.pinned_part), without requirements-dev.txt's
    ``-r`` line (pip would look for requirements.txt beside the copy). Its own lines run here,
    as written. Kills: awk skipping only the mark line (the locked versions fed back to pip,
    which could then never move), the ``-r`` line kept."""
    script = (REPO_ROOT / "scripts" / "lock").read_text().splitlines()
    cut = [line for line in script if line.startswith("above_lock")]
    assert len(cut) == 3  # the function and its two uses
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(cut)],
        cwd=REPO_ROOT,
        env={"work": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    runtime = (tmp_path / "runtime.txt").read_text().splitlines()
    dev = (tmp_path / "dev.txt").read_text().splitlines()
    assert lock.requirements(runtime) == lock.requirements(lock.pinned_part(lock.RUNTIME))
    assert lock.requirements(dev) == lock.requirements(lock.pinned_part(lock.DEV))
    assert not [line for line in runtime + dev if line.startswith("-")]


def test_the_lock_script_refuses_a_python_other_than_3_11(tmp_path: Path) -> None:
    """scripts/lock: "The markers (python_version, sys_platform) are evaluated on it: the
    remote build's Python", so it stops at once on another one, before resolving anything.
    Kills: the version check dropped."""
    other = tmp_path / "python3.12"
    other.write_text("#!/bin/sh\nexit 1\n")  # sys.version_info[:2] != (3, 11)
    other.chmod(0o755)
    ran = subprocess.run(
        [str(REPO_ROOT / "scripts" / "lock")],
        env={"PYTHON": str(other), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert ran.returncode == 1
    assert "resolves on Python 3.11" in ran.stderr
    assert "Resolving" not in ran.stdout
