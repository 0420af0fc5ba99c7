"""Deterministic interleavings of concurrent deliveries, for the concurrency tests.

``Turns`` runs one thread per named actor and lets their shared steps (each call to the fake
Cosmos DB container, the outage memory, the fallback queue) happen in the order a schedule
gives, one at a time: between two steps an actor runs freely, but the order in which the
shared state is touched, and so every answer, is a function of the schedule alone.

``FakeCosmosClient`` stands in for azure-cosmos' client behind the real
``CosmosEventRepository``: create/read/replace with ETags and the SDK's exception types, a fake
clock advanced by each call's scripted latency, and faults scripted per actor and call.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal, TypeVar
from unittest import mock

from azure.core.exceptions import ServiceResponseTimeoutError
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

import function_app
from acr_webhook import eventgrid, repository, runtime
from acr_webhook.config import Settings
from acr_webhook.models import ENRICHMENT_FIELDS
from acr_webhook.repository import DatabaseHealth
from acr_webhook.store import FallbackUnavailableError

T = TypeVar("T")


class DeadlockError(AssertionError):
    """No actor took its turn in time: the schedule waits on something it does not gate."""


class Turns:
    """Serialises the gated steps of named actors in the order of ``order``, then round-robin
    over ``actors``; the entries of an actor that has finished are skipped."""

    def __init__(self, actors: Sequence[str], order: Sequence[str] = (), timeout_s: float = 10):
        self.actors = list(actors)
        self.order = list(order)
        self.trace: list[tuple[str, str]] = []
        self._timeout_s = timeout_s
        self._pointer = 0
        self._finished: set[str] = set()
        self._condition = threading.Condition()
        self._local = threading.local()

    @property
    def actor(self) -> str | None:
        """The actor the calling thread runs for, None outside ``run``."""
        return getattr(self._local, "actor", None)

    def _current(self) -> str | None:
        if len(self._finished) >= len(self.actors):
            return None
        while True:
            if self._pointer < len(self.order):
                actor = self.order[self._pointer]
            else:
                actor = self.actors[(self._pointer - len(self.order)) % len(self.actors)]
            if actor not in self._finished:
                return actor
            self._pointer += 1

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        """The block is this actor's next step: it starts on the actor's turn, and no other
        actor's step starts before it ends. Outside ``run`` it is not gated."""
        actor = self.actor
        if actor is None:
            yield
            return
        with self._condition:
            while self._current() != actor:
                if not self._condition.wait(self._timeout_s):
                    raise DeadlockError(f"{actor} waited for {self._current()} at {label}")
            self.trace.append((actor, label))
            try:
                yield
            finally:
                self._pointer += 1
                self._condition.notify_all()

    def run(self, actions: Mapping[str, Callable[[], T]]) -> dict[str, T | BaseException]:
        """Runs each actor's action on its own thread; what each returned or raised."""
        outcomes: dict[str, T | BaseException] = {}

        def body(actor: str, action: Callable[[], T]) -> None:
            self._local.actor = actor
            try:
                outcomes[actor] = action()
            except BaseException as error:
                outcomes[actor] = error
            finally:
                with self._condition:
                    self._finished.add(actor)
                    self._condition.notify_all()

        threads = [
            threading.Thread(target=body, args=(actor, actions[actor]), name=f"actor-{actor}")
            for actor in self.actors
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(self._timeout_s * 4)
            assert not thread.is_alive(), f"{thread.name} never finished"
        return outcomes


class FakeClock:
    """Monotonic seconds that move only when told (by a fake call's latency)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class GatedHealth(DatabaseHealth):
    """The product's outage memory with each use a gated step, on a fake clock."""

    def __init__(self, turns: Turns, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock)
        self.turns = turns
        self.failures: list[str] = []

    def check(self) -> None:
        with self.turns.step("health.check"):
            super().check()

    def failed(self, reason: str, cause: str | None = None, *, set_up: bool = False) -> None:
        with self.turns.step("health.failed"):
            self.failures.append(reason)
            super().failed(reason, cause, set_up=set_up)

    def succeeded(self) -> None:
        with self.turns.step("health.succeeded"):
            super().succeeded()


# The longest a Cosmos DB call waits for an answer unless given its own timeout: the read
# timeout of the repository's clients (repository.CLIENT_TIMEOUTS, EVENTGRID_WRITE_OPTIONS).
CALL_TIMEOUT_S = 2.0

# What one Cosmos DB call does besides its normal effect.
# timeout: no answer (the SDK's read timeout), nothing written; landed: written, then the
# timeout; unavailable: a 503; throttled: a 429 (the SDK's own retries used up); refused: a 400;
# slow: answered after FakeCosmosClient.slow_s, or the timeout when that is shorter.
Fault = Literal["timeout", "landed", "unavailable", "throttled", "refused", "slow"]


@dataclass
class CallRecord:
    actor: str | None
    operation: str
    started: float
    timeout: float | None


@dataclass
class FakeCosmosClient:
    """``create_cosmos_client``'s stand-in: one container, shared by every client built."""

    turns: Turns
    clock: FakeClock
    # (actor, operation, nth call of that operation by that actor, from 0) -> fault
    faults: dict[tuple[str | None, str, int], Fault] = field(default_factory=dict)
    slow_s: float = 1.9
    documents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[CallRecord] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)
    created: int = 0
    creator: str | None = None  # the actor whose create wrote the document
    conflicts: int = 0  # replaces refused for a changed ETag (412)
    _etags: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _counts: dict[tuple[str | None, str], int] = field(default_factory=dict)

    # the client and database clients
    def get_database_client(self, _name: str) -> FakeCosmosClient:
        return self

    def get_container_client(self, _name: str) -> FakeCosmosClient:
        return self

    # the container
    def _fault(self, operation: str, kwargs: Mapping[str, Any]) -> Fault | None:
        actor = self.turns.actor
        nth = self._counts.get((actor, operation), 0)
        self._counts[(actor, operation)] = nth + 1
        timeout = kwargs.get("timeout")
        self.calls.append(CallRecord(actor, operation, self.clock(), timeout))
        fault = self.faults.get((actor, operation, nth))
        # A call waits at most its own timeout, or the client's read timeout, then the SDK
        # raises; a slow answer inside that limit is an answer.
        limit = float(timeout) if timeout is not None else CALL_TIMEOUT_S
        if fault == "slow" and self.slow_s >= limit:
            fault = "timeout"
        if fault == "slow":
            self.clock.advance(self.slow_s)
        elif fault in ("timeout", "landed"):
            self.clock.advance(limit)
        if fault == "timeout":
            raise ServiceResponseTimeoutError("Read timed out. (read timeout=2)")
        if fault == "unavailable":
            raise CosmosHttpResponseError(status_code=503, message="Service Unavailable")  # type: ignore[no-untyped-call]
        if fault == "throttled":
            raise CosmosHttpResponseError(status_code=429, message="Request rate is large")  # type: ignore[no-untyped-call]
        if fault == "refused":
            raise CosmosHttpResponseError(  # type: ignore[no-untyped-call]
                status_code=400, message="One of the input values is invalid"
            )
        return fault

    def _stored(self, document: Mapping[str, Any]) -> dict[str, Any]:
        return {**copy.deepcopy(dict(document)), "_etag": f'"{next(self._etags)}"', "_ts": 1}

    def create_item(self, body: dict[str, Any], **kwargs: Any) -> None:
        with self.turns.step("cosmos.create_item"):
            fault = self._fault("create_item", kwargs)
            key = (body["id"], body["repository"])
            if key in self.documents:
                raise CosmosResourceExistsError(status_code=409, message="Conflict")  # type: ignore[no-untyped-call]
            self.documents[key] = self._stored(body)
            self.created += 1
            self.creator = self.turns.actor
            if fault == "landed":
                raise ServiceResponseTimeoutError("Read timed out. (read timeout=2)")

    def read_item(self, item: str, partition_key: str, **kwargs: Any) -> dict[str, Any]:
        with self.turns.step("cosmos.read_item"):
            if self._fault("read_item", kwargs) == "landed":  # a read has nothing to land
                raise ServiceResponseTimeoutError("Read timed out. (read timeout=2)")
            stored = self.documents.get((item, partition_key))
            if stored is None:
                raise CosmosResourceNotFoundError(status_code=404, message="NotFound")  # type: ignore[no-untyped-call]
            return copy.deepcopy(stored)

    def replace_item(self, item: str, body: dict[str, Any], **kwargs: Any) -> None:
        with self.turns.step("cosmos.replace_item"):
            fault = self._fault("replace_item", kwargs)
            key = (item, body["repository"])
            stored = self.documents.get(key)
            if stored is None:
                raise CosmosResourceNotFoundError(status_code=404, message="NotFound")  # type: ignore[no-untyped-call]
            if kwargs.get("etag") is not None and kwargs["etag"] != stored["_etag"]:
                self.conflicts += 1
                raise CosmosAccessConditionFailedError(status_code=412, message="Precondition")  # type: ignore[no-untyped-call]
            for name, value in stored.items():
                if name.startswith("_"):
                    continue
                if value is not None and body.get(name) != value:
                    self.overwritten.append(name)
            self.documents[key] = self._stored(body)
            if fault == "landed":
                raise ServiceResponseTimeoutError("Read timed out. (read timeout=2)")

    def enrichment(self, key: tuple[str, str]) -> dict[str, Any]:
        return {name: self.documents[key].get(name) for name in ENRICHMENT_FIELDS}


