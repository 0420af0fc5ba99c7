"""Behaviour at volume, without a server: the cost of an Event Grid batch and of a page of the
read API, in calls and records, must grow with the input linearly (a batch) or not at all (the
n-th page), at sizes 10x apart measured in the same test. Bigger sizes were measured by hand
(tests/integration/test_scale.py says where the figures are)."""

from __future__ import annotations

import gc
import json
import logging
import time
from collections import Counter
from typing import Any

import pytest

from acr_webhook import eventgrid, queries
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.queries import MAX_PUSH_SCAN, MAX_TIED_EVENTS, PUSH_SCAN_BATCH
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.interleave import InlineExecutor
from tests.support.logs import CountingHandler, on_app_logger

IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"


def batch(datas: list[dict[str, Any]]) -> bytes:
    """The smallest Event Grid envelopes: so that 5,000 events fit in the 1 MiB a batch may be."""
    events = [
        {"id": f"g{index}", "eventType": IMAGE_PUSHED, "data": data}
        for index, data in enumerate(datas)
    ]
    return json.dumps(events, separators=(",", ":")).encode()


def deliver(body: bytes, repository: FakeEventRepository) -> tuple[int, CountingHandler, float]:
    """The batch through the handler on the caller's thread: its status, its log records and
    the CPU it took. That thread's CPU only: the process's would count the threads earlier
    tests left running in the suite's process (one full run measured 44x where 10x is due).
    Without the garbage collector: a full collection walks every object the suite's process
    holds, on whichever thread allocates at that moment (a full run measured 31x)."""
    with on_app_logger(CountingHandler(), logging.INFO) as records:
        gc.collect()
        gc.disable()
        try:
            started = time.thread_time()
            result = handle_eventgrid(body, {}, repository, executor=InlineExecutor())
            cpu = time.thread_time() - started
        finally:
            gc.enable()
    return result.status, records, cpu


@pytest.mark.parametrize("size", [100, 1000])
def test_a_batch_of_distinct_events_costs_one_write_and_one_record_each(size: int) -> None:
    repository = FakeEventRepository()
    status, records, _ = deliver(
        batch([payloads.numbered(n, compact=True) for n in range(size)]), repository
    )
    assert status == 200
    assert repository.add_calls == size
    assert records.decisions == {"recorded": size}
    assert records.records == size + 1  # and one summary line for the batch


def test_copies_of_a_few_ids_cost_a_write_per_id_however_many_copies() -> None:
    for copies in (100, 1000):
        repository = FakeEventRepository()
        datas = [
            payloads.numbered(n % 5, enriched=n == copies - 1, compact=True) for n in range(copies)
        ]
        status, records, _ = deliver(batch(datas), repository)
        assert status == 200
        assert repository.add_calls == 5
        assert records.decisions == {"recorded": 5, "duplicate": copies - 5}
        assert repository.documents["ev000004"]["actor"] == "ci-bot"  # the last copy's


def test_the_batch_at_event_grids_maximum_fits_and_validation_is_not_quadratic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """5,000 copies of one id in a 1 MiB body, the Event Grid maximum: one write, and the
    validation and merge of 5,000 copies costs about 10x what 500 cost (quadratic: 100x)."""
    documents = Counter[str]()
    to_document = eventgrid.to_document  # type: ignore[attr-defined]

    def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        documents["made"] += 1
        return to_document(*args, **kwargs)

    monkeypatch.setattr(eventgrid, "to_document", counted)
    cpu: dict[int, float] = {}
    for size in (500, 5000):
        body = batch([payloads.numbered(0, compact=True) for _ in range(size)])
        assert size < 5000 or len(body) <= 1024 * 1024
        repository = FakeEventRepository()
        documents.clear()
        status, records, cpu[size] = deliver(body, repository)
        assert status == 200
        assert repository.add_calls == 1
        assert documents["made"] == size  # one document per copy, merged once
        assert records.records == size + 1
    # Measured: ~50 us per copy at both sizes. A 30x margin for a loaded CI machine.
    assert cpu[5000] < 30 * max(cpu[500], 0.005)


# --- the read API: the n-th page costs what the first did ---------------------------------


