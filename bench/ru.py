"""Request units per write under the old and the new indexing policy: expected and measured.

Expected, from Cosmos DB's published figures ("Understand request units consumption in Azure
Cosmos DB", learn.microsoft.com/azure/cosmos-db/understand-request-unit-consumption): a create
costs a document-size-based charge plus a charge per indexed term, e.g. "RUs consumed for a 1-KB
document with 10 indexed terms in one region: 5.0 (document size based) + 0.2 x 10 (indexing)
= 7 RUs". Which terms an item has comes from the indexing policy ("Indexing policies in Azure
Cosmos DB", learn.microsoft.com/azure/cosmos-db/index-policy): ``id`` and ``_ts`` are always
indexed, and every explicitly included path adds a value for every item, even where the item
leaves that path undefined. So the term count is the policy's, not the document's. A composite
index is counted here as one term per item: the documentation gives no figure for it.

Measured, on a real account only (the local Cosmos DB API server reports 1 RU for everything):
``python -m bench ru`` (``./scripts/bench ru``) uses the account the app's own settings name
(COSMOS_ENDPOINT, COSMOS_DATABASE, and COSMOS_KEY or else Microsoft Entra ID). It creates two
temporary containers in that database, one per policy, writes one document per recorded event
kind into each, reads the charge each write reports (``x-ms-request-charge``) and deletes both
containers. Creating containers needs key access or control-plane rights: where the account
refuses (Entra ID data-plane roles cannot create containers), make the two containers yourself
with the policies this module prints (``--print-policies``) and name them with
``--old-container`` / ``--new-container``; they are then written to and cleaned, not deleted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.cosmos import ContainerProxy, DatabaseProxy, PartitionKey
from azure.cosmos.exceptions import CosmosHttpResponseError

from acr_webhook.config import Settings
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.repository import PARTITION_KEY_PATH, PROVISIONING_TIMEOUTS, create_cosmos_client
from tests.support import payloads

REQUEST_CHARGE = "x-ms-request-charge"
SOURCE = "https://learn.microsoft.com/azure/cosmos-db/understand-request-unit-consumption"
# The published example's two constants: a document of up to 1 KB, and each indexed term.
BASE_RU_UP_TO_1_KB = 5.0
RU_PER_INDEXED_TERM = 0.2
ALWAYS_INDEXED = ("/id", "/_ts")


def _policy(paths: list[str], composites: list[list[tuple[str, str]]]) -> dict[str, Any]:
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": f"{path}/?"} for path in paths],
        "excludedPaths": [{"path": "/*"}],
        "compositeIndexes": [
            [{"path": path, "order": order} for path, order in index] for index in composites
        ],
    }


# infra/modules/cosmos.bicep before this round (git show HEAD~5:infra/modules/cosmos.bicep).
OLD_POLICY = _policy(
    [
        "/repository",
        "/tag",
        "/digest",
        "/action",
        "/timestamp",
        "/receivedAt",
        "/source",
        "/userAgent",
    ],
    [
        [("/repository", "ascending"), ("/timestamp", "descending")],
        [("/action", "ascending"), ("/timestamp", "descending")],
    ],
)
# What the documented queries and the read endpoint use (docs/queries.md), no composites.
NEW_POLICY = _policy(
    ["/registry", "/repository", "/tag", "/digest", "/action", "/timestamp", "/source", "/actor"],
    [],
)
POLICIES = {"old": OLD_POLICY, "new": NEW_POLICY}


def indexed_terms(policy: Mapping[str, Any]) -> int:
    """Terms each item adds to the index: always-indexed properties, included paths (defined
    or not), one per composite index."""
    return len(ALWAYS_INDEXED) + len(policy["includedPaths"]) + len(policy["compositeIndexes"])


def expected_write_ru(policy: Mapping[str, Any], document_bytes: int) -> float:
    """The published formula; valid for documents up to 1 KB (ours are under 1 KB)."""
    if document_bytes > 1024:
        raise ValueError(f"the published base charge is for up to 1 KB, not {document_bytes} B")
    return BASE_RU_UP_TO_1_KB + RU_PER_INDEXED_TERM * indexed_terms(policy)


@dataclass(frozen=True)
class WriteCost:
    kind: str
    bytes_sent: int  # the item as the SDK serializes it
    request_units: dict[str, float]  # by policy name; empty where not measured


def size(document: Mapping[str, Any]) -> int:
    # As azure-cosmos serializes a request body: compact separators, UTF-8.
    return len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())


def documents() -> dict[str, dict[str, Any]]:
    """One document per recorded event kind, as the app writes it, with a fresh id."""
    return {
        kind: to_document(AcrEvent.model_validate(payloads.with_new_id(payload)), datetime.now(UTC))
        for kind, payload in payloads.RECORDED.items()
    }


def document_sizes() -> list[WriteCost]:
    """Sizes only: what a run without a real account can say."""
    return [WriteCost(kind, size(document), {}) for kind, document in documents().items()]


def _create(container: ContainerProxy, document: dict[str, Any]) -> float:
    """Write the document; the request charge its response reports."""
    responses: list[Mapping[str, str]] = []
    container.create_item(document, response_hook=lambda headers, _body: responses.append(headers))
    return float(responses[-1][REQUEST_CHARGE])


@contextmanager
def _container(database: DatabaseProxy, existing: str | None, policy: str) -> Iterator[Any]:
    """The named container (its documents deleted afterwards), or a temporary one with the
    policy (deleted afterwards)."""
    if existing:
        container = database.get_container_client(existing)
        written: list[dict[str, Any]] = []
        try:
            yield container, written
        finally:
            for document in written:
                container.delete_item(document["id"], partition_key=document["repository"])
        return
    name = f"ru-{policy}-{uuid.uuid4().hex[:8]}"
    try:
        container = database.create_container(
            name,
            partition_key=PartitionKey(path=PARTITION_KEY_PATH),
            indexing_policy=POLICIES[policy],
        )
    except CosmosHttpResponseError as error:
        raise SystemExit(
            f"could not create a temporary container ({error.status_code}): {error.message}\n"
            "Create one container per policy yourself (`python -m bench ru --print-policies`) "
            "and pass --old-container NAME --new-container NAME."
        ) from error
    try:
        yield container, []
    finally:
        database.delete_container(name)


def measure_write_costs(
    settings: Settings, old_container: str | None = None, new_container: str | None = None
) -> list[WriteCost]:
    client = create_cosmos_client(settings, PROVISIONING_TIMEOUTS)
    database = client.get_database_client(settings.cosmos_database)
    docs = documents()
    charges: dict[str, dict[str, float]] = {kind: {} for kind in docs}
    for policy, existing in (("old", old_container), ("new", new_container)):
        with _container(database, existing, policy) as (container, written):
            for kind, document in docs.items():
                fresh = {**document, "id": str(uuid.uuid4())}
                charges[kind][policy] = _create(container, fresh)
                written.append(fresh)
    return [WriteCost(kind, size(docs[kind]), charges[kind]) for kind in docs]
