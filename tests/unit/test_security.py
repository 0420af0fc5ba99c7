"""Security audit, without servers: what an attacker sends, or a setting that is not what it
seems, against the promises of README.md "Security and reliability" and "Configuration".

Each defect the audit found failed one of these tests until fixed (session 27).
"""

from __future__ import annotations

import json
import logging
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from urllib3.util import parse_url

from acr_webhook import __main__ as cli
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import MAX_BODY_BYTES, handle_webhook
from acr_webhook.telemetry import SDK_LOGGERS, configure_telemetry
from acr_webhook.tls import is_loopback, verify_tls
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.interleave import InlineExecutor
from tests.support.logs import CountingHandler, on_app_logger
from tests.support.properties import DETERMINISTIC

# --- TLS: "verified for every Cosmos DB endpoint except loopback ones" (README) --------------

# Endpoints whose text names a loopback host after "\@", as Python's urlsplit reads it, while
# requests (urllib3's parse_url, which ends the authority at a backslash) connects to the host
# before it: the host that gets the client's signed requests or bearer token.
LOOKS_LOOPBACK_CONNECTS_ELSEWHERE = [
    "https://myaccount.documents.azure.com\\@127.0.0.1:8081/",
    "https://myaccount.documents.azure.com\\@localhost:8081/",
    "https://evil.example\\@[::1]/",
]


@pytest.mark.parametrize("endpoint", LOOKS_LOOPBACK_CONNECTS_ELSEWHERE)
def test_the_host_these_endpoints_reach_is_not_loopback(endpoint: str) -> None:
    """The premise of the next test, from the HTTP stack the clients use: the connection goes
    to a host that is not loopback."""
    import requests

    prepared = requests.Request("GET", endpoint).prepare()
    assert prepared.url is not None
    reached = parse_url(prepared.url).host
    assert reached in ("myaccount.documents.azure.com", "evil.example")
    assert not is_loopback(f"https://{reached}/")


@pytest.mark.parametrize("endpoint", LOOKS_LOOPBACK_CONNECTS_ELSEWHERE)
def test_an_endpoint_that_connects_to_another_host_is_verified(endpoint: str) -> None:
    assert verify_tls(endpoint) is not False


@pytest.mark.parametrize("endpoint", ["https://127.0.0.1:8081/", "https://localhost:8081/"])
def test_real_loopback_endpoints_still_skip_verification(endpoint: str) -> None:
    assert verify_tls(endpoint) is False


# --- denial of service: CPU per request (the audit's bound: ~100 ms for a <=1 MiB body) ----

# Event Grid delivers at most 5,000 events per batch (the scale tests' "Event Grid maximum";
# infra/modules/acr-eventgrid.bicep asks for maxEventsPerBatch 1). A body may still hold far
# more: tiny events, each validated and, when ignored, logged on its own.
EVENT_GRID_MAX_EVENTS = 5000


def _tiny_events_body(event: bytes) -> bytes:
    """As many copies of ``event`` as fit in a 1 MiB JSON array."""
    count = (MAX_BODY_BYTES - 2) // (len(event) + 1)
    body = b"[" + b",".join([event] * count) + b"]"
    assert len(body) <= MAX_BODY_BYTES
    return body


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(b'{"id":"a","eventType":"x"}', id="ignored-event-types"),
        pytest.param(b"{}", id="empty-objects"),
    ],
)
def test_a_1_mib_event_grid_body_of_tiny_events_is_refused_before_each_is_checked(
    event: bytes,
) -> None:
    """Measured (2 cores) before the bound: 38,828 ignored events, 0.95 s of CPU and 38,837 log
    records (each an ``ignored`` decision, which telemetry exports unsampled); 349,458 ``{}``,
    2.5-2.7 s. A legitimate batch is at most 5,000 events: a longer one is refused whole, with
    one record, before any event in it is validated (its CPU is then the JSON parse)."""
    body = _tiny_events_body(event)
    with on_app_logger(CountingHandler(), logging.INFO) as counted:
        result = handle_eventgrid(body, {}, FakeEventRepository(), executor=InlineExecutor())
    assert result.status == 413
    assert result.body == {
        "error": f"a batch is at most {EVENT_GRID_MAX_EVENTS} events, Event Grid's largest; "
        f"this one has {body.count(event)}"
    }
    assert counted.records == 1


