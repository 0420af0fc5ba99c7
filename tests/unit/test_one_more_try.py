"""repository._on_time: a database call made once more, with what is left of its bound, when the
SDK's timeout ran out sooner than it can have (the wall clock stepped) or the connection was
closed without an answer; never a third time, and at once when the time really ran out.
"""

from __future__ import annotations

import logging
from http.client import RemoteDisconnected

import pytest
import requests
from azure.core.exceptions import ServiceResponseError
from azure.cosmos.exceptions import CosmosClientTimeoutError
from urllib3.exceptions import ProtocolError

from acr_webhook.connections import closed_without_answer
from acr_webhook.repository import _on_time
from tests.support.stepped_calls import FailingCalls, SteppedClock, bounds

# --- repository._on_time: once more when the wall clock made the SDK's timeout run out -------


def _timed_out() -> Exception:
    return CosmosClientTimeoutError()  # type: ignore[no-untyped-call]


def timing_out(clock: SteppedClock, took_s: float, failures: int) -> FailingCalls:
    """An SDK call that takes ``took_s`` on the monotonic clock and then raises the SDK's
    timeout error the first ``failures`` times, else answers "stored"."""
    return FailingCalls(clock, took_s, failures, _timed_out)


def test_a_timeout_that_ran_out_early_is_tried_once_more_with_what_is_left(
    monotonic: SteppedClock,
) -> None:
    """repository._on_time: "made once more if the SDK's timeout ran out sooner than it can
    have ... The second call gets what is left of the bound". Here the SDK gave up after 1 s
    of a 10 s timeout (the wall clock stepped forward). Kills: never retried (``if True``, the
    except clause narrowed), ``started`` read a timeout earlier, the second call given the
    first call's timeouts."""
    call = timing_out(monotonic, took_s=1.0, failures=1)
    assert _on_time(call, bounds(monotonic, monotonic.now + 10.0)) == "stored"
    assert [options["timeout"] for options in call.options] == [10.0, 9.0]


@pytest.mark.parametrize("took_s", [10.0, 12.0])
def test_a_timeout_that_really_ran_out_is_raised_at_once(
    monotonic: SteppedClock, took_s: float
) -> None:
    """repository._on_time: once more only if the timeout "ran out sooner than it can have":
    one that took its whole 10 s (or longer) is the database not answering in time, raised at
    once (the write is parked, the read a 503). Kills: retried whatever the time taken,
    ``started`` taken after the call, ``>=`` -> ``>``."""
    call = timing_out(monotonic, took_s=took_s, failures=2)
    with pytest.raises(CosmosClientTimeoutError):
        _on_time(call, bounds(monotonic, monotonic.now + 10.0))
    assert len(call.options) == 1


def test_only_one_more_try(monotonic: SteppedClock) -> None:
    """repository._on_time: "made once more": a second early timeout is raised."""
    call = timing_out(monotonic, took_s=0.5, failures=5)
    with pytest.raises(CosmosClientTimeoutError):
        _on_time(call, bounds(monotonic, monotonic.now + 10.0))
    assert len(call.options) == 2


# --- repository._on_time: once more when the connection closed without an answer ----------


def _closed() -> ServiceResponseError:
    """As azure-core's requests transport raises a request whose connection the other side
    closed without an answer (tests/unit/test_connections.py gets it from a real socket)."""
    try:
        try:
            try:
                raise RemoteDisconnected("Remote end closed connection without response")
            except RemoteDisconnected as error:
                raise ProtocolError("Connection aborted.", error)  # noqa: B904, as urllib3 does
        except ProtocolError as error:
            raise requests.ConnectionError(error)  # noqa: B904, as requests does
    except requests.ConnectionError as error:
        closed = ServiceResponseError(error, error=error)
    assert closed_without_answer(closed)
    return closed


def closing(clock: SteppedClock, took_s: float, failures: int) -> FailingCalls:
    """An SDK call that takes ``took_s`` on the monotonic clock, then fails as a connection
    closed without an answer the first ``failures`` times, else answers "stored"."""
    return FailingCalls(clock, took_s, failures, _closed)


ABOUT = {"event_id": "e-36", "action": "push", "repository": "team/api"}


def test_a_call_closed_without_answer_is_made_once_more_with_what_is_left(
    monotonic: SteppedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """repository._on_time: "made once more ... The second call gets what is left of the
    bound" when "the connection was closed without an answer"; ``about`` is "the log's extra".
    Here the connection broke off 1.5 s into a 2 s bound: the second call gets 0.5 s, and an
    INFO record says so with the event's structured fields. Kills: the closed branch's second
    call given the first call's options; its log record dropped, lowered to DEBUG, or without
    its extra."""
    call = closing(monotonic, took_s=1.5, failures=1)
    with caplog.at_level(logging.INFO, logger="acr_webhook.repository"):
        assert _on_time(call, bounds(monotonic, monotonic.now + 2.0), ABOUT) == "stored"
    assert [options["timeout"] for options in call.options] == [2.0, 0.5]
    records = [r for r in caplog.records if "closed the connection" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.INFO]
    assert {name: getattr(records[0], name, None) for name in ABOUT} == ABOUT


def test_a_call_closed_without_answer_twice_is_raised(monotonic: SteppedClock) -> None:
    """repository._on_time: "made once more (never more)": a second connection closed without
    an answer is the write's failure (parked), not a third try. Kills: the closed branch
    calling _on_time again (a try after every close, until the bound runs out)."""
    call = closing(monotonic, took_s=0.1, failures=5)
    with pytest.raises(ServiceResponseError):
        _on_time(call, bounds(monotonic, monotonic.now + 2.0), ABOUT)
    assert len(call.options) == 2
