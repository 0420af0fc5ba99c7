"""Mutation audit of session 29's product changes: what the tests written with them left unpinned.

Each test below kills hand-made mutants that the earlier tests let through (named in its
docstring). Every one asserts what a doc or the code's own comment says, not the mutant.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.cosmos.exceptions import CosmosHttpResponseError
from azure.storage.queue import AccountSasPermissions, ResourceTypes, generate_account_sas
from hypothesis import example, given, settings
from hypothesis import strategies as st

from acr_webhook import __main__ as cli
from acr_webhook.config import ConfigurationError, Settings, queue_settings
from acr_webhook.connections import connection_refused
from acr_webhook.queries import page_body
from acr_webhook.reconcile import reconcile_entries, reconcile_webhooks
from acr_webhook.repository import (
    CosmosEventRepository,
    DatabaseHealth,
    provision,
)
from acr_webhook.store import RepositoryUnavailableError, StoreNotFoundError
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.support.properties import DETERMINISTIC
from tests.unit.test_database_health import RecordingClient, RecordingContainer
from tests.unit.test_reconcile import TARGET, ListedHistory

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# Nothing listens on port 1 of the loopback: a connection there is refused at once.
SETTINGS_FIELDS = ("https://127.0.0.1:1/", "a2V5", "acr", "events", None)
REFUSING = Settings(*SETTINGS_FIELDS)

# --- config._check_account_key: decoded as the storage SDK decodes it ----------------------

# Azurite's well-known development key (docs: "Use the Azurite emulator"): no secret.
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _sdk_refusal(key: str) -> ValueError | None:
    """What the storage SDK says of ``key`` when it signs with it (generate_account_sas signs
    as each request is signed), or None when it signs."""
    try:
        generate_account_sas(
            "devstoreaccount1",
            key,
            ResourceTypes(service=True),
            AccountSasPermissions(read=True),
            datetime(2030, 1, 1, tzinfo=UTC),
        )
    except ValueError as error:
        return error
    return None


@pytest.mark.parametrize(
    "key",
    [
        DEV_KEY,
        DEV_KEY[:40] + DEV_KEY[41:],  # a character lost in the middle: the padding stays
        DEV_KEY[:-2],  # the padding lost
        DEV_KEY[:-1],
        DEV_KEY + "a",  # after the padding: the SDK's decoder ignores it
        DEV_KEY[:40] + " " + DEV_KEY[40:],  # pasted with a space, a line break, a no-break
        DEV_KEY[:40] + "\n" + DEV_KEY[40:],  # space: not base64, so the decoder drops them
        DEV_KEY[:40] + "\u00a0" + DEV_KEY[40:],
        DEV_KEY[:40] + "é" + DEV_KEY[41:],
        "=",
    ],
)
@pytest.mark.parametrize("name", ["AccountKey", "accountkey", "ACCOUNTKEY"])
def test_an_account_key_is_refused_exactly_when_the_storage_sdk_cannot_sign_with_it(
    key: str, name: str
) -> None:
    """_check_account_key: "decoded as the storage SDK decodes it to sign each request ...
    Anything else the SDK refuses, it refuses itself". So a key the SDK signs with is never a
    setting error, and one it cannot decode is, giving the decoder's reason. Kills: the key
    decoded with validate=True, or as str (both refuse the pasted space/no-break space, which
    the SDK drops), and the name split at the last "=" (a padded key then goes unchecked)."""
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;{name}={key};"
        "QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;"
    )
    refusal = _sdk_refusal(key)
    if refusal is None:
        settings = queue_settings({"AzureWebJobsStorage": connection})
        assert settings is not None and settings.connection_string == connection
        return
    with pytest.raises(ConfigurationError) as raised:
        queue_settings({"AzureWebJobsStorage": connection})
    message = str(raised.value)
    assert message.startswith("AzureWebJobsStorage: AccountKey")
    assert str(refusal) in message  # why, as the decoder says it
    assert key not in message or len(key) < 2


@pytest.mark.parametrize(
    ("keys", "refused"),
    [
        (f"AccountKey=not-base64;AccountKey={DEV_KEY}", False),  # the last one signs
        (f"AccountKey={DEV_KEY};accountkey={DEV_KEY[:-1]}", True),
        (f"UseDevelopmentStorage=true;AccountKey={DEV_KEY[:-1]}", False),  # Azurite's key signs
    ],
)
def test_only_the_account_key_the_storage_sdk_signs_with_is_checked(
    keys: str, refused: bool
) -> None:
    """The SDK reads a connection string into a dict (the last of a repeated name wins) and,
    with UseDevelopmentStorage=true, signs with Azurite's key whatever AccountKey says."""
    connection = f"{keys};QueueEndpoint=http://127.0.0.1:1/devstoreaccount1"
    if not refused:
        assert queue_settings({"AzureWebJobsStorage": connection}) is not None
        return
    with pytest.raises(ConfigurationError, match="AzureWebJobsStorage: AccountKey"):
        queue_settings({"AzureWebJobsStorage": connection})


