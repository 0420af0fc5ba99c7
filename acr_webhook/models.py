"""Pydantic models of the ACR webhook events and the document each one becomes.

Forward compatible by design: unknown fields are ignored rather than rejected, and only the
fields the record needs are required. Real payloads omit ``request`` (chart events),
``request.useragent`` and ``target.tag`` (push by digest), and carry nanosecond timestamps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

PING: Final = "ping"
RECORDED_ACTIONS: Final = frozenset({"push", "delete", "chart_push", "chart_delete", "quarantine"})

# Cosmos DB refuses these characters in an item id; the event id becomes the item id.
EventId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^/\\?#]+$")]
RepositoryName = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Source = Literal["webhook", "eventgrid"]


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
