"""Mutation audit of the product changes 3c3da3d..d2224f9 that no round covered: mainly the erase
command (models.Person and StoredEvent, repository.person_sql and CosmosEventEraser, erasure.py,
__main__._erase), and the gaps mut13 left in __main__._columns_taken's marks and
queries.decode_continuation's newer tokens (the earlier rounds are
tests/unit/test_session26_mutants.py onwards; the store side that the local server decides is
tests/integration/test_session34_mutants.py).

Each test below kills hand-made mutants that the earlier tests let through (named in its
docstring). Every one asserts what docs/operations.md, a docstring or the code's own comment
says, not the mutant.
"""

from __future__ import annotations

import dataclasses

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.erasure import by_repository, erase, find
from acr_webhook.models import Person, StoredEvent
from acr_webhook.queries import TOKEN_VERSION
from acr_webhook.repository import CosmosEventEraser
from acr_webhook.store import RepositoryUnavailableError, StoreNotFoundError, StoreSetUpError
from tests.support.fakes import FakeEventRepository
from tests.unit.test_cli_console import actor_columns
from tests.unit.test_erase_audit import erase as run_erase
from tests.unit.test_erasure import DOCUMENTS, InMemoryEraser
from tests.unit.test_queries import STAMP, UNFILTERED, call, forged
from tests.unit.test_review import SETTINGS, _Answering404, _Built

ADDRESS = "203.0.113.7"
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


class FailingOnce(InMemoryEraser):
    """A store whose delete number ``fail_at`` (0-based) fails and whose next ones succeed: a
    timeout, a throttled request past the SDK's retries."""

    def delete(self, event: StoredEvent) -> bool:
        if self.deletes == self.fail_at:
            self.fail_at = None
            assert self.failure is not None
            raise self.failure
        return super().delete(event)


class FindingFails(InMemoryEraser):
    def __init__(self, failure: RepositoryUnavailableError) -> None:
        super().__init__(DOCUMENTS)
        self.failure = failure

    def events_naming(self, person: Person) -> list[StoredEvent]:
        assert self.failure is not None
        raise self.failure


# --- models.Person.recorded_forms: an address as ACR records it -------------------------------


@pytest.mark.parametrize(
    ("given", "whole", "before_a_port"),
    [
        (f"[{ADDRESS}]", (ADDRESS,), (f"{ADDRESS}:",)),  # an IPv4 address in brackets
        # One bracket: no address, matched as written, where the text inside the first and
        # last characters is another host's address.
        (f"[{ADDRESS}8", (f"[{ADDRESS}8",), (f"[{ADDRESS}8:",)),
        (f"1{ADDRESS}]", (f"1{ADDRESS}]",), (f"1{ADDRESS}]:",)),
    ],
    ids=["bracketed IPv4", "opening bracket only", "closing bracket only"],
)
def test_only_an_address_in_both_brackets_is_read_as_one(
    given: str, whole: tuple[str, ...], before_a_port: tuple[str, ...]
) -> None:
    """Mutants killed: an IPv4 address's forms as given ("[203.0.113.7]" found nothing, where
    the docstring reads "an IP address in any written form (... in brackets)"), and a value
    with one bracket taken for a bracketed address (``or`` for ``and``: a mistyped
    "[203.0.113.78" found the events of 203.0.113.7, another host)."""
    assert Person("clientAddress", given).recorded_forms() == (whole, before_a_port)


# --- repository.CosmosEventEraser: a 404 that is not a missing container ----------------------


@pytest.mark.parametrize(
    ("sub_status", "missing"), [(None, True), (0, True), (1003, True), (1002, False)]
)
def test_a_404_on_the_find_is_a_missing_container_only_for_its_sub_statuses(
    sub_status: int | None, missing: bool
) -> None:
    """Mutant killed: every 404 on the find told as a missing container (exit 2 "run
    provision"), where 1002, a session not yet readable in a region, is an outage (exit 1: the
    next run finds them), as for the events query."""
    eraser = CosmosEventEraser(SETTINGS)
    eraser._container = _Built(_Answering404(sub_status))  # type: ignore[assignment]

    with pytest.raises(RepositoryUnavailableError) as raised:
        eraser.events_naming(Person("actor", "alice@contoso.com"))

    assert isinstance(raised.value, StoreNotFoundError) is missing


