"""Mutation audit of session 30's product changes: what the tests written with them left unpinned.

Each test below kills hand-made mutants that the earlier tests let through (named in its
docstring). Every one asserts what a doc, the SDK or the code's own comment says, not the mutant.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.storage.queue import QueueClient

from acr_webhook import repository as repository_module
from acr_webhook.config import ConfigurationError, load_settings, queue_settings
from acr_webhook.handlers import loads_strictly
from acr_webhook.local.background import BackgroundRunner
from acr_webhook.repository import (
    CLIENT_TIMEOUTS,
    EVENTGRID_WRITE_OPTIONS,
    QUERY_TIMEOUTS,
    DatabaseHealth,
    _LazyContainer,
)
from acr_webhook.store import RepositoryUnavailableError
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.unit.test_account_key import DEV_KEY, _sdk_refusal
from tests.unit.test_config import BASE, REGISTRY_ID
from tests.unit.test_database_health import RecordingClient, RecordingContainer
from tests.unit.test_eventgrid import call, event_grid
from tests.unit.test_uncovered_paths import SETTINGS

# --- handlers._bounded_int: refused exactly where int() would refuse ---------------------------


@contextmanager
def int_digit_limit(limit: int) -> Iterator[None]:
    """Python's limit set as PYTHONINTMAXSTRDIGITS (or -X int_max_str_digits) sets it; 0 is
    none at all."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(limit)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(before)


@pytest.mark.parametrize("limit", [4300, 640, 5000, 0])
def test_a_number_is_refused_exactly_when_python_could_not_read_it(limit: int) -> None:
    """handlers._bounded_int: "Python refuses an integer of more than
    sys.get_int_max_str_digits() digits": the client is told so in its place, never for a
    number Python reads. Kills: `>=` for `>` (the limit's own length refused), the limit
    hard-coded to 4,300, and `limit and` dropped (with no limit, every number refused)."""
    with int_digit_limit(limit):
        for digits in sorted({1, max(limit - 1, 1), limit or 1, limit + 1, 5001}):
            for literal in ("7" * digits, "-" + "7" * digits):
                try:
                    expected = int(literal)
                except ValueError:
                    with pytest.raises(ValueError) as raised:
                        loads_strictly(f"[{literal}]")
                    assert str(raised.value) == (
                        f"a number has {digits} digits; at most {limit} are taken"
                    )
                else:
                    assert loads_strictly(f"[{literal}]") == [expected]


# --- config._check_account_key: the key the storage SDK signs with -----------------------------

QUEUE_ENDPOINT = "QueueEndpoint=http://127.0.0.1:1/devstoreaccount1"


@pytest.mark.parametrize(
    "keys",
    [
        f"UseDevelopmentStorage=True;AccountKey={DEV_KEY[:-1]}",  # "true" only, as the SDK reads it
        f"UseDevelopmentStorage=false;AccountKey={DEV_KEY[:-1]}",
        f"UseDevelopmentStorage=;AccountKey={DEV_KEY[:-1]}",
        f"AccountKey={DEV_KEY}; AccountKey={DEV_KEY[:-1]}",  # " ACCOUNTKEY" is another name
        f"AccountKey={DEV_KEY[:-1]};AccountKey ={DEV_KEY}",  # so is "ACCOUNTKEY "
    ],
)
def test_the_key_checked_is_the_one_the_storage_sdk_signs_with(keys: str) -> None:
    """config._check_account_key: "As the SDK's parse_connection_str reads it" (names upper-cased,
    nothing stripped; the development key only for UseDevelopmentStorage=true). Whether the
    setting is refused follows whether the SDK's client can sign with the key it holds. Kills:
    the flag compared in any case or merely present, and names stripped before comparing."""
    connection = f"AccountName=devstoreaccount1;{keys};{QUEUE_ENDPOINT}"
    signing_key = QueueClient.from_connection_string(connection, "q").credential.account_key
    refusal = _sdk_refusal(signing_key)
    if refusal is None:
        assert queue_settings({"AzureWebJobsStorage": connection}) is not None
        return
    with pytest.raises(ConfigurationError) as raised:
        queue_settings({"AzureWebJobsStorage": connection})
    assert str(raised.value).startswith("AzureWebJobsStorage: AccountKey")
    assert str(refusal) in str(raised.value)


