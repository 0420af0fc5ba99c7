"""What the deployed code takes from its dependencies, checked where an upgrade (a platform
team's security bump, or a new release of a package nothing pinned) would change it without an
error: requirements.txt declares what the code imports, locks what that needs, and is what the
tests run on; the names imported lazily (inside functions, under ``if TYPE_CHECKING:``) still
exist; and the SDK pieces the code relies on beyond their documented API (the Cosmos client's
keyword arguments, which it takes silently when it no longer knows them; the Azure Monitor log
exporter's envelope hook; CPython's exit hook) still have the shape the code expects."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
import sys
import threading
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path
from typing import Any

import pytest

from acr_webhook import repository, telemetry
from acr_webhook import repository as repository_module
from acr_webhook.config import Settings
from acr_webhook.repository import LOOKUP_RETRIES_VARIABLE, create_cosmos_client
from scripts import lock
from tests.support.cosmos_server import EMULATOR_KEY, REPO_ROOT, LocalCosmosServer
from tests.unit.test_architecture import imports_of, module_files
from tests.unit.test_database_health import REFUSING

# Type-checking-only stubs: no distribution provides them at run time.
STUB_ONLY = frozenset({"_typeshed"})
APP_MODULES = frozenset({"acr_webhook", "function_app"})


def canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_runtime() -> dict[str, str]:
    """requirements.txt's pins, above its locked section: canonical name -> version."""
    pins: dict[str, str] = {}
    for line in lock.pinned_part(lock.RUNTIME):
        line = line.split("#", 1)[0].strip()
        if line:
            name, separator, version = line.partition("==")
            assert separator and version, f"not pinned exactly: {line!r}"
            pins[canonical(name)] = version.strip()
    return pins


def deployed_imports() -> dict[str, set[str]]:
    """Dotted names imported by what the Functions host loads (not the local stand-ins, which
    .funcignore leaves out), from other distributions than the standard library: name -> the
    app modules that import it. ``from m import a`` gives both ``m`` and ``m.a``."""
    found: dict[str, set[str]] = {}
    for module, path in module_files().items():
        if module.startswith("local"):
            continue
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in STUB_ONLY or top in APP_MODULES:
                continue
            found.setdefault(name, set()).add(module)
    return found


def resolve(dotted: str) -> Any:
    """The module ``dotted`` names, or the attribute of its parent module it names."""
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as error:
        if error.name != dotted or "." not in dotted:
            raise
    parent, _, attribute = dotted.rpartition(".")
    return getattr(importlib.import_module(parent), attribute)


@cache
def _owners_of_top_level() -> dict[str, list[str]]:
    return dict(packages_distributions())


@cache
def _distribution_files(name: str) -> tuple[Path, frozenset[str]]:
    """Where ``name`` is installed, and its files relative to there."""
    found = distribution(name)
    root = Path(str(found.locate_file(""))).resolve()
    return root, frozenset(Path(file).as_posix() for file in found.files or ())


def distribution_of(module: str) -> str:
    """The installed distribution whose files hold ``module`` (by file: ``azure`` and
    ``opentelemetry`` are namespaces that many distributions share)."""
    origin = getattr(importlib.import_module(module), "__file__", None)
    assert origin, f"{module} has no file"
    owners = set()
    for name in _owners_of_top_level().get(module.split(".")[0], []):
        root, files = _distribution_files(name)
        path = Path(origin).resolve()
        if path.is_relative_to(root) and path.relative_to(root).as_posix() in files:
            owners.add(canonical(name))
    assert len(owners) == 1, (module, owners)
    return owners.pop()


def imported_distributions() -> dict[str, set[str]]:
    """Distribution -> the modules of it that the deployed code imports."""
    found: dict[str, set[str]] = {}
    for name in deployed_imports():
        if inspect.ismodule(resolve(name)):
            found.setdefault(distribution_of(name), set()).add(name)
    return found


# --- requirements.txt against the code and the installed packages ---------------------------


