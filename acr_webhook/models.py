"""Pydantic models of the ACR webhook events and the document each one becomes.

Forward compatible by design: unknown fields are ignored rather than rejected, and only the
fields the record needs are required. Real payloads omit ``request`` (chart events),
``request.useragent`` and ``target.tag`` (push by digest), and carry nanosecond timestamps.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

PING: Final = "ping"
RecordedAction = Literal["push", "delete", "chart_push", "chart_delete", "quarantine"]
RECORDED_ACTIONS: Final = frozenset(get_args(RecordedAction))
Source = Literal["webhook", "eventgrid", "reconcile"]
# What a later delivery of the same event may add to a stored document (Event Grid and ACR's
# history carry them, the webhook does not): filled in where missing, never overwritten.
ENRICHMENT_FIELDS: Final = (
    "actor",
    "clientAddress",
    "location",
    "connectedRegistry",
    "registryResourceId",
)
# The sources whose duplicate fills them in. Not the webhook's: ACR's webhook carries none of
# them, so a webhook delivery that names an actor is forged, and the webhook key (in the
# registry's webhook URL) must not put a name on a real push stored already.
FILLED_IN_BY: Final[frozenset[Source]] = frozenset({"eventgrid", "reconcile"})

# Field limits, in characters. Together they keep every valid event's document under 48 KB as
# JSON even in the worst case (each character escaped as a 12-byte surrogate pair), so that it
# fits a 64 KB Storage queue message once base64-encoded: the fallback can take any of them.
MAX_ID_LENGTH: Final = 255  # Cosmos DB takes 1,023 bytes; 255 characters are at most 1,020
# The OCI distribution spec: clients limit "host[:port]/name" to 255 characters, so a
# repository name and a registry host are each at most that. 255 characters are at most
# 1,020 bytes in UTF-8, inside Cosmos DB's 2 KB limit for a partition key value.
MAX_REPOSITORY_LENGTH: Final = 255
MAX_PARTITION_KEY_BYTES: Final = 2048
MAX_HOST_LENGTH: Final = 255
MAX_TAG_LENGTH: Final = 128  # the OCI distribution spec's tag grammar
MAX_DIGEST_LENGTH: Final = 255  # "algorithm:hex"; a sha512 digest is 135
MAX_MEDIA_TYPE_LENGTH: Final = 255  # RFC 6838: type and subtype at most 127 each
MAX_NAME_LENGTH: Final = 255  # request ids, chart names, actor names (e-mail addresses: 254)
MAX_VERSION_LENGTH: Final = 128  # chart versions, which Helm uses as OCI tags
MAX_METHOD_LENGTH: Final = 32
MAX_ADDRESS_LENGTH: Final = 64  # "[IPv6%zone]:port" with room to spare
MAX_LOCATION_LENGTH: Final = 64  # Azure region names
MAX_CONNECTED_REGISTRY_LENGTH: Final = 64  # ARM's connectedRegistries: 5-50 alphanumerics
MAX_RESOURCE_ID_LENGTH: Final = 512  # a registry's ARM id is at most ~260
# Free text from the pushing client: kept, but cut to this length rather than refused.
MAX_USER_AGENT_LENGTH: Final = 512
# Event timestamps are stored as fixed-width text (string order is time order): 4-digit years.
MIN_YEAR: Final = 1000
MAX_YEAR: Final = 9999
# ISO 8601's extended format starts with the date: what tells it from Unix time in digits.
_ISO_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_EXAMPLE_TIMESTAMP: Final = "2026-11-23T16:52:01.343145347Z"
# Stored as fixed-width text (27 characters); this only bounds a parked document's.
MAX_PARKED_TIMESTAMP_LENGTH: Final = 64
# The first versions took repository names up to 1,024 characters (still inside the 2 KB
# partition key limit) and may have parked such events: replay must still store them.
MAX_PARKED_REPOSITORY_LENGTH: Final = 1024
MAX_SIZE: Final = 2**53 - 1  # Cosmos DB stores numbers as doubles: exact up to here

_CONTROL = r"\x00-\x1f\x7f-\x9f"
_TEXT_PATTERN: Final = rf"^[^{_CONTROL}]*$"
# Cosmos DB refuses /, \, ? and # in an item id, and its SDK also control characters and a
# trailing space or newline; the event id becomes the item id.
_ID_PATTERN: Final = rf"^[^/\\?#{_CONTROL}]*[^/\\?#{_CONTROL} ]$"
# What a 400 says for each pattern, instead of the pattern itself.
_PATTERN_PROBLEMS: Final = {
    _TEXT_PATTERN: "must not contain control characters",
    _ID_PATTERN: "must not contain control characters, '/', '\\', '?' or '#', nor end with a space",
}


_CONTROL_CHARACTERS: Final = re.compile(f"[{_CONTROL}]")


def _clip_user_agent(value: str) -> str:
    """Free text from the client, never a reason to lose an event: cut to length, and each
    control character (an escape sequence, a line break) shown as U+FFFD rather than stored to
    act on whatever displays it."""
    return _CONTROL_CHARACTERS.sub("\ufffd", value[:MAX_USER_AGENT_LENGTH])


def _text(max_length: int, min_length: int = 0) -> StringConstraints:
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=_TEXT_PATTERN)


def _not_a_dot_segment(value: str) -> str:
    """The item's URL path ends with its id, and the HTTP client resolves the dot segments "."
    and ".." away: a duplicate of such an event read back another resource (a 500 for ".", a
    remembered outage for "..")."""
    if value in (".", ".."):
        raise ValueError("must not be '.' or '..'")
    return value


EventId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=_ID_PATTERN),
    AfterValidator(_not_a_dot_segment),
]
RepositoryName = Annotated[str, _text(MAX_REPOSITORY_LENGTH, min_length=1)]
Host = Annotated[str, _text(MAX_HOST_LENGTH)]
Tag = Annotated[str, _text(MAX_TAG_LENGTH)]
Digest = Annotated[str, _text(MAX_DIGEST_LENGTH)]
MediaType = Annotated[str, _text(MAX_MEDIA_TYPE_LENGTH)]
Name = Annotated[str, _text(MAX_NAME_LENGTH)]
Version = Annotated[str, _text(MAX_VERSION_LENGTH)]
Method = Annotated[str, _text(MAX_METHOD_LENGTH)]
Address = Annotated[str, _text(MAX_ADDRESS_LENGTH)]
Location = Annotated[str, _text(MAX_LOCATION_LENGTH)]
ConnectedRegistryName = Annotated[str, _text(MAX_CONNECTED_REGISTRY_LENGTH)]
ResourceId = Annotated[str, _text(MAX_RESOURCE_ID_LENGTH)]
UserAgent = Annotated[str, AfterValidator(_clip_user_agent)]
# Strict: true, "12" and 1.0 are not sizes; the bound keeps it exact in Cosmos DB.
Size = Annotated[int, Field(strict=True, ge=0, le=MAX_SIZE)]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Target(_Tolerant):
    repository: RepositoryName
    mediaType: MediaType | None = None
    digest: Digest | None = None
    size: Size | None = None
    length: Size | None = None
    tag: Tag | None = None
    # Legacy Helm chart events (chart_push / chart_delete) name the chart here.
    name: Name | None = None
    version: Version | None = None


class RequestInfo(_Tolerant):
    id: Name | None = None
    host: Host | None = None
    method: Method | None = None
    useragent: UserAgent | None = None
    # The client's address (Event Grid and ACR's history carry it, the webhook does not).
    addr: Address | None = None


class Actor(_Tolerant):
    """Who pushed or deleted: a user, service principal or token name."""

    name: Name | None = None


class ConnectedRegistry(_Tolerant):
    name: ConnectedRegistryName | None = None


class ParkedDocument(_Tolerant):
    """What replay checks of a document from the fallback queue before writing it: the keys
    every path that makes a document validated (AcrEvent) and every query needs. The rest
    goes back as it was parked."""

    id: EventId
    repository: Annotated[str, _text(MAX_PARKED_REPOSITORY_LENGTH, min_length=1)]
    # Any action, not only RecordedAction: after a rollback, an event a newer version recorded
    # with an action this one does not know was poisoned, and redrive left it there to expire.
    action: Annotated[str, _text(MAX_NAME_LENGTH, min_length=1)]
    timestamp: Annotated[str, _text(MAX_PARKED_TIMESTAMP_LENGTH, min_length=1)]


class AcrEvent(_Tolerant):
    """A recorded ACR event: push, delete, chart_push, chart_delete or quarantine."""

    id: EventId
    timestamp: datetime
    action: RecordedAction
    target: Target
    request: RequestInfo | None = None
    actor: Actor | None = None
    # The geo-replica region that emitted the event (Event Grid only).
    location: Location | None = None
    connectedRegistry: ConnectedRegistry | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_8601_text(cls, value: object) -> object:
        # pydantic reads numbers and digit strings as Unix time: "20261123" (ISO 8601's basic
        # format) was stored as 1970-08-23. ACR writes the extended format, date first.
        if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE.match(value)):
            return value
        raise ValueError(f"must be ISO 8601 text, e.g. {_EXAMPLE_TIMESTAMP}")

    @field_validator("timestamp")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        # ACR writes UTC with a "Z"; a naive time can only mean UTC too.
        if value.tzinfo is None:
            utc = value.replace(tzinfo=UTC)
        else:
            try:
                utc = value.astimezone(UTC)
            except OverflowError:
                # Past datetime's own range: outside the stored range all the more.
                raise ValueError(f"year must be from {MIN_YEAR} to {MAX_YEAR} in UTC") from None
        if not MIN_YEAR <= utc.year <= MAX_YEAR:
            raise ValueError(f"year must be from {MIN_YEAR} to {MAX_YEAR} in UTC")
        return utc


def validation_problems(error: ValidationError, prefix: str = "") -> list[str]:
    """``field: problem`` for each bad field, e.g. ``target.repository: Field required``
    (``prefix`` names where the object sits; no input values: they may be large)."""
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        path = ".".join(str(part) for part in detail["loc"])
        field = ".".join(part for part in (prefix, path) if part) or "body"
        message = detail["msg"]
        kind = detail["type"]
        if kind == "string_pattern_mismatch":
            message = _PATTERN_PROBLEMS.get(str(detail.get("ctx", {}).get("pattern")), message)
        elif kind == "model_type":  # pydantic names the model class, which no payload does
            message = "must be a JSON object"
        elif kind == "value_error":  # the app's own words, without pydantic's "Value error, "
            message = str(detail.get("ctx", {}).get("error", message))
        problems.append(f"{field}: {message}")
    return problems


def parse_webhook_payload(payload: Mapping[str, Any], prefix: str = "") -> AcrEvent | list[str]:
    """A webhook payload (the body ACR posts, or the ``content`` of an entry of ACR's delivery
    history) as the recorded event it carries, or the problems that make it none, each named
    as in ``validation_problems``: the one validation every path that takes webhook payloads
    shares. Check for ``ping`` and unrecorded actions first: they are problems here."""
    try:
        return AcrEvent.model_validate(payload)
    except ValidationError as error:
        return validation_problems(error, prefix)


def iso_utc(moment: datetime) -> str:
    """Fixed-width ISO 8601 UTC, so that string order is time order in Cosmos DB queries."""
    # Both of an event's times are UTC already (the validator and utc_now make them so).
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    # strftime("%Y-%m-%dT%H:%M:%S.%fZ")'s text for a third of its CPU: this runs twice per event.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond,
    )


# ACR dates an event when it sends it. One dated later than this after the app received it is
# a forgery (a delivery key's holder), which would head every newest-first page until it
# expired; a day covers any clock's skew.
MAX_AHEAD: Final = timedelta(days=1)


def dated_ahead(event: AcrEvent, received_at: datetime) -> str | None:
    """Why ``event``, received at ``received_at``, is not stored: its timestamp is more than
    MAX_AHEAD after it; None when it is not."""
    if event.timestamp - received_at <= MAX_AHEAD:
        return None
    return (
        f"timestamp: {iso_utc(event.timestamp)} is more than a day after the event was received "
        f"({iso_utc(received_at)}); ACR dates an event when it sends it"
    )


def to_document(
    event: AcrEvent,
    received_at: datetime,
    source: Source = "webhook",
    registry_resource_id: str | None = None,
) -> dict[str, Any]:
    """The Cosmos DB item for one event; ``id`` is the event id, so writes are idempotent.

    ``registry_resource_id``: the registry's ARM id when the delivery names it (Event Grid's
    topic or source); every field of ENRICHMENT_FIELDS is null when the delivery lacks it.
    """
    target, request, actor, connected = (
        event.target,
        event.request,
        event.actor,
        event.connectedRegistry,
    )
    return {
        "id": event.id,
        "action": event.action,
        "source": source,
        "repository": target.repository,
        "tag": target.tag or None,
        "digest": target.digest,
        "mediaType": target.mediaType,
        "size": target.size if target.size is not None else target.length,
        "timestamp": iso_utc(event.timestamp),
        "registry": request.host if request else None,
        "receivedAt": iso_utc(received_at),
        "userAgent": request.useragent if request else None,
        "requestId": request.id if request else None,
        "requestMethod": request.method if request else None,
        "chartName": target.name,
        "chartVersion": target.version,
        # Empty counts as absent, so that a later delivery that has the value fills it in.
        "actor": (actor.name or None) if actor else None,
        "clientAddress": (request.addr or None) if request else None,
        "location": event.location or None,
        "connectedRegistry": (connected.name or None) if connected else None,
        "registryResourceId": registry_resource_id or None,
    }


# The read side's query model: the filters of GET /api/acr/events and the events CLI.
DEFAULT_LIMIT: Final = 50
# Filters that match a stored field exactly (registry: the login server as recorded).
EXACT_FILTERS: Final = ("registry", "repository", "tag", "digest", "action")
FILTERS: Final = (*EXACT_FILTERS, "since", "until")


def about(document: Mapping[str, Any]) -> dict[str, Any]:
    """The structured fields of a log record about one event document, as on the routes'
    decisions: its event id, action and repository."""
    return {
        "event_id": document["id"],
        "action": document.get("action"),
        "repository": document["repository"],
    }


def filters_fingerprint(filters: Mapping[str, str | None]) -> str:
    """Identifies a set of filter values, so a continuation token cannot page another query."""
    # In the order fingerprints had before the registry filter, which comes last and only when
    # given: a token handed out before it existed still pages its query.
    names = ("repository", "tag", "digest", "action", "since", "until")
    given = [filters.get(name) for name in names]
    if filters.get("registry") is not None:
        given.append(filters["registry"])
    return hashlib.sha256(json.dumps(given).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Position:
    """Where the previous page ended: every event newer than ``timestamp`` was returned and, of
    the events at ``timestamp``, those whose tie digest (queries.tie_digest) is at most
    ``tied_through``, or all of them when it is None. The store is asked only for the events
    at or before ``timestamp``; the app puts those that tie in order."""

    timestamp: str
    tied_through: str | None = None


@dataclass(frozen=True)
class EventQuery:
    """Validated filters (exact matches; since inclusive, until exclusive), page size, position.

    ``since``/``until`` are normalised to the stored fixed-width UTC form, so they compare with
    the stored ``timestamp`` as strings.
    """

    registry: str | None = None
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None
    action: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = DEFAULT_LIMIT
    after: Position | None = None
    # Fingerprint of the filter parameters as the client gave them (see parse_event_query).
    origin: str = ""

    @property
    def single_partition(self) -> bool:
        """The repository is the partition key: with it the query reads one partition."""
        return self.repository is not None

    def fingerprint(self) -> str:
        """Identifies the filters (not the limit), so a token cannot page another query."""
        return self.origin or filters_fingerprint({name: getattr(self, name) for name in FILTERS})

    def describe(self) -> str:
        """For logs: the filters that are set, values repr()'d so they cannot forge lines."""
        parts = [f"{name}={getattr(self, name)!r}" for name in FILTERS if getattr(self, name)]
        parts.append(f"limit={self.limit}")
        if self.after is not None:
            parts.append("continued")
        return " ".join(parts)


