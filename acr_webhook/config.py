"""The one place that reads configuration.

Settings come from the environment and, for local runs, from ``local.settings.json`` "Values"
(the file Core Tools reads too). The environment wins, so a deployed app and CI need no file.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

DEFAULT_DATABASE = "acr"
DEFAULT_CONTAINER = "events"
# Fixed, not a setting: the queue-trigger decorator and the writer must name the same queue.
FALLBACK_QUEUE_NAME = "acr-events-fallback"
DEFAULT_SECRET_HEADER = "Authorization"  # noqa: S105 (a header name, not a secret)
LOCAL_SETTINGS_FILE = "local.settings.json"
# The Functions host's own storage connection; the fallback queue lives in the same account.
STORAGE_CONNECTION = "AzureWebJobsStorage"

# Concurrency, sized together (infra/modules/function-app.bicep sets the same numbers and a test
# keeps them in step). Each request holds a worker thread while it waits on Cosmos DB, so the
# worker's thread pool matches the per-instance HTTP concurrency; Event Grid batches fan out on
# one process-wide pool of their own; and the Cosmos connection pool has a connection for every
# thread that can write at once, so no write waits for a connection.
HTTP_CONCURRENCY = 16
BATCH_WRITE_THREADS = 16
COSMOS_POOL_SIZE = HTTP_CONCURRENCY + BATCH_WRITE_THREADS

# Reconcile from ACR's delivery history (timer trigger). The schedule is read by the trigger
# itself as %RECONCILE_SCHEDULE%, so it is an app setting name, not a value read here.
RECONCILE_SCHEDULE_SETTING = "RECONCILE_SCHEDULE"
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
# ARM_ENDPOINT left unset beside a Cosmos DB account of a national cloud means that cloud's
# management endpoint (by the account's host), not the public cloud's: asking the public one
# fails every run, with a token for the wrong audience. The template sets both from environment().
_ARM_ENDPOINT_BY_COSMOS_HOST = {
    ".documents.azure.us": "https://management.usgovcloudapi.net",  # Azure Government
    ".documents.azure.cn": "https://management.chinacloudapi.cn",  # operated by 21Vianet
}
# Once the database is back, a parked event is stored within this cap plus the queue polling
# interval (host.json maxPollingInterval) and the writers' memory of the failure.
DEFAULT_REPLAY_MAX_DELAY_S = 60
# The variables through which requests (under every Azure SDK client) finds a proxy; it reads
# them in either case (urllib.request.getproxies).
PROXY_VARIABLES = frozenset({"https_proxy", "http_proxy", "all_proxy"})
# And the CA bundle it verifies against instead of certifi's (a TLS-inspecting network's root
# certificate is in it), the first that is set; these it reads in this case only.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


# Reads serve people (HTTP GET, CLI): each page of the read API or the CLI, however many
# queries it takes (the pushes view and crowded timestamps take several), gets this long.
QUERY_BUDGET_S = 8.0


class ConfigurationError(Exception):
    """A required setting is missing or unusable; the message names it."""


@dataclass(frozen=True)
class QueueSettings:
    """Where the fallback queue is: a connection string (Azurite, keys) or, in Azure, the
    queue service URI reached with the app's managed identity."""

    queue_name: str
    # Secrets stay out of repr(): a settings object in a log line or a traceback must not leak.
    connection_string: str | None = field(default=None, repr=False)
    queue_service_uri: str | None = None

    @property
    def poison(self) -> QueueSettings:
        """Where the Functions runtime moves a message that keeps failing: ``<queue>-poison``
        in the same account."""
        return dataclasses.replace(self, queue_name=f"{self.queue_name}-poison")


@dataclass(frozen=True)
class ReconcileSettings:
    """Which registry and webhooks the timer reconciles, and the management endpoint to ask
    (sovereign clouds have their own endpoint and token audience)."""

    registry_id: str
    webhook_names: tuple[str, ...]
    arm_endpoint: str = DEFAULT_ARM_ENDPOINT
    arm_audience: str = DEFAULT_ARM_ENDPOINT

    @property
    def arm_scope(self) -> str:
        return f"{self.arm_audience.rstrip('/')}/.default"