def test_every_name_the_deployed_code_imports_exists_in_the_installed_packages() -> None:
    """Most of the SDK imports are made inside functions (telemetry's exporters, the queue and
    registry clients) or only for the type checker, so a release that moves or renames one
    fails no import at start-up: telemetry's, for one, would fail on its set-up thread, which
    logs it and exports nothing from then on."""
    missing = {}
    for name, importers in sorted(deployed_imports().items()):
        try:
            resolve(name)
        except (ImportError, AttributeError) as error:
            missing[name] = f"{sorted(importers)}: {error!r}"
    assert missing == {}


def test_the_packages_the_tests_run_on_are_the_pinned_ones() -> None:
    """The suite says something about the deployment only if it runs on requirements.txt's
    versions (scripts/bootstrap installs them): a newer release installed by hand, or an
    upgraded pin not yet installed, is reported here by name."""
    drift = {}
    for name, version in pinned_runtime().items():
        try:
            installed = distribution(name).version
        except PackageNotFoundError:
            installed = "not installed"
        if installed != version:
            drift[name] = f"pinned {version}, installed {installed}"
    assert drift == {}


def test_the_locked_sections_hold_what_the_pins_need_at_the_versions_installed() -> None:
    """Each file's locked section (scripts/lock) is the closure of the pins above it, at the
    versions the tests run on: a pin changed without running scripts/lock, a dependency a new
    release added or dropped, or a package installed by hand is reported here by name."""
    for path, needed in lock.sections().items():
        locked = lock.locked_part(path)
        stale = {n: v for n, v in locked.items() if needed.get(n) != v}
        assert stale == {}, f"{path.name}: locked, not needed or not installed: run scripts/lock"
        missing = {n: v for n, v in needed.items() if n not in locked}
        assert missing == {}, f"{path.name}: needed, not locked: run scripts/lock"


def test_the_lock_script_and_its_module_cut_the_files_at_the_same_line() -> None:
    """scripts/lock resolves what is above the mark (awk), scripts/lock.py writes below it."""
    assert f'index($0, "{lock.MARK}") == 1' in (REPO_ROOT / "scripts" / "lock").read_text()
    for path in (lock.RUNTIME, lock.DEV):
        assert sum(line.startswith(lock.MARK) for line in path.read_text().splitlines()) == 1


def test_every_distribution_the_deployed_code_imports_is_pinned() -> None:
    """azure-core, opentelemetry-api/-sdk, opentelemetry-instrumentation-logging and
    opentelemetry-resource-detector-azure were imported but came only as dependencies of pinned
    packages: the remote build took whatever release was newest that day, untested."""
    pins = pinned_runtime()
    unpinned = {
        name: sorted(modules)
        for name, modules in imported_distributions().items()
        if name not in pins
    }
    assert unpinned == {}


def test_every_pinned_distribution_is_imported_by_the_deployed_code() -> None:
    """The distro (azure-monitor-opentelemetry) was pinned for two of the packages it brings,
    with 14 more that nothing imports."""
    imported = imported_distributions()
    assert {name for name in pinned_runtime() if name not in imported} == set()


# --- what the code relies on beyond the SDKs' documented API --------------------------------


@pytest.mark.parametrize(
    "options",
    [repository.CLIENT_TIMEOUTS, repository.EVENTGRID_WRITE_OPTIONS, repository.QUERY_TIMEOUTS],
    ids=["webhook-writes", "eventgrid-writes", "reads"],
)
def test_the_cosmos_client_takes_the_timeouts_and_retries_the_app_gives_it(
    cosmos_server: LocalCosmosServer, options: dict[str, Any]
) -> None:
    """azure-cosmos reads its options from ``**kwargs`` and ignores those it does not know: a
    release that renamed ``retry_throttle_total`` would retry a throttled write 9 times for up
    to 30 s (its defaults) where ACR waits 5 s, and nothing would fail. The account lookup's
    own timeouts (ConnectionPolicy.DBA*) are set by attribute, which no release refuses
    either. So: the policy the client was built with, as the code means it."""
    settings = Settings(
        cosmos_endpoint=cosmos_server.endpoint,
        cosmos_key=EMULATOR_KEY,
        cosmos_database="acr",
        cosmos_container="unused",
        local_function_key=None,
    )
    with repository.create_cosmos_client(settings, options) as client:
        policy = client.client_connection.connection_policy
    assert (policy.RequestTimeout, policy.ReadTimeout) == (
        options["connection_timeout"],
        options["read_timeout"],
    )
    assert (policy.DBAConnectionTimeout, policy.DBAReadTimeout) == (
        options["connection_timeout"],
        options["timeout"],
    )
    assert policy.RecoveryReadTimeout == options["read_timeout"]
    assert policy.RetryOptions.MaxRetryAttemptCount == options["retry_throttle_total"]
    assert policy.RetryOptions.MaxWaitTimeInSeconds == options["retry_throttle_backoff_max"]
    assert policy.ConnectionRetryConfiguration is not None
    assert policy.ConnectionRetryConfiguration.total_retries == options["retry_total"] == 0
    assert policy.ResponsePayloadOnWriteDisabled is True


