"""redrive without Azurite: the counts it reports, and what it says of a queue service that
refuses or a queue that is missing.
"""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from acr_webhook import __main__ as cli
from acr_webhook import config
from acr_webhook import redrive as redrive_module
from acr_webhook.config import ConfigurationError, QueueSettings
from acr_webhook.models import ParkedEvent
from acr_webhook.redrive import RedriveProgress, RedriveReport
from tests.unit.test_replay import DOCUMENT

# --- redrive.RedriveReport.unseen: never below none --------------------------------------------


def test_unseen_is_never_negative_when_the_service_counts_fewer_than_were_kept() -> None:
    """RedriveReport.left is "approximate, as the service counts": another process deleting
    a kept message meanwhile makes it fewer than not_events, and unseen ("of left, those this
    run never received") is then none, not a negative count the command would print as
    "-2 of them were hidden". Kills `max(..., 0)` dropped."""
    assert RedriveReport(moved=0, not_events=3, left=1).unseen == 0
    assert RedriveReport(moved=5, not_events=1, left=4).unseen == 3


# --- __main__: redrive says the queue service's refusal on one line -----------------------------


@pytest.mark.parametrize(
    "error",
    [
        HttpResponseError("The specified queue is being deleted.\nRequestId:1\nTime:now"),
        ServiceRequestError("Connection refused\n<?xml ...>"),
    ],
    ids=["answered", "unreachable"],
)
def test_redrive_says_the_queue_services_refusal_on_one_line(
    error: AzureError,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """redrive: "The SDK's message runs on with the service's XML: its first line says it".
    Kills the whole message printed."""
    first = str(error).splitlines()[0]

    def fail(_queue: QueueSettings, _progress: RedriveProgress) -> RedriveReport:
        raise error

    monkeypatch.setattr(config, "queue_settings", lambda _values: QueueSettings("q"))
    monkeypatch.setattr(redrive_module, "redrive", fail)

    assert cli.main(["redrive"]) == 1

    assert capsys.readouterr().err == f"the queue service is unavailable or refused: {first}\n"


# --- redrive: the queue that is missing is the one named ----------------------------------------


class GoneQueue:
    """A queue client whose queue does not exist, or (``held``) a poison queue holding them."""

    def __init__(self, held: list[str] | None = None) -> None:
        self.held = held

    def receive_messages(self, **_options: Any) -> list[SimpleNamespace]:
        if self.held is None:
            raise ResourceNotFoundError("The specified queue does not exist.")
        held, self.held = self.held, []
        return [SimpleNamespace(id=str(n), content=c) for n, c in enumerate(held)]

    def get_queue_properties(self) -> None:
        raise ResourceNotFoundError("The specified queue does not exist.")

    def send_message(self, *_args: Any, **_options: Any) -> None:
        raise ResourceNotFoundError("The specified queue does not exist.")


@pytest.mark.parametrize("poisoned", [False, True], ids=["neither queue", "main queue gone"])
def test_redrive_names_the_fallback_queue_as_the_one_missing(
    poisoned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redrive._missing: queue '<name>' is the fallback queue, the one provision makes and the
    one to check, in both cases (neither queue there; the main queue deleted mid-run). Kills
    the poison queue named instead, which the tests through Azurite pass as its name holds the
    other's."""
    queue = QueueSettings("acr-events-fallback", "UseDevelopmentStorage=true")
    event = base64.b64encode(ParkedEvent(DOCUMENT).to_message().encode()).decode()
    clients = {
        queue.queue_name: GoneQueue(),
        queue.poison.queue_name: GoneQueue([event] if poisoned else None),
    }
    monkeypatch.setattr(
        redrive_module,
        "create_queue_client",
        lambda settings, *_a, **_k: clients[settings.queue_name],
    )

    with pytest.raises(ConfigurationError) as missing:
        redrive_module.redrive(queue)

    assert str(missing.value) == (
        "queue 'acr-events-fallback' does not exist in the account AzureWebJobsStorage names: "
        "run provision, or check AzureWebJobsStorage"
    )