def seeded(count: int, *, same_timestamp: bool = False, pushes: bool = True) -> FakeEventRepository:
    repository = FakeEventRepository()
    for number in range(count):
        stamp = "2026-01-01T00:00:00.000000Z" if same_timestamp else None
        digest = f"sha256:{(number if pushes else 0):064x}"
        repository.add(
            {
                "id": f"ev{number:06d}",
                "repository": f"repo{number % 10}",
                "timestamp": stamp or payloads.numbered(number, compact=True)["timestamp"],
                "action": "push",
                "tag": "v1",
                "digest": digest,
                "location": None,
            }
        )
    return repository


class CountingReader:
    """The fake store, counting the reads each page makes and the documents they return."""

    def __init__(self, inner: FakeEventRepository) -> None:
        self.inner = inner
        self.calls = 0
        self.documents = 0

    def find_events(
        self, query: Any, max_items: int, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        self.calls += 1
        found = self.inner.find_events(query, max_items, deadline)
        self.documents += len(found)
        return found


def page_costs(reader: CountingReader, params: dict[str, str]) -> list[tuple[int, int, int]]:
    """Every page of the query: (rows, reads, documents read) for each."""
    costs: list[tuple[int, int, int]] = []
    token: str | None = None
    while True:
        reader.calls = reader.documents = 0
        asked = dict(params, **({"continuation": token} if token else {}))
        result = queries.handle_events_query(asked, reader)
        assert result.status == 200
        assert result.body is not None
        rows = result.body["events" if "events" in result.body else "pushes"]
        costs.append((len(rows), reader.calls, reader.documents))
        token = result.body["continuation"]
        if token is None:
            return costs
        assert len(costs) < 1000


def test_paging_through_events_costs_the_same_on_every_page() -> None:
    reader = CountingReader(seeded(2000))
    for limit in (20, 200):
        costs = page_costs(reader, {"limit": str(limit)})
        assert sum(rows for rows, _, _ in costs) == 2000
        assert len(costs) == 2000 // limit
        # One read of limit + 1 events, whichever page (the last one finds only `limit`).
        assert {(reads, read) for _, reads, read in costs[:-1]} == {(1, limit + 1)}
        assert costs[-1][1:] == (1, limit)


def test_paging_through_pushes_costs_the_same_on_every_page() -> None:
    reader = CountingReader(seeded(3000))
    costs = page_costs(reader, {"limit": "1000", "view": "pushes"})
    assert [rows for rows, _, _ in costs] == [1000, 1000, 1000]
    # A page of 1,000 pushes: MAX_PUSH_SCAN events in reads of PUSH_SCAN_BATCH, one more.
    reads = MAX_PUSH_SCAN // PUSH_SCAN_BATCH + 1
    assert {cost[1:] for cost in costs[:-1]} == {(reads, reads * PUSH_SCAN_BATCH)}


def test_a_crowded_timestamp_costs_at_most_max_tied_events_per_page() -> None:
    """1,000 events at one timestamp (MAX_TIED_EVENTS): every page reads the crowd whole, at
    most MAX_TIED_EVENTS + 1 events, the 50th page as the first. Paging through it therefore
    reads ~1,000 x pages events in all (bounded per page by design, docs/queries.md)."""
    reader = CountingReader(seeded(MAX_TIED_EVENTS, same_timestamp=True))
    costs = page_costs(reader, {"limit": "20"})
    assert len(costs) == MAX_TIED_EVENTS // 20
    assert sum(rows for rows, _, _ in costs) == MAX_TIED_EVENTS
    # The first page: a batch of one timestamp, the crowd, the (empty) rest; later pages: the
    # crowd and the rest. Measured: 1,021 then 1,000 events per page, 50,021 in all.
    assert max(reads for _, reads, _ in costs) <= 3
    assert max(read for _, _, read in costs) <= MAX_TIED_EVENTS + 1 + 21
    assert costs[-1][1:] == costs[1][1:]


def test_one_event_over_max_tied_events_is_skipped_at_a_bounded_cost() -> None:
    reader = CountingReader(seeded(MAX_TIED_EVENTS + 1, same_timestamp=True))
    result = queries.handle_events_query({"limit": "1000"}, reader)
    assert result.status == 200
    assert result.body is not None
    assert result.body["events"] == []
    assert result.body["skipped"]["timestamp"] == "2026-01-01T00:00:00.000000Z"
    assert result.body["continuation"] is None
    assert reader.calls <= 3
    assert reader.documents <= 2 * (MAX_TIED_EVENTS + 1)
