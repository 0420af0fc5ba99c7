"""The CLI as terminals, pipes and scripts meet it: its command line read as typed, its standard
output gone, full or closed (the exit statuses docs/queries.md gives), ``serve``'s banner and
ports, a console that cannot show a stored name, and the tables: each character that could
reorder or forge a cell shown as U+FFFD, and the columns kept in line by what each cell takes in
a terminal.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.handlers import handle_webhook
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.unit.test_queries import pushes_by

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# --- __main__: a console that cannot show a stored name -----------------------------------------


def test_the_cli_escapes_only_what_the_console_cannot_show(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """__main__: "shows it escaped" ("w\\xf6rld"), as stderr does; not dropped nor replaced."""
    repository = FakeEventRepository()
    payload = payloads.with_new_id(payloads.PUSH, repository="team/w\u00f6rld")
    handle_webhook(payloads.body(payload), repository, now=lambda: NOW)
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _s: repository)
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii", write_through=True))
    assert cli.main(["events"]) == 0
    assert "team/w\\xf6rld" in raw.getvalue().decode("ascii")


# --- __main__: the command line as typed --------------------------------------------------------


def test_the_cli_reads_its_own_command_line_as_typed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m acr_webhook`` calls ``main()`` with no argv: it reads ``sys.argv[1:]``, each
    argument as typed (``_as_typed``: in the C locale a non-ASCII name arrives as lone
    surrogates). Mutant: ``sys.argv`` whole, the program name taken for the command."""
    name = "team/w\u00f6rld"
    fake = FakeEventRepository()
    fake.documents["e1"] = {
        "id": "e1",
        "repository": name,
        "action": "push",
        "timestamp": "2026-11-23T10:00:00.000000Z",
    }
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _settings: fake)
    as_the_c_locale_reads_it = name.encode().decode("ascii", "surrogateescape")
    argv = ["python -m acr_webhook", "events", "--repository", as_the_c_locale_reads_it, "--json"]
    monkeypatch.setattr(sys, "argv", argv)
    assert cli.main() == 0
    [listed] = json.loads(capsys.readouterr().out)["events"]
    assert listed["id"] == "e1"


# --- __main__: standard output as scripts meet it ----------------------------------------------


WORLD = "team/w\u00f6rld"


@pytest.fixture
def events_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeEventRepository:
    """The CLI with its settings from the environment and the fake, holding one push, as its
    Cosmos DB (as tests/unit/test_cli_audit.py's cli_reader)."""
    fake = FakeEventRepository()
    monkeypatch.chdir(tmp_path)  # no local.settings.json here
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("LOCAL_FUNCTION_KEY", "k")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _settings: fake)
    stored = payloads.with_new_id(payloads.PUSH)
    stored["target"]["repository"] = WORLD
    assert handle_webhook(payloads.body(stored), fake, now=lambda: NOW).status == 201
    return fake


@contextmanager
def stdout_on(raw: BinaryIO, monkeypatch: pytest.MonkeyPatch, **options: Any) -> Iterator[None]:
    """sys.stdout writing to ``raw``, as a process started with it there has it."""
    shown = io.TextIOWrapper(raw, **{"encoding": "utf-8", **options})
    monkeypatch.setattr(sys, "stdout", shown)
    try:
        yield
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            shown.close()


