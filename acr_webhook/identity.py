"""The Microsoft Entra credential of every client the deployed app builds (Cosmos DB, the
fallback queue, the management API), when no key is configured: the managed identity in Azure.

Its token requests get timeouts of their own. The clients' timeouts bound only their calls to the
service, not the token request before the first one (and again as the token nears expiry), which
would otherwise go through azure-core's defaults: 300 s to connect and to read, with retries. A
slow or hung identity endpoint then held a webhook answer for minutes, where ACR waits 5 s. The
token, once fetched, is cached for hours, so a token request is rare on the request path; when it
fails, the write fails over as any other (the fallback queue, or 503).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

# App Service's identity endpoint is on the instance and answers within milliseconds; Entra ID
# behind it within about a second. One try: a second could not fit ACR's 5 s either.
IDENTITY_TIMEOUTS: dict[str, Any] = {"connection_timeout": 1, "read_timeout": 2, "retry_total": 0}


def default_credential() -> TokenCredential:
    """DefaultAzureCredential (the managed identity in Azure, AZURE_CLIENT_ID naming a
    user-assigned one; a developer's sign-in elsewhere), its token requests bounded."""
    # Imported here: only the deployed app (managed identity) pays for azure-identity.
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(**IDENTITY_TIMEOUTS)