class GatedQueue:
    """The fallback queue: up (keeps each message), or down (FallbackUnavailableError)."""

    def __init__(self, turns: Turns, up: bool = True) -> None:
        self.turns = turns
        self.up = up
        self.messages: list[tuple[str | None, dict[str, Any], int, int]] = []

    def put(self, document: dict[str, Any], *, attempts: int = 0, delay_s: int = 0) -> None:
        with self.turns.step("queue.put"):
            if not self.up:
                raise FallbackUnavailableError("fake queue outage")
            self.messages.append((self.turns.actor, copy.deepcopy(document), attempts, delay_s))


class InlineExecutor(Executor):
    """Runs each submitted call at once on the caller's thread: an Event Grid batch's writes
    then run on the actor's own thread, in its turns."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


class GatedContainer:
    """A real ContainerProxy whose writer calls are gated steps (the integration tests)."""

    def __init__(self, container: Any, turns: Turns) -> None:
        self._container = container
        self._turns = turns

    def create_item(self, body: dict[str, Any], **kwargs: Any) -> Any:
        with self._turns.step("cosmos.create_item"):
            return self._container.create_item(body, **kwargs)

    def read_item(self, item: str, partition_key: str, **kwargs: Any) -> Any:
        with self._turns.step("cosmos.read_item"):
            return self._container.read_item(item, partition_key=partition_key, **kwargs)

    def replace_item(self, item: str, body: dict[str, Any], **kwargs: Any) -> Any:
        with self._turns.step("cosmos.replace_item"):
            return self._container.replace_item(item, body, **kwargs)


class GatedCosmosClient:
    """``create_cosmos_client``'s result with its container's writer calls gated."""

    def __init__(self, client: Any, turns: Turns) -> None:
        self._client = client
        self._turns = turns
        self._database = ""

    def get_database_client(self, name: str) -> GatedCosmosClient:
        self._database = name
        return self

    def get_container_client(self, name: str) -> GatedContainer:
        database = self._client.get_database_client(self._database)
        return GatedContainer(database.get_container_client(name), self._turns)


class FakeHistory:
    """ACR's delivery history of every webhook: the same entries, read on the actor's turn."""

    def __init__(self, turns: Turns, entries: Sequence[dict[str, Any]]) -> None:
        self._turns = turns
        self._entries = list(entries)

    def entries(self, webhook_name: str) -> Iterator[dict[str, Any]]:
        with self._turns.step(f"history.{webhook_name}"):
            entries = copy.deepcopy(self._entries)
        yield from entries


@contextmanager
def deployed(
    settings: Settings,
    health: DatabaseHealth,
    client_factory: Callable[..., Any],
    *,
    clock: Callable[[], float],
    queue: GatedQueue | None = None,
    history: FakeHistory | None = None,
) -> Iterator[None]:
    """function_app's registered functions as runtime.py composes them (its process-wide
    repositories, their shared outage memory, the shared secret from ``settings``), with
    ``client_factory`` building the Cosmos client, ``clock`` the repository's monotonic clock,
    ``queue`` the fallback queue and an Event Grid batch's writes on the request's thread."""
    built = (
        runtime.event_repository,
        runtime.eventgrid_repository,
        runtime.shared_secret,
        runtime.reconciled_events,
    )
    # A fake clock moves on by a pause instead of waiting it.
    pause = clock.advance if isinstance(clock, FakeClock) else time.sleep
    with ExitStack() as stack:
        for target, name, value in (
            (runtime, "settings", lambda: settings),
            (function_app, "settings", lambda: settings),
            (runtime, "database_health", lambda: health),
            (repository, "create_cosmos_client", client_factory),
            (repository, "time", SimpleNamespace(monotonic=clock)),
            # A batch's budget and its pauses while throttled, on the same clock.
            (eventgrid, "time", SimpleNamespace(monotonic=clock, perf_counter=clock, sleep=pause)),
            (function_app, "fallback_queue", lambda: queue),
            (function_app, "batch_executor", InlineExecutor),
            (function_app, "webhook_history", lambda: history),
        ):
            stack.enter_context(mock.patch.object(target, name, value))
        for once in built:
            once.cache_clear()
            stack.callback(once.cache_clear)
        yield
