"""Framework-free handlers: request body in, status and JSON out.

Nothing here knows about Azure Functions; ``function_app.py`` translates HTTP to and from these.
"""

from __future__ import annotations

import hmac
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from pydantic import ValidationError

from acr_webhook.config import DEFAULT_SECRET_HEADER
from acr_webhook.models import (
    PING,
    RECORDED_ACTIONS,
    AcrEvent,
    about,
    dated_ahead,
    parse_webhook_payload,
    to_document,
)
from acr_webhook.results import Result, utc_now
from acr_webhook.store import (
    DocumentRejectedError,
    EventRepository,
    FallbackQueue,
    FallbackUnavailableError,
    OneLineError,
    RepositoryUnavailableError,
    unavailable_reasons,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# The one-pass validation below is for bodies of an ACR event's size (a few KB). When it fails,
# each of its errors holds its own Python copy of the input: a 1 MiB body of empty objects cost
# 96 MiB (16 at once would not fit an instance), so a larger body takes the checks, which parse
# it once.
FAST_PATH_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class SharedSecret:
    """Optional second credential beside the function key, sent by ACR as a custom header."""

    value: str
    header: str = DEFAULT_SECRET_HEADER

    def matches(self, headers: Mapping[str, str]) -> bool:
        wanted = self.header.lower()
        given = next((v for k, v in headers.items() if k.lower() == wanted), "")
        expected = f"Bearer {self.value}" if wanted == "authorization" else self.value
        # surrogatepass: a header value with a lone surrogate is a mismatch, not a crash.
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def unauthorized(route: str) -> Result:
    """401 with an empty body, as Azure answers a wrong function key: no hint which part failed."""
    log.warning(
        "%s rejected: shared secret missing or wrong",
        route,
        extra={"decision": "rejected", "route": route, "reason": "shared secret"},
    )
    return Result(401)


def log_event_decision(
    logger: logging.Logger,
    level: int,
    route: str,
    decision: str,
    event: AcrEvent,
    *,
    reason: str | None = None,
    detail: str | None = None,
    store_ms: float | None = None,
) -> None:
    """One decision about one event: the structured fields telemetry counts, and a message
    with the client's values repr()'d so that they cannot forge log lines. Nothing is formatted
    unless the level is on. ``reason`` is the same for every event one cause hits (queries group
    by it); the message says ``detail`` instead where this event's failure had more to say."""
    if not logger.isEnabledFor(level):
        return
    repository = event.target.repository
    extra: dict[str, Any] = {
        "decision": decision,
        "route": route,
        "event_id": event.id,
        "action": event.action,
        "repository": repository,
    }
    if store_ms is not None:
        extra["store_ms"] = store_ms
    if reason is None:
        logger.log(
            level,
            "%s event=%r action=%r repository=%r %s",
            route,
            event.id,
            event.action,
            repository,
            decision,
            extra=extra,
            stacklevel=2,
        )
    else:
        extra["reason"] = reason
        logger.log(
            level,
            "%s event=%r action=%r repository=%r %s: %s",
            route,
            event.id,
            event.action,
            repository,
            decision,
            reason if detail is None else detail,
            extra=extra,
            stacklevel=2,
        )


# What a log line keeps of an identity field that failed validation (it may be any size).
MAX_LOGGED_CLAIM = 256


def claimed_identity(payload: Mapping[str, Any]) -> dict[str, str]:
    """What a payload that is not a valid event says it is, for the log: its event id, action
    and repository, those that are text, clipped."""
    target = payload.get("target")
    claimed = {
        "event_id": payload.get("id"),
        "action": payload.get("action"),
        "repository": target.get("repository") if isinstance(target, dict) else None,
    }
    return {
        name: value[:MAX_LOGGED_CLAIM] for name, value in claimed.items() if isinstance(value, str)
    }


def _bad_request(
    problem: str,
    status: int = 400,
    route: str = "webhook",
    claimed: Mapping[str, str] | None = None,
) -> Result:
    """``claimed``: the event's identity as far as the body gives one (claimed_identity)."""
    identity = "".join(
        f" {name.removeprefix('event_')}={value!r}" for name, value in (claimed or {}).items()
    )
    log.warning(
        "%s%s rejected: %s",
        route,
        identity,
        problem,
        extra={"decision": "rejected", "route": route, "reason": problem, **(claimed or {})},
    )
    return Result(status, {"error": problem})


def parse_json(body: bytes, route: str = "webhook") -> Any:
    """The body as parsed JSON, or the 4xx Result that says why it cannot be parsed."""
    if len(body) > MAX_BODY_BYTES:
        return _bad_request(f"body is larger than {MAX_BODY_BYTES} bytes", 413, route)
    if not body.strip():
        return _bad_request("body is empty; expected JSON", route=route)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        return _bad_request(f"body is not valid UTF-8 (byte {error.start})", route=route)
    try:
        return loads_strictly(text)
    except RecursionError:
        return _bad_request("body is nested too deeply", route=route)
    except ValueError as error:
        return _bad_request(f"body is not valid JSON: {error}", route=route)


def loads_strictly(text: str) -> Any:
    """``json.loads`` held to RFC 8259, with a reason the client can act on for what Python
    refuses. Raises ValueError, or RecursionError for nesting too deep."""
    return json.loads(text, parse_constant=_not_json, parse_int=_bounded_int)


def _not_json(constant: str) -> NoReturn:
    """json.loads takes NaN, Infinity and -Infinity, which RFC 8259 does not."""
    raise ValueError(f"{constant} is not a JSON value")


def _bounded_int(literal: str) -> int:
    """Python refuses an integer of more than sys.get_int_max_str_digits() digits (4,300) with
    advice for the server's own code; the client is told what is wrong with its body."""
    digits = len(literal.removeprefix("-"))
    limit = sys.get_int_max_str_digits()
    if limit and digits > limit:
        raise ValueError(f"a number has {digits} digits; at most {limit} are taken")
    return int(literal)


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
    # pydantic-core's parser takes NaN and Infinity too: a body that may hold them, even in a
    # string, takes the checks below, which parse strict JSON.
    if len(body) <= FAST_PATH_MAX_BYTES and b"NaN" not in body and b"Infinity" not in body:
        try:
            return AcrEvent.model_validate_json(body)
        except ValidationError:
            pass
    payload = parse_json_object(body)
    if isinstance(payload, Result):
        return payload
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        return _bad_request("action: required, must be a non-empty string")
    if action == PING:
        log.info("ping acknowledged", extra={"decision": "ping", "route": "webhook"})
        return Result(204)
    if action not in RECORDED_ACTIONS:
        claimed = claimed_identity(payload)
        log.info(
            "webhook event=%r action=%r repository=%r ignored: not a recorded action",
            claimed.get("event_id"),
            claimed["action"],
            claimed.get("repository"),
            extra={"decision": "ignored", "route": "webhook", **claimed},
        )
        return Result(202, {"status": "ignored", "reason": f"action '{action}' is not recorded"})
    event = parse_webhook_payload(payload)
    if isinstance(event, list):
        return _bad_request("; ".join(event), claimed=claimed_identity(payload))
    return event


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
    unknown action → 202, bad input or a document the store refuses → 400/413, wrong shared
    secret → 401 with no body.

    When the store fails, the validated event goes to the fallback queue (202, it is safe);
    only when that fails too, or there is none, the answer is 503.
    """
    if secret is not None and not secret.matches(headers or {}):
        return unauthorized("webhook")
    event = _recorded_event(body)
    if isinstance(event, Result):
        return event
    received_at = now()
    document = to_document(event, received_at=received_at)
    ahead = dated_ahead(event, received_at)
    if ahead is not None:
        return _bad_request(ahead, claimed=about(document))
    started = time.perf_counter()
    try:
        created = repository.add(document)
    except RepositoryUnavailableError as error:
        store_ms = (time.perf_counter() - started) * 1000
        return _store_in_fallback(event, document, fallback, error, store_ms)
    except DocumentRejectedError as error:
        problem = f"the event store refused this event: {error}"
        log_event_decision(
            log,
            logging.WARNING,
            "webhook",
            "rejected",
            event,
            reason=f"the event store refused this event: {error.cause}",
            detail=problem,
        )
        return Result(400, {"error": problem})
    store_ms = (time.perf_counter() - started) * 1000
    if created:
        log_event_decision(log, logging.INFO, "webhook", "recorded", event, store_ms=store_ms)
        return Result(201, {"status": "recorded", "id": event.id})
    log_event_decision(log, logging.INFO, "webhook", "duplicate", event, store_ms=store_ms)
    return Result(200, {"status": "duplicate", "id": event.id})


def _store_in_fallback(
    event: AcrEvent,
    document: dict[str, Any],
    fallback: FallbackQueue | None,
    store_error: RepositoryUnavailableError,
    store_ms: float,
) -> Result:
    failures: list[OneLineError] = [store_error]
    queued = False
    if fallback is not None:
        try:
            fallback.put(document)
            queued = True
        except FallbackUnavailableError as queue_error:
            failures.append(queue_error)
    reason, detail = unavailable_reasons(failures)
    then = "; queued for replay" if queued else ""
    log_event_decision(
        log,
        logging.WARNING if queued else logging.ERROR,
        "webhook",
        "queued" if queued else "unavailable",
        event,
        reason=reason + then,
        detail=detail + then,
        store_ms=store_ms,
    )
    if queued:
        return Result(202, {"status": "queued", "id": event.id})
    return Result(503, {"error": "the event store is unavailable; the event was not recorded"})
