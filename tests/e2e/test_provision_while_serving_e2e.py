"""``provision`` while the app serves: a second ``./scripts/dev`` (it provisions the servers the
first one started, then finds the port taken), or ``RETENTION_DAYS=90 provision`` run against a
live container (docs/operations.md, "Retention and backup"). The proxy holds the command's
replace of the container until events have been sent, so that they arrive while it is under
way (not hoped for). What must hold: every event answered 201 (or 200 for Event Grid), none
with a 5xx, each stored once; the documents there before stay; the time-to-live is set."""

from __future__ import annotations

from acr_webhook.config import Settings
from tests.conftest import container_for, read_all
from tests.integration.test_provision_races import retention_change_held
from tests.support import payloads
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.instances import EVENTGRID_HEADERS
from tests.support.serve import ServeProcess, post_json
from tests.unit.test_eventgrid import event_grid


def test_events_sent_while_provision_changes_the_retention_are_all_stored(
    served: ServeProcess, cosmos_settings: Settings, proxy: FaultyCosmosProxy
) -> None:
    def send(tag: str) -> tuple[list[int], list[str]]:
        """Two webhook events and an Event Grid batch of two: the answers and the ids."""
        events = [payloads.with_new_id(payloads.PUSH, tag=f"{tag}{n}") for n in range(4)]
        answers = [post_json(served.url(), payloads.body(event)) for event in events[:2]]
        batch = payloads.body([event_grid(event) for event in events[2:]])
        answers.append(post_json(served.url("acr/eventgrid"), batch, **EVENTGRID_HEADERS))
        return [answer.status_code for answer in answers], [event["id"] for event in events]

    before, stored_before = send("before")
    replace, command = retention_change_held(cosmos_settings, proxy)
    during, stored_during = send("during")
    replace.release()
    command.result()
    after, stored_after = send("after")

    assert (before, during, after) == ([201, 201, 200],) * 3
    ids = sorted(d["id"] for d in read_all(cosmos_settings))
    assert ids == sorted(stored_before + stored_during + stored_after)
    assert container_for(cosmos_settings).read()["defaultTtl"] == 90 * 86400
