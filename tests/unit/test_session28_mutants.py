"""Mutation audit of session 28's product changes: what the tests written with them left unpinned.

Each test below kills hand-made mutants that the earlier tests let through (named in its
docstring). Every one asserts what a doc or the code's own comment says, not the mutant.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from azure.core.exceptions import HttpResponseError
from azure.cosmos.exceptions import CosmosClientTimeoutError
from azure.monitor.opentelemetry.exporter.export.trace import _rate_limited_sampling as distro
from azure.storage.queue import QueueMessage
from hypothesis import example, given
from hypothesis import strategies as st

from acr_webhook import __main__ as cli
from acr_webhook.config import QUERY_BUDGET_S, QueueSettings, Settings
from acr_webhook.handlers import handle_webhook
from acr_webhook.local import queues
from acr_webhook.local.queues import QueueFunction, QueueOptions, QueuePoller
from acr_webhook.models import AcrEvent, EventQuery
from acr_webhook.repository import CosmosEventRepository, _on_time
from acr_webhook.store import RepositoryUnavailableError
from acr_webhook.telemetry import RateLimit
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.properties import DETERMINISTIC
from tests.support.stepped_calls import FailingCalls, SteppedClock, bounds

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SETTINGS = Settings("https://127.0.0.1:1/", "key", "acr", "events", None)

# --- telemetry.RateLimit: the distro's estimate, on the monotonic clock ---------------------


class _NanoClock:
    """One machine clock read two ways: as the distro's time.time_ns() and as RateLimit's
    clock (seconds)."""

    def __init__(self) -> None:
        self.ns = 0

    def time_ns(self) -> int:
        return self.ns

    def seconds(self) -> float:
        return self.ns / 1e9


@given(
    per_second=st.sampled_from([1.0, 5.0, 20.0]),
    # Milliseconds since the last reading; a negative one is a reading that lost the race to the
    # lock (the clock is read before it is taken), 0 one in the same tick.
    steps_ms=st.lists(st.integers(-30, 400), min_size=1, max_size=60),
)
# Whatever examples are drawn: a burst in one tick, a reading that lost the race, a steady rate.
@example(per_second=5.0, steps_ms=[10, 0, 0, 0, 10])
@example(per_second=5.0, steps_ms=[10, 10, 10, -20, 10, 10])
@example(per_second=5.0, steps_ms=[24] * 40)
@DETERMINISTIC
def test_the_rate_limits_percentage_is_the_distros_on_the_same_clock(
    per_second: float, steps_ms: list[int]
) -> None:
    """telemetry.RateLimit: "Keeps up to per_second items a second, each with the probability
    the distro's RateLimitedSampler computes: the incoming rate estimated over a window that
    decays in ~0.1 s, the result rounded down to 100/n percent"; only the clock differs. Fed
    one clock, it answers what RateLimitedSamplingPercentage answers, reading for reading.
    Kills: decay 0 (not 1) for a reading in the same tick; ``max(elapsed, 0)`` or
    ``max(now, last)`` dropped; ``min(share, 0.9)``; ADAPTATION_S 1.0; exp(-elapsed * 0.1);
    the window's count not decayed; ``share < 0`` (a ZeroDivisionError)."""
    clock = _NanoClock()
    ours = RateLimit(per_second, clock=clock.seconds)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distro, "time", clock)
        theirs = distro.RateLimitedSamplingPercentage(per_second)
        for step in steps_ms:
            clock.ns = max(clock.ns + step * 1_000_000, 0)
            got, expected = ours.percentage(), theirs.get()
            state = theirs._state
            share = min(
                state.effective_window_nanoseconds
                * 1e-9
                * per_second
                / state.effective_window_count,
                1.0,
            )
            if expected == 0:  # the distro's cut-off for a share under 1/2^31
                assert got < 1e-6
            elif got != pytest.approx(expected, rel=1e-9):
                # Only where 100/share is a whole number to within float rounding.
                assert abs(1 / share - round(1 / share)) < 1e-6, (got, expected, share)