# --- queries.page_body: valid Unicode whatever was stored -----------------------------------

# Any text, lone surrogates included (an earlier version stored a body's "\udc00" as is).
_TEXT = st.text(st.characters(exclude_categories=()), max_size=6)
_VALUES = st.recursive(
    st.none() | st.integers() | st.booleans() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=10,
)


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with each code point of the surrogate range as U+FFFD."""
    if isinstance(value, str):
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value


@given(rows=st.lists(st.dictionaries(_TEXT, _VALUES, max_size=4), max_size=3))
@example(rows=[{"userAgent": "a\udc00b\ud800c"}])  # two in one string
@example(rows=[{"tag\ud800": "v1"}])  # in a name
@example(rows=[{"regions": [{"location": "\udfff"}]}])
@settings(DETERMINISTIC, max_examples=40)
def test_a_page_is_valid_unicode_and_otherwise_as_stored(rows: list[dict[str, Any]]) -> None:
    """page_body: "valid Unicode whatever an earlier version stored", each lone surrogate as
    U+FFFD and every other character as stored. Kills: the first lone surrogate only
    replaced (count=1) and the names of a row's fields left as they are."""
    body = page_body("events", rows, "token", None)
    text = json.dumps(body, ensure_ascii=False)
    text.encode("utf-8")  # strict: no lone surrogate is left anywhere
    assert body["events"] == [_without_lone_surrogates(row) for row in rows]
    assert body["continuation"] == "token"


# --- connections.connection_refused, repository._unreachable: a refusal is not remembered --


def _refused_by_azure_core() -> ServiceRequestError:
    """A refused connection as the SDK's transport raises it (port 1: refused at once)."""
    with RequestsTransport() as transport:
        try:
            transport.send(HttpRequest("GET", "http://127.0.0.1:1/"))
        except ServiceRequestError as error:
            return error
    raise AssertionError("port 1 of the loopback answered")


def _chained(link: str, cause: BaseException) -> AzureError:
    """An SDK error that holds ``cause`` through ``link`` only."""
    if link == "inner_exception":
        return ServiceRequestError("connect failed", error=cause)
    if link == "__cause__":  # `raise ... from cause`, where cause is no longer being handled
        error = ServiceRequestError("connect failed")
        error.__cause__ = cause
        return error
    try:  # raised while handling it: requests' ConnectionError holds urllib3's so
        try:
            raise cause
        except (OSError, AzureError):
            raise ServiceRequestError("connect failed") from None
    except ServiceRequestError as error:
        assert error.__cause__ is None and error.__context__ is cause
        return error
    raise AssertionError("unreachable")


@pytest.mark.parametrize("link", ["inner_exception", "__cause__", "__context__"])
def test_a_refusal_is_found_through_each_link_of_the_chain(link: str) -> None:
    """connection_refused: "whether a refused connection is among error's causes", the SDK's
    inner_exception and Python's __cause__ and __context__ alike, two links deep. Kills each
    link dropped, and only the top error looked at."""
    error = _chained(link, _chained(link, ConnectionRefusedError(111, "Connection refused")))
    assert connection_refused(error)


@pytest.mark.parametrize(
    "cause",
    [
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
        BrokenPipeError(32, "Broken pipe"),
    ],
)
def test_other_connection_failures_are_no_refusal(cause: OSError) -> None:
    """Only a refusal is quick: a reset, a timeout or a broken pipe is remembered as before.
    Kills ConnectionRefusedError widened to ConnectionError or OSError."""
    assert not connection_refused(_chained("inner_exception", cause))
    health = DatabaseHealth()
    repository = CosmosEventRepository(REFUSING, health=health)  # nothing is contacted
    error = repository._failure(ServiceResponseError("x", error=cause))
    assert type(error) is RepositoryUnavailableError
    with pytest.raises(RepositoryUnavailableError):
        health.check()