def test_a_batch_of_event_grids_largest_size_is_still_checked_event_by_event() -> None:
    body = b"[" + b",".join([b'{"id":"a","eventType":"x"}'] * EVENT_GRID_MAX_EVENTS) + b"]"
    result = handle_eventgrid(body, {}, FakeEventRepository(), executor=InlineExecutor())
    assert (result.status, result.body) == (200, {"recorded": 0, "duplicate": 0, "ignored": 5000})


# --- stored text: "any text field | no control characters" (README, field limits) ----------

# Every text field of a webhook payload, by dotted path.
TEXT_FIELDS = [
    "target.repository",
    "target.tag",
    "target.digest",
    "target.mediaType",
    "target.name",
    "target.version",
    "request.id",
    "request.host",
    "request.method",
    "request.addr",
    "actor.name",
    "location",
    "connectedRegistry.name",
]


def _control_characters(document: dict[str, Any]) -> dict[str, str]:
    """The stored string fields that hold a control character (Unicode category Cc)."""
    return {
        name: value
        for name, value in document.items()
        if isinstance(value, str) and any(unicodedata.category(ch) == "Cc" for ch in value)
    }


@DETERMINISTIC
@given(path=st.sampled_from(TEXT_FIELDS), value=st.text(max_size=20))
def test_no_stored_text_field_holds_a_control_character(path: str, value: str) -> None:
    """Whatever text a client puts in a validated field: refused (400) or stored clean. The
    records and tables an operator reads show these fields."""
    repository = FakeEventRepository()
    result = handle_webhook(payloads.body(payloads.mutated(path, value)), repository)
    assert result.status in (201, 400)
    for document in repository.documents.values():
        assert _control_characters(document) == {}


@pytest.mark.parametrize(
    ("user_agent", "stored"),
    [
        ("docker/24\x1b[2J\x1b[31mFAKE", "docker/24\ufffd[2J\ufffd[31mFAKE"),
        ("a\r\nb", "a\ufffd\ufffdb"),
        ("nul\x00", "nul\ufffd"),
        ("c1\x85\x9b", "c1\ufffd\ufffd"),
    ],
)
def test_a_user_agent_is_never_stored_with_control_characters(user_agent: str, stored: str) -> None:
    """Stored all the same (README: never a reason to lose an event), each control character
    shown as U+FFFD."""
    repository = FakeEventRepository()
    payload = payloads.mutated("request.useragent", user_agent)
    assert handle_webhook(json.dumps(payload).encode(), repository).status == 201
    [document] = repository.documents.values()
    assert _control_characters(document) == {}
    assert document["userAgent"] == stored


# --- secrets in logs: urllib3's request lines carry query strings --------------------------


@pytest.mark.parametrize("entry", ["app", "cli"])
def test_http_request_lines_with_query_strings_are_never_logged(
    entry: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """urllib3 logs each request line at DEBUG, query string included: with a SAS connection
    string for AzureWebJobsStorage that is the signature (``...?sig=...``). Whatever level the
    worker or an operator gives the root logger, the app and the CLI keep urllib3, like the
    Azure SDKs, to warnings."""
    for name in SDK_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    if entry == "app":
        configure_telemetry({})  # what function_app runs at import, telemetry or not
    else:
        monkeypatch.setattr(logging.root, "handlers", [])
        monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
        assert cli.main(["events", "--limit", "0"]) == 2  # parsed and refused: nothing sent
    monkeypatch.setattr(logging.root, "level", logging.DEBUG)
    assert not logging.getLogger("urllib3.connectionpool").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("azure.core.pipeline").isEnabledFor(logging.INFO)
