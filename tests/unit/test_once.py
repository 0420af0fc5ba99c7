"""once.BuiltOnce: the process-wide objects are built once, however many first requests
arrive together."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from acr_webhook.once import BuiltOnce

FIRST_REQUESTS = 16


def test_concurrent_first_calls_build_one_object() -> None:
    """With functools.cache, threads arriving together each ran the builder: a second Cosmos
    client, a second batch pool of 16 threads."""
    builds: list[object] = []

    def build() -> object:
        time.sleep(0.05)  # long enough for every thread to arrive meanwhile
        builds.append(object())
        return builds[-1]

    shared = BuiltOnce(build)
    start = threading.Barrier(FIRST_REQUESTS)
    got: list[object] = []

    def first_request() -> None:
        start.wait()
        got.append(shared())

    threads = [threading.Thread(target=first_request) for _ in range(FIRST_REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert got == builds * FIRST_REQUESTS


def test_a_failed_build_keeps_nothing_and_the_next_call_builds_again() -> None:
    outcomes: Iterator[Exception | str] = iter([RuntimeError("database unreachable"), "client"])

    def build() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    shared = BuiltOnce(build)
    with pytest.raises(RuntimeError):
        shared()
    assert shared() == shared() == "client"
    shared.cache_clear()
    with pytest.raises(StopIteration):  # cleared: built again
        shared()
