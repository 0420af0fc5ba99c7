"""Cosmos DB's hard limits against what the app can be made to write, on the local server.

Figures from Microsoft's own text (MicrosoftDocs/azure-databases-docs):

- articles/cosmos-db/concepts-limits.md, "Per-item limits": an item at most 2 MB ("UTF-8
  length of JSON representation"), an id at most 1,023 bytes, a partition key value at most
  2,048 bytes (101 without large partition keys: infra/modules/cosmos.bicep and
  repository.provision ask for version 2); "Provisioned throughput": at most 20 GB "across all
  items per (logical) partition", i.e. per repository here, and the same on serverless.
- articles/cosmos-db/nosql/troubleshoot-forbidden.md, "Partition key exceeding storage": a full
  logical partition is answered "Forbidden (403); Substatus: 1014" with "Partition key reached
  maximum size of {...} GB".

The local server enforces none of these: the sizes are measured on what it stores, and the full
partition's 403/1014 comes from FaultyCosmosProxy.refusal for that one partition key.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from acr_webhook.config import Settings
from acr_webhook.handlers import handle_webhook
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.replay import replay_queued_event
from acr_webhook.repository import CosmosEventRepository, DatabaseHealth
from tests.conftest import container_for
from tests.integration.test_misconfiguration import parked
from tests.support import payloads
from tests.support.cosmos_proxy import FaultyCosmosProxy, Refusal
from tests.support.fake_queue import FakeFallbackQueue
from tests.support.fakes import FakeTime
from tests.support.logs import decisions
from tests.unit.test_models import WIDEST, worst_case_payload

ROOT = Path(__file__).resolve().parents[2]
MAX_ITEM_BYTES = 2 * 1024 * 1024
MAX_ID_BYTES = 1023
MAX_PARTITION_KEY_BYTES = 2048
# "20 GB" taken at its largest reading (GiB), so the event counts below are upper bounds.
LOGICAL_PARTITION_BYTES = 20 * 1024**3

BUSY = "team/busy"
FULL_PARTITION = Refusal(
    403,
    1014,
    "Forbidden",
    'Message: {"Errors":["Partition key reached maximum size of 20 GB"]}\r\nActivityId: '
    "00000000-0000-0000-0000-000000000000, Microsoft.Azure.Documents.Common/2.14.0",
    paths=r".*/docs/?$",
    partition_key=BUSY,
)


def stored_bytes(settings: Settings, document: dict[str, Any]) -> int:
    """The document as the server keeps it (system fields included), in UTF-8 JSON: what
    Cosmos DB's 2 MB and 20 GB count."""
    item = container_for(settings).read_item(document["id"], partition_key=document["repository"])
    return len(json.dumps(item, ensure_ascii=False).encode("utf-8"))


# --- the largest valid event against the per-item limits -------------------------------------


def test_the_largest_valid_event_is_stored_inside_every_per_item_limit(
    cosmos_settings: Settings,
) -> None:
    """Every field at its limit, each character the widest in UTF-8 (4 bytes): the id is 1,020
    bytes (limit 1,023), the repository 1,020 (2,048), the whole item ~15 KB (2 MB)."""
    event = AcrEvent.model_validate(worst_case_payload())
    widest = to_document(event, datetime.now(UTC), "eventgrid", WIDEST * 512)
    assert CosmosEventRepository(cosmos_settings).add(widest) is True

    assert len(widest["id"].encode("utf-8")) == 1020 <= MAX_ID_BYTES
    assert len(widest["repository"].encode("utf-8")) == 1020 <= MAX_PARTITION_KEY_BYTES
    size = stored_bytes(cosmos_settings, widest)
    assert size < 20 * 1024 < MAX_ITEM_BYTES, size


# --- one repository's logical partition: 20 GB ------------------------------------------------


