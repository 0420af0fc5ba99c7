"""Event Grid delivery: the same ACR events, in Event Grid or CloudEvents 1.0 envelopes.

Framework-free like ``handlers``: ``function_app.py`` passes the body and the lower-cased
request headers and turns the ``Result`` into HTTP. Event Grid retries anything but a 2xx
(except 400, 401, 403 and 413) for up to 24 hours, so a batch is all or nothing: every event is
validated before any is written, and 200 means every ACR event in it is stored (a duplicate
counts as stored). The writes run concurrently on a bounded pool, within a time budget well
inside Event Grid's 30 s; a write failure or an exhausted budget answers 503 and Event Grid
resends the whole batch, whose events already written then come back as duplicates.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Executor, Future, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, TypeAdapter, ValidationError

from acr_webhook.handlers import (
    MAX_LOGGED_CLAIM,
    SharedSecret,
    loads_strictly,
    log_event_decision,
    parse_json,
    unauthorized,
)
from acr_webhook.models import (
    ENRICHMENT_FIELDS,
    AcrEvent,
    RecordedAction,
    ResourceId,
    dated_ahead,
    to_document,
    validation_problems,
)
from acr_webhook.results import Result, utc_now
from acr_webhook.store import (
    DocumentRejectedError,
    EventRepository,
    RepositoryUnavailableError,
    StorePartitionFullError,
    StoreThrottledError,
    unavailable_reasons,
)

log = logging.getLogger(__name__)

ROUTE: Final = "eventgrid"

# ACR's Event Grid event types and the webhook action each one carries in ``data.action``.
ACR_EVENT_NAMESPACE: Final = "Microsoft.ContainerRegistry"
EVENT_TYPE_ACTIONS: Final[dict[str, RecordedAction]] = {
    "Microsoft.ContainerRegistry.ImagePushed": "push",
    "Microsoft.ContainerRegistry.ImageDeleted": "delete",
    "Microsoft.ContainerRegistry.ChartPushed": "chart_push",
    "Microsoft.ContainerRegistry.ChartDeleted": "chart_delete",
}
SUBSCRIPTION_VALIDATION: Final = "Microsoft.EventGrid.SubscriptionValidationEvent"
# Event Grid's header for the handshake; event deliveries carry "Notification".
EVENT_TYPE_HEADER: Final = "aeg-event-type"
HANDSHAKE_HEADER_VALUE: Final = "subscriptionvalidation"
# A handshake is one small event; anything bigger is refused before it is parsed.
MAX_HANDSHAKE_BYTES: Final = 64 * 1024

# Event Grid waits 30 s for an answer. After this long the batch is answered 503 so that it is
# delivered again, whatever the writes still under way do (they are idempotent).
BATCH_BUDGET_S: Final = 20.0

# Event Grid's largest batch (a subscription's maxEventsPerBatch is 1-5,000). A longer array is
# refused before any event in it is checked: 1 MiB of tiny events is hundreds of thousands of
# them, each a validation and, when ignored, a log record (seconds of CPU for one request).
MAX_BATCH_EVENTS: Final = 5000

# A write the database still throttles once the client's own retries ran out is tried again
# after this pause, for as long as the batch's budget lasts.
THROTTLED_PAUSE_S: Final = 0.25

# A 400 names at most this many bad fields; the rest are counted.
MAX_REPORTED_PROBLEMS: Final = 10

# Echoed into a response header: visible ASCII only, so it can never split the response.
_ORIGIN = re.compile(r"[\x21-\x7e]{1,255}")

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
_RESOURCE_ID: Final = TypeAdapter(ResourceId)


class _Envelope(BaseModel):
    """Only what routing needs is required; other envelope fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class EventGridEnvelope(_Envelope):
    id: NonEmpty
    eventType: NonEmpty
    topic: Any = None
    data: Any = None


class CloudEventEnvelope(_Envelope):
    specversion: Literal["1.0"]
    id: NonEmpty
    type: NonEmpty
    source: Any = None
    data: Any = None


class _ValidationData(_Envelope):
    validationCode: NonEmpty


@dataclass(frozen=True)
class _Ignored:
    event_id: str
    event_type: str


@dataclass(frozen=True)
class _Handshake:
    code: str


@dataclass(frozen=True)
class _Storable:
    """A valid ACR event, with what its envelope adds."""

    event: AcrEvent
    registry_resource_id: str | None


def _reject(problem: str, status: int = 400) -> Result:
    log.warning(
        "eventgrid rejected: %s",
        problem,
        extra={"decision": "rejected", "route": ROUTE, "reason": problem},
    )
    return Result(status, {"error": problem})


