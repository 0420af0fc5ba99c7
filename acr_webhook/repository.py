"""Where event documents are kept: the Cosmos DB implementation of ``store``'s EventRepository
and EventReader."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import requests
from azure.core import MatchConditions
from azure.core.exceptions import AzureError
from azure.core.pipeline.transport import RequestsTransport
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos.documents import ConnectionPolicy, SSLConfiguration
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosClientTimeoutError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from acr_webhook.config import (
    COSMOS_POOL_SIZE,
    QUERY_BUDGET_S,
    ConfigurationError,
    Settings,
    proxy_configured,
)
from acr_webhook.connections import closed_without_answer, connection_refused
from acr_webhook.identity import default_credential
from acr_webhook.models import (
    ENRICHMENT_FIELDS,
    EXACT_FILTERS,
    FILLED_IN_BY,
    EventQuery,
    Person,
    StoredEvent,
    about,
)
from acr_webhook.store import (
    DocumentRejectedError,
    RepositoryUnavailableError,
    StoreNotFoundError,
    StorePartitionFullError,
    StoreSetUpError,
    StoreThrottledError,
    failure_kind,
    one_line,
)
from acr_webhook.tls import verify_tls

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.cosmos import ContainerProxy


log = logging.getLogger(__name__)

PARTITION_KEY_PATH = "/repository"

# ACR waits 5 s for an answer and never retries. These bound every Cosmos call to about 2 s,
# measured against a frozen local server: a new connection waits the connection timeout (the
# TLS handshake counts as connecting) and a pooled one the read timeout, so both must be short,
# and a refused connection must not be retried. Throttling (429) gets one short retry at most.
# `timeout` caps client creation, whose account lookup otherwise retries for about 12 s.
CLIENT_TIMEOUTS: dict[str, Any] = {
    "timeout": 2,
    "connection_timeout": 1,
    "read_timeout": 2,
    "retry_total": 0,
    "retry_throttle_total": 1,
    "retry_throttle_backoff_max": 1,
}
# Event Grid waits 30 s and redelivers anything but a 2xx, so its writes ride out throttling
# (429) for longer: up to 4 throttle retries, waiting at most 3 s in all; still throttled after
# that, eventgrid.py tries the write again until the batch budget runs out (then a 503).
EVENTGRID_WRITE_OPTIONS: dict[str, Any] = {
    **CLIENT_TIMEOUTS,
    "timeout": 5,
    "retry_throttle_total": 4,
    "retry_throttle_backoff_max": 3,
}
# Provisioning is run by hand, off the request path; an emulator may take seconds per container.
PROVISIONING_TIMEOUTS: dict[str, Any] = {"timeout": 60, "connection_timeout": 5, "read_timeout": 30}


# Reads serve people (HTTP GET, CLI), not ACR, so they may take longer than a write, but stay
# bounded: a stuck database must give a 503 or an error message, not a hung request. `timeout`
# bounds each operation (client creation, query plan, each page); config.QUERY_BUDGET_S a page.
QUERY_TIMEOUTS: dict[str, Any] = {
    "timeout": 5,
    "connection_timeout": 2,
    "read_timeout": 4,
    "retry_total": 0,
    "retry_throttle_total": 3,
    "retry_throttle_backoff_max": 2,
}


# After a failure to reach the database, writers go straight to the fallback for this long
# instead of each spending ~2 s on a connection that will fail too; then it is tried again.
UNAVAILABLE_MEMORY_S = 5.0
# Answers that say the document itself is refused, whatever the time: trying again cannot help.
# (408, 429 and 5xx are about the service; 401/403/404 about set-up, which can be fixed.)
_REFUSED_STATUS = frozenset({400, 413, 414})
# Answers that refuse the app's set-up, not the request: what a person must fix. (A 403 is also
# the account's firewall, or a new role assignment not applied yet, which takes minutes.)
_SET_UP_FIXES = {
    401: "database refused the credentials: check COSMOS_KEY, or the identity's token",
    403: "database refused the app's identity: give it its data role on the account (the app:"
    " main.bicep's 'acr-webhook app' role; a person: Cosmos DB Built-in Data Contributor; a new"
    " assignment takes minutes), and check the account's network rules",
}
# 403/5300: an operation that data-plane role assignments never cover (creating or changing a
# container, `provision`), asked with an Entra ID token; the data role is no help. Kept apart
# from _SET_UP_FIXES, whose reasons a running app logs and the alerts quote: only provision
# meets this one.
_NOT_A_DATA_OPERATION_SUB_STATUS = 5300
_NOT_A_DATA_OPERATION_FIX = (
    "database refuses creating or changing a container to an Entra ID identity, whatever its "
    "data role: infra/main.bicep makes and sets the container (or az cosmosdb sql container "
    "create/update)"
)
# Answers to try again later, from a database that is reachable: not remembered as an outage.
_ANSWERED_RETRY_STATUS = frozenset({429, 449})
# Cosmos DB's gateway decodes an item's URL path once more than the SDK encodes it, and the
# SDK signs the id as given: a read or replace of an id holding "%" and two hex digits is
# refused as a wrong key (401; azure-sdk-for-python#24327), which is no outage. Creating it
# is fine (that URL ends at the container), so such an event is stored but never filled in.
_NOT_ADDRESSABLE_ID = re.compile(r"%[0-9A-Fa-f]{2}")
# A 404's sub-statuses that mean the container or its database is missing (1003: the owner
# resource does not exist); 1002, a session not yet readable in a region, passes.
_MISSING_SUB_STATUS = frozenset({None, 0, 1003})


class _Failure(NamedTuple):
    """A remembered failure, kept as one value so that a reader never pairs one failure's
    reason with another's end or kind."""

    until: float
    reason: str
    cause: str
    set_up: bool  # a set-up the database refuses, not an outage


