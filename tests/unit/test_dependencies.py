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
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from functools import cache
from importlib import metadata
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from acr_webhook import repository, telemetry
from acr_webhook import repository as repository_module
from acr_webhook.config import Settings
from acr_webhook.repository import LOOKUP_RETRIES_VARIABLE, create_cosmos_client
from scripts import lock
from tests.support.cosmos_server import EMULATOR_KEY, REPO_ROOT, LocalCosmosServer
from tests.unit.test_architecture import imports_of, module_files
from tests.unit.test_database_health import REFUSING
from tests.unit.test_dependency_hashes import answer_from_the_committed_files

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


def test_checkovs_locked_section_holds_what_its_pin_needs_in_its_venv() -> None:
    """checkov runs from a venv of its own (.venv/checkov), so that its packaging<24 does not
    hold back the packaging the app deploys: its section is read there."""
    completed = subprocess.run(
        [
            str(lock.CHECKOV_PYTHON),
            "-c",
            "import json; from scripts import lock;"
            " print(json.dumps(lock.tool_section(lock.CHECKOV)))",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(completed.stdout) == lock.locked_part(lock.CHECKOV), "run scripts/lock"
    assert "checkov" not in lock.dev_closure()  # nor in the test venv, holding packaging back
    assert metadata.version("packaging") != lock.locked_part(lock.CHECKOV)["packaging"]


def test_the_tests_parse_the_bicep_with_the_parser_checkov_runs() -> None:
    dev_pins = {str(r.name): r for r in lock.requirements(lock.pinned_part(lock.DEV))}
    assert str(dev_pins["pycep-parser"].specifier) == (
        f"=={lock.locked_part(lock.CHECKOV)['pycep-parser']}"
    )


def test_the_lock_script_and_its_module_cut_the_files_at_the_same_line() -> None:
    """scripts/lock resolves what is above the mark (awk), scripts/lock.py writes below it."""
    assert f'index($0, "{lock.MARK}") == 1' in (REPO_ROOT / "scripts" / "lock").read_text()
    for path in lock.FILES:
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


# --- scripts/lock.py: the locked sections --------------------------------------------------


@pytest.fixture
def lock_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Copies of requirements.txt and requirements-dev.txt that lock.py reads and writes, the
    pins' hashes from the committed files (test_dependency_hashes checks the asking)."""
    answer_from_the_committed_files(monkeypatch)
    runtime, dev = tmp_path / "requirements.txt", tmp_path / "requirements-dev.txt"
    shutil.copyfile(lock.RUNTIME, runtime)
    shutil.copyfile(lock.DEV, dev)
    headers = {runtime: lock.SECTION_HEADER[lock.RUNTIME], dev: lock.SECTION_HEADER[lock.DEV]}
    monkeypatch.setattr(lock, "RUNTIME", runtime)
    monkeypatch.setattr(lock, "DEV", dev)
    monkeypatch.setattr(lock, "SECTION_HEADER", headers)
    return runtime, dev


@pytest.mark.parametrize("section", ["locked", "none yet, blank lines after the pins"])
def test_writing_the_sections_gives_the_committed_files_back(
    lock_files: tuple[Path, Path], section: str
) -> None:
    """``python scripts/lock.py write`` (what scripts/lock runs) in the test venv, whose
    packages the tests above hold to the sections, rewrites each file as committed, byte
    for byte: the pins, no blank line, the header once, the names sorted. From a file that has
    no section yet too. Kills: write keeping trailing blank lines, adding one before the mark,
    dropping the header, not sorting; pinned_part keeping the mark line (two marks)."""
    committed = {path: path.read_text() for path in lock_files}
    if section != "locked":
        for path in lock_files:
            path.write_text("\n".join(lock.pinned_part(path)) + "\n\n\n")
    assert lock.main(["write"]) == 0
    assert {path: path.read_text() for path in lock_files} == committed


def test_the_lock_module_writes_only_when_told_to(lock_files: tuple[Path, Path]) -> None:
    """lock.py's usage: ``write`` rewrites the sections; anything else prints the usage (2)
    and changes nothing. Kills: main writing on any argument."""
    for path in lock_files:
        path.write_text("\n".join(lock.pinned_part(path)) + "\n")
    before = {path: path.read_text() for path in lock_files}
    assert lock.main(["--check"]) == 2
    assert lock.main([]) == 2
    assert {path: path.read_text() for path in lock_files} == before


def test_a_runtime_dependency_pinned_for_the_tests_stays_locked_for_the_deployment(
    lock_files: tuple[Path, Path],
) -> None:
    """README: requirements.txt (deployed) holds "everything they need", so that "the remote
    build installs what was tested", and the remote build reads requirements.txt alone.
    sections() drops every name pinned above either file from both sections, so a dev pin of
    something the runtime needs (typing-extensions, here) leaves it in neither the deployed
    pins nor its locked section."""
    runtime, dev = lock_files
    dev.write_text(
        dev.read_text().replace("pytest==8.4.2\n", "pytest==8.4.2\ntyping-extensions==4.16.0\n")
    )
    assert lock.sections()[runtime].get("typing-extensions") == "4.16.0"


def test_requirement_lines_drop_comments_and_pip_options() -> None:
    """lock.requirements: "no comments, blank lines or pip options (-r)", a comment after a
    pin included, as pip reads it. Kills: the inline comment kept (an InvalidRequirement)."""
    lines = ["# why", "", "-r requirements.txt", "azure-core==1.41.0  # imported directly"]
    assert lock.requirements(lines) == [Requirement("azure-core==1.41.0")]


@pytest.fixture
def needs_jwt_crypto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed distribution that needs PyJWT with its crypto extra and nothing else."""
    info = tmp_path / "needs_jwt_crypto-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: needs-jwt-crypto\nVersion: 1.0\n"
        "Requires-Dist: PyJWT[crypto]>=2\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "needs-jwt-crypto"


def test_the_closure_follows_the_extras_asked(needs_jwt_crypto: str) -> None:
    """lock.closure: "every installed distribution roots need ... directly or through others":
    an extra asked of a root or of a dependency brings what it adds (PyJWT's crypto:
    cryptography), which the lock must hold. Kills: the roots' extras dropped, the
    dependencies' extras dropped."""
    assert "cryptography" in lock.closure([Requirement("pyjwt[crypto]")])
    assert "cryptography" in lock.closure([Requirement(needs_jwt_crypto)])
    assert "cryptography" not in lock.closure([Requirement("pyjwt")])


def test_the_closure_does_not_depend_on_the_order_of_its_roots() -> None:
    """lock.closure skips a package it has found, whatever extras a later requirement asks of
    it: a pin of PyJWT above the section (as azure-core and requests are pinned, for being
    imported) would leave what msal's PyJWT[crypto] adds out of the lock, if the pin is met
    first. Today msal also names cryptography itself, so the files are whole."""
    with_crypto, plain = Requirement("pyjwt[crypto]"), Requirement("pyjwt")
    assert lock.closure([with_crypto, plain]) == lock.closure([plain, with_crypto])


def test_each_requirements_file_holds_every_package_its_packages_need() -> None:
    """README: a locked section "holds everything they need at the versions the tests run
    on, so the remote build installs what was tested". Checked without lock.closure, which
    writes the sections and so cannot find its own gaps: every dependency of every package
    listed in requirements.txt (with requirements-dev.txt: the test venv's), markers taken on
    this Python 3.11 on Linux with the extras asked of it, is listed, at a version its
    specifier admits. pip then has nothing to choose."""
    runtime = _listed(lock.RUNTIME)
    for listed in (runtime, {**runtime, **_listed(lock.DEV)}):
        asked: dict[str, set[str]] = {name: set() for name in listed}
        unmet: list[str] = []
        changed = True
        while changed:
            changed = False
            for name in listed:
                for needed in map(Requirement, _requires(name)):
                    extras = asked[name] | {""}
                    marker = needed.marker
                    if marker is not None and not any(
                        marker.evaluate({"extra": e}) for e in extras
                    ):
                        continue
                    dependency = canonicalize_name(needed.name)
                    if dependency not in listed or not needed.specifier.contains(
                        listed[dependency], prereleases=True
                    ):
                        unmet.append(f"{name} needs {needed}")
                    elif not needed.extras <= asked[dependency]:
                        asked[dependency] |= needed.extras
                        changed = True
        assert sorted(set(unmet)) == []


def _listed(path: Path) -> dict[str, str]:
    """A requirements file's packages, pinned above its section or locked in it."""
    pins: dict[str, str] = {
        canonicalize_name(r.name): str(next(iter(r.specifier)).version)
        for r in lock.requirements(lock.pinned_part(path))
    }
    return {**pins, **lock.locked_part(path)}


def _requires(name: str) -> list[str]:
    return metadata.distribution(name).requires or []


# --- scripts/lock: what it resolves ---------------------------------------------------------


def test_the_lock_script_resolves_the_pins_and_nothing_locked(tmp_path: Path) -> None:
    """scripts/lock "resolves the pins above the sections afresh": the files it hands pip are
    each file's lines above the mark (lock.pinned_part), without requirements-dev.txt's
    ``-r`` line (pip would look for requirements.txt beside the copy) and without the pins'
    hashes. Its own lines run here, as written. Kills: awk skipping only the mark line (the
    locked versions fed back to pip, which could then never move), the ``-r`` line kept, the
    hashes kept (a changed pin then fails on its old version's)."""
    script = (REPO_ROOT / "scripts" / "lock").read_text()
    function = re.search(r"^above_lock\(\) \{\n.*?^\}\n", script, re.MULTILINE | re.DOTALL)
    assert function
    uses = [line for line in script.splitlines() if line.startswith("above_lock ")]
    assert len(uses) == 3
    cut = [function.group(), *uses]
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(cut)],
        cwd=REPO_ROOT,
        env={"work": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    runtime = (tmp_path / "runtime.txt").read_text().splitlines()
    dev = (tmp_path / "dev.txt").read_text().splitlines()
    checkov = (tmp_path / "checkov.txt").read_text().splitlines()
    assert lock.requirements(runtime) == lock.requirements(lock.pinned_part(lock.RUNTIME))
    assert lock.requirements(dev) == lock.requirements(lock.pinned_part(lock.DEV))
    assert lock.requirements(checkov) == lock.requirements(lock.pinned_part(lock.CHECKOV))
    assert not [line for line in runtime + dev + checkov if line.startswith("-")]
    # A changed pin would not match its old version's hashes: none is handed on.
    assert not [line for line in runtime + dev + checkov if "--hash" in line or "\\" in line]


def test_the_lock_script_refuses_a_python_other_than_3_11(tmp_path: Path) -> None:
    """scripts/lock: "The markers (python_version, sys_platform) are evaluated on it: the
    remote build's Python", so it stops at once on another one, before resolving anything.
    Kills: the version check dropped."""
    other = tmp_path / "python3.12"
    other.write_text("#!/bin/sh\nexit 1\n")  # sys.version_info[:2] != (3, 11)
    other.chmod(0o755)
    ran = subprocess.run(
        [str(REPO_ROOT / "scripts" / "lock")],
        env={"PYTHON": str(other), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert ran.returncode == 1
    assert "resolves on Python 3.11" in ran.stderr
    assert "Resolving" not in ran.stdout


def test_writing_checkovs_section_in_its_venv_gives_the_committed_file_back(
    tmp_path: Path,
) -> None:
    """``scripts/lock.py write requirements-checkov.txt``, what scripts/lock runs in checkov's
    venv, rewrites that file as committed and touches neither other file. Kills: the argument's
    branch dropped, the section written empty or with the other files' sections too."""
    copies = {path: tmp_path / path.name for path in lock.FILES}
    for path, copy in copies.items():
        shutil.copyfile(path, copy)
    script = (
        "import sys; from pathlib import Path; from scripts import lock;"
        " runtime, dev, checkov = (Path(p) for p in sys.argv[1:]);"
        " lock.SECTION_HEADER = {runtime: '', dev: '', checkov: lock.SECTION_HEADER[lock.CHECKOV]};"
        " lock.RUNTIME, lock.DEV, lock.CHECKOV = runtime, dev, checkov;"
        " sys.exit(lock.main(['write', 'requirements-checkov.txt']))"
    )
    checkov = copies[lock.CHECKOV]
    checkov.write_text("\n".join(lock.pinned_part(lock.CHECKOV)) + "\n")
    completed = subprocess.run(
        [str(lock.CHECKOV_PYTHON), "-c", script]
        + [str(copies[path]) for path in (lock.RUNTIME, lock.DEV, lock.CHECKOV)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert {path: copy.read_text() for path, copy in copies.items()} == {
        path: path.read_text() for path in lock.FILES
    }