# The stored fields that name a person (docs/operations.md, "Personal data").
PersonField = Literal["actor", "clientAddress"]


@dataclass(frozen=True)
class Person:
    """Whose events to erase: a value of one stored field that names a person, in any case.
    A client address also matches with a port after it (``host:port``, as ACR records ``addr``),
    so an address given without its port finds every connection the person made from it."""

    field: PersonField
    value: str

    def recorded_forms(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The lower-case values that name the person whole, and those that begin a value
        followed by a port. An IP address in any written form (expanded, upper case, in
        brackets) is matched as ACR records it: IPv4 ``a.b.c.d`` and ``a.b.c.d:port``, IPv6
        compressed bare, ``[v6]`` and ``[v6]:port``, never bare with ``:`` after it, which
        would be another IPv6 address. Any other value (a host name) as IPv4 is; a value with
        a port already matches only itself."""
        text = self.value.lower()
        if self.field != "clientAddress":
            return (text,), ()
        bracketed = text.startswith("[") and text.endswith("]")
        try:
            address = ipaddress.ip_address(text[1:-1] if bracketed else text)
        except ValueError:
            return (text,), (() if ":" in text else (f"{text}:",))
        if address.version == 4:
            return (address.compressed,), (f"{address.compressed}:",)
        compressed = address.compressed
        return (compressed, f"[{compressed}]"), (f"[{compressed}]:",)

    def describe(self) -> str:
        return f"{'client address' if self.field == 'clientAddress' else 'actor'} {self.value!r}"


@dataclass(frozen=True)
class StoredEvent:
    """One stored event that names a person: enough to delete it (its id and partition key)
    and to show what matched."""

    id: str
    repository: str
    matched: str
    actor: str | None = None  # whom the event names as its actor, whatever matched


@dataclass(frozen=True)
class ParkedEvent:
    """A queue message: the event document and how many replays of it have failed."""

    document: dict[str, Any]
    attempts: int = 0

    def to_message(self) -> str:
        return json.dumps({"document": self.document, "attempts": self.attempts})


class InvalidQueuedEventError(ValueError):
    """A queue message that is not an event this app parked, or one the database refuses:
    it can never be stored, so the runtime's retries end it in the poison queue."""


def parse_parked(message: bytes | str) -> ParkedEvent:
    """The parked event in a queue message: ``{"document": ..., "attempts": n}``, or a bare
    document as parked before replays counted their attempts."""
    try:
        payload = json.loads(message)
    except ValueError as error:
        raise InvalidQueuedEventError(f"queued message is not JSON: {error}") from error
    except RecursionError:
        raise InvalidQueuedEventError("queued message is nested too deeply") from None
    attempts = 0
    if isinstance(payload, dict) and "document" in payload:
        attempts = payload.get("attempts", 0)
        payload = payload["document"]
        if type(attempts) is not int or attempts < 0:
            raise InvalidQueuedEventError("queued message has no valid attempt count")
    try:
        ParkedDocument.model_validate(payload)
    except ValidationError as error:
        problems = "; ".join(validation_problems(error, "document"))
        raise InvalidQueuedEventError(
            f"queued message is not an event document: {problems}"
        ) from None
    return ParkedEvent(payload, attempts)