def _labelled_events(payload: Any) -> list[tuple[str, Any]] | Result:
    """Each event with the name a 400 uses for it: ``events[i]`` in a batch, ``event`` alone."""
    if isinstance(payload, list):
        if len(payload) > MAX_BATCH_EVENTS:
            return _reject(
                f"a batch is at most {MAX_BATCH_EVENTS} events, Event Grid's largest; "
                f"this one has {len(payload)}",
                413,
            )
        return [(f"events[{index}]", event) for index, event in enumerate(payload)]
    if isinstance(payload, dict):
        if "specversion" in payload:
            return [("event", payload)]
        return _reject(
            "body must be a JSON array of events (Event Grid schema) or a CloudEvents event "
            "with specversion; this object has no specversion"
        )
    return _reject(
        f"body must be a JSON array of events or an object, not {type(payload).__name__}"
    )


def _check(label: str, raw: Any) -> _Storable | _Ignored | _Handshake | list[str]:
    """One event validated: an ACR event to store, an ignored type, a handshake, or problems."""
    if not isinstance(raw, dict):
        return [f"{label}: must be a JSON object, not {type(raw).__name__}"]
    envelope: EventGridEnvelope | CloudEventEnvelope
    try:
        if "specversion" in raw:
            envelope = CloudEventEnvelope.model_validate(raw)
        else:
            envelope = EventGridEnvelope.model_validate(raw)
    except ValidationError as error:
        return validation_problems(error, label)
    if isinstance(envelope, CloudEventEnvelope):
        event_type, origin, origin_field = envelope.type, envelope.source, "source"
    else:
        event_type, origin, origin_field = envelope.eventType, envelope.topic, "topic"
    data = envelope.data

    if event_type == SUBSCRIPTION_VALIDATION:
        if not isinstance(data, dict):
            return [f"{label}.data: must be a JSON object with validationCode"]
        try:
            return _Handshake(_ValidationData.model_validate(data).validationCode)
        except ValidationError as error:
            return validation_problems(error, f"{label}.data")

    # Some samples of the schema drop the namespace ("ImagePushed"); accept both spellings.
    action = EVENT_TYPE_ACTIONS.get(event_type) or EVENT_TYPE_ACTIONS.get(
        f"{ACR_EVENT_NAMESPACE}.{event_type}"
    )
    if action is None:
        # Unvalidated text of any size: what the log keeps of it is clipped, like a rejected
        # event's claimed identity.
        return _Ignored(envelope.id[:MAX_LOGGED_CLAIM], event_type[:MAX_LOGGED_CLAIM])
    if isinstance(data, str):
        # Container Registry has delivered data as serialised JSON (a live capture in the
        # JavaScript SDK's test data, whose decoder still parses it): the same event.
        try:
            data = loads_strictly(data)
        except RecursionError:
            return [f"{label}.data: is a string nested too deeply"]
        except ValueError as error:
            return [f"{label}.data: is a string but not JSON: {error}"]
    if not isinstance(data, dict):
        found = "missing" if data is None else type(data).__name__
        return [f"{label}.data: must be a JSON object with the ACR event, not {found}"]
    problems: list[str] = []
    try:
        registry_resource_id = _RESOURCE_ID.validate_python(origin) if origin else None
    except ValidationError as error:
        problems = validation_problems(error, f"{label}.{origin_field}")
        registry_resource_id = None
    fields = dict(data)
    id_from_envelope = fields.get("id") is None
    if id_from_envelope:
        fields["id"] = envelope.id
    # The event type decides the action: a contradicting data.action is not stored.
    claimed = fields.get("action")
    fields["action"] = action
    try:
        event = AcrEvent.model_validate(fields)
    except ValidationError as error:
        for problem in validation_problems(error, f"{label}.data"):
            if id_from_envelope and problem.startswith(f"{label}.data.id:"):
                # The id came from the envelope, so name the field the sender actually set.
                problem = f"{label}.id" + problem.removeprefix(f"{label}.data.id")
            problems.append(problem)
        return problems
    if problems:
        return problems
    if claimed not in (None, "", action):
        log.warning(
            "eventgrid event=%r action=%r repository=%r: data.action %r contradicts the event "
            "type %r; stored with the action the type names",
            event.id,
            action,
            event.target.repository,
            claimed,
            event_type,
            extra={
                "route": ROUTE,
                "event_id": event.id,
                "action": action,
                "repository": event.target.repository,
                "reason": "data.action contradicts the event type",
            },
        )
    return _Storable(event, registry_resource_id)