# A 403's sub-status when the item's logical partition (one repository) holds its 20 GB.
_PARTITION_FULL_SUB_STATUS = 1014
PARTITION_FULL = (
    "the repository's partition is full (20 GB): set RETENTION_DAYS or delete its old events, "
    "or ask Azure support to raise the limit"
)


class DatabaseHealth:
    """Remembers for a short while that the database could not be reached, for every writer
    in the process (webhook, Event Grid, replay): concurrent and following requests then answer
    from the fallback at once instead of queueing up behind connection attempts that fail."""

    def __init__(
        self,
        memory_s: float = UNAVAILABLE_MEMORY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._memory_s = memory_s
        self._clock = clock
        self._failure: _Failure | None = None
        # Reading the clock and storing the end are one step: otherwise a failure read earlier
        # but stored later would cut short the memory of a later one.
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raises RepositoryUnavailableError while a recent failure is remembered."""
        failure = self._failure  # one read: the failure stored last, whole
        if failure is None or self._clock() >= failure.until:
            return
        if failure.set_up:  # said as it was: the same cause, so its decisions group as one
            raise StoreSetUpError(f"{failure.reason} (refused moments ago)", cause=failure.cause)
        raise RepositoryUnavailableError(
            f"database unavailable moments ago ({failure.reason})",
            cause=f"database unavailable moments ago ({failure.cause})",
        )

    def failed(self, reason: str, cause: str | None = None, *, set_up: bool = False) -> None:
        """Remember a failure: ``reason`` says what happened, ``cause`` (by default the same)
        names its kind, as RepositoryUnavailableError's do; ``set_up``: a StoreSetUpError's."""
        with self._lock:
            until = self._clock() + self._memory_s
            self._failure = _Failure(until, reason, reason if cause is None else cause, set_up)

    def succeeded(self) -> None:
        if self._failure is not None:  # every write succeeds: no lock unless there is a memory
            with self._lock:
                self._failure = None


def events_sql(query: EventQuery, max_items: int) -> tuple[str, list[dict[str, Any]]]:
    """The Cosmos DB SQL and parameters for ``find_events``.

    One ORDER BY property only: a second one (a tie-breaker) would need a composite index. Every
    filter is served by the range index of its path; ``id`` is always indexed.
    """
    conditions: list[str] = []
    parameters: list[dict[str, Any]] = [{"name": "@limit", "value": max_items}]
    for name in EXACT_FILTERS:
        value = getattr(query, name)
        if value is not None:
            conditions.append(f"c.{name} = @{name}")
            parameters.append({"name": f"@{name}", "value": value})
    if query.since is not None:
        conditions.append("c.timestamp >= @since")
        parameters.append({"name": "@since", "value": query.since})
    if query.until is not None:
        conditions.append("c.timestamp < @until")
        parameters.append({"name": "@until", "value": query.until})
    if query.after is not None:
        conditions.append("c.timestamp <= @after")
        parameters.append({"name": "@after", "value": query.after.timestamp})
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    # Only fixed fragments above are joined into the text; every value is a @parameter.
    sql = f"SELECT TOP @limit * FROM c{where} ORDER BY c.timestamp DESC"  # noqa: S608
    return sql, parameters


def without_system_fields(item: dict[str, Any]) -> dict[str, Any]:
    """The document as written: Cosmos DB adds _rid, _self, _etag, _attachments, _ts."""
    return {key: value for key, value in item.items() if not key.startswith("_")}


def describe_error(error: AzureError) -> str:
    """One line for logs and answers: the SDK's kind of failure and its message."""
    return one_line(f"{type(error).__name__}: {error.message}")


def unavailable(error: AzureError) -> RepositoryUnavailableError:
    """The store's failure for an SDK error: its words as the message, its kind as the cause;
    for a set-up the database refuses (401, 403), what to fix first."""
    status = error.status_code if isinstance(error, CosmosHttpResponseError) else None
    fix = _SET_UP_FIXES.get(status) if status is not None else None
    if status == 403 and getattr(error, "sub_status", None) == _NOT_A_DATA_OPERATION_SUB_STATUS:
        fix = _NOT_A_DATA_OPERATION_FIX
    if fix is not None:
        cause = f"{fix} ({failure_kind(error)})"
        return StoreSetUpError(f"{cause}: {describe_error(error)}", cause=cause)
    return RepositoryUnavailableError(describe_error(error), cause=failure_kind(error))


STORE_MISSING = (
    "database or container missing: run provision, or check COSMOS_DATABASE and COSMOS_CONTAINER"
)


def _missing(error: AzureError) -> StoreNotFoundError:
    cause = f"{STORE_MISSING} ({failure_kind(error)})"
    return StoreNotFoundError(f"{cause}: {describe_error(error)}", cause=cause)


def _read_failure(error: AzureError) -> RepositoryUnavailableError:
    """A query's failure: the container or its database missing (a 404 with those
    sub-statuses; a query meets no other 404), else as :func:`unavailable` says."""
    if isinstance(error, CosmosResourceNotFoundError) and error.sub_status in _MISSING_SUB_STATUS:
        return _missing(error)
    return unavailable(error)


def _unreachable(error: AzureError, health: DatabaseHealth) -> RepositoryUnavailableError:
    """The store's failure for ``error``, remembered by ``health`` unless the connection was
    refused. A refusal takes milliseconds, so remembering it spares no request a wait, and it
    is what a restarting database gives until it listens: the next event is tried, and stored
    once the database is back (issue 2's CONTRACT), not answered 503 for 5 s more."""
    failure = unavailable(error)
    if not connection_refused(error):
        health.failed(str(failure), failure.cause, set_up=isinstance(failure, StoreSetUpError))
    return failure


def _within(left: float, options: Mapping[str, Any]) -> dict[str, Any]:
    """Timeouts for one SDK call that end it within ``left`` seconds: its ``timeout`` (which the
    SDK checks between tries and caps only the wait to connect by, never the wait for an
    answer) and the waits to connect and for an answer, each never longer than the client's
    own (``options``)."""
    return {
        "timeout": left,
        "connection_timeout": min(left, float(options["connection_timeout"])),
        "read_timeout": min(left, float(options["read_timeout"])),
    }


_Answer = TypeVar("_Answer")


def _on_time(
    call: Callable[..., _Answer],
    timeouts: Callable[[], dict[str, Any]],
    about: Mapping[str, Any] | None = None,
) -> _Answer:
    """``call(**timeouts())``, made once more (never more) when the first try failed for a
    reason that a second one gets past. The second call gets what is left of the bound
    (``timeouts`` raises once nothing is). ``about``: the log's extra.

    - The SDK's ``timeout`` ran out sooner than it can have. azure-cosmos measures it on the
      wall clock (``time.time()``, 4.17.1), also after a call that succeeded: a clock stepped
      forward by a time sync or a resumed VM made a stored event a 503 and a remembered
      outage. The step is behind the second call.
    - The connection was closed without an answer (connections.closed_without_answer). Every
      call made here may be made twice: a create that landed meets its own document (409), a
      replace its changed ETag (412), and reads change nothing.
    """
    options = timeouts()
    started = time.monotonic()
    try:
        return call(**options)
    except CosmosClientTimeoutError:
        if time.monotonic() - started >= options["timeout"]:
            raise
        log.warning(
            "database client's timeout ran out early (the wall clock moved): trying once more",
            extra=about,
        )
    except AzureError as error:  # a 409, a 404 and the like among them: raised as they are
        if not closed_without_answer(error):
            raise
        log.info(
            "database closed the connection without an answer: trying once more on a new one",
            extra=about,
        )
    return call(**timeouts())


def create_transport() -> RequestsTransport:
    """The HTTP transport of every Cosmos client: a connection for each thread that may write
    at once (config.COSMOS_POOL_SIZE), and no per-request environment lookups.

    requests re-reads proxy variables and ~/.netrc on every call while ``trust_env`` is on:
    13% of a write's CPU, measured. It stays on only where a proxy is configured. (The CA
    bundle requests would also read there is the client's ``connection_verify``: tls.py.)
    """
    session = requests.Session()
    session.trust_env = proxy_configured()
    # The SDK retries by itself (CLIENT_TIMEOUTS); urllib3 must not retry underneath it.
    no_retries = Retry(total=False, redirect=False, raise_on_status=False)
    adapter = HTTPAdapter(pool_maxsize=COSMOS_POOL_SIZE, max_retries=no_retries)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return RequestsTransport(session=session, session_owner=True)


LOOKUP_RETRIES_VARIABLE = "AZURE_COSMOS_HEALTH_CHECK_MAX_RETRIES"


def create_cosmos_client(
    settings: Settings, timeouts: dict[str, Any] = CLIENT_TIMEOUTS
) -> CosmosClient:
    """Key auth when COSMOS_KEY is set (local server, emulator), otherwise Microsoft Entra ID."""
    credential: str | TokenCredential = settings.cosmos_key or default_credential()
    verify = verify_tls(settings.cosmos_endpoint)
    # azure-cosmos sends a CA bundle on with its requests only from an SSLConfiguration; given
    # one without a bundle, it would verify even the loopback server it must not.
    bundle: dict[str, Any] = {"ssl_config": SSLConfiguration()} if isinstance(verify, str) else {}
    # azure-cosmos 4.17.1 tries a failed account lookup up to 3 more times
    # (HealthCheckRetryPolicy), the first with a 5 s read timeout of its own whatever the
    # client's: a first connection dropped at once, then no answer, made a cold start's client
    # take 5.1 s where ACR waits 5 s. It reads the count from the environment only. After start
    # the SDK refreshes the account on a thread of its own, off every request's path.
    os.environ.setdefault(LOOKUP_RETRIES_VARIABLE, "0")
    return CosmosClient(
        settings.cosmos_endpoint,
        credential=credential,
        connection_verify=verify,
        **bundle,
        # Writes need no echo of the item; this saves bandwidth on every event.
        no_response_on_write=True,
        transport=create_transport(),
        connection_policy=_policy_within(timeouts),
        **timeouts,
    )


def _policy_within(timeouts: Mapping[str, Any]) -> ConnectionPolicy:
    """A policy whose account lookups and recovery reads keep to ``timeouts`` too.

    The SDK gives account lookups 3 s timeouts of their own (DBAReadTimeout,
    DBAConnectionTimeout), whatever the client's, so a cold start against a database that
    accepts connections and never answers spent 3 s there: the one lookup may wait for an
    answer the whole ``timeout`` (and is not tried again: :func:`create_cosmos_client`). A
    request that tries a region again after an outage (circuit breaker on, more than one
    region) waits RecoveryReadTimeout, 6 s, in place of any read timeout the call gives: it
    gets the client's read timeout."""
    policy = ConnectionPolicy()
    policy.DBAReadTimeout = timeouts.get("timeout", policy.DBAReadTimeout)
    policy.DBAConnectionTimeout = timeouts.get("connection_timeout", policy.DBAConnectionTimeout)
    policy.RecoveryReadTimeout = timeouts.get("read_timeout", policy.RecoveryReadTimeout)
    return policy


class _LazyContainer:
    """A container client built on first use with these options, then reused.

    One request builds it; requests that arrive meanwhile wait for that one build at most
    (bounded by its own ``timeout``), never in a queue of builds. A failed build is remembered
    in ``health``, so the waiters and the requests that follow answer at once, and it is tried
    again once the memory expires: an app started while the database was unreachable recovers
    without a restart.
    """

    def __init__(self, settings: Settings, options: dict[str, Any], health: DatabaseHealth):
        self._settings = settings
        self._options = options
        self._health = health
        self._container: ContainerProxy | None = None
        self._build_done: threading.Event | None = None
        self._lock = threading.Lock()

    def get(self, deadline: float) -> ContainerProxy:
        """The container; a request that finds a build under way waits for it until its own
        ``deadline`` (time.monotonic) at most."""
        container = self._container
        if container is not None:
            return container
        building = threading.Event()
        with self._lock:
            container, in_flight = self._container, self._build_done
            if container is None and in_flight is None:
                self._build_done = building
        if container is not None:  # built between the first look and the lock
            return container
        if in_flight is None:
            return self._build(building)
        wait_s = min(float(self._options.get("timeout", 2)) + 1, deadline - time.monotonic())
        in_flight.wait(max(wait_s, 0.0))
        if self._container is None:
            self._health.check()
            raise RepositoryUnavailableError("database client is not ready")
        return self._container

    def _build(self, building: threading.Event) -> ContainerProxy:
        """Builds the client; ``building`` is set once it is built or failed, which ends the
        waiters' wait."""
        try:
            client = create_cosmos_client(self._settings, self._options)
            database = client.get_database_client(self._settings.cosmos_database)
            container = database.get_container_client(self._settings.cosmos_container)
            self._container = container  # before the waiters are woken: they read it at once
        except AzureError as error:
            raise _unreachable(error, self._health) from error
        finally:
            with self._lock:
                self._build_done = None
            building.set()
        return container


def _no_call_options() -> Mapping[str, Any]:
    return {}


# What tells two events apart whatever the route: one id with other values is not the same event.
_WHAT_HAPPENED = ("action", "tag", "digest")


def _another_event(stored: Mapping[str, Any], document: dict[str, Any]) -> bool:
    """Whether ``document``'s id is stored for another event, logged if so: it stays a duplicate
    (the id is the idempotency key), but an id used twice is a sender's fault to be seen."""
    differ = [name for name in _WHAT_HAPPENED if stored.get(name) != document.get(name)]
    if differ:
        log.warning(
            "event=%r already stored with another %s: the stored event is kept",
            document["id"],
            " and ".join(differ),
            extra=about(document),
        )
    return bool(differ)


class CosmosEventRepository:
    """Cosmos DB implementation. Writes and reads each get a client, created on first use:
    reads use their own (QUERY_TIMEOUTS), built only when something reads, so writes keep
    their ~2 s bound. ``health`` is shared by every writer of the process (runtime.py).
    ``call_options``, asked before each write, gives extra keywords for its SDK call (runtime.py
    passes telemetry's per-call tracing decision)."""

    def __init__(
        self,
        settings: Settings,
        write_options: dict[str, Any] = CLIENT_TIMEOUTS,
        health: DatabaseHealth | None = None,
        call_options: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self._health = DatabaseHealth() if health is None else health
        self._call_options = call_options or _no_call_options
        # The bound of a whole add(): a duplicate's fill-in gets what the create left of it.
        self._write_budget_s = float(write_options["timeout"])
        self._write_options = write_options
        self._writes = _LazyContainer(settings, write_options, self._health)
        self._reads = _LazyContainer(settings, QUERY_TIMEOUTS, DatabaseHealth())

    def add(self, document: dict[str, Any]) -> bool:
        self._health.check()
        deadline = time.monotonic() + self._write_budget_s
        container = self._writes.get(deadline)
        try:
            # What building the client on a cold start left of the bound, not a whole one more.
            _on_time(
                partial(container.create_item, document, **self._call_options()),
                lambda: self._left_of(deadline),
                about(document),
            )
        except CosmosResourceExistsError:
            if document.get("source") in FILLED_IN_BY:
                self._fill_in(container, document, deadline)
            self._health.succeeded()  # it answered: a duplicate proves it reachable as well
            return False
        except AzureError as error:
            raise self._failure(error) from error
        except ValueError as error:  # the SDK's own check of the id, before anything is sent
            raise DocumentRejectedError(f"refused by the database client: {error}") from error
        self._health.succeeded()
        return True

    def _left_of(self, deadline: float) -> dict[str, Any]:
        """Timeouts for one SDK call that end it by ``deadline``, its wait for an answer never
        longer than the client's own; raises RepositoryUnavailableError once the deadline has
        passed. (The SDK's own ``timeout`` does not cut a wait for an answer short.)"""
        left = deadline - time.monotonic()
        if left <= 0:
            raise RepositoryUnavailableError(
                "the write's time ran out before the database answered"
            )
        return _within(left, self._write_options)

    def _fill_in(
        self, container: ContainerProxy, document: dict[str, Any], deadline: float
    ) -> None:
        """Add to the stored document the enrichment fields it lacks and ``document`` has.

        Only a duplicate that carries such fields costs a read; a write only when something is
        missing. The ETag condition keeps a concurrent fill-in from being overwritten: on a
        conflict the stored document is read again and compared anew. A stored document that is
        gone by then (expired by its time to live just after the conflict) has nothing left to
        fill in: the event stays a duplicate, and the database is not taken for unreachable.
        Every call gets only what is left of the write's bound (``deadline``).
        """
        offered = {name: document[name] for name in ENRICHMENT_FIELDS if document.get(name)}
        if not offered:
            return
        if _NOT_ADDRESSABLE_ID.search(document["id"]):
            log.warning(
                "event=%r id has a %%XX sequence, which Cosmos DB cannot read back by id: "
                "%s not filled in",
                document["id"],
                ", ".join(sorted(offered)),
                extra=about(document),
            )
            return
        try:
            # A changed ETag means another writer's fill-in landed, which added at least one
            # field: one more round than there are fields always finishes.
            for _ in range(len(ENRICHMENT_FIELDS) + 1):
                stored = _on_time(
                    partial(
                        container.read_item, document["id"], partition_key=document["repository"]
                    ),
                    lambda: self._left_of(deadline),
                    about(document),
                )
                if _another_event(stored, document):
                    return  # its fields are another event's: nothing of it is filled in
                missing = {name: v for name, v in offered.items() if stored.get(name) is None}
                if not missing:
                    return
                try:
                    _on_time(
                        partial(
                            container.replace_item,
                            stored["id"],
                            {**without_system_fields(stored), **missing},
                            etag=stored["_etag"],
                            match_condition=MatchConditions.IfNotModified,
                        ),
                        lambda: self._left_of(deadline),
                        about(document),
                    )
                except CosmosAccessConditionFailedError:
                    continue
                log.info(
                    "event=%r filled in %s on the stored document",
                    document["id"],
                    ", ".join(sorted(missing)),
                    extra=about(document),
                )
                return
        except CosmosResourceNotFoundError:
            log.info(
                "event=%r stored document gone before its fields were filled in",
                document["id"],
                extra=about(document),
            )
            return
        except AzureError as error:
            raise self._failure(error) from error
        raise RepositoryUnavailableError("stored document kept changing while being filled in")

    def _failure(self, error: AzureError) -> Exception:
        """The error to raise for a failed write; remembers an unreachable database."""
        status = error.status_code if isinstance(error, CosmosHttpResponseError) else None
        if status in _REFUSED_STATUS:
            return DocumentRejectedError(
                f"refused by the database ({status}): {error.message}",
                cause=f"refused by the database ({failure_kind(error)})",
            )
        if status in _ANSWERED_RETRY_STATUS:
            # Throttled (429) or asked to retry a conflicting write (449): the database
            # answered, so this is no outage to remember, and the next request may get through.
            return StoreThrottledError(describe_error(error), cause=failure_kind(error))
        if status == 403 and getattr(error, "sub_status", None) == _PARTITION_FULL_SUB_STATUS:
            # One repository's partition, not the app's access: the rest of the database takes
            # writes, so nothing is remembered; the event is parked until room is made.
            cause = f"{PARTITION_FULL} ({failure_kind(error)})"
            return StorePartitionFullError(f"{cause}: {describe_error(error)}", cause=cause)
        if status == 404 and getattr(error, "sub_status", None) in _MISSING_SUB_STATUS:
            # The container or its database is missing: answered at once, so nothing to
            # remember, and the next write after `provision` gets through.
            return _missing(error)
        return _unreachable(error, self._health)

    def find_events(
        self, query: EventQuery, max_items: int, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        sql, parameters = events_sql(query, max_items)
        # With the partition key the SDK sends the query to that one partition only.
        scope: dict[str, Any] = (
            {"partition_key": query.repository}
            if query.single_partition
            else {"enable_cross_partition_query": True}
        )
        page_deadline = time.monotonic() + QUERY_BUDGET_S if deadline is None else deadline

        def page_left() -> dict[str, Any]:
            # Given what is left of the page's time, not each call's own: the SDK's `timeout`
            # does not cut a wait for an answer short, so the read timeout is cut too.
            left = page_deadline - time.monotonic()
            if left <= 0:  # an earlier read of the same page used it up
                raise RepositoryUnavailableError(f"no answer within {QUERY_BUDGET_S:g} s")
            return _within(left, QUERY_TIMEOUTS)

        def read(**timeouts: Any) -> list[dict[str, Any]]:
            documents: list[dict[str, Any]] = []
            items = self._reads.get(page_deadline).query_items(
                query=sql,
                parameters=parameters,
                max_item_count=max_items,
                **timeouts,
                **scope,
            )
            for item in items:
                documents.append(without_system_fields(item))
                if len(documents) >= max_items:
                    break
                if time.monotonic() > page_deadline:
                    raise RepositoryUnavailableError(f"no answer within {QUERY_BUDGET_S:g} s")
            return documents

        try:
            return _on_time(read, page_left)
        except AzureError as error:
            raise _read_failure(error) from error


def _another_partition_key(settings: Settings, properties: Mapping[str, Any]) -> str | None:
    """What is wrong with a container whose partition key is not the app's, or None."""
    paths = properties.get("partitionKey", {}).get("paths")
    if paths == [PARTITION_KEY_PATH]:
        return None
    return (
        f"container '{settings.cosmos_container}' exists with partition key "
        f"{', '.join(paths or ['(none)'])}; the app needs {PARTITION_KEY_PATH}"
    )


def person_sql(person: Person) -> tuple[str, list[dict[str, Any]]]:
    """The query for every stored event that names ``person`` (models.Person.recorded_forms), in
    any case: a sign-in name, an e-mail address and an IPv6 address's hex digits are
    case-insensitive, and ACR records them as the client sent them. LOWER uses no index: the
    query reads every document, once, which a command run by hand can afford."""
    field = person.field
    values, prefixes = person.recorded_forms()
    parameters: list[dict[str, Any]] = []
    conditions = []
    for number, value in enumerate(values):
        conditions.append(f"LOWER(c.{field}) = @value{number}")
        parameters.append({"name": f"@value{number}", "value": value})
    for number, prefix in enumerate(prefixes):
        conditions.append(f"STARTSWITH(LOWER(c.{field}), @prefix{number})")
        parameters.append({"name": f"@prefix{number}", "value": prefix})
    # The field is one of two literal names (models.PersonField); the values are @parameters.
    sql = (
        f"SELECT c.id, c.repository, c.{field} AS matched, c.actor FROM c "  # noqa: S608
        f"WHERE {' OR '.join(conditions)}"
    )
    return sql, parameters


class CosmosEventEraser:
    """Finds and deletes the events that name one person (the erase command). Not on a request
    path: each call has the reads' bounds (QUERY_TIMEOUTS), and the client is built on first
    use, as the repository's are."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._container = _LazyContainer(settings, QUERY_TIMEOUTS, DatabaseHealth())

    def _get(self) -> ContainerProxy:
        return self._container.get(time.monotonic() + float(QUERY_TIMEOUTS["timeout"]))

    def events_naming(self, person: Person) -> list[StoredEvent]:
        sql, parameters = person_sql(person)
        try:
            container = self._get()
            # Another application's container (COSMOS_CONTAINER set wrong) holds no events: its
            # documents would match by actor, and deleting needs the app's partition key.
            wrong_key = _another_partition_key(self._settings, container.read())
            if wrong_key is not None:
                raise StoreSetUpError(wrong_key, cause=f"{wrong_key}: check COSMOS_CONTAINER")
            items = container.query_items(
                query=sql, parameters=parameters, enable_cross_partition_query=True
            )
            return [
                StoredEvent(item["id"], item["repository"], item["matched"], item.get("actor"))
                for item in items
            ]
        except AzureError as error:
            raise _read_failure(error) from error

    def delete(self, event: StoredEvent) -> bool:
        container = self._get()
        try:
            address = self._address(container, event)
            if address is None:
                return False
            # Sent once more if its answer was lost: a 404 then says it went all the same.
            _on_time(
                partial(container.delete_item, address, partition_key=event.repository),
                lambda: _within(float(QUERY_TIMEOUTS["timeout"]), QUERY_TIMEOUTS),
            )
        except CosmosResourceNotFoundError:
            return False  # deleted since it was found (another erase, its time-to-live)
        except AzureError as error:
            raise unavailable(error) from error
        return True

    @staticmethod
    def _address(container: ContainerProxy, event: StoredEvent) -> str | dict[str, Any] | None:
        """The id, or for an id the SDK cannot address (_NOT_ADDRESSABLE_ID: a delete by id is
        refused 401) the document's own link, which names it by resource id instead; None when
        the document is gone."""
        if not _NOT_ADDRESSABLE_ID.search(event.id):
            return event.id
        found = list(
            container.query_items(
                query="SELECT c._self FROM c WHERE c.repository = @repository AND c.id = @id",
                parameters=[
                    {"name": "@repository", "value": event.repository},
                    {"name": "@id", "value": event.id},
                ],
                partition_key=event.repository,
            )
        )
        if not found:
            return None
        link: str = found[0]["_self"]
        return {"id": event.id, "_self": link}


def _refuse_if_not_made(
    error: CosmosHttpResponseError, what: str, setting: str, by_hand: str
) -> None:
    """Raises ConfigurationError naming ``what`` and its ``setting`` when the deployed account
    refused creating it to an Entra ID identity; the SDK creates only what its read did not
    find, so a name the setting got wrong would otherwise be advised into being made."""
    if error.status_code == 403 and error.sub_status == _NOT_A_DATA_OPERATION_SUB_STATUS:
        raise ConfigurationError(
            f"{what} does not exist, and the account refuses creating it to an Entra ID "
            f"identity ({failure_kind(error)}): check {setting}; infra/main.bicep makes the "
            f"app's (or {by_hand})"
        ) from None


def provision(settings: Settings) -> None:
    """Create the database and container if missing, with the retention ``settings`` ask for
    (the container's default time-to-live; none keeps documents forever). Not on the request
    path: run once, and again after changing RETENTION_DAYS."""
    client = create_cosmos_client(settings, PROVISIONING_TIMEOUTS)
    # The SDK reads, then creates what it did not find: a 409 on the create means another run
    # (an operator, a second ./scripts/dev) made it in between, which is what this one wanted.
    try:
        database = client.create_database_if_not_exists(settings.cosmos_database)
    except CosmosResourceExistsError:
        database = client.get_database_client(settings.cosmos_database)
    except CosmosHttpResponseError as error:
        _refuse_if_not_made(
            error,
            f"database '{settings.cosmos_database}'",
            "COSMOS_DATABASE",
            "az cosmosdb sql database create, then az cosmosdb sql container create",
        )
        raise
    ttl = settings.retention_days * 86400 if settings.retention_days else None
    partition_key = PartitionKey(path=PARTITION_KEY_PATH)
    try:
        container = database.create_container_if_not_exists(
            settings.cosmos_container, partition_key=partition_key, default_ttl=ttl
        )
    except CosmosResourceExistsError:
        container = database.get_container_client(settings.cosmos_container)
    except CosmosHttpResponseError as error:
        _refuse_if_not_made(
            error,
            f"container '{settings.cosmos_container}'",
            "COSMOS_CONTAINER",
            "az cosmosdb sql container create",
        )
        raise
    properties = container.read()
    wrong_key = _another_partition_key(settings, properties)
    if wrong_key is not None:
        # Writes would still land (the SDK reads the key's path from the container), but every
        # read by repository would find nothing: refuse the container rather than say "ready".
        raise ConfigurationError(
            f"{wrong_key}: set COSMOS_CONTAINER to another name, or delete the container and "
            "run provision again"
        )
    unique_keys = [
        path
        for key in properties.get("uniqueKeyPolicy", {}).get("uniqueKeys", [])
        for path in key.get("paths", [])
    ]
    if unique_keys:
        # The app keys idempotency on the id alone: a second event with the same value would
        # get a 409, read as "already recorded", and never be stored.
        raise ConfigurationError(
            f"container '{settings.cosmos_container}' exists with a unique key on "
            f"{', '.join(unique_keys)}; the app needs none (events share digests, tags and "
            "repositories): set COSMOS_CONTAINER to another name, or delete the container and "
            "run provision again"
        )
    if properties.get("defaultTtl") != ttl:
        # A replace sets every property it is given and resets the rest: the indexing policy
        # (the template's, or one tuned since) goes back as it is.
        database.replace_container(
            container,
            partition_key=partition_key,
            indexing_policy=properties.get("indexingPolicy"),
            default_ttl=ttl,
        )
