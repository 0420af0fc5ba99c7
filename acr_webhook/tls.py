"""Whether a client verifies its service's TLS certificate: always, except on this machine.

The local stand-ins (the Cosmos DB API server, the management API stand-in of the tests) serve
self-signed certificates on loopback addresses; every other host is verified. Shared by the
Cosmos DB and management clients, so that both draw the line in the same place.
"""

from __future__ import annotations

import ipaddress
import warnings
from urllib.parse import urlsplit

from urllib3.exceptions import InsecureRequestWarning


def is_loopback(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def verify_tls(endpoint: str) -> bool:
    """False for a loopback ``endpoint`` alone, and then urllib3's warning about each unverified
    request is silenced, for loopback hosts only: expected there, and one per request."""
    if not is_loopback(endpoint):
        return True
    warnings.filterwarnings(
        "ignore",
        message=r"Unverified HTTPS request is being made to host '(127\.|localhost|::1)",
        category=InsecureRequestWarning,
    )
    return False