# --- config._check_https_url: a host, as urllib3 reads it ----------------------------------------


@pytest.mark.parametrize("endpoint", ["https://:443/", "https://@/", "https://user@:1/"])
def test_an_endpoint_whose_host_urllib3_reads_as_empty_is_refused(
    endpoint: str, tmp_path: Path
) -> None:
    """config._check_https_url: "must be an https:// URL with a host". urllib3 reads an empty
    host here, not None (test_uncovered_paths' "https:///" has none at all); requests cannot
    connect to either. Kills: `host is None` for `not host`."""
    absent = tmp_path / "absent.json"
    with pytest.raises(ConfigurationError, match=r"^COSMOS_ENDPOINT must .* with a host$"):
        load_settings({"COSMOS_ENDPOINT": endpoint}, absent)
    values = {**BASE, "ACR_REGISTRY_ID": REGISTRY_ID, "ACR_WEBHOOK_NAMES": "hook"}
    with pytest.raises(ConfigurationError, match=r"^ARM_ENDPOINT must .* with a host$"):
        load_settings({**values, "ARM_ENDPOINT": endpoint}, absent)


# --- eventgrid._check: data as text is read as a body is -----------------------------------------


@pytest.mark.parametrize(
    ("padding", "status"),
    [(" \n\t\r", 200), ("\u00a0", 400), ("\x0c", 400), ("\u2003", 400)],
)
def test_data_as_text_takes_only_the_whitespace_json_allows_around_it(
    padding: str, status: int
) -> None:
    """tests/unit/test_eventgrid.py: data as text "is read as the webhook reads a body", and
    RFC 8259 allows space, tab, line feed and carriage return around a value, nothing else.
    Kills: the text stripped (str.strip drops any Unicode space) before it is read."""
    event = event_grid(payloads.with_new_id(payloads.PUSH))
    event["data"] = padding + json.dumps(event["data"]) + padding
    repository = FakeEventRepository()
    result = call([event], repository)
    assert result.status == status
    assert repository.add_calls == (1 if status == 200 else 0)
    if status == 400:
        assert result.body is not None
        assert str(result.body["error"]).startswith("events[0].data: is a string but not JSON:")


# --- repository._LazyContainer: waiters woken once the container is stored ----------------------


class _WatchedBuild:
    """create_cosmos_client for one _LazyContainer: records what a waiter woken by the build's
    event would read, at the moment it is woken."""

    def __init__(self, lazy: _LazyContainer, outcome: RecordingClient | Exception) -> None:
        self._lazy, self._outcome = lazy, outcome
        self.events: list[threading.Event] = []
        self.read_when_woken: list[object] = []

    def __call__(self, *_: object, **__: object) -> RecordingClient:
        building = self._lazy._build_done
        assert building is not None  # claimed before the build starts, so others wait for it
        self.events.append(building)
        wake = building.set

        def set_and_watch() -> None:
            self.read_when_woken.append(self._lazy._container)
            wake()

        building.set = set_and_watch  # type: ignore[method-assign]
        if isinstance(self._outcome, Exception):
            raise self._outcome
        return self._outcome


