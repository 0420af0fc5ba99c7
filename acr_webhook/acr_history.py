"""ACR's webhook delivery history through the management API (ARM ``webhooks/listEvents``).

Only the reconcile timer uses this module, through the one instance runtime.webhook_history()
keeps for the process, made on the timer's first run; the management SDK and azure.identity
are imported when it first reads a history. All of it stays out of every cold start.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from acr_webhook.config import ReconcileSettings, parse_registry_id
from acr_webhook.identity import default_credential
from acr_webhook.once import BuiltOnce
from acr_webhook.store import HistoryUnreadableError, first_line
from acr_webhook.tls import verify_tls

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.paging import PageIterator
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

# The timer is not on a request path: calls may take a while, but every call is bounded.
MANAGEMENT_TIMEOUTS: dict[str, Any] = {
    "connection_timeout": 10,
    "read_timeout": 60,
    "retry_total": 3,
}


# ARM's answers that a person must act on, not a run to come: what to fix, first.
_SET_UP_FIXES: dict[object, str] = {
    403: "refused (403): give the app's identity the role 'ACR webhook history reader' on the "
    "registry (the template's; a new assignment takes minutes)",
    404: "not found (404): check ACR_REGISTRY_ID and ACR_WEBHOOK_NAMES against the registry's "
    "webhooks",
}


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port that a request to ``url`` goes to, the port filled in where the
    scheme implies it. Read as urllib3 reads it, since that is where requests connects:
    urlsplit takes the host of ``https://a.example\\@b.example/`` to be b.example, urllib3 (and
    so the connection, and the token sent on it) a.example."""
    try:
        parts = parse_url(url)
    except LocationParseError as error:
        raise HistoryUnreadableError(
            f"the history's next-page link is not a URL ({error})"
        ) from None
    scheme = (parts.scheme or "").lower()
    return scheme, (parts.host or "").lower(), parts.port or {"https": 443, "http": 80}.get(scheme)


class ManagementApiHistory:
    """Each webhook's history, every page (the SDK follows ``nextLink``), as plain dicts shaped
    like the REST answer's ``value`` items, which is also what ``az`` prints.

    ``credential`` defaults to DefaultAzureCredential: the managed identity in Azure
    (AZURE_CLIENT_ID names it). The endpoint and token audience come from the settings, as
    sovereign clouds need. Client and credential are made on the first read and kept for every
    later one: the client holds its token until it nears expiry (or ARM answers 401) and its
    connections open between timer runs.
    """

    def __init__(self, target: ReconcileSettings, credential: TokenCredential | None = None):
        self._target = target
        self._registry = parse_registry_id(target.registry_id)
        self._credential = credential
        self._management_client = BuiltOnce(self._create_client)

    def _create_client(self) -> ContainerRegistryManagementClient:
        from azure.mgmt.containerregistry import ContainerRegistryManagementClient

        credential = self._credential
        if credential is None:
            credential = default_credential()
        endpoint = self._target.arm_endpoint
        return ContainerRegistryManagementClient(
            credential,
            self._registry.subscription_id,
            base_url=endpoint,
            credential_scopes=[self._target.arm_scope],
            connection_verify=verify_tls(endpoint),
            **MANAGEMENT_TIMEOUTS,
        )

    def entries(self, webhook_name: str) -> Iterator[dict[str, Any]]:
        """The webhook's history, page by page. Raises HistoryUnreadableError for any failure to
        read it (the SDK's, an answer that is not a list of events, a next-page link that comes
        round again): each would otherwise end the run with a traceback, or never end it."""
        try:
            yield from self._pages(webhook_name)
        except AzureError as error:
            # The SDK's message gives ARM's error twice: once, as its first line.
            said = f"{type(error).__name__}: {first_line(str(error))}"
            fix = _SET_UP_FIXES.get(getattr(error, "status_code", None))
            raise HistoryUnreadableError(f"{fix}; {said}" if fix else said) from error

    def _pages(self, webhook_name: str) -> Iterator[dict[str, Any]]:
        listed = self._management_client().webhooks.list_events(
            self._registry.resource_group, self._registry.name, webhook_name
        )
        # by_page() is typed as a plain iterator; it is azure-core's PageIterator, which says
        # which link it follows next.
        pages = cast("PageIterator[Any]", listed.by_page())
        endpoint = _origin(self._target.arm_endpoint)
        followed: set[str] = set()
        try:
            for page in pages:
                for event in page:
                    yield event.as_dict()
                link = pages.continuation_token
                if link in followed:
                    raise HistoryUnreadableError(
                        "the history's next-page links go round in a circle"
                    )
                # The client sends its management token with every request it makes: never to a
                # host other than the management endpoint's. (A relative link stays on it.)
                if link:
                    target = _origin(link)
                    if urlsplit(link).netloc and target != endpoint:
                        raise HistoryUnreadableError(
                            "the history's next-page link leads away from the management"
                            f" endpoint ({target[1]!r})"
                        )
                    followed.add(link)
        except (AttributeError, TypeError) as error:  # the SDK's reading of a malformed answer
            raise HistoryUnreadableError(
                f"DecodeError: the history is not a list of events ({error})"
            ) from error
