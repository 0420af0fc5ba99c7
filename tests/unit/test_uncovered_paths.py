"""Product lines and branches that no other test executed (measured: line and branch coverage of
acr_webhook/ and function_app.py over the whole suite, its subprocesses included). Each test
runs one such path and asserts the behaviour its code or docs describe, so that a change to it
fails a test; the paths that no entry point can reach are reported for removal instead.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import HttpResponseError
from azure.cosmos.exceptions import CosmosAccessConditionFailedError, CosmosResourceExistsError
from azure.identity import ManagedIdentityCredential
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import SpanKind

from acr_webhook import __main__ as cli
from acr_webhook import repository as repository_module
from acr_webhook import telemetry
from acr_webhook.config import ConfigurationError, Settings, load_settings
from acr_webhook.local import host as host_module
from acr_webhook.local.app_index import SettingsSection
from acr_webhook.local.host import LocalFunctionsHost, console_log_on_its_own_thread, serve
from acr_webhook.local.timers import TimerFunction, TimerRunner
from acr_webhook.models import ENRICHMENT_FIELDS
from acr_webhook.queries import parse_event_query
from acr_webhook.redrive import RedriveReport
from acr_webhook.repository import (
    CLIENT_TIMEOUTS,
    CosmosEventRepository,
    DatabaseHealth,
    _LazyContainer,
)
from acr_webhook.store import HistoryUnreadableError, RepositoryUnavailableError
from acr_webhook.telemetry import (
    APP_LOGGER,
    SAMPLE_RATE_KEY,
    DecisionTelemetry,
    RateLimit,
    _before_thread_pools_stop,
    _dependency_sampler,
    _Pipeline,
    install_decision_telemetry,
)
from acr_webhook.tls import is_loopback, verify_tls
from tests.unit.test_acr_history import Pages, read_history
from tests.unit.test_config import BASE, REGISTRY_ID
from tests.unit.test_local_queues import _leasing_poller
from tests.unit.test_telemetry_failures import Keeping

SETTINGS = Settings("https://127.0.0.1:1/", "a2V5", "acr", "events", None)


def _no_client(*_: object, **__: object) -> object:
    raise AssertionError("no Cosmos DB client may be built here")


# --- __main__: redrive's report, stdout's descriptor, an endpoint that is no URL ---------------


def test_redrive_says_how_many_poison_messages_are_not_events_and_stay(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/operations.md (redrive): "A message that is not a parked event stays where it is for
    inspection; the command says how many (`N message(s) are not event documents; they stay in
    'acr-events-fallback-poison'`)". Exit 0: the run is done."""
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setattr(
        "acr_webhook.redrive.redrive",
        lambda _queue, _progress: RedriveReport(moved=2, not_events=1, left=1),
    )
    assert cli.main(["redrive"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Moved 2 message(s) from 'acr-events-fallback-poison' to 'acr-events-fallback' for replay",
        "1 message(s) are not event documents; they stay in 'acr-events-fallback-poison'",
        "Left in 'acr-events-fallback-poison': 1",
    ]


def test_the_checked_stdout_still_names_its_descriptor() -> None:
    """__main__._checked_output: sys.stdout "writing through _CheckedWrites", on the same
    descriptor: what asks for stdout's descriptor (a child process handed sys.stdout, a
    library's isatty check) gets the real one, and what is written arrives there."""
    read_end, write_end = os.pipe()
    shown = io.TextIOWrapper(io.FileIO(write_end, "w"), encoding="utf-8")
    try:
        wrapped = cli._checked_output(shown, keep_serving=False)
        assert wrapped is not shown
        assert wrapped.fileno() == write_end
        wrapped.write("line\n")
        wrapped.flush()
        assert os.read(read_end, 100) == b"line\n"
        wrapped.close()  # closes the wrapper, not the descriptor it writes to
        assert not shown.closed
    finally:
        shown.close()
        os.close(read_end)


@pytest.mark.parametrize(
    "endpoint",
    ["https://[::1:8081/", "https://127.0.0.1:8x/", "https://127.0.0.1:99999/", "https:///"],
)
def test_a_cosmos_endpoint_that_is_no_url_is_exit_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], endpoint: str
) -> None:
    """docs/queries.md: "Bad options or missing settings exit with status 2 and a message naming
    them" (tests/unit/test_cli_audit.py: "never a traceback"). Nothing is contacted: none of
    these can be parsed, so no request is ever sent."""
    monkeypatch.setenv("COSMOS_ENDPOINT", endpoint)
    monkeypatch.setenv("COSMOS_KEY", "a2V5")
    try:
        code = cli.main(["events"])
    except Exception as error:  # what escapes main is a traceback to a user
        pytest.fail(f"{type(error).__name__} escaped main: {error}")
    assert code == 2
    assert "COSMOS_ENDPOINT" in capsys.readouterr().err


