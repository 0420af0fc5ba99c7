"""The durable fallback: when Cosmos DB fails, a validated event waits in a Storage queue.

This is the Azure Storage queue behind ``store.FallbackQueue``; ``replay`` applies the queued
events to Cosmos DB later. Messages never expire, so an outage of any length loses nothing.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError

from acr_webhook.config import QueueSettings
from acr_webhook.connections import closed_without_answer
from acr_webhook.identity import default_credential
from acr_webhook.models import ParkedEvent, about
from acr_webhook.once import BuiltOnce
from acr_webhook.store import FallbackUnavailableError, failure_kind

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.queue import QueueClient

log = logging.getLogger(__name__)

# The queue is the last resort inside ACR's 5 s window, after Cosmos DB has used up to ~2 s.
QUEUE_WAITS: dict[str, float] = {"connection_timeout": 1, "read_timeout": 1.5}
QUEUE_TIMEOUTS: dict[str, Any] = {**QUEUE_WAITS, "retry_total": 0}
# A put's bound, a second send included: one connection's wait and one answer's.
QUEUE_BUDGET_S = sum(QUEUE_WAITS.values())


# The queue trigger decodes a message with .NET's Convert.FromBase64String, which skips these
# (e.g. the line breaks the `base64` command writes every 76 characters) and nothing else.
_SKIPPED_BY_DECODER = str.maketrans("", "", " \t\r\n")

# Storage queue messages live 7 days unless told otherwise; -1 keeps them until replayed.
NEVER_EXPIRES = -1


def create_queue_client(
    settings: QueueSettings, timeouts: dict[str, Any], base64_messages: bool = True
) -> QueueClient:
    """``base64_messages``: encode on send and decode on receive, as the Functions queue
    trigger expects by default (messageEncoding); off to see messages exactly as stored."""
    # Imported here, not at module level: the SDK (with cryptography for its client-side
    # encryption) adds ~40 ms to every cold start, and only the rare fallback path needs it.
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    encode = TextBase64EncodePolicy() if base64_messages else None
    decode = TextBase64DecodePolicy() if base64_messages else None
    if settings.connection_string:
        return QueueClient.from_connection_string(
            settings.connection_string,
            settings.queue_name,
            message_encode_policy=encode,
            message_decode_policy=decode,
            **timeouts,
        )
    if not settings.queue_service_uri:
        raise ValueError("QueueSettings needs a connection string or a queue service URI")
    credential: TokenCredential = default_credential()
    return QueueClient(
        settings.queue_service_uri,
        settings.queue_name,
        credential=credential,
        message_encode_policy=encode,
        message_decode_policy=decode,
        **timeouts,
    )


def decode_message(content: str) -> bytes:
    """A message's body as the Functions queue trigger decodes it (messageEncoding base64).
    Raises ValueError (binascii.Error) where the trigger's decoding fails."""
    return base64.b64decode(content.translate(_SKIPPED_BY_DECODER), validate=True)


class StorageQueueFallback:
    """Azure Storage queue (Azurite locally). The client is created once, on first use."""

    def __init__(self, settings: QueueSettings) -> None:
        # Built inside put: a setting the SDK refuses is then an unavailable fallback (503),
        # not an error out of the request path.
        self._queue = BuiltOnce(lambda: create_queue_client(settings, QUEUE_TIMEOUTS))

    def put(self, document: dict[str, Any], *, attempts: int = 0, delay_s: int = 0) -> None:
        """Parks ``document`` within QUEUE_BUDGET_S. A send whose connection closed without an
        answer (connections.closed_without_answer) is sent once more with what is left: the
        event may then be parked twice, which replay stores once, by its id."""
        deadline = time.monotonic() + QUEUE_BUDGET_S
        try:
            message = ParkedEvent(document, attempts).to_message()
            try:
                self._send(message, delay_s, QUEUE_WAITS)
            except AzureError as error:
                left = deadline - time.monotonic()
                if not closed_without_answer(error) or left <= 0:
                    raise
                log.info(
                    "event=%r queue closed the connection without an answer: sending once more",
                    document["id"],
                    extra=about(document),
                )
                self._send(message, delay_s, {n: min(left, w) for n, w in QUEUE_WAITS.items()})
        except (AzureError, ValueError) as error:
            raise FallbackUnavailableError(
                f"{type(error).__name__}: {error}", cause=failure_kind(error)
            ) from error

    def _send(self, message: str, delay_s: int, waits: dict[str, float]) -> None:
        self._queue().send_message(
            message,
            visibility_timeout=delay_s or None,
            time_to_live=NEVER_EXPIRES,
            connection_timeout=waits["connection_timeout"],
            read_timeout=waits["read_timeout"],
        )


def provision_queue(settings: QueueSettings) -> None:
    """Create the fallback queue and its poison queue if missing. In Azure, Bicep creates the
    fallback queue and the Functions runtime the poison queue, when it first moves a message."""
    for queue in (settings, settings.poison):
        client = create_queue_client(
            queue, {"connection_timeout": 5, "read_timeout": 30, "retry_total": 0}
        )
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
