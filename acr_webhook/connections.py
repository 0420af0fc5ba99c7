"""What a failed SDK call says about its connection, for the adapters that decide on it: the
Azure SDKs' errors hold requests', which hold urllib3's, which hold the socket's."""

from __future__ import annotations

from azure.core.exceptions import ServiceResponseError
from urllib3.exceptions import ProtocolError


def caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether an exception of ``kind`` is among ``error``'s causes, through the SDK's
    ``inner_exception`` and Python's ``__cause__`` and ``__context__``."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        pending += [
            getattr(current, "inner_exception", None),
            current.__cause__,
            current.__context__,
        ]
    return False


def connection_refused(error: BaseException) -> bool:
    """Whether the connection was refused (the socket's ConnectionRefusedError)."""
    return caused_by(error, ConnectionRefusedError)


def closed_without_answer(error: BaseException) -> bool:
    """Whether the connection broke off after the request went out and before an answer.
    urllib3 says "Connection aborted." (ProtocolError) for a connection closed or reset by the
    other side, never for a wait that timed out or a connection that could not be made.

    Servers and load balancers close keep-alive connections left idle, and a request sent as
    one closes is lost with it: the Azure SDKs, told to retry nothing (ACR waits 5 s once),
    give up. A second try goes out on a new connection."""
    return isinstance(error, ServiceResponseError) and caused_by(error, ProtocolError)
