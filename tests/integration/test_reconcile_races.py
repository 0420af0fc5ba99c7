"""``reconcile`` by hand while the reconcile timer runs through the same history and the live
webhook and Event Grid deliveries of the same events arrive. The proxy holds the first write
of one party (the command's, or the live webhook's) so that every other party stores or meets
the events before it lands (not hoped for, as test_multi_instance_e2e's at-once run is).

README ("Documents") and docs/delivery.md: one document per event id; ``source`` is the path
that stored it first, ``receivedAt`` its time; a later Event Grid or reconcile delivery fills in
the enrichment fields the document lacks and overwrites none. The command's summary counts
`recorded` what it stored and `already` what it found stored."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.config import ReconcileSettings, Settings
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.reconcile import StoredEvents, reconcile_webhooks
from acr_webhook.repository import CosmosEventRepository
from tests.conftest import read_all
from tests.integration.test_event_queries import cli_on
from tests.support import payloads
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.history import history_entry
from tests.support.holds import Background, Hold
from tests.support.interleave import InlineExecutor
from tests.unit.test_eventgrid import NOW, TOPIC, event_grid

EVENTS = 3
ACTOR = "history-bot"  # who pushed: in ACR's history, not in the webhook's payload
REGION = "westeurope"  # which replica: in Event Grid's delivery only
# Set by the path that stored the event first, so they differ by path (README "Documents").
PER_PATH = ("source", "receivedAt")


class History:
    """ACR's delivery history of one webhook, as the timer reads it."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self._entries = entries

    def entries(self, webhook_name: str) -> Iterator[dict[str, Any]]:
        yield from copy.deepcopy(self._entries)


@pytest.mark.parametrize("held", ["command", "webhook"])
def test_reconcile_by_hand_the_timer_and_live_deliveries_make_one_full_document_each(
    cosmos_settings: Settings,
    through_proxy: Settings,
    proxy: FaultyCosmosProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    held: str,
) -> None:
    """``command``: the command's first create is held while the timer stores every event and
    the live deliveries meet them. ``webhook``: the live webhook's first create is held while
    the command and the timer store and meet them. Either way: each event one document with
    every field a delivery carried (who pushed from the history, the region and registry id
    from Event Grid), the rest as the webhook's payload gives it; counts that add up."""
    events = [payloads.with_new_id(payloads.PUSH, tag=f"race{n}") for n in range(EVENTS)]
    entries = [history_entry({**event, "actor": {"name": ACTOR}}) for event in events]
    events_file = tmp_path / "history.json"
    events_file.write_text(json.dumps(entries))
    cli_on(through_proxy, monkeypatch, tmp_path)
    repository = CosmosEventRepository(through_proxy)
    create = Hold(r"^POST /dbs/[^/]+/colls/[^/]+/docs/?$", then_pass=True, limit=1)
    proxy.holds.append(create)

    def command() -> int:
        return cli.main(["reconcile", "--events-file", str(events_file)])

    def timer() -> Any:
        target = ReconcileSettings(registry_id=TOPIC, webhook_names=("acrhook",))
        outcomes = reconcile_webhooks(target, repository, History(entries), stored=StoredEvents())
        return outcomes["acrhook"].counts

    def webhook(event: dict[str, Any]) -> int:
        return handle_webhook(payloads.body(event), repository).status

    background = Background(command if held == "command" else lambda: webhook(events[0]))
    create.wait()
    status = command() if held == "webhook" else None
    counts = timer()
    webhooks = [webhook(event) for event in events[held == "webhook" :]]
    grid = handle_eventgrid(
        payloads.body([event_grid({**event, "location": REGION}) for event in events]),
        {},
        repository,
        executor=InlineExecutor(),
    )
    create.release()
    if held == "command":
        status = background.result()
    else:
        webhooks.append(background.result())

    assert status == 0
    summary = re.search(
        r"recorded=(\d+) already=(\d+) skipped=0 invalid=0", capsys.readouterr().out
    )
    assert summary is not None
    by_command = int(summary[1])
    assert by_command + int(summary[2]) == EVENTS
    assert counts.recorded + counts.already == EVENTS
    assert set(webhooks) <= {200, 201} and grid.status == 200
    assert grid.body is not None
    assert grid.body["recorded"] + grid.body["duplicate"] == EVENTS
    documents = {d["id"]: d for d in read_all(cosmos_settings)}
    assert sorted(documents) == sorted(event["id"] for event in events)
    sources = [d["source"] for d in documents.values()]
    assert sources.count("reconcile") == by_command + counts.recorded
    assert sources.count("webhook") == webhooks.count(201)
    assert sources.count("eventgrid") == grid.body["recorded"]
    # The forced order: the party not held stored every event first.
    if held == "command":
        assert (by_command, counts.recorded) == (0, EVENTS)
    else:
        assert (by_command, counts.already, webhooks) == (EVENTS, EVENTS, [200] * EVENTS)
    for event in events:
        live = to_document(AcrEvent.model_validate(event), NOW)
        expected = {**live, "actor": ACTOR, "location": REGION, "registryResourceId": TOPIC}
        stored = {k: v for k, v in documents[event["id"]].items() if not k.startswith("_")}
        assert {k: v for k, v in stored.items() if k not in PER_PATH} == {
            k: v for k, v in expected.items() if k not in PER_PATH
        }