# --- tls and acr_history: what urllib3 cannot parse ----------------------------------------------


def test_an_endpoint_urllib3_cannot_parse_is_not_loopback_so_it_is_verified() -> None:
    """tls.verify_tls: "False for a loopback ``endpoint`` alone": an endpoint whose port is no
    number, whatever its host, is not taken for loopback: its certificate is verified."""
    endpoint = "https://127.0.0.1:8x/"
    assert is_loopback(endpoint) is False
    assert verify_tls(endpoint) is not False


@pytest.mark.parametrize("endpoint", ["https://management.azure.com:8x/", "https://[::1:8/"])
def test_an_arm_endpoint_that_is_no_url_is_a_configuration_error_naming_it(
    tmp_path: Path, endpoint: str
) -> None:
    """tests/unit/test_config.py: incomplete reconcile settings "name the setting" (an
    http:// ARM_ENDPOINT is a ConfigurationError naming ARM_ENDPOINT). One that is no URL
    at all can never be read from either."""
    values = {**BASE, "ACR_REGISTRY_ID": REGISTRY_ID, "ACR_WEBHOOK_NAMES": "hook"}
    with pytest.raises(ConfigurationError, match="ARM_ENDPOINT"):
        load_settings({**values, "ARM_ENDPOINT": endpoint}, tmp_path / "absent.json")


def test_a_next_page_link_that_is_no_url_ends_the_read_as_unreadable() -> None:
    """acr_history.entries: "Raises HistoryUnreadableError for any failure to read it": a
    next-page link urllib3 cannot parse is no way to the next page, and no LocationParseError
    (a ValueError) reaches the timer."""
    pages = Pages([([{"id": "1"}], "https://management.azure.com:44x/listEvents"), ([], None)])
    with pytest.raises(HistoryUnreadableError, match="next-page link is not a URL"):
        read_history(pages)


# --- local host: the function's own Content-Type, console levels, an anonymous route's banner -----