# --- erasure.py ------------------------------------------------------------------------------


def test_repositories_with_as_many_events_are_listed_by_name_whatever_the_order_found() -> None:
    """Mutant killed: the tie broken by the order the store answered in (by_repository sorted
    by count alone), so one preview listed them differently from the next."""
    found = [
        StoredEvent("1", "team/zz", "alice"),
        StoredEvent("2", "team/api", "alice"),
        StoredEvent("3", "team/mm", "alice"),
        StoredEvent("4", "team/mm", "alice"),
    ]
    assert by_repository(found) == [("team/mm", 2), ("team/api", 1), ("team/zz", 1)]


def test_erase_stops_at_the_first_failure_even_if_the_next_delete_would_pass() -> None:
    """Mutant killed: a failed delete skipped and the rest tried (``continue`` for ``break``):
    erase's docstring, "the first failure of the store stops it (running it again finds what
    is left)"; against a store still failing each try would wait out its own timeout."""
    eraser = FailingOnce(DOCUMENTS, fail_at=2, failure=RepositoryUnavailableError("timed out"))

    erasure = erase(eraser, find(eraser, Person("actor", "alice@contoso.com")))

    assert (erasure.deleted, erasure.gone, erasure.left) == (2, 0, 3)
    assert sorted(eraser.documents) == ["e3", "e4", "e5", "e6"]


# --- __main__._erase: what it refuses and says ------------------------------------------------


def test_a_value_that_is_not_utf8_is_refused_before_the_store_is_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutant killed: no UTF-8 check (bytes the shell passed as they were, a Latin-1 name, came
    to the query as a lone surrogate: "No events name" and exit 0, read as erased)."""
    eraser = FindingFails(AssertionError("the store was asked"))  # type: ignore[arg-type]

    assert run_erase(eraser, monkeypatch, capsys, "--actor", "jos\udce9", "--yes") == (
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
    assert run_erase(FindingFails(failure), monkeypatch, capsys, "--actor", "alice") == (
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

    status, out, _ = run_erase(eraser, monkeypatch, capsys, "--client-address", ADDRESS)

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
            "agent), and --yes deletes all 3 events, theirs too.",
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

    status, out, _ = run_erase(eraser, monkeypatch, capsys, "--client-address", ADDRESS)

    assert status == 0
    assert out.splitlines()[3:] == [
        *([said] if said else []),
        "Nothing deleted: run again with --yes to delete them.",
    ]


def test_deleted_counts_only_what_this_run_deleted_and_says_how_many_were_gone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutants killed: the "(G already gone)" left out and the gone counted as deleted
    (operations.md's "Deleted D of N (G already gone).": another erase or the time-to-live
    took them), and the closing line about the other copies left out."""
    eraser = InMemoryEraser(DOCUMENTS, gone=frozenset({"e2", "e5"}))

    status, out, errors = run_erase(
        eraser, monkeypatch, capsys, "--actor", "alice@contoso.com", "--yes"
    )

    assert (status, errors) == (0, "")
    assert out.splitlines()[-2:] == ["Deleted 3 of 5 (2 already gone).", CLOSING]


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

    out = run_erase(eraser, monkeypatch, capsys, "--actor", "alice@contoso.com", "--yes")

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


# --- gaps mut13 left -----------------------------------------------------------------------------


def test_an_enclosing_mark_takes_no_column() -> None:
    """Mutant killed: only non-spacing marks (Mn) taken as zero-width: an enclosing one (Me,
    U+20DD COMBINING ENCLOSING CIRCLE, drawn around the letter before it) counted 1, so the
    columns after it moved; the comment says "non-spacing or enclosing"."""
    assert actor_columns("A\u20dd", "bob") == ["A\u20dd      westeurope", "bob    westeurope"]


def test_a_token_two_versions_newer_is_a_newer_one() -> None:
    """Mutant killed: only TOKEN_VERSION + 1 taken for a newer version's token: rolled back
    over two releases, a client's token is still "from a newer version", not a forgery."""
    token = forged(
        {"v": TOKEN_VERSION + 2, "q": UNFILTERED, "t": STAMP, "k": None, "w": [None, None]}
    )
    assert call({"continuation": token}, FakeEventRepository()) == (
        400,
        {"error": "continuation: is from a newer version of this endpoint; start without it"},
    )
