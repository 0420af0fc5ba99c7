"""ACR's delivery history read through the management SDK, without a server (acr_history.py): the
management endpoint a next-page link may lead to (the token's audience: scheme, host and port),
and what a read that fails says, the fix first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError

from acr_webhook.acr_history import _SET_UP_FIXES as _HISTORY_FIXES
from acr_webhook.acr_history import ManagementApiHistory, _origin
from acr_webhook.config import ReconcileSettings
from acr_webhook.store import HistoryUnreadableError

# --- acr_history._origin: where a next-page link may lead ---------------------------------------


@pytest.mark.parametrize(
    ("link", "same"),
    [
        ("https://MANAGEMENT.azure.com/subscriptions/s", True),  # host names ignore case
        ("HTTPS://management.azure.com:443/subscriptions/s", True),
        ("https://management.azure.com.evil.example/subscriptions/s", False),
        ("https://user@management.azure.com/subscriptions/s", True),  # same host, same token
        ("http://management.azure.com:443/subscriptions/s", False),  # the token in clear
    ],
)
def test_the_management_endpoint_is_its_scheme_host_and_port(link: str, same: bool) -> None:
    """acr_history._origin: "Scheme, host and port of ``url``" (the token's audience)."""
    assert (_origin(link) == _origin("https://management.azure.com/")) is same


class Pages:
    """azure-core's PageIterator as acr_history reads it: pages, and the link it follows next."""

    def __init__(self, pages: list[tuple[list[dict[str, Any]], str | None]]) -> None:
        self._pages = pages
        self.continuation_token: str | None = None

    def __iter__(self) -> Iterator[list[Any]]:
        for events, link in self._pages:
            self.continuation_token = link
            yield [SimpleNamespace(as_dict=lambda e=e: e) for e in events]


def read_history(pages: Pages) -> list[dict[str, Any]]:
    listed = SimpleNamespace(by_page=lambda: pages)
    client = SimpleNamespace(webhooks=SimpleNamespace(list_events=lambda *_: listed))
    history = ManagementApiHistory(
        ReconcileSettings(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry"
            "/registries/reg",
            ("acrwebhook",),
        )
    )
    history._management_client = lambda: client  # type: ignore[assignment]
    return list(history.entries("acrwebhook"))


def test_a_relative_next_page_link_stays_on_the_endpoint_and_is_followed() -> None:
    """acr_history: "(A relative link stays on it.)": the SDK joins it to its base URL."""
    path = "/subscriptions/s/resourceGroups/rg/providers/x/listEvents?skip=1"
    assert read_history(Pages([([{"id": "1"}], path), ([{"id": "2"}], None)])) == [
        {"id": "1"},
        {"id": "2"},
    ]


@pytest.mark.parametrize(
    ("link", "host"),
    [
        ("https://elsewhere.example/listEvents?skip=1", "elsewhere.example"),
        # Another port of the same host is another service (acr_history._origin).
        ("https://management.azure.com:8443/listEvents?skip=1", "management.azure.com"),
    ],
)
def test_a_next_page_link_away_from_the_endpoint_ends_the_read_before_it_is_followed(
    link: str, host: str
) -> None:
    """docs/delivery.md: a next-page link to a host other than the management endpoint is
    logged as unreadable: "the client would send its token there"."""
    pages = Pages([([{"id": "1"}], link), ([{"id": "2"}], None)])
    with pytest.raises(HistoryUnreadableError, match=re.escape(f"({host!r})")):
        read_history(pages)


# --- acr_history._origin: the port a scheme implies ---------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_port_a_scheme_implies_is_the_same_origin(scheme: str) -> None:
    """acr_history._origin: "Scheme, host and port that a request to ``url`` goes to, the port
    filled in where the scheme implies it" (http 80, https 443). Mutant: http's 80 dropped, so a
    next-page link naming the port an http endpoint (a local stand-in) implies is refused."""
    default = {"http": 80, "https": 443}[scheme]
    implied = _origin(f"{scheme}://management.example/subscriptions/s")
    assert implied == _origin(f"{scheme}://management.example:{default}/subscriptions/s?page=2")
    assert implied[2] == default


# --- acr_history: ARM's refusal, what to fix first --------------------------------------------


class Unreadable:
    """A history whose first page fails with ``error``."""

    def __init__(self, error: AzureError) -> None:
        self.error = error
        self.continuation_token: str | None = None

    def __iter__(self) -> Iterator[list[Any]]:
        raise self.error


def arm_refusal(status: int) -> HttpResponseError:
    """ARM's error as the SDK words it: its message, then the same again as Code and Message."""
    error = HttpResponseError(
        "(AuthorizationFailed) The client does not have authorization\n"
        "Code: AuthorizationFailed\nMessage: The client does not have authorization"
    )
    error.status_code = status
    return error


FIRST_LINE = "HttpResponseError: (AuthorizationFailed) The client does not have authorization"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (arm_refusal(403), f"{_HISTORY_FIXES[403]}; {FIRST_LINE}"),
        (arm_refusal(404), f"{_HISTORY_FIXES[404]}; {FIRST_LINE}"),
        (arm_refusal(500), FIRST_LINE),
        (
            ServiceRequestError("Failed to establish a new connection\nmore"),
            "ServiceRequestError: Failed to establish a new connection",
        ),
    ],
    ids=["403", "404", "500", "unreachable"],
)
def test_a_history_read_that_fails_names_the_fix_first_then_the_sdks_first_line(
    error: AzureError, said: str
) -> None:
    """acr_history._SET_UP_FIXES: "ARM's answers that a person must act on ...: what to fix,
    first", then the SDK's first line once; any other failure, an unreachable ARM included (an
    AzureError with no status code), its first line alone. Kills the fix put after ARM's
    message, the message whole, and the status read as ``error.status_code`` (an
    AttributeError, not HistoryUnreadableError, for a connection that failed)."""
    with pytest.raises(HistoryUnreadableError) as unreadable:
        read_history(Unreadable(error))  # type: ignore[arg-type]

    assert str(unreadable.value) == said
    assert "ACR webhook history reader" in _HISTORY_FIXES[403]
    assert "ACR_WEBHOOK_NAMES" in _HISTORY_FIXES[404]
