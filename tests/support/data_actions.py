"""Which RBAC data action each recorded Cosmos DB or Storage queue request needs, and which a
role allows: what tests/integration/test_least_privilege_calls.py proves each identity calls,
and tests/infra/test_least_privilege.py holds the templates' grants against.

Sources (Microsoft's, as of 2026):

- Cosmos DB for NoSQL data actions and the built-in data roles: "Configure role-based access
  control with Microsoft Entra ID for your Azure Cosmos DB account"
  (learn.microsoft.com/azure/cosmos-db/how-to-setup-rbac), "Permission model", "Metadata
  requests" (the SDK's reads of the account, database, container and partition key ranges are
  all readMetadata) and "Built-in role definitions"; its note: a query through the SDKs needs
  both executeQuery and readChangeFeed. Creating or replacing a database or container is a
  management operation that no data role allows.
- Storage queue operations and the action each needs: "Authorize with Microsoft Entra ID",
  "Permissions for Queue service operations"
  (learn.microsoft.com/rest/api/storageservices/authorize-with-azure-active-directory).
- The built-in Storage roles' actions: learn.microsoft.com/azure/role-based-access-control/
  built-in-roles/storage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

COSMOS = "Microsoft.DocumentDB/databaseAccounts"
READ_METADATA = f"{COSMOS}/readMetadata"
CONTAINERS = f"{COSMOS}/sqlDatabases/containers"
ITEMS = f"{CONTAINERS}/items"
CREATE = f"{ITEMS}/create"
READ = f"{ITEMS}/read"
REPLACE = f"{ITEMS}/replace"
UPSERT = f"{ITEMS}/upsert"
DELETE = f"{ITEMS}/delete"
EXECUTE_QUERY = f"{CONTAINERS}/executeQuery"
READ_CHANGE_FEED = f"{CONTAINERS}/readChangeFeed"
EXECUTE_STORED_PROCEDURE = f"{CONTAINERS}/executeStoredProcedure"
MANAGE_CONFLICTS = f"{CONTAINERS}/manageConflicts"

# Every data action of the permission model (how-to-setup-rbac, "Permission model").
ALL_COSMOS_DATA_ACTIONS = frozenset(
    {
        READ_METADATA,
        CREATE,
        READ,
        REPLACE,
        UPSERT,
        DELETE,
        EXECUTE_QUERY,
        READ_CHANGE_FEED,
        EXECUTE_STORED_PROCEDURE,
        MANAGE_CONFLICTS,
    }
)

# Cosmos DB Built-in Data Contributor (00000000-0000-0000-0000-000000000002).
COSMOS_DATA_CONTRIBUTOR = (READ_METADATA, f"{CONTAINERS}/*", f"{ITEMS}/*")

# What the deployed app's identity needs on the record: the webhook, Event Grid, replay and
# reconcile create and (to fill in a duplicate's missing fields) read and replace; the read
# endpoint queries. Proven by tests/integration/test_least_privilege_calls.py.
APP_COSMOS_DATA_ACTIONS = frozenset(
    {READ_METADATA, CREATE, READ, REPLACE, EXECUTE_QUERY, READ_CHANGE_FEED}
)
# What the operator's commands add (events, reconcile --events-file, erase): erase deletes.
OPERATOR_COSMOS_DATA_ACTIONS = APP_COSMOS_DATA_ACTIONS | {DELETE}


class ManagementOperationError(ValueError):
    """A request no data role allows (creating a database or container, replacing one): in
    Azure, with key auth off, it is refused 403 whatever the identity's data role."""


_DOCS = re.compile(r"^/dbs/[^/]+/colls/[^/]+/docs/?$")
_DOC = re.compile(r"^/dbs/[^/]+/colls/[^/]+/docs/[^/]+/?$")
_SPROC = re.compile(r"^/dbs/[^/]+/colls/[^/]+/sprocs/[^/]+/?$")
_METADATA = re.compile(r"^/(dbs(/[^/]+(/colls(/[^/]+(/pkranges)?)?)?)?)?/?$")


