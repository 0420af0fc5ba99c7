"""Audit of the erase command's own logic and output (unit level, tests/unit/test_erasure.py's
in-memory eraser as the store): a blank value is refused before the store is asked, no value
reaches the query's text, and what it prints cannot drive the terminal, however the stored
values and repository names are made. The store side is tests/integration/test_erase_audit.py."""

from __future__ import annotations

import dataclasses
import re

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.models import Person, StoredEvent
from acr_webhook.repository import person_sql
from acr_webhook.store import RepositoryUnavailableError, StoreSetUpError
from tests.unit.test_erasure import DOCUMENTS, FailingOnce, InMemoryEraser

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
    assert preview[1].splitlines()[3:] == [
        "Nothing deleted: run again with --yes to delete them.",
        SEARCHED,
    ]
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
        SEARCHED,
    ]


def test_yes_with_no_match_deletes_nothing_and_says_so_on_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    eraser = InMemoryEraser([("e1", "team/api", "bob@contoso.com", "203.0.113.70:443")])

    assert erase(eraser, monkeypatch, capsys, "--client-address", "203.0.113.7", "--yes") == (
        0,
        f"No events name client address '203.0.113.7'.\n{SEARCHED}\n",
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


# --- __main__._erase: what it refuses and says ------------------------------------------------

ADDRESS = "203.0.113.7"
# erase's last line: the store erase() below points it at.
SEARCHED = "Searched: https://127.0.0.1:1/, database 'acr', container 'events'."
CLOSING = (
    "Other copies (parked and poison messages, dead-letter blobs, the backup): see "
    '"Personal data" in docs/operations.md.'
)
SET_UP = StoreSetUpError("403: no role", cause="give it the data role")


class NamingActors(InMemoryEraser):
    """test_erasure's eraser, each event found naming its document's actor, as
    CosmosEventEraser's do (StoredEvent.actor: whom the event names, whatever matched)."""

    def events_naming(self, person: Person) -> list[StoredEvent]:
        return [
            dataclasses.replace(event, actor=self.documents[event.id][2])
            for event in super().events_naming(person)
        ]


class FindingFails(InMemoryEraser):
    def __init__(self, failure: RepositoryUnavailableError) -> None:
        super().__init__(DOCUMENTS)
        self.failure = failure

    def events_naming(self, person: Person) -> list[StoredEvent]:
        assert self.failure is not None
        raise self.failure


def test_a_value_that_is_not_utf8_is_refused_before_the_store_is_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutant killed: no UTF-8 check (bytes the shell passed as they were, a Latin-1 name, came
    to the query as a lone surrogate: "No events name" and exit 0, read as erased)."""
    eraser = FindingFails(AssertionError("the store was asked"))  # type: ignore[arg-type]

    assert erase(eraser, monkeypatch, capsys, "--actor", "jos\udce9", "--yes") == (
        2,
        "",
        "--actor: is not UTF-8 text: b'jos\\xe9'\n",
    )


@pytest.mark.parametrize(
    ("failure", "status", "said"),
    [
        (SET_UP, 2, "the event store at https://127.0.0.1:1/: give it the data role\n"),
        (
            RepositoryUnavailableError("ServiceResponseError: no answer"),
            1,
            "the event store at https://127.0.0.1:1/ is unavailable: "
            "ServiceResponseError: no answer\n",
        ),
    ],
    ids=["set-up", "unavailable"],
)
def test_a_set_up_the_store_refuses_on_the_find_is_exit_2_with_its_fix(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failure: RepositoryUnavailableError,
    status: int,
    said: str,
) -> None:
    """Mutants killed: a refused set-up (a role without read, a wrong key) on the find told as
    an outage, exit 1 "is unavailable" (docs/operations.md's exit codes: 2 is fixed by a
    person, 1 by running again), by its exit status or with __main__._store_failed's set-up
    branch gone (then also the unavailable case, kept as the contrast)."""
    assert erase(FindingFails(failure), monkeypatch, capsys, "--actor", "alice") == (
        status,
        "",
        said,
    )


@pytest.mark.parametrize(("ports", "more"), [(10, ""), (12, " and 2 more")])
def test_and_n_more_counts_the_values_not_shown_not_the_events(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ports: int, more: str
) -> None:
    """Mutants killed: " and 0 more" after exactly MATCHED_VALUES_SHOWN values (``>=`` for
    ``>``), and the count of events not shown instead of values (each port used three times)."""
    eraser = InMemoryEraser(
        [
            (f"e{port}-{time}", "team/api", None, f"{ADDRESS}:{port}")
            for port in range(10, 10 + ports)
            for time in range(3)
        ]
    )

    status, out, _ = erase(eraser, monkeypatch, capsys, "--client-address", ADDRESS)

    first = out.splitlines()[0]
    assert status == 0
    assert first.startswith(f"{3 * ports} event(s) name client address '{ADDRESS}' (as recorded: ")
    assert first.endswith(f"'{ADDRESS}:19'{more}):")


@pytest.mark.parametrize(
    ("actors", "said"),
    [
        (["alice", "alice", "alice"], None),
        (["Alice@Contoso.com", "alice@contoso.com", None], None),  # one person, two cases
        (
            ["alice", "bob", None],
            "They name 2 different actors: an address can be shared (a NAT, a proxy, a build "
            "agent), and --yes --every-actor deletes all 3 events, theirs too.",
        ),
    ],
    ids=["one actor", "one actor in two cases", "two actors"],
)
def test_the_shared_address_line_counts_actors_in_any_case_and_every_event(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    actors: list[str | None],
    said: str | None,
) -> None:
    """Mutants killed: the line printed for one actor (``>= 1``), for one actor recorded in
    two cases (the actors not lower-cased, where the find itself is case-blind: "a person is
    found in any case"), and saying how many actors --yes deletes instead of events."""
    eraser = NamingActors(
        [(f"e{n}", "team/api", actor, f"{ADDRESS}:{n}") for n, actor in enumerate(actors)]
    )

    status, out, _ = erase(eraser, monkeypatch, capsys, "--client-address", ADDRESS)

    assert status == 0
    assert out.splitlines()[3:] == [
        *([said] if said else []),
        "Nothing deleted: run again with --yes to delete them.",
        SEARCHED,
    ]


def test_deleted_counts_only_what_this_run_deleted_and_says_how_many_were_gone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutants killed: the "(G already gone)" left out and the gone counted as deleted
    (operations.md's "Deleted D of N (G already gone).": another erase or the time-to-live
    took them), and the closing line about the other copies left out."""
    eraser = InMemoryEraser(DOCUMENTS, gone=frozenset({"e2", "e5"}))

    status, out, errors = erase(
        eraser, monkeypatch, capsys, "--actor", "alice@contoso.com", "--yes"
    )

    assert (status, errors) == (0, "")
    assert out.splitlines()[-3:] == ["Deleted 3 of 5 (2 already gone).", CLOSING, SEARCHED]


@pytest.mark.parametrize(
    ("failure", "status", "said"),
    [
        (SET_UP, 2, ": give it the data role\n"),
        (
            RepositoryUnavailableError("timed out"),
            1,
            " is unavailable: timed out; run erase again to delete the rest\n",
        ),
    ],
    ids=["set-up", "unavailable"],
)
def test_a_stop_says_what_is_left_without_the_gone_and_run_again_only_for_an_outage(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failure: RepositoryUnavailableError,
    status: int,
    said: str,
) -> None:
    """Mutants killed: "left" counting the events found gone (2 deleted, 1 gone and 2 left of
    5 read "3 left"), "run erase again" after a refused set-up (it is refused the same way
    every time: fix it first), and the closing line printed after a stop (it closes an erasure
    that finished)."""
    eraser = FailingOnce(DOCUMENTS, fail_at=3, failure=failure, gone=frozenset({"e2"}))

    out = erase(eraser, monkeypatch, capsys, "--actor", "alice@contoso.com", "--yes")

    assert out[0] == status
    assert out[1].splitlines()[-1] == "Deleted 2 of 5 (1 already gone)."
    assert out[2] == f"stopped with 2 left: the event store at https://127.0.0.1:1/{said}"


def test_erase_without_a_person_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Mutant killed: --actor and --client-address not required (``erase --yes`` alone was a
    traceback on None, not argparse's exit 2 naming both)."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["erase", "--yes"])

    assert exited.value.code == 2
    assert "one of the arguments --actor --client-address is required" in capsys.readouterr().err