def _delivery(headers: Mapping[str, str]) -> str:
    """Event Grid's delivery headers for the log: which subscription, which attempt."""
    return (
        f"subscription={headers.get('aeg-subscription-name')!r} "
        f"delivery={headers.get('aeg-delivery-count')!r}"
    )


def _answer_handshake(labelled: list[tuple[str, Any]], headers: Mapping[str, str]) -> Result:
    """The subscription-validation handshake: one SubscriptionValidationEvent, alone."""
    outcome = _check(*labelled[0]) if len(labelled) == 1 else None
    if isinstance(outcome, list):
        return _reject(_summary(outcome))
    if not isinstance(outcome, _Handshake):
        return _reject(
            f"{EVENT_TYPE_HEADER}: SubscriptionValidation needs a body of exactly one "
            f"{SUBSCRIPTION_VALIDATION}"
        )
    log.info("eventgrid subscription validation answered (%s)", _delivery(headers))
    return Result(200, {"validationResponse": outcome.code})


@dataclass
class _Written:
    """What one write task did: the copies of one event id in the batch, in order."""

    recorded: int = 0
    duplicate: int = 0
    rejected: list[str] = field(default_factory=list)
    # Documents of a repository whose partition is full: the others are written all the same.
    unstored: list[StorePartitionFullError] = field(default_factory=list)


@dataclass
class _Document:
    """One document to write, and the copies of the event that make it up, in order."""

    fields: dict[str, Any]
    copies: list[AcrEvent]


def _merge(copies: list[_Storable], received_at: datetime) -> list[_Document]:
    """The documents the copies of one event id make: one per repository, since Cosmos DB keeps
    one document per id and partition (``/repository``). Each is its first copy's document with
    the enrichment fields it lacks taken from the later copies, first value first, as the
    repository fills in a duplicate: what writing the copies one after another would store."""
    documents: dict[str, _Document] = {}
    for copy in copies:
        fields = to_document(copy.event, received_at, "eventgrid", copy.registry_resource_id)
        document = documents.get(fields["repository"])
        if document is None:
            documents[fields["repository"]] = _Document(fields, [copy.event])
            continue
        document.copies.append(copy.event)
        for name in ENRICHMENT_FIELDS:
            # As the repository's fill-in: only a value, only where there is none yet.
            if document.fields[name] is None and fields[name]:
                document.fields[name] = fields[name]
    return list(documents.values())


