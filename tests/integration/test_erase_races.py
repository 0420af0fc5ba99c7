"""``erase`` racing the running app's writes of the same person's events, and a second
``erase`` (two operators answering the same request). The proxy holds the other writer's
request at a chosen moment, so that the erase runs in between (not hoped for).

What docs/operations.md ("Personal data") promises: erase deletes every stored event naming
the person and says how many ("Deleted N of N.", "(k already gone)" when another run or the
time-to-live took some first); a later delivery of an erased event (a replay of a parked copy
among them) stores it again, actor and all, so the preview is run again afterwards, and the
output points at the parked copies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from acr_webhook.config import Settings
from acr_webhook.erasure import Erasure, erase, find
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.models import AcrEvent, ParkedEvent, Person, to_document
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventEraser, CosmosEventRepository
from acr_webhook.results import Result
from tests.conftest import read_all
from tests.integration.test_erase_audit import ALICE, EraseCli, erase_cli
from tests.support import payloads
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.holds import Background, Hold
from tests.support.interleave import InlineExecutor
from tests.unit.test_eventgrid import NOW, event_grid

__all__ = ["erase_cli"]  # the fixture, used by name


class Operator(EraseCli):
    def erase(self, *args: str) -> tuple[int, str]:
        """``erase --actor ALICE <args>``, in this process: its exit status and stdout."""
        status, out, _ = self.run("--actor", ALICE, *args)
        return status, out

    def naming_alice(self) -> list[str]:
        return sorted(d["id"] for d in read_all(self.settings) if d.get("actor") == ALICE)


@pytest.fixture
def operator(erase_cli: EraseCli) -> Operator:
    """test_erase_audit's erase_cli: the operator reaches the database directly."""
    return Operator(erase_cli.settings, erase_cli.capsys)


def alices_push(**extra: Any) -> dict[str, Any]:
    return {**payloads.with_new_id(payloads.PUSH), "actor": {"name": ALICE}, **extra}


def stored_by_reconcile(settings: Settings, event: dict[str, Any]) -> None:
    """As reconcile stores an event from ACR's history: who pushed, no region."""
    document = to_document(AcrEvent.model_validate(event), NOW, source="reconcile")
    assert CosmosEventRepository(settings).add(document) is True


def test_a_fill_in_between_its_read_and_its_write_does_not_bring_an_erased_event_back(
    operator: Operator, proxy: FaultyCosmosProxy, through_proxy: Settings
) -> None:
    """Event Grid delivers alice's event (stored by reconcile, without a region) while she is
    erased: its create met the document and it read it; erase deletes it; then its fill-in
    (a replace, never an upsert) finds it gone. Nothing names her afterwards, the output says
    what was deleted, and Event Grid is answered 200 (it would otherwise deliver again)."""
    event = alices_push()
    stored_by_reconcile(operator.settings, event)
    fill_in = Hold(r"^PUT /dbs/[^/]+/colls/[^/]+/docs/", then_pass=True, limit=1)
    proxy.holds.append(fill_in)
    delivery = Background(
        lambda: handle_eventgrid(
            payloads.body([event_grid({**event, "location": "westeurope"})]),
            {},
            CosmosEventRepository(through_proxy),
            executor=InlineExecutor(),
        )
    )
    fill_in.wait()

    status, out = operator.erase("--yes")
    fill_in.release()
    answer: Result = delivery.result()

    assert status == 0
    assert "Deleted 1 of 1." in out
    assert (answer.status, answer.body) == (200, {"recorded": 0, "duplicate": 1, "ignored": 0})
    assert read_all(operator.settings) == []
    assert operator.erase() == (0, operator.nothing_of(ALICE))


def test_a_replay_written_during_an_erase_is_what_the_preview_run_again_finds(
    operator: Operator, proxy: FaultyCosmosProxy, through_proxy: Settings
) -> None:
    """A parked copy of alice's event is being replayed (its create on the way) while erase
    deletes her stored event: the replay lands after, actor and all, as the docs say. The
    erase's output counts what it deleted and points at the parked copies; the preview run
    again names exactly the replayed event."""
    stored, parked = alices_push(), alices_push()
    stored_by_reconcile(operator.settings, stored)
    document = to_document(AcrEvent.model_validate(parked), datetime.now(UTC))
    create = Hold(r"^POST /dbs/[^/]+/colls/[^/]+/docs/?$", then_pass=True, limit=1)
    proxy.holds.append(create)
    replay = Background(
        lambda: replay_queued_event(
            ParkedEvent(document).to_message(), CosmosEventRepository(through_proxy), None, 60
        )
    )
    create.wait()

    status, out = operator.erase("--yes")
    create.release()

    assert replay.result() == "recorded"
    assert status == 0
    assert "Deleted 1 of 1." in out
    assert "Other copies (parked and poison messages" in out
    assert operator.naming_alice() == [parked["id"]]
    status, out = operator.erase()
    assert out.startswith(f"1 event(s) name actor '{ALICE}'")


def test_two_erases_at_once_delete_each_event_once_and_say_so(
    operator: Operator, proxy: FaultyCosmosProxy, through_proxy: Settings
) -> None:
    """Run A has found alice's 3 events and its first delete is held; run B finds and deletes
    them all. A then finds each gone: "Deleted 0 of 3 (3 already gone)", not an error, and
    B's "Deleted 3 of 3." is true."""
    events = [alices_push() for _ in range(3)]
    for event in events:
        stored_by_reconcile(operator.settings, event)
    delete = Hold(r"^DELETE /dbs/[^/]+/colls/[^/]+/docs/", then_pass=True, limit=1)
    proxy.holds.append(delete)
    eraser = CosmosEventEraser(through_proxy)
    run_a = Background(lambda: erase(eraser, Erasure(find(eraser, Person("actor", ALICE)))))
    delete.wait()

    status, out = operator.erase("--yes")
    delete.release()
    erasure_a: Erasure = run_a.result()

    assert status == 0
    assert "Deleted 3 of 3." in out
    assert (len(erasure_a.found), erasure_a.deleted, erasure_a.gone) == (3, 0, 3)
    assert erasure_a.stopped is None
    assert read_all(operator.settings) == []