def test_an_error_chain_with_a_loop_is_looked_through_once() -> None:
    """Kills the `seen` check dropped: the walk would never end. (Run on a thread so that the
    mutant fails rather than hangs; the real walk ends in microseconds.)"""
    first, second = ServiceRequestError("a"), ServiceRequestError("b")
    first.__context__, second.__context__ = second, first
    found: list[bool] = []
    walker = threading.Thread(target=lambda: found.append(connection_refused(first)), daemon=True)
    walker.start()
    walker.join(30)
    assert found == [False]


def test_a_refused_write_is_not_remembered_and_a_failed_one_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A create refused as the SDK raises it is no outage to remember; one that timed out is.
    Kills _failure remembering every unreachable database, as before a8abfa0."""

    class Failing(RecordingContainer):
        error: AzureError

        def create_item(self, document: object, **options: Any) -> None:
            raise self.error

    container = Failing()
    monkeypatch.setattr(
        "acr_webhook.repository.create_cosmos_client", lambda *_a, **_k: RecordingClient(container)
    )
    document = {"id": "x", "repository": "r", "action": "push"}
    for error, remembered in [
        (_refused_by_azure_core(), False),
        (ServiceResponseError("read timed out", error=TimeoutError("timed out")), True),
    ]:
        container.error = error
        health = DatabaseHealth()
        with pytest.raises(RepositoryUnavailableError):
            CosmosEventRepository(REFUSING, health=health).add(document)
        if remembered:
            with pytest.raises(RepositoryUnavailableError):
                health.check()
        else:
            health.check()


def test_a_client_build_refused_by_the_database_is_not_remembered() -> None:
    """The client is built on the first write, which reads the account: refused there (the
    real SDK, port 1), the next write tries again. Kills _LazyContainer._build remembering
    every failure, as before a8abfa0."""
    health = DatabaseHealth()
    repository = CosmosEventRepository(REFUSING, health=health)
    document = {"id": "x", "repository": "r", "action": "push"}
    for _ in range(2):
        with pytest.raises(RepositoryUnavailableError, match="refused"):
            repository.add(document)
        health.check()


# --- repository._failure: a missing container is StoreNotFoundError, not an outage ---------


@pytest.mark.parametrize(
    ("sub_status", "raised"),
    [
        (None, StoreNotFoundError),
        (0, StoreNotFoundError),
        (1003, StoreNotFoundError),  # the owner resource (database or container) does not exist
        (1002, RepositoryUnavailableError),  # a session not yet readable: not "run provision"
    ],
)
def test_a_writes_404_for_a_missing_container_is_store_not_found_and_not_remembered(
    sub_status: int | None, raised: type[Exception]
) -> None:
    """_failure: "The container or its database is missing: answered at once, so nothing to
    remember"; 1002 "passes" (_MISSING_SUB_STATUS). Kills the 404 branch dropped, its
    sub-status check dropped or inverted, a plain RepositoryUnavailableError for it, and it
    remembered."""
    health = DatabaseHealth()
    repository = CosmosEventRepository(REFUSING, health=health)  # nothing is contacted
    answer = CosmosHttpResponseError(status_code=404, message="NotFound", sub_status=sub_status)  # type: ignore[no-untyped-call]
    error = repository._failure(answer)
    assert type(error) is raised
    if raised is StoreNotFoundError:
        health.check()


class MissingStore(FakeEventRepository):
    """A store whose container does not exist: every write is answered 404."""

    def add(self, document: dict[str, Any]) -> bool:
        self.add_calls += 1
        raise StoreNotFoundError("CosmosResourceNotFoundError: 404", cause="404")


def test_the_outcome_says_the_store_is_missing_only_when_it_is() -> None:
    """ReconcileOutcome.store_missing: "The store answered that the database or container
    does not exist". Kills it always False, always True, True by default, and `unavailable`
    left None for it (the timer stops on `unavailable`)."""
    entries = [history_entry(payloads.with_new_id(payloads.PUSH)) for _ in range(2)]

    def outcome(repository: FakeEventRepository) -> tuple[bool, str | None, int]:
        result = reconcile_entries(entries, repository, received_at=NOW, report_invalid=print)
        return result.store_missing, result.unavailable, repository.add_calls

    assert outcome(FakeEventRepository()) == (False, None, 2)
    unreachable = FakeEventRepository()
    unreachable.unavailable = True
    assert outcome(unreachable) == (False, "fake outage", 1)
    assert outcome(MissingStore()) == (True, "CosmosResourceNotFoundError: 404", 1)


def test_the_timer_stops_at_a_missing_store_as_at_an_unreachable_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """reconcile_webhooks "stops at the first webhook whose run found the database
    unreachable": a missing container is answered for every webhook alike."""
    entries = [history_entry(payloads.with_new_id(payloads.PUSH))]
    history = ListedHistory({"acrwebhook": entries, "acrwebhook2": entries})
    outcomes = reconcile_webhooks(TARGET, MissingStore(), history, now=lambda: NOW)
    assert list(outcomes) == ["acrwebhook"]
    assert history.asked == ["acrwebhook"]
    stopped = caplog.records[-1]
    assert stopped.levelno == logging.ERROR
    assert "does not exist" in stopped.getMessage()  # a setting, not "database unavailable"