@pytest.mark.parametrize(
    ("every_s", "expected"),
    [
        (0.024, 100 / 9),  # 5 of ~41.7 a second: 12 % rounded down to 100/9
        (0.06, 100 / 4),  # 5 of ~16.7 a second: 30 % rounded down to 100/4
        (1.0, 100.0),  # below the limit: every item is kept
    ],
)
def test_a_steady_rate_is_sampled_at_the_limit_rounded_down_to_100_over_n(
    every_s: float, expected: float
) -> None:
    """telemetry.RateLimit.percentage: "The share of items to keep now, in %: 100/n for a whole
    n" and the class: "rounded down to 100/n percent, so each kept item stands for a whole number
    of items". Kills: ceil -> floor or round (12.5 %), ``min(share, 0.9)`` (50 % below the
    limit)."""
    now = [0.0]
    limit = RateLimit(5.0, clock=lambda: now[0])
    for _ in range(200):
        now[0] += every_s
        rate = limit.percentage()
    assert rate == pytest.approx(expected)
    assert (100.0 / rate) == pytest.approx(round(100.0 / rate))


def test_the_estimate_follows_a_drop_in_the_rate_within_a_second() -> None:
    """telemetry.RateLimit: the rate is "estimated over a window that decays in ~0.1 s". After a
    second at 1,000 items a second, a second at ~16.7 a second is sampled at 30 % rounded down
    to 25 %, as if the
    burst had never been. Kills: ADAPTATION_S 1.0; exp(-elapsed * ADAPTATION_S)."""
    now = [0.0]
    limit = RateLimit(5.0, clock=lambda: now[0])
    for _ in range(1000):
        now[0] += 0.001
        limit.percentage()
    for _ in range(17):
        now[0] += 0.06
        rate = limit.percentage()
    assert rate == pytest.approx(25.0)


def test_an_item_read_at_the_instant_the_limit_was_made_is_a_share_not_an_error() -> None:
    """telemetry.RateLimit.percentage: "100/n for a whole n, or 0" (a coarse clock reads the
    same tick twice). Kills ``share < 0.0`` (100 / ceil(1 / 0): ZeroDivisionError)."""
    limit = RateLimit(5.0, clock=lambda: 12.5)
    assert [limit.percentage() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.sample() is None


# --- models.AcrEvent._iso_8601_text ------------------------------------------------------------


def test_an_event_built_in_python_may_carry_its_timestamp_as_a_datetime() -> None:
    """models.AcrEvent._iso_8601_text: numbers and digit strings are refused (Unix time), and
    ``isinstance(value, datetime)`` passes: an aware datetime is a timestamp already.
    Kills: the datetime check dropped (every datetime refused)."""
    payload = payloads.with_new_id(payloads.PUSH)
    payload["timestamp"] = datetime(2026, 11, 23, 16, 52, 1, 343145, tzinfo=UTC)
    event = AcrEvent.model_validate(payload)
    assert event.timestamp == datetime(2026, 11, 23, 16, 52, 1, 343145, tzinfo=UTC)


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


class _UncheckedQuery:
    """A container whose query answers one item every ``item_s`` and never checks its
    ``timeout`` itself, as the SDK does not between the items of a page it has (and checks on
    the wall clock when it does)."""

    def __init__(self, clock: SteppedClock, item_s: float) -> None:
        self.clock = clock
        self.item_s = item_s

    def get(self, _deadline: float | None = None) -> _UncheckedQuery:  # as _LazyContainer.get
        return self

    def query_items(self, **_: Any) -> Iterator[dict[str, Any]]:
        for number in range(100):
            self.clock.now += self.item_s
            yield {"id": f"e{number}", "repository": "team/api"}


def test_a_pages_items_stop_at_the_query_budget(monotonic: SteppedClock) -> None:
    """docs/queries.md: "a whole page at 8 s (QUERY_BUDGET_S), all of its reads together";
    find_events checks the page's deadline between items too. Items 3 s apart: the third
    (at 9 s) ends the page with a RepositoryUnavailableError. Kills: the check between items
    made against a later deadline."""
    reader = CosmosEventRepository(SETTINGS)
    reader._reads = _UncheckedQuery(monotonic, item_s=3.0)  # type: ignore[assignment]
    start = monotonic.now
    with pytest.raises(RepositoryUnavailableError):
        reader.find_events(EventQuery(), 50)
    assert monotonic.now - start <= QUERY_BUDGET_S + 3.0


# --- __main__: standard output as scripts meet it ----------------------------------------------

WORLD = "team/w\u00f6rld"


@pytest.fixture
def events_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeEventRepository:
    """The CLI with its settings from the environment and the fake, holding one push, as its
    Cosmos DB (as tests/unit/test_cli_audit.py's cli_reader)."""
    fake = FakeEventRepository()
    monkeypatch.chdir(tmp_path)  # no local.settings.json here
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("LOCAL_FUNCTION_KEY", "k")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _settings: fake)
    stored = payloads.with_new_id(payloads.PUSH)
    stored["target"]["repository"] = WORLD
    assert handle_webhook(payloads.body(stored), fake, now=lambda: NOW).status == 201
    return fake


