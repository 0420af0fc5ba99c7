"""Request units and document size of each recorded event kind's write.

The local Cosmos DB API server reports 1 RU for everything; the figure means something only on
a real account, where it shows the indexing policy's effect (infra/modules/cosmos.bicep indexes
a few paths and excludes ``/*``). ``python -m bench ru`` runs this part alone against the
account the app's own settings name (environment or local.settings.json: COSMOS_ENDPOINT,
COSMOS_DATABASE, COSMOS_CONTAINER, and COSMOS_KEY or else Microsoft Entra ID). There it writes
one document per event kind, with fresh ids, into that existing container (so its real
indexing policy applies), reads each back for its stored size and deletes it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.cosmos import ContainerProxy

from acr_webhook.config import Settings
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.repository import PROVISIONING_TIMEOUTS
from bench.local import container_for
from tests.support import payloads

REQUEST_CHARGE = "x-ms-request-charge"


@dataclass(frozen=True)
class WriteCost:
    kind: str
    request_units: float
    bytes_sent: int  # the item as the SDK serializes it
    bytes_stored: int  # read back: with the system properties (_rid, _self, _etag, _ts ...)


def _size(document: Mapping[str, Any]) -> int:
    # As azure-cosmos serializes a request body: compact separators, UTF-8.
    return len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())


def _create(container: ContainerProxy, document: dict[str, Any]) -> float:
    """Write the document; the request charge its response reports."""
    responses: list[Mapping[str, str]] = []
    container.create_item(document, response_hook=lambda headers, _body: responses.append(headers))
    [headers] = responses
    return float(headers[REQUEST_CHARGE])


def measure_write_costs(settings: Settings) -> list[WriteCost]:
    # Generous timeouts: an Entra ID sign-in or a distant account must not fail the probe.
    container = container_for(settings, PROVISIONING_TIMEOUTS)
    costs = []
    for kind, payload in payloads.RECORDED.items():
        document = to_document(
            AcrEvent.model_validate(payloads.with_new_id(payload)), datetime.now(UTC)
        )
        charge = _create(container, document)
        stored = container.read_item(document["id"], partition_key=document["repository"])
        container.delete_item(document["id"], partition_key=document["repository"])
        costs.append(WriteCost(kind, charge, _size(document), _size(stored)))
    return costs