def test_events_until_a_repository_without_retention_fills_its_partition(
    cosmos_settings: Settings,
) -> None:
    """Without RETENTION_DAYS every event of a repository stays in its one logical partition.
    A typical push is ~0.9 KB as stored (918 bytes): ~23 million events (64 years at 1,000 a
    day); an event with every text field at its widest ~13 KB: ~1.6 million (4.4 years at 1,000
    a day, 160 days at 10,000). Each
    geo-replica reports a push as an event of its own, so a registry in N regions fills it N
    times as fast. (Index storage counts too, and makes these counts smaller.)"""
    repository = CosmosEventRepository(cosmos_settings)
    typical = to_document(AcrEvent.model_validate(payloads.PUSH), datetime.now(UTC))
    widest = to_document(
        AcrEvent.model_validate(worst_case_payload()), datetime.now(UTC), "eventgrid", "x" * 512
    )
    for document in (typical, widest):
        assert repository.add(document) is True
    typical_bytes = stored_bytes(cosmos_settings, typical)
    widest_bytes = stored_bytes(cosmos_settings, widest)

    assert 600 < typical_bytes < 1024, typical_bytes
    assert 10 * 1024 < widest_bytes < 16 * 1024, widest_bytes
    assert 20_000_000 < LOGICAL_PARTITION_BYTES // typical_bytes < 40_000_000
    assert 1_300_000 < LOGICAL_PARTITION_BYTES // widest_bytes < 2_100_000


def test_the_docs_name_the_20_gb_a_repository_can_hold() -> None:
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert any("20 GB" in path.read_text() for path in texts)


# --- a full logical partition (403, sub-status 1014) --------------------------------------------


@pytest.fixture
def full_partition(proxy: FaultyCosmosProxy) -> FaultyCosmosProxy:
    proxy.refusal = FULL_PARTITION
    return proxy


def repository_on(settings: Settings) -> CosmosEventRepository:
    """A repository whose failure memory never runs out during the test (deterministic)."""
    return CosmosEventRepository(settings, health=DatabaseHealth(clock=FakeTime().monotonic))


@pytest.mark.usefixtures("full_partition")
def test_an_event_for_a_full_partition_is_parked_not_lost(
    through_proxy: Settings, proxy: FaultyCosmosProxy
) -> None:
    """ACR never retries: the event must not be refused (400) for what a person can fix (a
    temporary limit increase, data deleted). It is parked and its replay puts it back."""
    queue = FakeFallbackQueue()
    event = payloads.with_new_id(payloads.PUSH, repository=BUSY)

    answer = handle_webhook(payloads.body(event), repository_on(through_proxy), fallback=queue)

    assert (answer.status, answer.body) == (202, {"status": "queued", "id": event["id"]})
    [document] = queue.messages
    replayed = replay_queued_event(parked(document), repository_on(through_proxy), queue, 60)
    assert replayed == "requeued"
    assert proxy.refused == 2


@pytest.mark.usefixtures("full_partition")
def test_a_full_partition_is_said_as_such_not_as_a_missing_role(
    through_proxy: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="acr_webhook")
    event = payloads.with_new_id(payloads.PUSH, repository=BUSY)

    handle_webhook(payloads.body(event), repository_on(through_proxy), fallback=FakeFallbackQueue())

    [decision] = decisions(caplog)
    assert decision["decision"] == "queued"
    assert "Data Contributor" not in decision["reason"], decision["reason"]
    assert "partition" in decision["reason"].lower(), decision["reason"]


@pytest.mark.usefixtures("full_partition")
def test_a_full_partition_does_not_hold_up_other_repositories(
    through_proxy: Settings, cosmos_settings: Settings
) -> None:
    repository = repository_on(through_proxy)
    queue = FakeFallbackQueue()
    busy = payloads.with_new_id(payloads.PUSH, repository=BUSY)
    other = payloads.with_new_id(payloads.PUSH, repository="team/quiet")

    assert handle_webhook(payloads.body(busy), repository, fallback=queue).status == 202
    answer = handle_webhook(payloads.body(other), repository, fallback=queue)

    assert (answer.status, answer.body) == (201, {"status": "recorded", "id": other["id"]})
    stored = [item["id"] for item in container_for(cosmos_settings).read_all_items()]
    assert stored == [other["id"]]