def _anonymous_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="csv", methods=["GET"])
    def csv(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("a,b\n", headers={"content-type": "text/csv"})

    @app.route(route="keyed", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
    def keyed(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(status_code=204)

    return app


def test_a_content_type_the_function_set_is_kept_and_not_sent_twice() -> None:
    """host._to_reply: "a Content-Type from its mimetype unless it set one" (the Python worker's
    HttpResponseConverter): the function's own header, in whatever case it wrote it, is the
    one Content-Type sent."""
    reply = LocalFunctionsHost(_anonymous_app(), "k").dispatch("GET", "/api/csv", {}, b"", "h")
    assert reply.status == 200
    assert [v for k, v in reply.headers.items() if k.lower() == "content-type"] == ["text/csv"]


def test_the_consoles_thread_hands_a_handler_only_the_levels_it_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """host.console_log_on_its_own_thread: "Lines keep their order, format and time of
    logging" as the root logger's handlers would write them: a handler's own level still
    filters (logging.Logger.callHandlers: ``record.levelno >= hdlr.level``)."""
    warnings_only, everything = Keeping(), Keeping()
    warnings_only.setLevel(logging.WARNING)
    monkeypatch.setattr(logging.getLogger(), "handlers", [warnings_only, everything])
    logger = logging.getLogger("tests.uncovered.console")
    monkeypatch.setattr(logger, "level", logging.DEBUG)
    with console_log_on_its_own_thread():
        logger.info("routine")
        logger.warning("problem")
    assert [record.getMessage() for record in warnings_only.records] == ["problem"]
    assert [record.getMessage() for record in everything.records] == ["routine", "problem"]


class _StoppedError(Exception):
    """Stands for the signal that ends serve() once its banner is out."""


@contextmanager
def _stop_after_the_banner() -> Iterator[None]:
    raise _StoppedError
    yield  # pragma: no cover  (a generator, never resumed)


def test_the_banner_shows_a_key_only_on_the_routes_that_need_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """host.serve prints each route's URL, with ``?code=<key>`` (quoted) where the function's
    auth level asks for a key: an anonymous route's URL has none, as Azure's needs none."""
    monkeypatch.setattr(host_module, "console_log_on_its_own_thread", _stop_after_the_banner)
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(_StoppedError):
            serve(_anonymous_app(), "127.0.0.1", 0, "k+y", values={})
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    lines = capsys.readouterr().out.splitlines()
    base = lines[0].removeprefix("Local Functions host listening on ")
    assert lines[1:] == [f"  GET {base}/api/csv", f"  POST {base}/api/keyed?code=k%2By"]


def test_a_host_json_section_is_a_mapping_of_lower_case_names() -> None:
    """app_index.SettingsSection: names "compared without regard to case, as .NET's
    configuration compares them"; as a Mapping it lists each name once, lower-cased."""
    section = SettingsSection({"RoutePrefix": "api", "maxDequeueCount": 3})
    assert (len(section), sorted(section)) == (2, ["maxdequeuecount", "routeprefix"])
    assert dict(section) == {"routeprefix": "api", "maxdequeuecount": 3}
    assert len(SettingsSection(None)) == 0  # a section written as null has no settings


# --- local queue trigger: a renewal or a delete the service fails ------------------------------


def _failing(status: int) -> Any:
    def refuse(*_: object, **__: object) -> None:
        error = HttpResponseError("Server failed to process the request")
        error.status_code = status
        raise error

    return refuse


def test_a_renewal_the_queue_service_fails_is_no_lost_lease_and_ends_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """queues._LEASE_LOST is what "the queue service answers a lease that another instance took
    over": 400 or 404. A 503 is the service failing: poll_once raises it (the poller's loop logs
    the queue as unreachable and backs off) instead of going on as if another instance had the
    rest; those stay leased and come back when their lease ends."""
    poller, queue, bodies = _leasing_poller(monkeypatch, count=3, call_s=20.0)
    monkeypatch.setattr(queue, "update_message", _failing(503))
    with pytest.raises(HttpResponseError) as raised:
        poller.poll_once()
    assert raised.value.status_code == 503
    assert (bodies, queue.deleted) == ([b'"m0"'], ["m0"])


def test_a_delete_the_queue_service_fails_is_raised_not_taken_for_a_lost_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """queues._handle: only a lost lease (400, 404) after a successful call is logged as "was
    handled, but its lease had run out"; a 500 is raised for the poller's loop, and the batch's
    other messages are left for the next receive (replay is idempotent by event id)."""
    poller, queue, bodies = _leasing_poller(monkeypatch, count=2, call_s=0.0)
    monkeypatch.setattr(queue, "delete_message", _failing(500))
    with pytest.raises(HttpResponseError) as raised:
        poller.poll_once()
    assert raised.value.status_code == 500
    assert bodies == [b'"m0"']


# --- local timer trigger: run on startup, and a wake-up before the time ------------------------

AT = datetime(2026, 11, 21, 12, 3, 7, tzinfo=UTC)


class _Waits:
    """The runner's stop event: each wait is recorded and answered by ``answer`` (True: stop)."""

    def __init__(self, answer: Any) -> None:
        self.timeouts: list[float] = []
        self._answer = answer

    def wait(self, timeout: float) -> bool:
        self.timeouts.append(timeout)
        return bool(self._answer(len(self.timeouts)))

    def set(self) -> None:
        pass


def _timer(run_on_startup: bool, clock: Any, answer: Any) -> tuple[TimerRunner, _Waits, list[bool]]:
    past_due: list[bool] = []
    function = TimerFunction(
        "tick", "0 */5 * * * *", run_on_startup, lambda timer: past_due.append(timer.past_due)
    )
    runner = TimerRunner(function, function.schedule, clock=clock)
    waits = _Waits(answer)
    runner._stop = waits  # type: ignore[assignment]
    return runner, waits, past_due


@pytest.mark.parametrize("run_on_startup", [True, False])
def test_a_timer_that_runs_on_startup_runs_once_before_its_first_time(
    run_on_startup: bool,
) -> None:
    """timers.TimerRunner: a function declared with ``run_on_startup`` is called as the runner
    starts (not past due), as the runtime's RunOnStartup; then it waits for the schedule."""
    runner, waits, past_due = _timer(run_on_startup, lambda: AT, answer=lambda _n: True)
    runner._run()
    assert past_due == ([False] if run_on_startup else [])
    assert waits.timeouts == [113.0]  # 12:03:07 to 12:05:00


def test_a_timer_that_wakes_before_its_time_waits_for_the_rest_and_runs_once() -> None:
    """timers.TimerRunner._run: "woke early (clock adjustment): wait for the rest": a wake-up at
    12:04:00 for 12:05:00 calls nothing and waits the 60 s left, then runs once, on time."""
    now = [AT]
    wake_ups = {
        1: datetime(2026, 11, 21, 12, 4, tzinfo=UTC),
        2: datetime(2026, 11, 21, 12, 5, tzinfo=UTC),
    }

    def answer(nth: int) -> bool:
        if nth in wake_ups:
            now[0] = wake_ups[nth]
            return False
        return True

    runner, waits, past_due = _timer(False, lambda: now[0], answer)
    runner._run()
    assert past_due == [False]
    assert waits.timeouts == [113.0, 60.0, 300.0]


# --- repository: a build finished meanwhile, a fill-in that never settles, a page out of time ---


class _BuiltMeanwhile:
    """The container's lock, taken just after another request's build finished."""

    def __init__(self, lazy: _LazyContainer, built: object) -> None:
        self._lazy, self._built = lazy, built

    def __enter__(self) -> None:
        self._lazy._container = self._built  # type: ignore[assignment]

    def __exit__(self, *_: object) -> None:
        pass


def test_a_client_built_between_the_first_look_and_the_lock_is_used_not_built_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """repository._LazyContainer: "One request builds it" ("built between the first look and the
    lock"): a second build would be a second client, with a second connection pool."""
    monkeypatch.setattr(repository_module, "create_cosmos_client", _no_client)
    lazy = _LazyContainer(SETTINGS, dict(CLIENT_TIMEOUTS), DatabaseHealth())
    built = object()
    lazy._lock = _BuiltMeanwhile(lazy, built)  # type: ignore[assignment]
    assert lazy.get(deadline=0.0) is built
    assert lazy._build_done is None


class _NeverSettles:
    """A Cosmos DB client whose event is stored already and changes between every read and
    the replace that follows it (412 each time)."""

    def __init__(self) -> None:
        self.creates = 0
        self.reads = 0

    def get_database_client(self, _name: str) -> _NeverSettles:
        return self

    def get_container_client(self, _name: str) -> _NeverSettles:
        return self

    def create_item(self, body: dict[str, Any], **_: Any) -> None:
        self.creates += 1
        raise CosmosResourceExistsError(status_code=409, message="Conflict")  # type: ignore[no-untyped-call]

    def read_item(self, item: str, partition_key: str, **_: Any) -> dict[str, Any]:
        self.reads += 1
        stored = {"id": item, "repository": partition_key, "action": "push"}  # the same event
        return {**stored, "_etag": f'"{self.reads}"'}

    def replace_item(self, *_: Any, **__: Any) -> None:
        raise CosmosAccessConditionFailedError(status_code=412, message="Precondition")  # type: ignore[no-untyped-call]


def test_a_fill_in_that_never_settles_gives_up_after_one_round_more_than_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """repository._fill_in: "one more round than there are fields always finishes" when each
    changed ETag is another fill-in; a document that changes every time (another writer)
    ends it as "kept changing" (RepositoryUnavailableError: Event Grid answers 503 and delivers
    it again) after that many reads. The database answered every call: no outage is remembered
    (repository._failure), so the next write goes to it."""
    client = _NeverSettles()
    monkeypatch.setattr(repository_module, "create_cosmos_client", lambda *_: client)
    repository = CosmosEventRepository(SETTINGS)
    document = {
        "id": "e1",
        "repository": "r",
        "action": "push",
        "clientAddress": "10.0.0.1",
        "source": "eventgrid",  # a source whose duplicate fills in (models.FILLED_IN_BY)
    }
    with pytest.raises(RepositoryUnavailableError, match="kept changing while being filled in"):
        repository.add(document)
    assert client.reads == len(ENRICHMENT_FIELDS) + 1
    with pytest.raises(RepositoryUnavailableError):
        repository.add(document)
    assert client.creates == 2


def test_a_read_whose_page_has_no_time_left_is_unavailable_without_asking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """repository.find_events: a page's reads share QUERY_BUDGET_S ("an earlier read of the same
    page used it up"): the next read of that page raises at once, with no call (nor client)."""
    monkeypatch.setattr(repository_module, "create_cosmos_client", _no_client)
    repository = CosmosEventRepository(SETTINGS)
    query = parse_event_query({})
    with pytest.raises(RepositoryUnavailableError, match=r"^no answer within 8 s$"):
        repository.find_events(query, 10, deadline=0.0)


# --- telemetry: sampling the calls not decided before, a failed set-up, installed once ------------


def test_a_dependency_not_sampled_before_its_call_is_kept_as_the_rate_allows() -> None:
    """telemetry._dependency_sampler: client spans of calls made without sdk_call_options (the
    reads, the queue, the management API) are sampled "as ``calls`` decides": kept with the
    rate they stand for (their itemCount) while under the rate, dropped above it; other spans
    are dropped, and a call sampled before its call is kept whatever the rate."""
    seconds = [0.0]

    def one_second_apart() -> float:
        seconds[0] += 1.0
        return seconds[0]

    quiet = _dependency_sampler(RateLimit(5.0, clock=one_second_apart))
    flooded = _dependency_sampler(RateLimit(5.0, clock=lambda: 0.0))  # all at one instant
    call = {"http.request.method": "GET"}
    kept = quiet.should_sample(None, 1, "GET", SpanKind.CLIENT, call)
    assert kept.decision is Decision.RECORD_AND_SAMPLE
    assert dict(kept.attributes or {}) == {**call, SAMPLE_RATE_KEY: 100.0}
    assert flooded.should_sample(None, 2, "GET", SpanKind.CLIENT, call).decision is Decision.DROP
    assert quiet.should_sample(None, 3, "read", SpanKind.INTERNAL, call).decision is Decision.DROP
    decided: dict[str, str | float] = {**call, SAMPLE_RATE_KEY: 20.0}
    kept = flooded.should_sample(None, 4, "GET", SpanKind.CLIENT, decided)
    assert (kept.decision, dict(kept.attributes or {})) == (Decision.RECORD_AND_SAMPLE, decided)
    assert quiet.get_description() == "DependencySampler"


def _pipeline(values: dict[str, str]) -> _Pipeline:
    return _Pipeline(
        values,
        dependencies_per_second=None,
        routine_records_per_second=None,
        span_processors=(),
        log_record_processors=(),
        metric_readers=(),
        exporter_options={"connection_string": "InstrumentationKey=0;IngestionEndpoint=x"},
    )


def test_an_exporter_that_cannot_be_built_exports_nothing_and_holds_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """telemetry._Pipeline._build: an exporter that fails to build is logged ("Telemetry export
    could not be set up; nothing will be exported") and the handler stops holding records (it
    held them for the exporters): the app goes on, its log unchanged. The exporter was given
    the managed identity AZURE_CLIENT_ID names (managed_identity_credential: "local
    authentication is off on the Application Insights resource")."""
    given: dict[str, Any] = {}

    class RefusedExporter:
        def __init__(self, **options: Any) -> None:
            given.update(options)
            raise RuntimeError("refused")  # a ValueError is the connection string's, said so

    monkeypatch.setattr(
        "azure.monitor.opentelemetry.exporter.AzureMonitorTraceExporter", RefusedExporter
    )
    caplog.set_level(logging.ERROR, logger=telemetry.__name__)
    pipeline = _pipeline({"AZURE_CLIENT_ID": "client-1"})
    handler = DecisionTelemetry(pipeline)
    pipeline.add_handler(handler)
    handler.emit(logging.makeLogRecord({"msg": "first", "decision": "ping"}))
    assert handler.wait_until_exporting(timeout=30)
    assert pipeline._thread is not None
    pipeline._thread.join(timeout=30)
    assert isinstance(given["credential"], ManagedIdentityCredential)
    assert given["connection_string"] == "InstrumentationKey=0;IngestionEndpoint=x"
    assert "Telemetry export could not be set up; nothing will be exported" in caplog.messages
    assert (handler._targets, list(handler._held)) == ((), [])


def test_decision_telemetry_is_attached_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """telemetry.install_decision_telemetry: "Attach :class:`DecisionTelemetry` to the app's
    logger, once": a second set-up in the process adds no second handler (each record would be
    exported and counted twice)."""
    logger = logging.getLogger(APP_LOGGER)
    others = [h for h in logger.handlers if not isinstance(h, DecisionTelemetry)]
    monkeypatch.setattr(logger, "handlers", others)
    first, second = _pipeline({}), _pipeline({})
    install_decision_telemetry(first)
    install_decision_telemetry(second)
    [handler] = [h for h in logger.handlers if isinstance(h, DecisionTelemetry)]
    assert (handler._pipeline, first._handlers, second._handlers) == (first, [handler], [])


def test_without_the_interpreters_exit_hook_the_set_up_waits_for_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """telemetry._before_thread_pools_stop: "Without the hook (another interpreter) ..." the
    callback is not registered, and nothing raises: threading._register_atexit is private to
    CPython (3.9 and later) and may go."""
    monkeypatch.delattr(threading, "_register_atexit")
    called: list[bool] = []
    _before_thread_pools_stop(lambda: called.append(True))
    assert called == []
