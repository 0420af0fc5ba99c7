"""Several ``python -m acr_webhook serve`` processes as one scaled-out app: the same Cosmos DB
container, the same storage account (fallback queue), each a process of its own, as Flex
Consumption runs instances on different machines. Requests to them are started together
(``at_once``), and each instance's decision records are read back from its console
(``decisions``)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import requests

from acr_webhook.config import Settings
from tests.support import payloads
from tests.support.serve import ServeProcess

T = TypeVar("T")

EVENTGRID_HEADERS = {"aeg-event-type": "Notification"}


def start_instances(
    specs: list[tuple[Settings, dict[str, str]]], workdir: Path
) -> list[ServeProcess]:
    """A serve process per (settings, extra environment), started side by side: each start
    costs ~1 s of imports, so in parallel rather than one after another."""
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        starts = [
            pool.submit(ServeProcess, settings, workdir, extra_env=env) for settings, env in specs
        ]
    started = [start.result() for start in starts if start.exception() is None]
    failures = [error for start in starts if (error := start.exception()) is not None]
    if failures:
        stop_instances(started)
        raise failures[0]
    return started


def stop_instances(instances: Iterable[ServeProcess]) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda process: process.stop(), instances))


def at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Every call on a thread of its own, all released together by a barrier so that they
    really overlap; their results in the order given."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # the JSON answer, or the text when it is not JSON
    elapsed_s: float


@dataclass(frozen=True)
class Delivery:
    """One request to one instance: the route and the body (a webhook payload, or an Event Grid
    batch)."""

    instance: int
    route: str  # "webhook" or "eventgrid"
    body: bytes

    def send(self, instances: list[ServeProcess]) -> Answer:
        headers = EVENTGRID_HEADERS if self.route == "eventgrid" else {}
        started = time.monotonic()
        answer = requests.post(
            instances[self.instance].url(f"acr/{self.route}"),
            data=self.body,
            headers={"Content-Type": "application/json", **headers},
            timeout=35,
        )
        elapsed = time.monotonic() - started
        try:
            return Answer(answer.status_code, answer.json(), elapsed)
        except ValueError:
            return Answer(answer.status_code, answer.text, elapsed)


def deliver_at_once(
    deliveries: list[Delivery], instances: list[ServeProcess], *also: Callable[[], Any]
) -> list[Any]:
    """Every delivery (and each of ``also``) at once; the answers in the order given."""
    return at_once([*(partial(d.send, instances) for d in deliveries), *also])


def webhook(instance: int, event: dict[str, Any]) -> Delivery:
    return Delivery(instance, "webhook", payloads.body(event))


def eventgrid(instance: int, events: list[dict[str, Any]]) -> Delivery:
    """``events``: Event Grid events (``tests.unit.test_eventgrid.event_grid``)."""
    return Delivery(instance, "eventgrid", payloads.body(events))


# The console lines of the app's decisions (serve logs at INFO): the routes' own records
# (handlers.log_event_decision) and the replay's (replay.py), which words its outcome.
_ROUTE_DECISION = re.compile(
    r" (?P<route>webhook|eventgrid|reconcile) event='(?P<id>[^']*)' action='[^']*' "
    r"repository='[^']*' (?P<decision>recorded|duplicate|queued|unavailable|rejected|reconciled)"
)
_REPLAY = re.compile(
    r" event='(?P<id>[^']*)' action='[^']*' repository='[^']*' "
    r"(?:replayed from fallback queue: (?P<outcome>recorded|already recorded)"
    r"|replay attempt \d+: database unavailable .*; next try in)"
)


def decisions(output: str) -> Counter[tuple[str, str, str]]:
    """(event id, route, decision) of each decision record in a serve process's console."""
    found: Counter[tuple[str, str, str]] = Counter()
    for line in output.splitlines():
        match = _ROUTE_DECISION.search(line)
        if match:
            found[(match["id"], match["route"], match["decision"])] += 1
            continue
        match = _REPLAY.search(line)
        if match:
            outcome = {"recorded": "replayed", "already recorded": "duplicate"}
            found[(match["id"], "replay", outcome.get(match["outcome"] or "", "queued"))] += 1
    return found


def all_decisions(instances: Iterable[ServeProcess]) -> list[Counter[tuple[str, str, str]]]:
    """Each instance's decisions, in the instances' order."""
    return [decisions(process.output()) for process in instances]