class _BatchProgress:
    """Which copies (by ``id()``) had their write started, so that each copy gets exactly one
    decision, as the decisions metric counts them: a started write logs its copies' decisions
    itself, whatever its outcome and however late. Once the batch is abandoned (answered 503)
    no write starts, and the answer logs ``unavailable`` for the copies never started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._started: set[int] = set()

    def start_writing(self, copies: list[AcrEvent]) -> bool:
        """False once the batch is abandoned: the write must not start."""
        with self._lock:
            if self._abandoned:
                return False
            self._started.update(map(id, copies))
            return True

    def stop_writes(self) -> None:
        with self._lock:
            self._abandoned = True

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def abandon(self, events: list[AcrEvent]) -> list[AcrEvent]:
        """Stops further writes; returns those of ``events`` whose write never started."""
        with self._lock:
            self._abandoned = True
            return [event for event in events if id(event) not in self._started]


def _log_copies(
    copies: list[AcrEvent],
    level: int,
    decisions: list[str],
    store_ms: float | None,
    reason: str | None = None,
    detail: str | None = None,
) -> None:
    """A record per copy of one write, as writing them one after another would give: the
    decisions metric counts each one. Only the first carries the write's time: the
    store-latency histogram counts writes, not copies."""
    for index, (copy, decision) in enumerate(zip(copies, decisions, strict=True)):
        timed = store_ms if index == 0 else None
        log_event_decision(
            log, level, ROUTE, decision, copy, reason=reason, detail=detail, store_ms=timed
        )


def _add_while_throttled(
    repository: EventRepository,
    fields: dict[str, Any],
    deadline: float,
    progress: _BatchProgress,
) -> bool:
    """``repository.add``, tried again while the database throttles it, the batch has time left
    and is not abandoned: the client's own throttle retries (EVENTGRID_WRITE_OPTIONS) end within
    a second when Cosmos DB asks for short waits, and the batch has 20 s."""
    while True:
        try:
            return repository.add(fields)
        except StoreThrottledError:
            if progress.abandoned or time.monotonic() + THROTTLED_PAUSE_S >= deadline:
                raise
            time.sleep(THROTTLED_PAUSE_S)


def _write(
    copies: list[_Storable],
    repository: EventRepository,
    received_at: datetime,
    deadline: float,
    progress: _BatchProgress,
) -> _Written:
    """Writes the copies of one event id merged (``_merge``): a write per document, however
    many copies a batch repeats; a write per copy could use up the batch budget and fail the
    batch on every redelivery. Counts and logs each copy as writing them one after another
    would: the first new, the others duplicates. A document the database refuses is reported
    and the id's documents in other repositories are still written. Raises
    RepositoryUnavailableError, and abandons the batch so that its other writes do not start:
    the batch is answered 503."""
    written = _Written()
    for document in _merge(copies, received_at):
        if time.monotonic() > deadline:
            progress.stop_writes()
            raise RepositoryUnavailableError("batch time budget used up before this write")
        if not progress.start_writing(document.copies):
            return written
        first = document.copies[0]
        started = time.perf_counter()
        try:
            created = _add_while_throttled(repository, document.fields, deadline, progress)
        except StorePartitionFullError as error:
            # One repository's, not the database's: the batch's other writes go on.
            written.unstored.append(error)
            unstored = ["unavailable"] * len(document.copies)
            _log_copies(document.copies, logging.ERROR, unstored, None, error.cause, str(error))
            continue
        except RepositoryUnavailableError as error:
            store_ms = (time.perf_counter() - started) * 1000
            progress.stop_writes()
            reason, detail = unavailable_reasons([error])
            unavailable = ["unavailable"] * len(document.copies)
            _log_copies(document.copies, logging.ERROR, unavailable, store_ms, reason, detail)
            raise
        except DocumentRejectedError as error:
            # Only this document: the same id in another repository is another document.
            written.rejected.append(
                f"event {first.id!r} in {document.fields['repository']!r}: "
                f"the event store refused it: {error}"
            )
            rejected = ["rejected"] * len(document.copies)
            _log_copies(document.copies, logging.WARNING, rejected, None, error.cause, str(error))
            continue
        store_ms = (time.perf_counter() - started) * 1000
        recorded = 1 if created else 0
        decisions = ["recorded"] * recorded + ["duplicate"] * (len(document.copies) - recorded)
        _log_copies(document.copies, logging.INFO, decisions, store_ms)
        written.recorded += recorded
        written.duplicate += len(document.copies) - recorded
    return written


def _summary(problems: list[str]) -> str:
    """The first MAX_REPORTED_PROBLEMS problems, then how many more there are."""
    shown = problems[:MAX_REPORTED_PROBLEMS]
    if len(problems) > len(shown):
        shown.append(f"and {len(problems) - len(shown)} more")
    return "; ".join(shown)


def _unavailable(
    reasons: tuple[str, str],
    storable: list[_Storable],
    progress: _BatchProgress,
    headers: Mapping[str, str],
) -> Result:
    """A 503 that abandons the batch, with an ``unavailable`` decision for each event whose
    write never started (still queued, or stopped by the budget): a started write logs its
    own. ``reasons``: the kind of failure, then what this batch's failure said."""
    reason, detail = reasons
    for event in progress.abandon([item.event for item in storable]):
        log_event_decision(
            log,
            logging.ERROR,
            ROUTE,
            "unavailable",
            event,
            reason=f"batch: {reason}",
            detail=f"batch: {detail}",
        )
    log.error(
        "eventgrid batch of %d answered 503 for Event Grid to retry: %s (%s)",
        len(storable),
        detail,
        _delivery(headers),
        extra={"route": ROUTE, "reason": reason},
    )
    return Result(
        503, {"error": "the event store is unavailable; the batch was not fully recorded"}
    )


