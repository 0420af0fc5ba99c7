"""Erasing one person's events (acr_webhook/erasure.py, the erase command): what is found,
what is deleted, and where a failing store stops it, against an in-memory eraser."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from acr_webhook.erasure import Erasure, by_repository, erase, find, matched_values
from acr_webhook.models import Person, StoredEvent
from acr_webhook.repository import PARTITION_KEY_PATH, CosmosEventEraser, person_sql
from acr_webhook.store import RepositoryUnavailableError, StoreNotFoundError, StoreSetUpError
from tests.unit.test_review import SETTINGS, _Answering404, _Built


class InMemoryEraser:
    """Documents as (id, repository, actor, clientAddress); ``fail_at``: the delete (0-based)
    that raises ``failure``; ``gone``: ids deleted by someone else after they were found."""

    def __init__(
        self,
        documents: Sequence[tuple[str, str, str | None, str | None]],
        fail_at: int | None = None,
        failure: RepositoryUnavailableError | None = None,
        gone: frozenset[str] = frozenset(),
    ) -> None:
        self.documents = {doc[0]: doc for doc in documents}
        self.deletes = 0
        self.fail_at = fail_at
        self.failure = failure
        self.gone = gone

    def events_naming(self, person: Person) -> list[StoredEvent]:
        found = []
        for event_id, repository, actor, address in self.documents.values():
            value = actor if person.field == "actor" else address
            if value is not None and (
                value == person.value
                or (person.field == "clientAddress" and value.startswith(f"{person.value}:"))
            ):
                found.append(StoredEvent(event_id, repository, value))
        return found

    def delete(self, event: StoredEvent) -> bool:
        if self.deletes == self.fail_at:
            assert self.failure is not None
            raise self.failure
        self.deletes += 1
        if event.id in self.gone:
            return False
        return self.documents.pop(event.id, None) is not None


DOCUMENTS = [
    ("e1", "team/api", "alice@contoso.com", "203.0.113.7:51234"),
    ("e2", "team/api", "alice@contoso.com", "203.0.113.7:51300"),
    ("e3", "team/web", "alice@contoso.com", None),
    ("e4", "team/web", "bob@contoso.com", "203.0.113.70:443"),
    ("e5", "team/zz", "alice@contoso.com", None),
    ("e6", "team/zz", "alice@contoso.com", None),
]


def test_erase_deletes_every_event_of_the_person_and_no_one_elses() -> None:
    eraser = InMemoryEraser(DOCUMENTS)
    found = find(eraser, Person("actor", "alice@contoso.com"))

    erasure = erase(eraser, Erasure(found))

    assert (erasure.deleted, erasure.gone, erasure.left, erasure.stopped) == (5, 0, 0, None)
    assert sorted(eraser.documents) == ["e4"]


def test_the_counts_name_repositories_most_first_then_by_name() -> None:
    found = find(InMemoryEraser(DOCUMENTS), Person("actor", "alice@contoso.com"))

    assert by_repository(found) == [("team/api", 2), ("team/zz", 2), ("team/web", 1)]
    assert matched_values(found) == ["alice@contoso.com"]


def test_matched_values_list_each_address_as_recorded_once() -> None:
    found = find(InMemoryEraser(DOCUMENTS), Person("clientAddress", "203.0.113.7"))

    assert matched_values(found + found) == ["203.0.113.7:51234", "203.0.113.7:51300"]


def test_an_event_deleted_meanwhile_counts_as_gone_not_deleted() -> None:
    eraser = InMemoryEraser(DOCUMENTS, gone=frozenset({"e2"}))

    erasure = erase(eraser, Erasure(find(eraser, Person("actor", "alice@contoso.com"))))

    assert (erasure.deleted, erasure.gone, erasure.left) == (4, 1, 0)


@pytest.mark.parametrize(
    "failure",
    [
        RepositoryUnavailableError("ServiceResponseError: no answer", cause="no answer"),
        StoreSetUpError("403: no role", cause="give it the data role"),
    ],
    ids=["unavailable", "set-up"],
)
def test_the_first_failure_of_the_store_stops_it_and_says_how_many_are_left(
    failure: RepositoryUnavailableError,
) -> None:
    eraser = InMemoryEraser(DOCUMENTS, fail_at=2, failure=failure)

    erasure = erase(eraser, Erasure(find(eraser, Person("actor", "alice@contoso.com"))))

    assert erasure.stopped is failure
    assert (erasure.deleted, erasure.left) == (2, 3)
    assert eraser.deletes == 2  # nothing tried after the failure
    assert len(eraser.documents) == 4  # e4 and the three left


def test_the_query_matches_the_field_in_any_case_and_an_address_with_any_port() -> None:
    actor_sql, actor_parameters = person_sql(Person("actor", "Alice@Contoso.com"))
    address_sql, address_parameters = person_sql(Person("clientAddress", "[2001:DB8:0::1]"))

    assert "WHERE LOWER(c.actor) = @value0" in actor_sql
    assert "STARTSWITH" not in actor_sql
    assert actor_parameters == [{"name": "@value0", "value": "alice@contoso.com"}]
    assert (
        "WHERE LOWER(c.clientAddress) = @value0 OR LOWER(c.clientAddress) = @value1 "
        "OR STARTSWITH(LOWER(c.clientAddress), @prefix0)" in address_sql
    )
    assert address_parameters == [
        {"name": "@value0", "value": "2001:db8::1"},
        {"name": "@value1", "value": "[2001:db8::1]"},
        {"name": "@prefix0", "value": "[2001:db8::1]:"},
    ]


@pytest.mark.parametrize(
    ("given", "whole", "before_a_port"),
    [
        ("203.0.113.7", ("203.0.113.7",), ("203.0.113.7:",)),
        ("203.0.113.7:51234", ("203.0.113.7:51234",), ()),  # one connection only
        ("2001:db8::1", ("2001:db8::1", "[2001:db8::1]"), ("[2001:db8::1]:",)),  # never bare + ":"
        ("2001:DB8:0:0:0:0:0:1", ("2001:db8::1", "[2001:db8::1]"), ("[2001:db8::1]:",)),
        ("[2001:db8::1]:443", ("[2001:db8::1]:443",), ()),
        ("Build-Agent-7", ("build-agent-7",), ("build-agent-7:",)),  # a host name
    ],
)
def test_an_address_is_matched_in_the_forms_acr_records_it(
    given: str, whole: tuple[str, ...], before_a_port: tuple[str, ...]
) -> None:
    assert Person("clientAddress", given).recorded_forms() == (whole, before_a_port)


ADDRESS = "203.0.113.7"


class FailingOnce(InMemoryEraser):
    """A store whose delete number ``fail_at`` (0-based) fails and whose next ones succeed: a
    timeout, a throttled request past the SDK's retries."""

    def delete(self, event: StoredEvent) -> bool:
        if self.deletes == self.fail_at:
            self.fail_at = None
            assert self.failure is not None
            raise self.failure
        return super().delete(event)


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


class _AppsContainerAnswering404(_Answering404):
    """The app's container (its partition key read first, as the eraser does), whose query is
    answered 404 with ``sub_status``."""

    def read(self) -> dict[str, Any]:
        return {"partitionKey": {"paths": [PARTITION_KEY_PATH]}}


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
    eraser._container = _Built(_AppsContainerAnswering404(sub_status))  # type: ignore[assignment]

    with pytest.raises(RepositoryUnavailableError) as raised:
        eraser.events_naming(Person("actor", "alice@contoso.com"))

    assert isinstance(raised.value, StoreNotFoundError) is missing


# --- erasure: repositories with as many events, and the first failure stops it ------------------


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

    erasure = erase(eraser, Erasure(find(eraser, Person("actor", "alice@contoso.com"))))

    assert (erasure.deleted, erasure.gone, erasure.left) == (2, 0, 3)
    assert sorted(eraser.documents) == ["e3", "e4", "e5", "e6"]
