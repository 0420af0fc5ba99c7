"""Pydantic models of the ACR webhook events and the document each one becomes.

Forward compatible by design: unknown fields are ignored rather than rejected, and only the
fields the record needs are required. Real payloads omit ``request`` (chart events),
``request.useragent`` and ``target.tag`` (push by digest), and carry nanosecond timestamps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

PING: Final = "ping"
RECORDED_ACTIONS: Final = frozenset({"push", "delete", "chart_push", "chart_delete", "quarantine"})

# Cosmos DB refuses these characters in an item id; the event id becomes the item id.
EventId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^/\\?#]+$")]
RepositoryName = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
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


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Target(_Tolerant):
    repository: RepositoryName
    mediaType: str | None = None
    digest: str | None = None
    size: Annotated[int, Field(ge=0)] | None = None
    length: Annotated[int, Field(ge=0)] | None = None
    tag: str | None = None
    # Legacy Helm chart events (chart_push / chart_delete) name the chart here.
    name: str | None = None
    version: str | None = None


class RequestInfo(_Tolerant):
    id: str | None = None
    host: str | None = None
    method: str | None = None
    useragent: str | None = None


class AcrEvent(_Tolerant):
    """A recorded ACR event: push, delete, chart_push, chart_delete or quarantine."""

    id: EventId
    timestamp: datetime
    action: str
    target: Target
    request: RequestInfo | None = None

    @field_validator("timestamp")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        # ACR writes UTC with a "Z"; a naive time can only mean UTC too.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_utc(moment: datetime) -> str:
    """Fixed-width ISO 8601 UTC, so that string order is time order in Cosmos DB queries."""
    utc = moment.astimezone(UTC)
    # strftime("%Y-%m-%dT%H:%M:%S.%fZ")'s very text (year unpadded below 1000, as glibc does)
    # for a third of its CPU: this runs twice per event.
    return "%d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond,
    )


def to_document(
    event: AcrEvent, received_at: datetime, source: Source = "webhook"
) -> dict[str, Any]:
    """The Cosmos DB item for one event; ``id`` is the event id, so writes are idempotent."""
    target, request = event.target, event.request
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
    }


# The read side's query model: the filters of GET /api/acr/events and the events CLI.
DEFAULT_LIMIT: Final = 50
FILTERS: Final = ("repository", "tag", "digest", "action", "since", "until")


def filters_fingerprint(filters: Mapping[str, str | None]) -> str:
    """Identifies a set of filter values, so a continuation token cannot page another query."""
    given = [filters.get(name) for name in FILTERS]
    return hashlib.sha256(json.dumps(given).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Position:
    """Where the previous page ended: its last timestamp and the events returned at it."""

    timestamp: str
    seen: tuple[str, ...]  # event_key() of each event at `timestamp` already returned


@dataclass(frozen=True)
class EventQuery:
    """Validated filters (exact matches; since inclusive, until exclusive), page size, position.

    ``since``/``until`` are normalised to the stored fixed-width UTC form, so they compare with
    the stored ``timestamp`` as strings.
    """

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