def test_a_reader_that_went_away_is_status_141_quietly(
    events_cli: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/queries.md: "a reader that goes away (`| head -1`) ends the command quietly with
    status 141, as SIGPIPE ends `seq 100000 | head -1`". Kills: 141 -> 1, a broken pipe told as
    any other write error."""
    reader, writer = os.pipe()
    os.close(reader)
    with stdout_on(os.fdopen(writer, "wb"), monkeypatch):
        status = cli.main(["events"])
    assert (status, capsys.readouterr().err) == (141, "")


def test_output_that_cannot_be_written_is_status_1_with_one_line(
    events_cli: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/queries.md: "Output that cannot be written (a full disk) is status 1 with one line
    saying so". Kills: the flush after the command dropped (the error then surfaces only in
    the flush that suppresses it: status 0, nothing said)."""
    with stdout_on(open("/dev/full", "wb"), monkeypatch):
        status = cli.main(["events"])
    assert status == 1
    assert capsys.readouterr().err == "cannot write the output: No space left on device\n"


def test_a_closed_stdout_is_status_2(
    events_cli: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/queries.md: "a closed standard output (`>&-`) status 2" (Python starts with
    sys.stdout None). Kills: status 0."""
    monkeypatch.setattr(sys, "stdout", None)
    assert cli.main(["events"]) == 2
    assert capsys.readouterr().err == "standard output is closed\n"


def test_after_a_failed_write_what_follows_is_dropped() -> None:
    """__main__._CheckedWrites: "the first raises _ReaderGoneError or OutputError, and what
    follows is dropped, so no flush at exit prints a traceback". Kills: ``_failed`` never set,
    or never read."""
    with open("/dev/full", "wb") as full:
        writes = cli._CheckedWrites(full.fileno(), keep_serving=False)
        with pytest.raises(cli.OutputError):
            writes.write(b"first")
        assert writes.write(b"second") == len(b"second")


def test_serve_keeps_serving_when_the_reader_of_its_output_went_away(
    events_cli: FakeEventRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: serve "keeps serving when the reader of its output goes away, so a script may
    wait for it with `serve ... | grep -m1 listening`". Kills: ``keep_serving`` ignored by
    _CheckedWrites, or not passed for serve."""
    served: list[int] = []

    def serve(_app: Any, _host: str, port: int, _key: str) -> None:
        print("Local Functions host listening on http://127.0.0.1:7071", flush=True)
        print("  GET http://127.0.0.1:7071/api/ping", flush=True)  # grep -m1 has gone
        served.append(port)

    monkeypatch.setattr("acr_webhook.local.host.serve", serve)
    reader, writer = os.pipe()
    os.close(reader)
    with stdout_on(os.fdopen(writer, "wb"), monkeypatch):
        assert cli.main(["serve"]) == 0
    assert served == [7071]


def test_a_line_buffered_stdout_stays_line_buffered(
    events_cli: FakeEventRepository, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """__main__._checked_output: "with the same encoding and buffering": on a terminal (line
    buffered) each line a command prints shows as it is printed, not when the command ends.
    Kills: line_buffering=False in the wrapper."""
    shown_while_serving: list[bytes] = []

    def serve(_app: Any, _host: str, _port: int, _key: str) -> None:
        print("Local Functions host listening on http://127.0.0.1:7071")  # no flush=True
        shown_while_serving.append((tmp_path / "out").read_bytes())

    monkeypatch.setattr("acr_webhook.local.host.serve", serve)
    with stdout_on(open(tmp_path / "out", "wb"), monkeypatch, line_buffering=True):
        assert cli.main(["serve"]) == 0
    assert shown_while_serving == [b"Local Functions host listening on http://127.0.0.1:7071\n"]


@pytest.mark.parametrize("to_a_file", [True, False], ids=["descriptor", "no-descriptor"])
def test_a_console_that_cannot_show_a_stored_name_shows_it_escaped(
    events_cli: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    to_a_file: bool,
) -> None:
    """__main__._checked_output: "A console that cannot show a stored name (the C locale, a
    Windows pipe) shows it escaped, as stderr does: "w\\xf6rld", not a UnicodeEncodeError".
    Kills: errors="strict" in the wrapper around the descriptor; the reconfigure of a stdout
    without one dropped."""
    raw: BinaryIO = open(tmp_path / "out", "wb") if to_a_file else io.BytesIO()  # noqa: SIM115
    shown: list[bytes] = []
    with stdout_on(raw, monkeypatch, encoding="ascii"):
        assert cli.main(["events"]) == 0
        sys.stdout.flush()
        shown.append((tmp_path / "out").read_bytes() if to_a_file else raw.getvalue())  # type: ignore[attr-defined]
    assert b"team/w\\xf6rld" in shown[0]


@pytest.mark.parametrize("port", ["0", "65535"])
def test_serve_takes_ports_0_and_65535(
    events_cli: FakeEventRepository, monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    """README: "`--port` takes 0-65535 (0: any free port, which the banner names)". Kills:
    ``1 <= number``, ``number < 65535``."""
    served: list[int] = []
    monkeypatch.setattr(
        "acr_webhook.local.host.serve", lambda _app, _host, port, _key: served.append(port)
    )
    assert cli.main(["serve", "--port", port]) == 0
    assert served == [int(port)]


def test_a_port_serve_cannot_listen_on_is_one_line_and_status_1(
    events_cli: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README: "a port it cannot listen on (in use) is one line and exit status 1". The
    waitress server is made for real on a port this test listens on. Kills: status 2; the
    local host catching only PermissionError (EADDRINUSE a traceback)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err == f"cannot listen on 127.0.0.1:{port}: Address already in use\n"


# What the table shows as U+FFFD (docs/queries.md): "a control character, a line separator, a
# bidirectional override or a lone surrogate in a stored value".
NOT_SHOWN = {
    "LRE": "\u202a",
    "RLO": "\u202e",
    "RLI": "\u2067",
    "PDI": "\u2069",
    "lone surrogate": "\ud800",
    "DEL": "\x7f",
}


@pytest.mark.parametrize("character", NOT_SHOWN.values(), ids=NOT_SHOWN.keys())
@pytest.mark.parametrize("pushes", [False, True], ids=["events", "pushes"])
def test_the_table_shows_each_character_that_could_reorder_or_forge_it_as_u_fffd(
    events_cli: FakeEventRepository,
    capsys: pytest.CaptureFixture[str],
    character: str,
    pushes: bool,
) -> None:
    """docs/queries.md: the table shows "a control character, a line separator, a bidirectional
    override or a lone surrogate in a stored value ... as U+FFFD"; in the tag and, for
    --pushes, in the regions column (a location as an earlier version stored it), and in a
    digest cut to its first 12 characters. Kills: the isolates (U+2066-2069), the embeddings
    (U+202A-202C), or surrogates dropped from the class; the regions cell or the cut digest
    not cleaned."""
    [document] = events_cli.documents.values()
    digest = f"sha256:ab{character}{'c' * 63}"
    document.update(tag=f"v1{character}x", digest=digest, location=f"east{character}us")
    assert cli.main(["events", *(["--pushes"] * pushes)]) == 0
    out = capsys.readouterr().out
    assert character not in out
    assert "v1\ufffdx" in out
    assert "sha256:ab\ufffdccccccccc" in out  # cut to 12 characters, as any digest
    assert ("east\ufffdus" in out) == pushes


# --- __main__._columns_taken: what a cell takes in a terminal ----------------------------------


def actor_columns(*actors: str) -> list[str]:
    """The ACTOR and REGIONS columns of the pushes table, one push per actor."""
    lines = cli.format_pushes_table(pushes_by(*actors)).splitlines()
    return [line.split("myregistry.azurecr.io  ", 1)[1] for line in lines[1:]]


def test_a_wide_name_sets_the_column_and_ambiguous_halfwidth_and_voicing_marks_do_not_widen() -> (
    None
):
    """Mutants killed: the column's width by code points (a name of 3 CJK characters takes 6
    columns, past ACTOR's 5), East Asian Ambiguous (é) or Halfwidth (ｱ) counted 2 ("everything
    else 1"), everything but Narrow counted 2, and the wide test before the combining one
    (U+3099, the voicing mark of a decomposed ガ, is East Asian Wide and takes no column)."""
    assert actor_columns("\u5f20\u4f1f\u660e", "Jos\u00e9", "\uff71\uff72", "\u30ab\u3099") == [
        "\u5f20\u4f1f\u660e  westeurope",  # 6 columns: the column's width
        "Jos\u00e9    westeurope",  # 4
        "\uff71\uff72      westeurope",  # halfwidth katakana: 1 each
        "\u30ab\u3099      westeurope",  # 2: the mark on top of its wide letter
    ]


def test_a_name_with_thai_or_devanagari_marks_keeps_the_next_column_in_line() -> None:
    assert actor_columns(
        "\u0e2a\u0e21\u0e28\u0e31\u0e01\u0e14\u0e34\u0e4c", "\u0915\u0941\u092e\u093e\u0930", "bob"
    ) == [
        "\u0e2a\u0e21\u0e28\u0e31\u0e01\u0e14\u0e34\u0e4c  westeurope",  # 5 columns: ACTOR's
        "\u0915\u0941\u092e\u093e\u0930   westeurope",  # 4
        "bob    westeurope",
    ]


def test_an_enclosing_mark_takes_no_column() -> None:
    """Mutant killed: only non-spacing marks (Mn) taken as zero-width: an enclosing one (Me,
    U+20DD COMBINING ENCLOSING CIRCLE, drawn around the letter before it) counted 1, so the
    columns after it moved; the comment says "non-spacing or enclosing"."""
    assert actor_columns("A\u20dd", "bob") == ["A\u20dd      westeurope", "bob    westeurope"]
