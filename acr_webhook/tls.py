"""Whether a client verifies its service's TLS certificate: always, except on this machine.

The local stand-ins (the Cosmos DB API server, the management API stand-in of the tests) serve
self-signed certificates on loopback addresses; every other host is verified. Shared by the
Cosmos DB and management clients, so that both draw the line in the same place.
"""

from __future__ import annotations

import ipaddress
import warnings

from urllib3.exceptions import InsecureRequestWarning, LocationParseError
from urllib3.util import parse_url

from acr_webhook.config import ca_bundle


def is_loopback(endpoint: str) -> bool:
    """Whether requests would connect to a loopback address for ``endpoint``. Read as urllib3
    reads it, which is what requests connects to: urlsplit takes the host of
    ``https://a.example\\@127.0.0.1/`` to be 127.0.0.1, urllib3 (and so the connection) a.example.
    """
    try:
        host = (parse_url(endpoint).host or "").lower().strip("[]")
    except LocationParseError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def verify_tls(endpoint: str) -> bool | str:
    """What a client verifies ``endpoint``'s certificate against: the CA bundle that
    REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE names (a TLS-inspecting network's), as requests would
    pick it from the environment, which the Cosmos transport does not read; else the default
    (True). False for a loopback ``endpoint`` alone, and then urllib3's warning about each
    unverified request is silenced, for loopback hosts only: expected there, and one per
    request."""
    if not is_loopback(endpoint):
        return ca_bundle() or True
    warnings.filterwarnings(
        "ignore",
        message=r"Unverified HTTPS request is being made to host '(127\.|localhost|::1)",
        category=InsecureRequestWarning,
    )
    return False
