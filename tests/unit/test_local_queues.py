"""The local host's queue trigger without Azurite (acr_webhook.local.queues, and the background
runner its poller is built on): host.json's queue options, the leases of a batch's waiting
messages, and what a failed poll says.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.storage.queue import QueueMessage

import function_app
from acr_webhook.config import ConfigurationError, QueueSettings
from acr_webhook.local import queues
from acr_webhook.local.background import BackgroundRunner
from acr_webhook.local.queues import QueueFunction, QueueOptions, QueuePoller, queue_functions
from tests.support.stepped_calls import SteppedClock

# --- local/queues.QueuePoller: a batch's waiting messages keep their lease ----------------------


class _LeasingQueue:
    """The raw queue client the poller uses, as the queue service leases: each update gives a
    new pop receipt (and, like the service, no content); an update or a delete with a stale
    receipt is a 400, one of a message another instance deleted a 404."""

    def __init__(self, clock: SteppedClock, count: int) -> None:
        self.clock = clock
        self.batch = [
            QueueMessage(base64.b64encode(f'"m{i}"'.encode()).decode(), id=f"m{i}")
            for i in range(count)
        ]
        self.receipts = {message.id: "r0" for message in self.batch}
        for message in self.batch:
            message.dequeue_count = 1
            message.pop_receipt = "r0"
        self.renewals: list[tuple[str, float, int]] = []  # (id, when, visibility_timeout)
        self.deleted: list[str] = []
        self.gone: set[str] = set()  # deleted by another instance

    def receive_messages(self, **_: Any) -> list[QueueMessage]:
        return list(self.batch)

    def _check(self, message: QueueMessage) -> None:
        if message.id in self.gone:
            raise self._refused(404, "The specified message does not exist.")
        if message.pop_receipt != self.receipts[message.id]:
            raise self._refused(400, "The specified pop receipt did not match.")

    @staticmethod
    def _refused(status: int, text: str) -> HttpResponseError:
        error = HttpResponseError(text)
        error.status_code = status
        return error

    def update_message(self, message: QueueMessage, visibility_timeout: int) -> QueueMessage:
        self._check(message)
        self.renewals.append((message.id, self.clock.now, visibility_timeout))
        receipt = f"r{len(self.renewals)}"
        self.receipts[message.id] = receipt
        return QueueMessage(None, id=message.id, pop_receipt=receipt)

    def delete_message(self, message: QueueMessage) -> None:
        self._check(message)
        self.deleted.append(message.id)


def _leasing_poller(
    monkeypatch: pytest.MonkeyPatch, count: int, call_s: float
) -> tuple[QueuePoller, _LeasingQueue, list[bytes]]:
    """A poller on a _LeasingQueue of ``count`` messages whose function takes ``call_s`` each."""
    clock = SteppedClock()
    monkeypatch.setattr(queues, "time", clock)
    queue = _LeasingQueue(clock, count)
    monkeypatch.setattr(queues, "create_queue_client", lambda *_, **__: queue)
    bodies: list[bytes] = []

    def call(message: Any) -> None:
        bodies.append(message.get_body())
        clock.now += call_s

    function = QueueFunction("replay_fallback", "q", "AzureWebJobsStorage", call)
    settings = QueueSettings("q", connection_string="UseDevelopmentStorage=true")
    return QueuePoller(function, settings, QueueOptions()), queue, bodies


def test_a_batchs_waiting_messages_are_renewed_at_half_the_lease_and_keep_their_content(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """queues.poll_once: "The lease of those still waiting is renewed at half its length" (15 s
    of LEASE_SECONDS); _renewed: "The answer carries the new receipt, not the content: keep the
    message's own". Four messages of 10 s each: at 20 s the two still waiting are renewed
    once, each handled with its own body and deleted with its new receipt. Kills: renewed at
    the whole lease (after it ran out) or at each message once past half of it (the lease's
    start not reset, or taken as 0); the update's answer handled in place of the message; the
    new pop receipt not kept (the delete refused: handled again elsewhere)."""
    poller, queue, bodies = _leasing_poller(monkeypatch, count=4, call_s=10.0)
    start = queue.clock.now
    assert poller.poll_once() == 4
    assert bodies == [b'"m0"', b'"m1"', b'"m2"', b'"m3"']
    assert [(id_, when - start, seconds) for id_, when, seconds in queue.renewals] == [
        ("m2", 20.0, queues.LEASE_SECONDS),
        ("m3", 20.0, queues.LEASE_SECONDS),
    ]
    assert queue.deleted == ["m0", "m1", "m2", "m3"]


@pytest.mark.parametrize("status", [400, 404])
def test_a_waiting_message_another_instance_took_is_left_to_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """queues._LEASE_LOST: "the message's pop receipt no longer matches (400), or the message
    was deleted (404)"; _renewed leaves such a message out, and poll_once goes on with the
    rest: no AzureError for the poller to log as the queue being unreachable. Kills: 400 or
    404 left out of _LEASE_LOST."""
    poller, queue, bodies = _leasing_poller(monkeypatch, count=3, call_s=20.0)
    if status == 404:
        queue.gone.add("m1")
    else:
        queue.receipts["m1"] = "another instance's"
    caplog.set_level(logging.INFO, logger=queues.__name__)
    assert poller.poll_once() == 3
    assert bodies == [b'"m0"', b'"m2"']
    assert queue.deleted == ["m0", "m2"]
    assert "queue message m1 is another instance's now" in caplog.messages


# --- local/background.BackgroundRunner: a runner must say what it runs ---------------------------


def test_a_runner_that_does_not_say_what_it_runs_cannot_be_made() -> None:
    """BackgroundRunner: "Runs ``_run`` on a daemon thread"; one without a ``_run`` of its own
    would start a thread that does nothing, so it is refused where it is made. Kills: ``_run``
    not abstract, or the class not an ABC (abstractmethod then has no effect)."""

    class Idle(BackgroundRunner):
        pass

    with pytest.raises(TypeError, match="_run"):
        Idle("idle")  # type: ignore[abstract]


# --- local/app_index.extension_settings and local/queues.QueueOptions --------------------------


def test_a_host_json_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Mutant killed: host.json read as plain utf-8 (json.loads refuses the BOM). Editors on
    Windows save one; local.settings.json is read the same way (utf-8-sig)."""
    host_json = tmp_path / "host.json"
    host_json.write_text(
        '{"version": "2.0", "extensions": {"queues": {"batchSize": 4}}}', encoding="utf-8-sig"
    )

    assert QueueOptions.from_host_json(host_json).batch_size == 4