def test_the_log_exporter_hook_telemetry_overrides_keeps_its_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """telemetry._sampled_log_exporter overrides the Azure Monitor log exporter's private
    ``_log_to_envelope`` (azure-monitor-opentelemetry-exporter 1.0.0b58) and reuses its private
    sampling-rate attribute name: renamed in a later beta, the override would never be called
    and each sampled record would count for one in Application Insights. The envelope the hook
    makes from a record logged with a sampling rate, through the SDK as the app logs it."""
    from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter
    from azure.monitor.opentelemetry.exporter._constants import _SAMPLE_RATE_KEY
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    assert telemetry.SAMPLE_RATE_KEY == _SAMPLE_RATE_KEY
    hook = inspect.signature(AzureMonitorLogExporter._log_to_envelope)
    assert list(hook.parameters) == ["self", "readable_log_record"]

    # No SDK self-reporting (statsbeat) from the exporter built here.
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    monkeypatch.setenv("APPLICATIONINSIGHTS_SDKSTATS_DISABLED", "true")
    exporter = telemetry._sampled_log_exporter(
        AzureMonitorLogExporter,
        {
            "connection_string": "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            "IngestionEndpoint=http://127.0.0.1:9/",
            "disable_offline_storage": True,
        },
    )
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    try:
        LoggingHandler(logger_provider=provider).emit(
            logging.makeLogRecord(
                {
                    "msg": "stored",
                    "levelno": logging.INFO,
                    "levelname": "INFO",
                    "decision": "recorded",
                    telemetry.SAMPLE_RATE_KEY: 25.0,
                }
            )
        )
        [record] = logs.get_finished_logs()
    finally:
        provider.shutdown()
        exporter.shutdown()
    envelope = exporter._log_to_envelope(record).as_dict()
    assert envelope["sampleRate"] == 25.0
    properties = envelope["data"]["baseData"]["properties"]
    assert properties["decision"] == "recorded"
    assert telemetry.SAMPLE_RATE_KEY not in properties


def test_the_interpreter_still_has_the_exit_hook_telemetry_waits_on() -> None:
    """telemetry._before_thread_pools_stop registers with CPython's private
    ``threading._register_atexit`` and does without it, silently, where it is missing: a
    process that exits right after its first event would then lose that event's telemetry.
    Present in 3.9 to 3.13; a runtime that drops it should be known before it is deployed."""
    assert callable(getattr(threading, "_register_atexit", None))


# --- repository.create_cosmos_client: the lookup's retries off unless an operator set them ----


@pytest.mark.parametrize(("before", "after"), [(None, "0"), ("2", "2")])
def test_the_lookup_retry_setting_is_turned_off_only_when_nobody_set_it(
    before: str | None, after: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_cosmos_client: the SDK reads AZURE_COSMOS_HEALTH_CHECK_MAX_RETRIES from the
    environment only, and the app sets it with setdefault: an operator's own value (an app
    setting) is kept. Kills the assignment that overrides it; the SDK is not contacted."""
    if before is None:
        monkeypatch.delenv(LOOKUP_RETRIES_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(LOOKUP_RETRIES_VARIABLE, before)
    monkeypatch.setattr(repository_module, "CosmosClient", lambda *_a, **_k: None)

    create_cosmos_client(REFUSING)

    assert os.environ[LOOKUP_RETRIES_VARIABLE] == after
