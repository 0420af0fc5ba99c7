"""Event Grid delivery: the same ACR events, in Event Grid or CloudEvents 1.0 envelopes.

Framework-free like ``handlers``: ``function_app.py`` passes the body and the lower-cased
request headers and turns the ``Result`` into HTTP. Event Grid retries anything but a 2xx
(except 400, 401, 403 and 413) for up to 24 hours, so a batch is all or nothing: every event is
validated before any is written, and 200 means every ACR event in it is stored (a duplicate
counts as stored). A write failure answers 503 and Event Grid resends the whole batch; the
events already written then come back as duplicates.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from acr_webhook.handlers import UNAUTHORIZED, SharedSecret, parse_json, validation_problems
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.repository import EventRepository, RepositoryUnavailableError
from acr_webhook.results import Result, utc_now

log = logging.getLogger(__name__)

# ACR's Event Grid event types and the webhook action each one carries in ``data.action``.
ACR_EVENT_NAMESPACE: Final = "Microsoft.ContainerRegistry"
EVENT_TYPE_ACTIONS: Final = {
    "Microsoft.ContainerRegistry.ImagePushed": "push",
    "Microsoft.ContainerRegistry.ImageDeleted": "delete",
    "Microsoft.ContainerRegistry.ChartPushed": "chart_push",
    "Microsoft.ContainerRegistry.ChartDeleted": "chart_delete",
}
SUBSCRIPTION_VALIDATION: Final = "Microsoft.EventGrid.SubscriptionValidationEvent"

# A 400 names at most this many bad fields; the rest are counted.
MAX_REPORTED_PROBLEMS: Final = 10

# Echoed into a response header: visible ASCII only, so it can never split the response.
_ORIGIN = re.compile(r"[\x21-\x7e]{1,255}")

NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class _Envelope(BaseModel):
    """Only what routing needs is required; other envelope fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class EventGridEnvelope(_Envelope):
    id: NonEmpty
    eventType: NonEmpty
    data: Any = None


class CloudEventEnvelope(_Envelope):
    specversion: Literal["1.0"]
    id: NonEmpty
    type: NonEmpty
    data: Any = None


class _ValidationData(_Envelope):
    validationCode: NonEmpty


@dataclass(frozen=True)
class _Ignored:
    event_type: str


@dataclass(frozen=True)
class _Handshake:
    code: str


def _reject(problem: str, status: int = 400) -> Result:
    log.warning("eventgrid rejected: %s", problem)
    return Result(status, {"error": problem})


def _labelled_events(payload: Any) -> list[tuple[str, Any]] | Result:
    """Each event with the name a 400 uses for it: ``events[i]`` in a batch, ``event`` alone."""
    if isinstance(payload, list):
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


def _check(label: str, raw: Any) -> AcrEvent | _Ignored | _Handshake | list[str]:
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
    event_type = envelope.type if isinstance(envelope, CloudEventEnvelope) else envelope.eventType
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
        return _Ignored(event_type)
    if not isinstance(data, dict):
        found = "missing" if data is None else type(data).__name__
        return [f"{label}.data: must be a JSON object with the ACR event, not {found}"]
    fields = dict(data)
    id_from_envelope = fields.get("id") is None
    if id_from_envelope:
        fields["id"] = envelope.id
    if fields.get("action") in (None, ""):
        fields["action"] = action
    try:
        return AcrEvent.model_validate(fields)
    except ValidationError as error:
        problems = []
        for problem in validation_problems(error, f"{label}.data"):
            if id_from_envelope and problem.startswith(f"{label}.data.id:"):
                # The id came from the envelope, so name the field the sender actually set.
                problem = f"{label}.id" + problem.removeprefix(f"{label}.data.id")
            problems.append(problem)
        return problems


def _delivery(headers: Mapping[str, str]) -> str:
    """Event Grid's delivery headers for the log: which subscription, which attempt."""
    return (
        f"subscription={headers.get('aeg-subscription-name')!r} "
        f"delivery={headers.get('aeg-delivery-count')!r}"
    )


def handle_eventgrid(
    body: bytes,
    headers: Mapping[str, str],
    repository: EventRepository,
    now: Callable[[], datetime] = utc_now,
    *,
    secret: SharedSecret | None = None,
) -> Result:
    """One Event Grid delivery (Event Grid schema array, CloudEvents event or batch).

    With a ``secret``, event deliveries must carry it (the subscription sends it as a delivery
    property); the validation handshake is exempt, the function key still guards it.

    Subscription validation → 200 ``{"validationResponse": code}``; every ACR event stored
    (new or duplicate) → 200 with counts; unknown event types are counted as ignored; any
    invalid event → 400 and nothing written; store unavailable → 503 (Event Grid retries).
    ``headers`` must have lower-case names.
    """
    payload = parse_json(body)
    if isinstance(payload, Result):
        return payload
    labelled = _labelled_events(payload)
    if isinstance(labelled, Result):
        return labelled

    events: list[AcrEvent | _Ignored] = []
    handshake: _Handshake | None = None
    problems: list[str] = []
    for label, raw in labelled:
        outcome = _check(label, raw)
        if isinstance(outcome, list):
            problems.extend(outcome)
        elif isinstance(outcome, _Handshake):
            if len(labelled) > 1:
                problems.append(f"{label}: a {SUBSCRIPTION_VALIDATION} must be sent alone")
            handshake = outcome
        else:
            events.append(outcome)
    if secret is not None and handshake is None and not secret.matches(headers):
        log.warning("eventgrid delivery rejected: shared secret missing or wrong")
        return Result(401, dict(UNAUTHORIZED))
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"and {len(problems) - len(shown)} more")
        return _reject("; ".join(shown))

    delivery = _delivery(headers)
    if handshake is not None:
        log.info("eventgrid subscription validation answered (%s)", delivery)
        return Result(200, {"validationResponse": handshake.code})

    received_at = now()
    recorded = duplicate = ignored = 0
    for item in events:
        if isinstance(item, _Ignored):
            ignored += 1
            log.info(
                "eventgrid type=%r not recorded: unknown event type acknowledged", item.event_type
            )
            continue
        context = f"event={item.id!r} action={item.action!r} repository={item.target.repository!r}"
        try:
            created = repository.add(to_document(item, received_at=received_at, source="eventgrid"))
        except RepositoryUnavailableError as error:
            log.error(
                "eventgrid %s not recorded: database unavailable (%s); batch of %d answered 503 "
                "for Event Grid to retry (%s)",
                context,
                error,
                len(events),
                delivery,
            )
            return Result(
                503,
                {"error": "the event store is unavailable; the batch was not fully recorded"},
            )
        if created:
            recorded += 1
            log.info("eventgrid %s recorded", context)
        else:
            duplicate += 1
            log.info("eventgrid %s duplicate: already recorded", context)
    log.info(
        "eventgrid batch of %d: recorded=%d duplicate=%d ignored=%d (%s)",
        len(events),
        recorded,
        duplicate,
        ignored,
        delivery,
    )
    return Result(200, {"recorded": recorded, "duplicate": duplicate, "ignored": ignored})


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