@dataclass(frozen=True)
class Settings:
    cosmos_endpoint: str
    cosmos_key: str | None = field(repr=False)
    cosmos_database: str
    cosmos_container: str
    local_function_key: str | None = field(repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_secret_header: str = DEFAULT_SECRET_HEADER
    fallback_queue: QueueSettings | None = None
    # Days a document is kept (the container's default time-to-live); None keeps it forever.
    retention_days: int | None = None
    reconcile: ReconcileSettings | None = None
    # The longest a parked event waits between two replays while the database is down.
    replay_max_delay_s: int = DEFAULT_REPLAY_MAX_DELAY_S


def read_values(
    environ: Mapping[str, str] | None = None, settings_file: Path | None = None
) -> dict[str, str]:
    """Merge ``local.settings.json`` "Values" (if the file exists) under the environment."""
    environ = os.environ if environ is None else environ
    settings_file = Path(LOCAL_SETTINGS_FILE) if settings_file is None else settings_file
    values: dict[str, str] = {}
    if settings_file.is_file():
        try:
            document = json.loads(settings_file.read_text(encoding="utf-8-sig"))  # as Core Tools
        except (OSError, ValueError) as error:
            raise ConfigurationError(f"{settings_file} is not readable JSON: {error}") from error
        file_values = document.get("Values", {}) if isinstance(document, dict) else {}
        if not isinstance(file_values, dict):
            raise ConfigurationError(f'{settings_file}: "Values" must be an object')
        values.update({str(k): str(v) for k, v in file_values.items() if v is not None})
    values.update(environ)
    return values


def proxy_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the process environment names an HTTP proxy, in any case. Read from the
    environment alone, not local.settings.json: requests itself reads only the environment."""
    environ = os.environ if environ is None else environ
    return any(value for name, value in environ.items() if name.lower() in PROXY_VARIABLES)


def ca_bundle(environ: Mapping[str, str] | None = None) -> str | None:
    """The CA bundle the process environment names, picked as requests picks it."""
    environ = os.environ if environ is None else environ
    return next((environ[name] for name in CA_BUNDLE_VARIABLES if environ.get(name)), None)


def _https_url(setting: str, value: str) -> str:
    """``value``, which must be an https:// URL that requests can connect to, read as urllib3
    reads it (one it cannot parse was a traceback, or "unavailable" (run again), at each use),
    with its scheme in lower case: schemes ignore case (RFC 3986), the SDKs' URL joins do not."""
    # Over plain HTTP the client would send its token or signed requests in the clear; the local
    # server and the emulator serve HTTPS too.
    scheme, separator, rest = value.partition("://")
    if not separator or scheme.lower() != "https":
        raise ConfigurationError(f"{setting} must be an https:// URL")
    value = f"https://{rest}"
    try:
        host = parse_url(value).host
    except LocationParseError as error:
        raise ConfigurationError(f"{setting} is not a URL: {error}") from None
    if not host:
        raise ConfigurationError(f"{setting} must be an https:// URL with a host")
    return value


def load_settings(
    environ: Mapping[str, str] | None = None, settings_file: Path | None = None
) -> Settings:
    values = read_values(environ, settings_file)
    endpoint = values.get("COSMOS_ENDPOINT", "").strip()
    if not endpoint:
        raise ConfigurationError(
            "COSMOS_ENDPOINT is not set (environment or local.settings.json Values)"
        )
    return Settings(
        cosmos_endpoint=_https_url("COSMOS_ENDPOINT", endpoint),
        cosmos_key=_cosmos_key(values.get("COSMOS_KEY", "")),
        cosmos_database=values.get("COSMOS_DATABASE") or DEFAULT_DATABASE,
        cosmos_container=values.get("COSMOS_CONTAINER") or DEFAULT_CONTAINER,
        local_function_key=values.get("LOCAL_FUNCTION_KEY") or None,
        webhook_secret=values.get("WEBHOOK_SECRET") or None,
        webhook_secret_header=values.get("WEBHOOK_SECRET_HEADER") or DEFAULT_SECRET_HEADER,
        fallback_queue=queue_settings(values),
        retention_days=_retention_days(values.get("RETENTION_DAYS", "").strip()),
        reconcile=reconcile_settings(values),
        replay_max_delay_s=_replay_max_delay_s(values.get("REPLAY_MAX_DELAY_SECONDS", "").strip()),
    )


def _cosmos_key(value: str) -> str | None:
    """The account key, decoded here as the SDK decodes it to sign each request: a key pasted
    with a character missing was a binascii traceback at the first request. Never quoted."""
    if not value:
        return None
    try:
        base64.b64decode(value)
    except ValueError as error:  # binascii.Error
        raise ConfigurationError(f"COSMOS_KEY is not an account key (base64): {error}") from None
    return value


def _replay_max_delay_s(value: str) -> int:
    if not value:
        return DEFAULT_REPLAY_MAX_DELAY_S
    number = _whole_number(value)
    if number is None or not 1 <= number <= 3600:
        raise ConfigurationError("REPLAY_MAX_DELAY_SECONDS must be a whole number from 1 to 3600")
    return number


def _retention_days(value: str) -> int | None:
    if not value:
        return None
    # Cosmos DB keeps the time-to-live in seconds as a 32-bit number: 24855 days at most.
    number = _whole_number(value)
    if number is None or not 1 <= number <= 24855:
        raise ConfigurationError("RETENTION_DAYS must be a whole number of days from 1 to 24855")
    return number


def _whole_number(value: str) -> int | None:
    """``value`` as written in ASCII digits, else None. Not str.isdigit alone: "²" passes it and
    int() refuses it (a traceback, not a configuration error), and int() takes other scripts'
    digits and refuses more than 4,300 of them."""
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        return None
    return int(value)


_REGISTRY_ID_NAMES = ["subscriptions", "resourcegroups", "providers", "registries"]
_REGISTRY_ID_FORM = (
    "ACR_REGISTRY_ID must be one registry's resource id (/subscriptions/S/resourceGroups/G"
    "/providers/Microsoft.ContainerRegistry/registries/NAME)"
)


@dataclass(frozen=True)
class RegistryRef:
    subscription_id: str
    resource_group: str
    name: str


def parse_registry_id(registry_id: str) -> RegistryRef:
    """``/subscriptions/S/resourceGroups/G/providers/Microsoft.ContainerRegistry/registries/N``
    (segment names in any case, as ARM accepts them)."""
    parts = registry_id.strip("/").split("/")
    # Exactly one registry: "<dev id>,<prod id>" was read as the last one, the first never asked.
    names = [part.lower() for part in parts[0::2]]
    if (
        len(parts) != 8
        or not all(parts)  # "resourceGroups//", or an empty name: an unset variable in a script
        or names != _REGISTRY_ID_NAMES
        or parts[5].lower() != "microsoft.containerregistry"
    ):
        raise ConfigurationError(_REGISTRY_ID_FORM)
    return RegistryRef(parts[1], parts[3], parts[7])


def reconcile_settings(values: Mapping[str, str]) -> ReconcileSettings | None:
    """The registry and webhooks to reconcile, or None when ACR_REGISTRY_ID is not set."""
    registry_id = values.get("ACR_REGISTRY_ID", "").strip()
    if not registry_id:
        return None
    if not registry_id.lower().startswith("/subscriptions/"):
        raise ConfigurationError(_REGISTRY_ID_FORM)
    parse_registry_id(registry_id)  # here, not at each timer run
    names = tuple(n.strip() for n in values.get("ACR_WEBHOOK_NAMES", "").split(",") if n.strip())
    if not names:
        raise ConfigurationError("ACR_WEBHOOK_NAMES must name the webhooks to reconcile")
    given = values.get("ARM_ENDPOINT") or _default_arm_endpoint(values.get("COSMOS_ENDPOINT", ""))
    endpoint = _https_url("ARM_ENDPOINT", given.strip().rstrip("/"))
    audience = (values.get("ARM_AUDIENCE") or endpoint).strip()
    return ReconcileSettings(registry_id.rstrip("/"), names, endpoint, audience)


def _default_arm_endpoint(cosmos_endpoint: str) -> str:
    """The management endpoint of the cloud the Cosmos DB account is in (the public cloud's
    for any host that is not a national cloud's)."""
    try:
        host = urlsplit(cosmos_endpoint.strip()).hostname or ""
    except ValueError:  # not a URL: load_settings says so
        host = ""
    for suffix, endpoint in _ARM_ENDPOINT_BY_COSMOS_HOST.items():
        if host.endswith(suffix):
            return endpoint
    return DEFAULT_ARM_ENDPOINT


def _check_account_key(connection: str, connection_string: str) -> None:
    """The AccountKey the storage SDK signs each request with, decoded as it decodes it: a key
    pasted with a character missing was "unavailable or refused" (exit 1, "run again") from
    redrive. Never quoted. Anything else the SDK refuses, it refuses itself."""
    # As the SDK's parse_connection_str reads it: names in any case, the last one wins, and
    # the development storage flag replaces the key with Azurite's.
    parts = (part.split("=", 1) for part in connection_string.rstrip(";").split(";"))
    named = {pair[0].upper(): pair[1] for pair in parts if len(pair) == 2}
    key = named.get("ACCOUNTKEY")
    if key is None or named.get("USEDEVELOPMENTSTORAGE") == "true":
        return
    try:
        base64.b64decode(key.encode("utf-8"))
    except ValueError as error:  # binascii.Error
        raise ConfigurationError(
            f"{connection}: AccountKey is not an account key (base64): {error}"
        ) from None


def command_queue_settings(environ: Mapping[str, str] | None = None) -> QueueSettings | None:
    """queue_settings for an operator's command, from the environment over local.settings.json.

    Raises ConfigurationError when the environment names the account by identity
    (``<connection>__queueServiceUri``) while the file's connection string would win over it,
    as it does for the Functions host: the operator meant the account they typed, and the file
    that ./scripts/dev copied names Azurite's, which a command would report on as if it were it.
    """
    environ = os.environ if environ is None else environ
    values = read_values(environ)
    by_identity = sorted(
        name
        for name, value in environ.items()
        if name.startswith(f"{STORAGE_CONNECTION}__") and value.strip()
    )
    if by_identity and STORAGE_CONNECTION not in environ and values.get(STORAGE_CONNECTION):
        raise ConfigurationError(
            f"{by_identity[0]} is set in the environment, but {STORAGE_CONNECTION} in "
            f"{LOCAL_SETTINGS_FILE} (a connection string) wins over it: set "
            f"{STORAGE_CONNECTION}= in the environment too (docs/operations.md)"
        )
    return queue_settings(values)


def queue_settings(
    values: Mapping[str, str],
    connection: str = STORAGE_CONNECTION,
    queue_name: str = FALLBACK_QUEUE_NAME,
) -> QueueSettings | None:
    """A queue on the storage ``connection``, or None when that connection is not configured.

    Same setting names the Functions host reads: ``<connection>`` as a connection string, or
    the identity-based ``<connection>__queueServiceUri`` / ``<connection>__accountName``.
    """
    connection_string = values.get(connection, "").strip()
    if connection_string:
        _check_account_key(connection, connection_string)
        return QueueSettings(queue_name, connection_string=connection_string)
    service_uri = values.get(f"{connection}__queueServiceUri", "").strip()
    account = values.get(f"{connection}__accountName", "").strip()
    if not service_uri and account:
        service_uri = f"https://{account}.queue.core.windows.net"
    return QueueSettings(queue_name, queue_service_uri=service_uri) if service_uri else None
