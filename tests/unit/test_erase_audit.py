"""Audit of the erase command's own logic and output (unit level, tests/unit/test_erasure.py's
in-memory eraser as the store): a blank value is refused before the store is asked, no value
reaches the query's text, and what it prints cannot drive the terminal, however the stored
values and repository names are made. The store side is tests/integration/test_erase_audit.py."""

from __future__ import annotations

import re

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.models import Person
from acr_webhook.repository import person_sql
from tests.unit.test_erasure import InMemoryEraser

# What a terminal acts on: C0 and C1 controls (ESC, CSI, OSC's BEL, line breaks but the
# newline ending each line), line and paragraph separators, bidi embeddings, overrides and
# isolates, lone surrogates.
ACTS_ON_A_TERMINAL = re.compile(
    r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
HOSTILE_ACTOR = "mallory\x1b]0;owned\x07\u202e\r\n\x9b2J\u2066"
HOSTILE_REPOSITORY = "team/\u202egnp.exe\x1b[2J\u2028x"


def erase(
    eraser: InMemoryEraser,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
) -> tuple[int, str, str]:
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventEraser", lambda _settings: eraser)
    status = cli.main(["erase", *args])
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize("value", ["", "   ", "\t\n"], ids=["empty", "spaces", "tab-newline"])
@pytest.mark.parametrize("option", ["--actor", "--client-address"])
def test_a_blank_value_is_refused_before_the_store_is_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    """A blank value would match every document whose field is blank, or, as an address with
    a port after it, every ":port": refused with exit 2 and nothing asked of the store."""
    eraser = InMemoryEraser([("e1", "team/api", "", ":443")])

    def never(_person: Person) -> None:
        raise AssertionError("the store was asked")

    eraser.events_naming = never  # type: ignore[method-assign,assignment]

    assert erase(eraser, monkeypatch, capsys, option, value, "--yes") == (
        2,
        "",
        f"{option}: is empty\n",
    )
    assert eraser.documents  # nothing deleted


@pytest.mark.parametrize(
    "value", ["%", "_", "' OR 1=1 --", '" OR true OR "', "x) OR (1=1", "@value", "\\", "\x00"]
)
@pytest.mark.parametrize("field", ["actor", "clientAddress"])
def test_no_value_reaches_the_querys_text(field: str, value: str) -> None:
    """The query's text is the same for any value: the value (lower-cased) is a parameter, so
    no value can widen the match (no LIKE either: STARTSWITH takes its argument literally)."""
    sql, parameters = person_sql(Person(field, value))  # type: ignore[arg-type]

    condition = rf"(LOWER\(c\.{field}\) = @value\d|STARTSWITH\(LOWER\(c\.{field}\), @prefix\d\))"
    assert re.fullmatch(
        rf"SELECT c\.id, c\.repository, c\.{field} AS matched, c\.actor FROM c "  # noqa: S608
        rf"WHERE {condition}( OR {condition})*",
        sql,
    ), sql
    assert parameters[0] == {"name": "@value0", "value": value.lower()}
    assert " LIKE " not in sql.upper()


def test_stored_values_and_repository_names_cannot_drive_the_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An actor as an earlier version may have stored it (escape sequences, a bidi override,
    a CR LF that would forge a line) and such a repository name: the preview and the deletion
    print every line as designed, each character a terminal acts on shown escaped or as
    U+FFFD, and nothing on stderr."""
    eraser = InMemoryEraser(
        [("e1", HOSTILE_REPOSITORY, HOSTILE_ACTOR, None), ("e2", "team/api", "bob", None)]
    )

    preview = erase(eraser, monkeypatch, capsys, "--actor", HOSTILE_ACTOR)
    erased = erase(eraser, monkeypatch, capsys, "--actor", HOSTILE_ACTOR, "--yes")

    for status, out, errors in (preview, erased):
        assert (status, errors) == (0, "")
        assert not ACTS_ON_A_TERMINAL.search(out), ascii(out)
        assert out.splitlines()[:3] == [
            f"1 event(s) name actor {HOSTILE_ACTOR!r} (as recorded: {HOSTILE_ACTOR!r}):",
            "REPOSITORY           EVENTS",
            "team/\ufffdgnp.exe\ufffd[2J\ufffdx  1",
        ]
    assert preview[1].splitlines()[3:] == ["Nothing deleted: run again with --yes to delete them."]
    assert erased[1].splitlines()[3] == "Deleted 1 of 1."
    assert sorted(eraser.documents) == ["e2"]


def test_many_long_values_are_shown_ten_at_most(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An address with 300 ports, each recorded as its own value: ten are listed, then how many
    more; one line per repository, however many events."""
    address = "203.0.113.7"
    eraser = InMemoryEraser(
        [(f"e{port}", f"team/r{port % 3}", None, f"{address}:{port}") for port in range(300)]
    )

    status, out, errors = erase(eraser, monkeypatch, capsys, "--client-address", address)

    assert (status, errors) == (0, "")
    first, *rest = out.splitlines()
    assert first.startswith(f"300 event(s) name client address '{address}' (as recorded: ")
    assert first.count(f"'{address}:") == 10 and first.endswith(" and 290 more):")
    assert rest == [
        "REPOSITORY  EVENTS",
        "team/r0     100",
        "team/r1     100",
        "team/r2     100",
        "Nothing deleted: run again with --yes to delete them.",
    ]


def test_yes_with_no_match_deletes_nothing_and_says_so_on_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    eraser = InMemoryEraser([("e1", "team/api", "bob@contoso.com", "203.0.113.70:443")])

    assert erase(eraser, monkeypatch, capsys, "--client-address", "203.0.113.7", "--yes") == (
        0,
        "No events name client address '203.0.113.7'.\n",
        "",
    )
    assert eraser.deletes == 0 and list(eraser.documents) == ["e1"]


def test_the_top_level_help_describes_every_command_erase_included(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    description = capsys.readouterr().out.split("\n\n")[1]  # after the usage, before the list
    assert description.startswith("The acr-webhook app's commands")
    assert re.search(r"\beras", " ".join(description.split()))
