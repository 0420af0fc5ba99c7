"""The README: a failure to reach the database is remembered for 5 s by every writer in the
instance (webhook, Event Grid, replay), which then answer at once. Through function_app's
registered functions and runtime's process-wide objects, against a frozen local server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import azure.functions as func
import pytest

import function_app
from acr_webhook.config import Settings
from acr_webhook.models import AcrEvent, ParkedEvent, to_document
from acr_webhook.results import utc_now
from acr_webhook.store import FallbackUnavailableError
from tests.conftest import fresh_settings
from tests.integration.test_cosmos_repository import WRITE_GIVES_UP_S
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.deployed import deployed_on, post
from tests.unit.test_eventgrid import event_grid

# Built once per process from the settings; rebuilt for this test's settings, then dropped.
# Well under the 1 s read timeout that a second wait for the frozen database would cost; 0.1 s
# failed once at 0.111 s on a loaded 2-core machine (a bare-root CI run).
AT_ONCE_S = 0.5


@pytest.fixture
def app_settings(
    restartable_cosmos_server: LocalCosmosServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """function_app as deployed, on a container of its own, with no fallback queue."""
    with deployed_on(fresh_settings(restartable_cosmos_server), monkeypatch) as settings:
        yield settings


def test_a_failed_webhook_write_makes_event_grid_and_replay_answer_at_once(
    app_settings: Settings, restartable_cosmos_server: LocalCosmosServer
) -> None:
    push = payloads.body(payloads.with_new_id(payloads.PUSH))
    batch = json.dumps([event_grid(payloads.with_new_id(payloads.PUSH))]).encode()
    event = AcrEvent.model_validate(payloads.with_new_id(payloads.PUSH))
    parked = func.QueueMessage(body=ParkedEvent(to_document(event, utc_now())).to_message())
    restartable_cosmos_server.freeze()
    try:
        started = time.monotonic()
        webhook = function_app.acr_webhook(post(push))
        webhook_s, started = time.monotonic() - started, time.monotonic()
        eventgrid = function_app.acr_eventgrid(post(batch))
        eventgrid_s, started = time.monotonic() - started, time.monotonic()
        with pytest.raises(FallbackUnavailableError):  # and no queue to put it back in
            function_app.replay_fallback(parked)
        replay_s = time.monotonic() - started
    finally:
        restartable_cosmos_server.thaw()
    # Neither the database nor a queue took the events.
    assert (webhook.status_code, eventgrid.status_code) == (503, 503)
    assert webhook_s < WRITE_GIVES_UP_S  # the one writer that waited for the database
    assert eventgrid_s < AT_ONCE_S
    assert replay_s < AT_ONCE_S
