"""Framework-free handlers: request body in, status and JSON out.

Nothing here knows about Azure Functions; ``function_app.py`` translates HTTP to and from these.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from acr_webhook.config import DEFAULT_SECRET_HEADER
from acr_webhook.fallback import FallbackQueue, FallbackUnavailableError
from acr_webhook.models import PING, RECORDED_ACTIONS, AcrEvent, to_document
from acr_webhook.repository import EventRepository, RepositoryUnavailableError
from acr_webhook.results import Result, utc_now

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


# The same answer whichever credential failed, so a caller learns nothing about which part.
UNAUTHORIZED: dict[str, str] = {"error": "unauthorized"}


@dataclass(frozen=True)
class SharedSecret:
    """Optional second credential beside the function key, sent by ACR as a custom header."""

    value: str
    header: str = DEFAULT_SECRET_HEADER

    def matches(self, headers: Mapping[str, str]) -> bool:
        wanted = self.header.lower()
        given = next((v for k, v in headers.items() if k.lower() == wanted), "")
        expected = f"Bearer {self.value}" if wanted == "authorization" else self.value
        return hmac.compare_digest(given.encode(), expected.encode())


def _bad_request(problem: str, status: int = 400) -> Result:
    log.warning("rejected: %s", problem)
    return Result(status, {"error": problem})


def validation_problems(error: ValidationError, prefix: str = "") -> list[str]:
    """``field: problem`` for each bad field, e.g. ``target.repository: Field required``
    (``prefix`` names where the object sits; no input values: they may be large)."""
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        path = ".".join(str(part) for part in detail["loc"])
        field = ".".join(part for part in (prefix, path) if part) or "body"
        problems.append(f"{field}: {detail['msg']}")
    return problems


def parse_json(body: bytes) -> Any:
    """The body as parsed JSON, or the 4xx Result that says why it cannot be parsed."""
    if len(body) > MAX_BODY_BYTES:
        return _bad_request(f"body is larger than {MAX_BODY_BYTES} bytes", status=413)
    if not body.strip():
        return _bad_request("body is empty; expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        return _bad_request(f"body is not valid UTF-8 (byte {error.start})")
    try:
        return json.loads(text)
    except RecursionError:
        return _bad_request("body is nested too deeply")
    except ValueError as error:
        return _bad_request(f"body is not valid JSON: {error}")


def parse_json_object(body: bytes) -> dict[str, Any] | Result:
    """The body as a JSON object, or the 4xx Result that says why it is not one."""
    payload = parse_json(body)
    if isinstance(payload, Result):
        return payload
    if not isinstance(payload, dict):
        return _bad_request(f"body must be a JSON object, not {type(payload).__name__}")
    return payload


def _recorded_event(body: bytes) -> AcrEvent | Result:
    """The recorded event in the body, or the answer when there is none: ping 204, unknown
    action 202, bad input 400/413.

    The common case takes one pass: pydantic-core parses and validates the bytes, with no
    ``json.loads`` (half the CPU). Anything else takes the checks below, one at a time, which
    say what it is or what is wrong with it.
    """
    if len(body) <= MAX_BODY_BYTES:
        try:
            event = AcrEvent.model_validate_json(body)
        except ValidationError:
            pass
        else:
            if event.action in RECORDED_ACTIONS:
                return event
    payload = parse_json_object(body)
    if isinstance(payload, Result):
        return payload
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        return _bad_request("action: required, must be a non-empty string")
    if action == PING:
        log.info("ping acknowledged", extra={"decision": "ping", "action": PING})
        return Result(204)
    if action not in RECORDED_ACTIONS:
        log.info(
            "action=%r ignored: not a recorded action",
            action,
            extra={"decision": "ignored", "action": action},
        )
        return Result(202, {"status": "ignored", "reason": f"action '{action}' is not recorded"})
    try:
        return AcrEvent.model_validate(payload)
    except ValidationError as error:
        return _bad_request("; ".join(validation_problems(error)))


def handle_webhook(
    body: bytes,
    repository: EventRepository,
    *,
    headers: Mapping[str, str] | None = None,
    secret: SharedSecret | None = None,
    fallback: FallbackQueue | None = None,
    now: Callable[[], datetime] = utc_now,
) -> Result:
    """One ACR webhook call: ping → 204, recorded action → 201 or 200 (duplicate),
    unknown action → 202, bad input → 400/413, wrong shared secret → 401.

    When the store fails, the validated event goes to the fallback queue (202, it is safe);
    only when that fails too, or there is none, the answer is 503.
    """
    if secret is not None and not secret.matches(headers or {}):
        log.warning("rejected: shared secret missing or wrong", extra={"decision": "rejected"})
        return Result(401, dict(UNAUTHORIZED))
    event = _recorded_event(body)
    if isinstance(event, Result):
        return event
    action = event.action

    document = to_document(event, received_at=now())
    fields = {"event_id": event.id, "action": action, "repository": event.target.repository}
    # repr() keeps client-chosen text from forging log lines.
    context = f"event={event.id!r} action={action!r} repository={event.target.repository!r}"
    try:
        created = repository.add(document)
    except RepositoryUnavailableError as error:
        return _store_in_fallback(document, fallback, context, fields, error)
    if created:
        log.info("%s recorded", context, extra={"decision": "recorded", **fields})
        return Result(201, {"status": "recorded", "id": event.id})
    log.info("%s duplicate: already recorded", context, extra={"decision": "duplicate", **fields})
    return Result(200, {"status": "duplicate", "id": event.id})


def _store_in_fallback(
    document: dict[str, Any],
    fallback: FallbackQueue | None,
    context: str,
    fields: dict[str, str],
    store_error: RepositoryUnavailableError,
) -> Result:
    lost = Result(503, {"error": "the event store is unavailable; the event was not recorded"})
    if fallback is None:
        log.error(
            "%s not recorded: database unavailable (%s)",
            context,
            store_error,
            extra={"decision": "unavailable", **fields},
        )
        return lost
    try:
        fallback.put(document)
    except FallbackUnavailableError as queue_error:
        log.error(
            "%s not recorded: database unavailable (%s) and fallback queue unavailable (%s)",
            context,
            store_error,
            queue_error,
            extra={"decision": "unavailable", **fields},
        )
        return lost
    log.warning(
        "%s queued for replay: database unavailable (%s)",
        context,
        store_error,
        extra={"decision": "queued", **fields},
    )
    return Result(202, {"status": "queued", "id": document["id"]})