def test_a_build_wakes_its_waiters_once_the_container_is_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """repository._LazyContainer._build: "before the waiters are woken: they read it at once";
    ``building`` "is set once it is built". Kills: the event set before the container is
    stored (a waiter reads None: "not ready"), and the event never set (every waiter waits its
    whole bound)."""
    lazy = _LazyContainer(SETTINGS, dict(CLIENT_TIMEOUTS), DatabaseHealth())
    container = RecordingContainer()
    build = _WatchedBuild(lazy, RecordingClient(container))
    monkeypatch.setattr(repository_module, "create_cosmos_client", build)
    got: object = lazy.get(deadline=time.monotonic() + 60)
    assert got is container
    [event] = build.events
    assert event.is_set()
    assert build.read_when_woken == [container]
    assert lazy._build_done is None


def test_a_failed_build_wakes_its_waiters_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """``building`` "is set once it is built or failed, which ends the waiters' wait", and the
    next request builds again. Kills: the event set on success alone."""
    lazy = _LazyContainer(SETTINGS, dict(CLIENT_TIMEOUTS), DatabaseHealth())
    build = _WatchedBuild(lazy, ServiceRequestError("connection timed out"))
    monkeypatch.setattr(repository_module, "create_cosmos_client", build)
    with pytest.raises(RepositoryUnavailableError):
        lazy.get(deadline=time.monotonic() + 60)
    [event] = build.events
    assert event.is_set()
    assert build.read_when_woken == [None]
    assert lazy._build_done is None


class _BuildUnderWay:
    """Another request's build, found under way: it ends while this request waits for it, with
    ``built`` stored, or with its failure remembered by ``health``."""

    def __init__(
        self, lazy: _LazyContainer, built: object | None, health: DatabaseHealth | None = None
    ) -> None:
        self._lazy, self._built, self._health = lazy, built, health
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if self._built is not None:
            self._lazy._container = self._built  # type: ignore[assignment]
        if self._health is not None:
            self._health.failed("connection timed out")
        return True


@pytest.mark.parametrize("options", [CLIENT_TIMEOUTS, EVENTGRID_WRITE_OPTIONS, QUERY_TIMEOUTS])
def test_a_request_waits_for_another_build_its_clients_timeout_and_one_second_at_most(
    options: dict[str, Any],
) -> None:
    """_LazyContainer: requests that arrive meanwhile wait "for that one build at most (bounded
    by its own ``timeout``)"; a build started that long ago has given up, the second is slack.
    With a deadline far off, that bound decides; the container the build stored is the answer.
    Kills: the `+ 1` dropped, the client's bound ignored for the deadline's, and the waiter
    answering what it read before its wait."""
    lazy = _LazyContainer(SETTINGS, dict(options), DatabaseHealth())
    built: object = RecordingContainer()
    build = _BuildUnderWay(lazy, built)
    lazy._build_done = build  # type: ignore[assignment]
    assert lazy.get(deadline=time.monotonic() + 600) is built
    assert build.waits == [options["timeout"] + 1]


def test_a_request_whose_awaited_build_failed_answers_with_that_failure() -> None:
    """_LazyContainer: "A failed build is remembered in ``health``, so the waiters ... answer at
    once": with its reason, as the request that built answered, not "not ready". Kills: the
    health check after the wait dropped."""
    health = DatabaseHealth()
    lazy = _LazyContainer(SETTINGS, dict(CLIENT_TIMEOUTS), health)
    lazy._build_done = _BuildUnderWay(lazy, None, health)  # type: ignore[assignment]
    with pytest.raises(RepositoryUnavailableError, match=r"moments ago \(connection timed out\)"):
        lazy.get(deadline=time.monotonic() + 60)


# --- local/background.BackgroundRunner: a runner must say what it runs ---------------------------


def test_a_runner_that_does_not_say_what_it_runs_cannot_be_made() -> None:
    """BackgroundRunner: "Runs ``_run`` on a daemon thread"; one without a ``_run`` of its own
    would start a thread that does nothing, so it is refused where it is made. Kills: ``_run``
    not abstract, or the class not an ABC (abstractmethod then has no effect)."""

    class Idle(BackgroundRunner):
        pass

    with pytest.raises(TypeError, match="_run"):
        Idle("idle")  # type: ignore[abstract]
