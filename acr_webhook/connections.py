"""What a failed SDK call says about its connection, for the adapters that decide on it: the
Azure SDKs' errors hold requests', which hold urllib3's, which hold the socket's."""

from __future__ import annotations

import ssl

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
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
    """Whether the other side closed the connection before it answered: urllib3 says
    "Connection aborted." (ProtocolError) for a connection closed or reset once the request went
    out, and TLS says EOF (ssl.SSLEOFError) for one closed as the request was being written, or
    during a new one's handshake. Neither is a wait that timed out, nor a connection refused.

    Servers and load balancers close keep-alive connections left idle, and a request sent as
    one closes is lost with it: the Azure SDKs, told to retry nothing (ACR waits 5 s once),
    give up. A second try goes out on a new connection."""
    if isinstance(error, ServiceResponseError):
        return caused_by(error, ProtocolError)
    return isinstance(error, ServiceRequestError) and caused_by(error, ssl.SSLEOFError)