def test_a_host_json_that_cannot_be_read_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutant killed: only a ValueError caught (an unreadable file then a traceback)."""
    host_json = tmp_path / "host.json"
    host_json.write_text("{}")

    def refused(*_args: Any, **_kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", refused)

    with pytest.raises(ConfigurationError, match=r"host\.json is not readable JSON: .*denied"):
        QueueOptions.from_host_json(host_json)


@pytest.mark.parametrize(
    ("queues", "named"),
    [
        ({"batchSize": [16]}, "batchSize must be a whole number"),  # int([16]): TypeError
        ({"visibilityTimeout": 30}, "visibilityTimeout must be a time span hh:mm:ss"),  # no split
    ],
)
def test_a_queue_setting_of_another_json_type_is_named(
    tmp_path: Path, queues: dict[str, Any], named: str
) -> None:
    """Mutants killed: TypeError (int of a list) and AttributeError (a number has no split)
    left out of what is said as the setting's fault."""
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}))

    with pytest.raises(ConfigurationError, match=rf"extensions\.queues\.{named}$"):
        QueueOptions.from_host_json(host_json)


@pytest.mark.parametrize("value", [1.5, True])
def test_a_queue_count_that_is_not_a_whole_number_is_refused(tmp_path: Path, value: Any) -> None:
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"extensions": {"queues": {"batchSize": value}}}))

    with pytest.raises(ConfigurationError, match=r"extensions\.queues\.batchSize"):
        QueueOptions.from_host_json(host_json)


# --- local/queues.QueuePoller._poll_failure ----------------------------------------------------


def poller() -> QueuePoller:
    [function] = queue_functions(function_app.app)
    settings = QueueSettings("acr-events-fallback", connection_string="UseDevelopmentStorage=true")
    return QueuePoller(function, settings, QueueOptions())


def answered(status: int, message: str) -> HttpResponseError:
    error = HttpResponseError(message=message)
    error.status_code = status
    return error


def test_a_401_from_the_queue_service_is_said_as_refused_credentials() -> None:
    """Mutant killed: only 403 taken for refused credentials. Storage answers 401 for a
    missing or invalid token (NoAuthenticationInformation, InvalidAuthenticationInfo)."""
    line = poller()._poll_failure(answered(401, "Server failed to authenticate the request."))

    assert line == (
        "queue trigger replay_fallback: the queue service refused AzureWebJobsStorage's "
        "credentials for queue acr-events-fallback (HttpResponseError 401)"
    )


def test_another_poll_failure_is_one_line_with_its_kind() -> None:
    """Mutants killed: the unreachable line without failure_kind, or with the whole message
    (the service's XML on the lines after the first)."""
    error = answered(500, "Operation could not be completed.\n<?xml version='1.0'?><Error/>")

    assert poller()._poll_failure(error) == (
        "queue trigger replay_fallback: queue acr-events-fallback unreachable "
        "(HttpResponseError 500: Operation could not be completed.)"
    )


class FailingPoller(QueuePoller):
    """Every poll fails; the third asks the runner to stop."""

    polls = 0

    def poll_once(self) -> int:
        self.polls += 1
        if self.polls == 3:
            self._stop.set()
        raise ServiceRequestError("Connection refused")


def test_a_queue_that_stays_unreachable_is_warned_of_once(caplog: pytest.LogCaptureFixture) -> None:
    """Mutant killed: a warning on every failed poll (one a back-off interval, up to each
    maxPollingInterval, for as long as the queue is down). The first says it; a poll that
    succeeds again re-arms it."""
    caplog.set_level(logging.WARNING, logger="acr_webhook.local.queues")
    function = QueueFunction("replay_fallback", "q", "AzureWebJobsStorage", None)
    settings = QueueSettings("q", connection_string="UseDevelopmentStorage=true")
    runner = FailingPoller(function, settings, QueueOptions(max_polling_interval=0.001))

    runner._run()  # on this thread: returns once the third poll set the stop

    assert runner.polls == 3
    assert [r.getMessage() for r in caplog.records] == [
        "queue trigger replay_fallback: queue q unreachable (ServiceRequestError: Connection "
        "refused); retrying"
    ]