def handle_eventgrid(
    body: bytes,
    headers: Mapping[str, str],
    repository: EventRepository,
    now: Callable[[], datetime] = utc_now,
    *,
    executor: Executor,
    secret: SharedSecret | None = None,
    budget_s: float = BATCH_BUDGET_S,
) -> Result:
    """One Event Grid delivery (Event Grid schema array, CloudEvents event or batch).

    The subscription-validation handshake (``aeg-event-type: SubscriptionValidation``, a lone
    SubscriptionValidationEvent) → 200 ``{"validationResponse": code}``; it is exempt from the
    ``secret``, which every other delivery must carry (checked before the body is read; the
    subscription sends it as a delivery property): without it, 401 with no body. Every ACR event
    stored (new or duplicate) → 200 with counts; unknown event types are counted as ignored;
    any invalid event, or one the store refuses → 400 (nothing written when found invalid);
    store unavailable, or no answer within ``budget_s`` → 503 (Event Grid retries).
    The writes run on ``executor``. ``headers`` must have lower-case names.
    """
    deadline = time.monotonic() + budget_s
    handshake = headers.get(EVENT_TYPE_HEADER, "").lower() == HANDSHAKE_HEADER_VALUE
    if handshake:
        if len(body) > MAX_HANDSHAKE_BYTES:
            return _reject(
                f"a subscription-validation body is at most {MAX_HANDSHAKE_BYTES} bytes", 413
            )
    elif secret is not None and not secret.matches(headers):
        return unauthorized(ROUTE)
    payload = parse_json(body, ROUTE)
    if isinstance(payload, Result):
        return payload
    labelled = _labelled_events(payload)
    if isinstance(labelled, Result):
        return labelled
    if handshake:
        return _answer_handshake(labelled, headers)

    storable: list[_Storable] = []
    ignored: list[_Ignored] = []
    problems: list[str] = []
    received_at = now()
    for label, raw in labelled:
        outcome = _check(label, raw)
        if isinstance(outcome, _Storable):
            ahead = dated_ahead(outcome.event, received_at)
            outcome = [f"{label}.data.{ahead}"] if ahead else outcome
        if isinstance(outcome, list):
            problems.extend(outcome)
        elif isinstance(outcome, _Handshake):
            problems.append(
                f"{label}: a {SUBSCRIPTION_VALIDATION} comes alone, with the header "
                f"{EVENT_TYPE_HEADER}: SubscriptionValidation"
            )
        elif isinstance(outcome, _Ignored):
            ignored.append(outcome)
        else:
            storable.append(outcome)
    if problems:
        return _reject(_summary(problems))

    for unknown in ignored:
        log.info(
            "eventgrid event=%r type=%r not recorded: unknown event type acknowledged",
            unknown.event_id,
            unknown.event_type,
            extra={
                "decision": "ignored",
                "route": ROUTE,
                "event_id": unknown.event_id,
                "reason": "unknown event type",
            },
        )
    # The copies of one event id go to one task, in order, so exactly one of them is new;
    # they are written merged (see _merge).
    by_id: dict[str, list[_Storable]] = {}
    for item in storable:
        by_id.setdefault(item.event.id, []).append(item)
    progress = _BatchProgress()
    futures: set[Future[_Written]] = {
        executor.submit(_write, copies, repository, received_at, deadline, progress)
        for copies in by_id.values()
    }
    recorded = duplicate = 0
    refused: list[str] = []
    unstored: list[StorePartitionFullError] = []
    pending = futures
    while pending:
        done, pending = wait(
            pending, timeout=max(0.0, deadline - time.monotonic()), return_when=FIRST_EXCEPTION
        )
        if not done:
            for future in pending:
                future.cancel()
            no_answer = f"no answer within {budget_s:g} s"
            return _unavailable((no_answer, no_answer), storable, progress, headers)
        for future in done:
            error = future.exception()
            if isinstance(error, RepositoryUnavailableError):
                for other in pending:
                    other.cancel()
                return _unavailable(unavailable_reasons([error]), storable, progress, headers)
            written = future.result()
            recorded += written.recorded
            duplicate += written.duplicate
            refused.extend(written.rejected)
            unstored.extend(written.unstored)
    if refused:
        return Result(400, {"error": _summary(refused)})
    if unstored:  # Event Grid delivers the batch again; what is stored is a duplicate then
        return _unavailable(unavailable_reasons(unstored[:1]), storable, progress, headers)
    log.info(
        "eventgrid batch of %d: recorded=%d duplicate=%d ignored=%d (%s)",
        len(storable),
        recorded,
        duplicate,
        len(ignored),
        _delivery(headers),
    )
    return Result(200, {"recorded": recorded, "duplicate": duplicate, "ignored": len(ignored)})


def handle_eventgrid_options(headers: Mapping[str, str]) -> Result:
    """CloudEvents abuse protection: allow the origin that asks, at any rate.

    ``headers`` must have lower-case names.
    """
    origin = headers.get("webhook-request-origin", "").strip()
    if not origin:
        return _reject(
            "WebHook-Request-Origin: required header for the CloudEvents abuse-protection handshake"
        )
    if not _ORIGIN.fullmatch(origin):
        return _reject("WebHook-Request-Origin: must be 1 to 255 visible ASCII characters")
    log.info("eventgrid abuse-protection handshake: origin=%r allowed", origin)
    return Result(200, None, {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})
