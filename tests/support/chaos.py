"""Chaos under load: faults of the real local servers injected at fixed points of a steady load
on ``python -m acr_webhook serve``, and every answer recorded for the checks afterwards.

- ``cosmos_proxy.FaultyCosmosProxy`` (the same proxy the throttling tests use) stands in
  front of the local Cosmos DB API server to answer late, hang, or drop a write's answer.
- ``ChaosLoad``: a few client threads sending webhook pushes and Event Grid deliveries, one
  request at a time each, every answer kept (status, latency, body); a test injects its faults
  when the load has had a given number of answers (``wait_for_answers``), never at a random
  moment.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.support import payloads
from tests.support.serve import ServeProcess
from tests.unit.test_eventgrid import event_grid


def blackhole() -> socket.socket:
    """A listening socket nobody accepts from: connections succeed, nothing ever answers
    (what a frozen server looks like to a client)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    return listener


@dataclass(frozen=True)
class Answer:
    """One request of the load and what came back."""

    number: int  # the request's place in the load, from 0
    route: str  # "webhook" or "eventgrid"
    event_id: str
    sent_at: float  # time.monotonic()
    latency_s: float
    status: int  # 0: no HTTP answer at all (connection error or client timeout)
    content_type: str
    body: Any  # the JSON answer, or the raw text when it is not JSON

    @property
    def answered_at(self) -> float:
        return self.sent_at + self.latency_s


@dataclass
class ChaosLoad:
    """``threads`` clients, each sending one request after another (``pace_s`` apart) until
    ``stop`` is set or ``limit`` requests went out. Every ``eventgrid_every``-th request is a
    one-event Event Grid delivery, the others webhook pushes, each with a fresh event id."""

    served: ServeProcess
    threads: int = 3
    pace_s: float = 0.05
    eventgrid_every: int = 4
    limit: int = 10_000
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._client, daemon=True)
            worker.start()
            self._workers.append(worker)

    def finish(self) -> list[Answer]:
        """Stop the load, wait for the answers in flight; every answer, in request order."""
        self.stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        return sorted(self.answers, key=lambda a: a.number)

    def wait_for(
        self, predicate: Callable[[list[Answer]], bool], timeout: float
    ) -> list[Answer] | None:
        """The answers so far once ``predicate`` holds for them; None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                seen = list(self.answers)
            if predicate(seen):
                return seen
            time.sleep(0.02)
        return None

    def wait_for_answers(self, count: int, timeout: float = 30) -> None:
        """Until the load has had ``count`` answers in all: where a test injects a fault."""
        assert self.wait_for(lambda seen: len(seen) >= count, timeout) is not None, (
            f"the load never reached {count} answers"
        )

    def _client(self) -> None:
        session = requests.Session()  # keep-alive, as ACR's client and Event Grid
        while not self.stop.is_set():
            number = next(self._numbers)
            if number >= self.limit:
                return
            answer = self._send(session, number)
            with self._lock:
                self.answers.append(answer)
            self.stop.wait(self.pace_s)

    def _send(self, session: requests.Session, number: int) -> Answer:
        event = payloads.with_new_id(payloads.PUSH, tag=f"t{number}")
        if self.eventgrid_every and number % self.eventgrid_every == self.eventgrid_every - 1:
            route, body = "eventgrid", payloads.body([event_grid(event)])
            headers = {"aeg-event-type": "Notification"}
        else:
            route, body, headers = "webhook", payloads.body(event), {}
        started = time.monotonic()
        try:
            response = session.post(
                self.served.url(f"acr/{route}"),
                data=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=35,  # longer than Event Grid's 30 s: a late answer is measured, not cut
            )
        except requests.RequestException as error:
            latency = time.monotonic() - started
            return Answer(number, route, event["id"], started, latency, 0, "", repr(error))
        latency = time.monotonic() - started
        try:
            parsed: Any = response.json()
        except ValueError:
            parsed = response.text
        content_type = response.headers.get("Content-Type", "")
        return Answer(
            number, route, event["id"], started, latency, response.status_code, content_type, parsed
        )


def summary(answers: list[Answer]) -> str:
    """One line per (route, status): count and slowest answer, for assertion messages."""
    groups: dict[tuple[str, int], list[float]] = {}
    for answer in answers:
        groups.setdefault((answer.route, answer.status), []).append(answer.latency_s)
    return "; ".join(
        f"{route} {status}: {len(times)} (max {max(times):.2f} s)"
        for (route, status), times in sorted(groups.items())
    )