def test_reconcile_into_a_missing_container_is_exit_2_naming_both_after_the_summary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs: exit 2 is a setting to fix; the summary line is still printed (stdout, last).
    Kills the exit 2 dropped (exit 1), the 'run again' message kept for it, and the summary
    left out."""
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("COSMOS_CONTAINER", "evnets")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _s: MissingStore())
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps([history_entry(payloads.with_new_id(payloads.PUSH))]))

    code = cli.main(["reconcile", "--events-file", str(events_file)])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == "recorded=0 already=0 skipped=0 invalid=0\n"
    assert "database 'acr' or container 'evnets' does not exist at https://127.0.0.1:1/" in err
    assert "run provision" in err
    assert "run reconcile again" not in err


# --- repository.provision: the container's partition key is /repository, nothing else ------


class ExistingContainer:
    """The client, database and container at once: the container exists with ``properties``;
    replaces are recorded."""

    def __init__(self, properties: dict[str, Any]) -> None:
        self.properties = properties
        self.replaced: list[dict[str, Any]] = []

    def create_database_if_not_exists(self, _name: str) -> ExistingContainer:
        return self

    def create_container_if_not_exists(self, _name: str, **_options: Any) -> ExistingContainer:
        return self

    def read(self) -> dict[str, Any]:
        return self.properties

    def replace_container(self, _container: object, **options: Any) -> None:
        self.replaced.append(options)


@pytest.mark.parametrize(
    ("partition_key", "named"),
    [
        (
            {"paths": ["/repository", "/tag"], "kind": "MultiHash", "version": 2},
            "/repository, /tag",
        ),
        (
            {"paths": ["/tag", "/repository"], "kind": "MultiHash", "version": 2},
            "/tag, /repository",
        ),
        ({"paths": ["/id"], "kind": "Hash"}, "/id"),
        (None, "(none)"),
    ],
)
def test_provision_refuses_any_other_partition_key_and_changes_nothing(
    partition_key: dict[str, Any] | None, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """provision: "refuse the container rather than say 'ready'" unless its key is exactly
    /repository: a hierarchical key that starts with it too (reads by repository name one
    level of it), and one the container's properties do not give. Refused before the
    retention is applied. Kills the check by `in` or by the first path, a missing key read as
    a KeyError or joined as None, and the check made only when the retention is unchanged."""
    properties: dict[str, Any] = {"id": "events", "defaultTtl": None}
    if partition_key is not None:
        properties["partitionKey"] = partition_key
    existing = ExistingContainer(properties)
    monkeypatch.setattr("acr_webhook.repository.create_cosmos_client", lambda *_a: existing)
    settings = Settings(*SETTINGS_FIELDS, retention_days=30)

    with pytest.raises(ConfigurationError) as refused:
        provision(settings)

    message = str(refused.value)
    assert f"container 'events' exists with partition key {named};" in message
    assert "the app needs /repository" in message
    assert existing.replaced == []


def test_provision_takes_a_container_partitioned_by_repository() -> None:
    """The one key the check lets through; the retention is then applied as before."""
    existing = ExistingContainer(
        {"id": "events", "partitionKey": {"paths": ["/repository"], "kind": "Hash"}}
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("acr_webhook.repository.create_cosmos_client", lambda *_a: existing)
        provision(
            Settings(REFUSING.cosmos_endpoint, "a2V5", "acr", "events", None, retention_days=1)
        )
    assert [options["default_ttl"] for options in existing.replaced] == [86400]