@contextmanager
def stdout_on(raw: BinaryIO, monkeypatch: pytest.MonkeyPatch, **options: Any) -> Iterator[None]:
    """sys.stdout writing to ``raw``, as a process started with it there has it."""
    shown = io.TextIOWrapper(raw, **{"encoding": "utf-8", **options})
    monkeypatch.setattr(sys, "stdout", shown)
    try:
        yield
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            shown.close()


def test_a_reader_that_went_away_is_status_141_quietly(
    events_cli: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/queries.md: "a reader that goes away (`| head -1`) ends the command quietly with
    status 141, as SIGPIPE ends `seq 100000 | head -1`". Kills: 141 -> 1, a broken pipe told as
    any other write error."""
    reader, writer = os.pipe()
    os.close(reader)
    with stdout_on(os.fdopen(writer, "wb"), monkeypatch):
        status = cli.main(["events"])
    assert (status, capsys.readouterr().err) == (141, "")


def test_output_that_cannot_be_written_is_status_1_with_one_line(
    events_cli: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/queries.md: "Output that cannot be written (a full disk) is status 1 with one line
    saying so". Kills: the flush after the command dropped (the error then surfaces only in
    the flush that suppresses it: status 0, nothing said)."""
    with stdout_on(open("/dev/full", "wb"), monkeypatch):
        status = cli.main(["events"])
    assert status == 1
    assert capsys.readouterr().err == "cannot write the output: No space left on device\n"


def test_a_closed_stdout_is_status_2(
    events_cli: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/queries.md: "a closed standard output (`>&-`) status 2" (Python starts with
    sys.stdout None). Kills: status 0."""
    monkeypatch.setattr(sys, "stdout", None)
    assert cli.main(["events"]) == 2
    assert capsys.readouterr().err == "standard output is closed\n"


def test_after_a_failed_write_what_follows_is_dropped() -> None:
    """__main__._CheckedWrites: "the first raises _ReaderGoneError or OutputError, and what
    follows is dropped, so no flush at exit prints a traceback". Kills: ``_failed`` never set,
    or never read."""
    with open("/dev/full", "wb") as full:
        writes = cli._CheckedWrites(full.fileno(), keep_serving=False)
        with pytest.raises(cli.OutputError):
            writes.write(b"first")
        assert writes.write(b"second") == len(b"second")


def test_serve_keeps_serving_when_the_reader_of_its_output_went_away(
    events_cli: FakeEventRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: serve "keeps serving when the reader of its output goes away, so a script may
    wait for it with `serve ... | grep -m1 listening`". Kills: ``keep_serving`` ignored by
    _CheckedWrites, or not passed for serve."""
    served: list[int] = []

    def serve(_app: Any, _host: str, port: int, _key: str) -> None:
        print("Local Functions host listening on http://127.0.0.1:7071", flush=True)
        print("  GET http://127.0.0.1:7071/api/ping", flush=True)  # grep -m1 has gone
        served.append(port)

    monkeypatch.setattr("acr_webhook.local.host.serve", serve)
    reader, writer = os.pipe()
    os.close(reader)
    with stdout_on(os.fdopen(writer, "wb"), monkeypatch):
        assert cli.main(["serve"]) == 0
    assert served == [7071]


def test_a_line_buffered_stdout_stays_line_buffered(
    events_cli: FakeEventRepository, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """__main__._checked_output: "with the same encoding and buffering": on a terminal (line
    buffered) each line a command prints shows as it is printed, not when the command ends.
    Kills: line_buffering=False in the wrapper."""
    shown_while_serving: list[bytes] = []

    def serve(_app: Any, _host: str, _port: int, _key: str) -> None:
        print("Local Functions host listening on http://127.0.0.1:7071")  # no flush=True
        shown_while_serving.append((tmp_path / "out").read_bytes())

    monkeypatch.setattr("acr_webhook.local.host.serve", serve)
    with stdout_on(open(tmp_path / "out", "wb"), monkeypatch, line_buffering=True):
        assert cli.main(["serve"]) == 0
    assert shown_while_serving == [b"Local Functions host listening on http://127.0.0.1:7071\n"]


@pytest.mark.parametrize("to_a_file", [True, False], ids=["descriptor", "no-descriptor"])
def test_a_console_that_cannot_show_a_stored_name_shows_it_escaped(
    events_cli: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    to_a_file: bool,
) -> None:
    """__main__._checked_output: "A console that cannot show a stored name (the C locale, a
    Windows pipe) shows it escaped, as stderr does: "w\\xf6rld", not a UnicodeEncodeError".
    Kills: errors="strict" in the wrapper around the descriptor; the reconfigure of a stdout
    without one dropped."""
    raw: BinaryIO = open(tmp_path / "out", "wb") if to_a_file else io.BytesIO()  # noqa: SIM115
    shown: list[bytes] = []
    with stdout_on(raw, monkeypatch, encoding="ascii"):
        assert cli.main(["events"]) == 0
        sys.stdout.flush()
        shown.append((tmp_path / "out").read_bytes() if to_a_file else raw.getvalue())  # type: ignore[attr-defined]
    assert b"team/w\\xf6rld" in shown[0]


@pytest.mark.parametrize("port", ["0", "65535"])
def test_serve_takes_ports_0_and_65535(
    events_cli: FakeEventRepository, monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    """README: "`--port` takes 0-65535 (0: any free port, which the banner names)". Kills:
    ``1 <= number``, ``number < 65535``."""
    served: list[int] = []
    monkeypatch.setattr(
        "acr_webhook.local.host.serve", lambda _app, _host, port, _key: served.append(port)
    )
    assert cli.main(["serve", "--port", port]) == 0
    assert served == [int(port)]


def test_a_port_serve_cannot_listen_on_is_one_line_and_status_1(
    events_cli: FakeEventRepository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README: "a port it cannot listen on (in use) is one line and exit status 1". The
    waitress server is made for real on a port this test listens on. Kills: status 2; the
    local host catching only PermissionError (EADDRINUSE a traceback)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err == f"cannot listen on 127.0.0.1:{port}: Address already in use\n"


# What the table shows as U+FFFD (docs/queries.md): "a control character, a line separator, a
# bidirectional override or a lone surrogate in a stored value".
NOT_SHOWN = {
    "LRE": "\u202a",
    "RLO": "\u202e",
    "RLI": "\u2067",
    "PDI": "\u2069",
    "lone surrogate": "\ud800",
    "DEL": "\x7f",
}


@pytest.mark.parametrize("character", NOT_SHOWN.values(), ids=NOT_SHOWN.keys())
@pytest.mark.parametrize("pushes", [False, True], ids=["events", "pushes"])
def test_the_table_shows_each_character_that_could_reorder_or_forge_it_as_u_fffd(
    events_cli: FakeEventRepository,
    capsys: pytest.CaptureFixture[str],
    character: str,
    pushes: bool,
) -> None:
    """docs/queries.md: the table shows "a control character, a line separator, a bidirectional
    override or a lone surrogate in a stored value ... as U+FFFD"; in the tag and, for
    --pushes, in the regions column (a location as an earlier version stored it), and in a
    digest cut to its first 12 characters. Kills: the isolates (U+2066-2069), the embeddings
    (U+202A-202C), or surrogates dropped from the class; the regions cell or the cut digest
    not cleaned."""
    [document] = events_cli.documents.values()
    digest = f"sha256:ab{character}{'c' * 63}"
    document.update(tag=f"v1{character}x", digest=digest, location=f"east{character}us")
    assert cli.main(["events", *(["--pushes"] * pushes)]) == 0
    out = capsys.readouterr().out
    assert character not in out
    assert "v1\ufffdx" in out
    assert "sha256:ab\ufffdccccccccc" in out  # cut to 12 characters, as any digest
    assert ("east\ufffdus" in out) == pushes


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
