"""Duplicate floods: the same events, delivered many times at once, give one document each."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from acr_webhook.config import Settings
from tests.conftest import read_all
from tests.support import payloads
from tests.support.serve import ServeProcess

COPIES = 8
EVENTS = 25


def test_parallel_duplicate_deliveries_store_each_event_once(
    cosmos_settings: Settings, tmp_path: Path
) -> None:
    events = [payloads.with_new_id(payloads.PUSH, tag=f"v{i}") for i in range(EVENTS)]
    deliveries = [payloads.body(event) for event in events for _ in range(COPIES)]
    random.Random(7).shuffle(deliveries)
    process = ServeProcess(cosmos_settings, tmp_path)
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(
                pool.map(
                    lambda body: requests.post(process.url(), data=body, timeout=10).status_code,
                    deliveries,
                )
            )
    finally:
        process.stop()

    # Exactly one delivery per event is "recorded"; every other copy is a duplicate.
    assert statuses.count(201) == EVENTS
    assert statuses.count(200) == EVENTS * (COPIES - 1)
    stored = [d["id"] for d in read_all(cosmos_settings)]
    assert sorted(stored) == sorted(e["id"] for e in events)
