"""What the product's comments say its libraries do, where the code relies on it and would go
wrong without an error if a release changed it: each checked here by the library's behaviour,
on the versions requirements.txt pins (test_dependencies.py checks those are the installed
ones). test_dependencies.py pins the Cosmos client's options, the log exporter's envelope hook
and the presence of CPython's exit hook; these are the claims it leaves open."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import pytest
import requests
from azure.core.exceptions import AzureError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning, ProtocolError

from acr_webhook import repository
from acr_webhook.config import COSMOS_POOL_SIZE, PROXY_VARIABLES, Settings
from acr_webhook.telemetry import APP_LOGGER, SDK_LOGGERS
from tests.support.cosmos_server import EMULATOR_KEY, REPO_ROOT, LocalCosmosServer

# A real account's address: nothing is sent there (each test stops the request unsent).
ACCOUNT = "https://acct.documents.azure.com:443/"


def settings_for(endpoint: str) -> Settings:
    return Settings(
        cosmos_endpoint=endpoint,
        cosmos_key=EMULATOR_KEY,
        cosmos_database="acr",
        cosmos_container="events",
        local_function_key=None,
    )


# --- azure-core and requests: the Cosmos transport ------------------------------------------


def test_the_cosmos_client_sends_through_the_session_the_app_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """repository.create_transport: "a connection for each thread that may write at once
    (config.COSMOS_POOL_SIZE), and no per-request environment lookups", urllib3 retrying
    nothing under the SDK. It configures a requests.Session and hands it to RequestsTransport,
    which (azure-core 1.41.0, _requests_basic.py ``open``) sets up only a session it created
    itself: one that reset a given session (``_init_session``: trust_env back on, its own
    adapter with urllib3's default pool of 10) would bring back the ~13% of a write's CPU the
    proxy and ~/.netrc lookups cost, and queue writes 11 to 32 behind 10 connections. So: the
    requests the client makes, as requests' adapter gets them."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    lookups: list[str] = []

    def recorded(name: str, lookup: Any) -> Any:
        def look_up(*args: Any, **kwargs: Any) -> Any:
            lookups.append(name)
            return lookup(*args, **kwargs)

        return look_up

    for name in ("get_netrc_auth", "get_environ_proxies"):
        monkeypatch.setattr(
            requests.sessions, name, recorded(name, getattr(requests.sessions, name))
        )
    adapters: list[HTTPAdapter] = []

    def send(adapter: HTTPAdapter, request: Any, **options: Any) -> Any:
        adapters.append(adapter)
        raise requests.ConnectionError("not sent")

    monkeypatch.setattr(HTTPAdapter, "send", send)
    with pytest.raises(AzureError):  # the lookup fails: nothing was sent
        repository.create_cosmos_client(settings_for(ACCOUNT), repository.CLIENT_TIMEOUTS)
    assert adapters, "the client made no request"
    assert lookups == []
    for adapter in adapters:
        assert adapter._pool_maxsize == COSMOS_POOL_SIZE
        assert adapter.max_retries.total is False


# --- azure-cosmos 4.17.1: the account lookup ----------------------------------------------


def test_no_account_lookup_waits_for_an_answer_longer_than_the_clients_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first lookup's connection is dropped before an answer (a restarting database, a
    load balancer's reset); every later one gets no answer in time. What each attempt would
    have waited, as requests' adapter is asked to wait. azure-cosmos 4.17.1 tries a failed
    lookup up to 3 more times (HealthCheckRetryPolicy, _retry_utility.py), the first with a 5 s
    read timeout of its own: read timeouts 2, 5, 2, 2 s, and a client built in 5.13 s against a
    server that drops the first lookup and never answers the second, where a write's bound is
    2 s. create_cosmos_client turns those retries off (the SDK reads the count from the
    environment only)."""
    waits: list[float] = []

    def send(_: HTTPAdapter, request: Any, **options: Any) -> Any:
        _connect, read = options["timeout"]
        waits.append(read)
        if len(waits) == 1:
            raise requests.ConnectionError(ProtocolError("Connection aborted."))
        raise requests.ReadTimeout("no answer")

    monkeypatch.setattr(HTTPAdapter, "send", send)
    with pytest.raises(AzureError):  # the lookup fails, in no time here
        repository.create_cosmos_client(settings_for(ACCOUNT), repository.CLIENT_TIMEOUTS)
    assert len(waits) >= 1
    assert max(waits) <= repository.CLIENT_TIMEOUTS["timeout"], waits


# --- urllib3: the warning tls.verify_tls silences for loopback hosts ------------------------


def test_the_loopback_server_gets_no_unverified_request_warning_from_the_real_client(
    cosmos_server: LocalCosmosServer,
) -> None:
    """tls.verify_tls silences urllib3's InsecureRequestWarning by its message's first words,
    and test_config.py checks the filter against a copy of that message. Here urllib3 says it
    itself (2.8.0, connectionpool.py ``_validate_conn``): a reworded message would slip past the
    filter and put one warning per request on the console of every local run."""
    with warnings.catch_warnings(record=True) as unfiltered:
        warnings.simplefilter("always")
        requests.get(cosmos_server.endpoint, verify=False, timeout=10).close()  # noqa: S501
    assert any(w.category is InsecureRequestWarning for w in unfiltered)
    with warnings.catch_warnings(record=True) as through_the_app:
        warnings.simplefilter("always")
        settings = settings_for(cosmos_server.endpoint)
        with repository.create_cosmos_client(settings, repository.QUERY_TIMEOUTS) as client:
            client.get_database_account()
    assert [w for w in through_the_app if w.category is InsecureRequestWarning] == []


# --- azure-cosmos, urllib3: the loggers telemetry.quiet_sdk_loggers keeps to warnings --------


def test_every_record_the_cosmos_client_logs_comes_from_a_logger_the_app_quiets(
    cosmos_server: LocalCosmosServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """telemetry.SDK_LOGGERS: "the Azure SDKs log every HTTP request at INFO ..., and urllib3
    each request line at DEBUG with its query string", so "azure" and "urllib3" are set to
    WARNING. test_security.py checks those two loggers' levels; this, that the records really
    come from below them: azure-cosmos 4.17.1 logs each request and answer through its own
    ``azure.cosmos._cosmos_http_logging_policy``, not azure-core's. A release that logged under
    another name would put two records per request in every instance's log, the console's and
    Application Insights'."""
    for name in SDK_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    caplog.set_level(logging.DEBUG)
    settings = settings_for(cosmos_server.endpoint)
    with repository.create_cosmos_client(settings, repository.QUERY_TIMEOUTS) as client:
        client.get_database_account()
    sdk_records = [r for r in caplog.records if not r.name.startswith(f"{APP_LOGGER}.")]
    assert {r.levelno for r in sdk_records} >= {logging.INFO, logging.DEBUG}
    quieted = {r.name for r in sdk_records if r.name.split(".")[0] in SDK_LOGGERS}
    assert {r.name for r in sdk_records} == quieted


# --- CPython: the exit hook telemetry waits on ------------------------------------------------

EXIT_HOOK_ORDER = """
import sys, threading

def at_exit():
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as pool:
        try:
            print(pool.submit(lambda: "took work").result())
        except RuntimeError as error:
            print(error)

if sys.argv[1] == "app":
    from acr_webhook.telemetry import _before_thread_pools_stop
    _before_thread_pools_stop(at_exit)
else:
    threading._register_atexit(at_exit)
    import concurrent.futures.thread
"""


@pytest.mark.parametrize(
    ("registered", "answer"),
    [
        ("app", "took work"),
        ("before-concurrent-futures", "cannot schedule new futures after interpreter shutdown"),
    ],
)
def test_the_telemetry_exit_hook_runs_while_thread_pools_still_take_work(
    registered: str, answer: str
) -> None:
    """telemetry._before_thread_pools_stop: CPython runs the hooks of
    ``threading._register_atexit`` last-registered first (threading._shutdown), and
    concurrent.futures registers its own stop there when imported, so a hook registered after
    that import may still hand work to a pool (OpenTelemetry's Resource.create runs its
    detectors on one). test_dependencies.py checks that the hook exists; this, the order, in a
    process of its own that exits (the second case shows what the order spares it)."""
    ran = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(EXIT_HOOK_ORDER), registered],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert ran.stdout.strip() == answer, ran.stderr