def cosmos_data_actions(method: str, path: str, headers: Mapping[str, str]) -> frozenset[str]:
    """The data actions one request of the Cosmos DB REST API needs; ``headers`` in lower
    case. Raises ManagementOperationError for one no data role allows."""
    if _DOCS.match(path):
        if method == "POST" and headers.get("content-type", "").startswith(
            "application/query+json"
        ):
            return frozenset({EXECUTE_QUERY, READ_CHANGE_FEED})  # the SDKs' note
        if method == "POST":
            upsert = headers.get("x-ms-documentdb-is-upsert", "").lower() == "true"
            return frozenset({UPSERT if upsert else CREATE})
        if method == "GET":  # the container's items as a feed (a-im: the change feed)
            return frozenset({READ_CHANGE_FEED})
    if _DOC.match(path):
        by_method = {"GET": READ, "PUT": REPLACE, "DELETE": DELETE}
        if method in by_method:
            return frozenset({by_method[method]})
    if _SPROC.match(path) and method == "POST":
        return frozenset({EXECUTE_STORED_PROCEDURE})
    if _METADATA.match(path) and method == "GET":
        return frozenset({READ_METADATA})
    raise ManagementOperationError(f"{method} {path}")


def allows(granted: Iterable[str], action: str) -> bool:
    """Whether a role's (data) actions, wildcards included, allow ``action`` (case-blind, as
    Azure compares them; ``*`` stands for any characters)."""
    for pattern in granted:
        expression = ".*".join(re.escape(part) for part in pattern.lower().split("*"))
        if re.fullmatch(expression, action.lower()):
            return True
    return False


def allowed_of(granted: Iterable[str], universe: Iterable[str]) -> frozenset[str]:
    """The actions of ``universe`` that ``granted`` allows."""
    patterns = list(granted)
    return frozenset(action for action in universe if allows(patterns, action))


QUEUES = "Microsoft.Storage/storageAccounts/queueServices/queues"
MESSAGES = f"{QUEUES}/messages"

# Storage Queue Data Contributor (974c5e8b-45b9-4653-ba55-5f855dd0fb88): actions and data
# actions together.
STORAGE_QUEUE_DATA_CONTRIBUTOR = (
    f"{QUEUES}/delete",
    f"{QUEUES}/read",
    f"{QUEUES}/write",
    f"{MESSAGES}/delete",
    f"{MESSAGES}/read",
    f"{MESSAGES}/write",
    f"{MESSAGES}/process/action",
)

# Each queue operation: the alternatives Microsoft lists, any one of which is enough.
_QUEUE_OPERATIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Put Message": ((f"{MESSAGES}/add/action",), (f"{MESSAGES}/write",)),
    "Get Messages": (
        (f"{MESSAGES}/process/action",),
        (f"{MESSAGES}/delete", f"{MESSAGES}/read"),
    ),
    "Peek Messages": ((f"{MESSAGES}/read",),),
    "Delete Message": ((f"{MESSAGES}/process/action",), (f"{MESSAGES}/delete",)),
    "Update Message": ((f"{MESSAGES}/write",),),
    "Clear Messages": ((f"{MESSAGES}/delete",),),
    "Get Queue Metadata": ((f"{QUEUES}/read",),),
    "Create Queue": ((f"{QUEUES}/write",),),
    "Delete Queue": ((f"{QUEUES}/delete",),),
}


def queue_operation(method: str, path: str, query: str) -> str:
    """The Queue service operation of a request to ``/<account>/<queue>[/messages[/<id>]]``."""
    parts = [part for part in path.split("/") if part]
    flags = {item.split("=", 1)[0].lower(): item.partition("=")[2] for item in query.split("&")}
    if len(parts) == 2:
        if method in ("GET", "HEAD") and flags.get("comp") == "metadata":
            return "Get Queue Metadata"
        return {"PUT": "Create Queue", "DELETE": "Delete Queue"}[method]
    if len(parts) == 3 and parts[2] == "messages":
        if method == "GET":
            return "Peek Messages" if flags.get("peekonly") == "true" else "Get Messages"
        return {"POST": "Put Message", "DELETE": "Clear Messages"}[method]
    if len(parts) == 4 and parts[2] == "messages":
        return {"DELETE": "Delete Message", "PUT": "Update Message"}[method]
    raise ValueError(f"not a queue operation: {method} {path}?{query}")


def queue_operation_allowed(granted: Iterable[str], operation: str) -> bool:
    patterns = list(granted)
    return any(
        all(allows(patterns, action) for action in alternative)
        for alternative in _QUEUE_OPERATIONS[operation]
    )
