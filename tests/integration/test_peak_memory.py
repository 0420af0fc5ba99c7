"""Peak memory per request under the worst inputs the app's own limits admit.

A Flex Consumption instance has ``instanceMemoryMB`` (infra/modules/function-app.bicep: 2048)
for the Functions host and the Python worker together, and serves HTTP_CONCURRENCY (16)
requests at once: an instance out of memory is killed with every request in flight on it, and
ACR never sends a webhook again. Microsoft publishes no figure for the host's own share; 512 MB
is taken for it here, and the worker's idle RSS (~110 MiB measured after the worst requests'
warm-up) besides, so each of 16 requests may cost (2048 - 512) MB / 16 - 7 MiB ~ 84 MiB.

Measured with the registered functions of ``function_app`` (func.HttpRequest in, as the worker
calls them) against the local Cosmos DB server. Python's share by tracemalloc (what Rust code in
pydantic-core allocates is not in it, so RSS is higher: figures in the comments are RSS peaks
over the warmed-up process, from a process of its own per case, 1 and 16 requests at once)."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import azure.functions as func
import pytest

import function_app
from acr_webhook.config import HTTP_CONCURRENCY, Settings
from acr_webhook.handlers import MAX_BODY_BYTES
from acr_webhook.local.host import ServerLimits
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.queries import parse_event_query
from acr_webhook.repository import CosmosEventRepository
from tests.conftest import container_for, fresh_settings
from tests.infra.test_main_template import app_settings
from tests.support import payloads
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.deployed import deployed_on, post
from tests.support.fakes import FakeEventRepository
from tests.unit.test_models import WIDEST, worst_case_payload

MIB = 1024 * 1024
T = TypeVar("T")
INSTANCE_MB = 2048  # function-app.bicep's instanceMemoryMB default
HOST_SHARE_MB = 512  # no Microsoft figure found: an assumption, said so in the docstring
WORKER_IDLE = 110 * MIB  # the worker's RSS before the requests, measured
PER_REQUEST_SHARE = ((INSTANCE_MB - HOST_SHARE_MB) * 10**6 - WORKER_IDLE) // HTTP_CONCURRENCY

# Cosmos DB's largest answer to one query request (learn.microsoft.com, cosmos-db,
# concepts-limits: "Maximum response size ... 4 MB"); the SDK asks again for the rest.
COSMOS_ANSWER_BYTES = 4 * 10**6
# What parsing a 1 MiB body once into Python objects may cost (json.loads: ~25 MiB at worst).
ONE_PARSE = 32 * MIB


@pytest.fixture
def app(cosmos_server: LocalCosmosServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """function_app as deployed, on a container of its own."""
    with deployed_on(fresh_settings(cosmos_server), monkeypatch) as settings:
        yield settings


def traced(call: Callable[[], T]) -> tuple[int, int, T]:
    """The Python memory ``call`` allocated, over what was allocated before it: at its peak,
    and what its result still holds once it returned; and its result."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = call()
        now, peak = tracemalloc.get_traced_memory()
        return peak - before, now - before, result
    finally:
        tracemalloc.stop()


def empty_objects(size: int) -> bytes:
    """A JSON array of ``{}`` exactly ``size`` bytes long or one short: the most Python objects
    (and pydantic error inputs) per byte of JSON."""
    return b"[" + b",".join([b"{}"] * ((size - 1) // 3)) + b"]"


# --- webhook ---------------------------------------------------------------------------------


def test_a_1_mib_webhook_body_costs_no_more_than_its_share_of_the_instance(app: Settings) -> None:
    # Not an object of the event's fields: every recorded field is missing, so each of the 4
    # "missing" errors of AcrEvent.model_validate_json holds its own Python copy of the body
    # (~24 MiB each), before json.loads parses it once more (~25 MiB). One parse is what the
    # same bytes cost Event Grid (below); 16 of those fit, 16 of 96 MiB (traced) do not.
    body = b'{"a":' + empty_objects(MAX_BODY_BYTES - 6) + b"}"
    assert len(body) <= MAX_BODY_BYTES
    peak, _, response = traced(lambda: function_app.acr_webhook(post(body)))
    assert response.status_code == 400
    assert peak <= ONE_PARSE < PER_REQUEST_SHARE


def test_the_largest_valid_webhook_event_costs_under_2_mib(app: Settings) -> None:
    """Every field at its limit in the widest characters (and a 100,000-character user agent,
    which is cut): stored, at 0.6 MiB RSS alone and 13 MiB for 16 at once."""
    body = json.dumps(worst_case_payload(), ensure_ascii=False).encode()
    peak, _, response = traced(lambda: function_app.acr_webhook(post(body)))
    assert response.status_code == 201
    assert peak < 2 * MIB


# --- Event Grid --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        # Parsed once by json.loads; 25 MiB RSS alone, 154 MiB for 16 at once.
        pytest.param(b"[" + empty_objects(MAX_BODY_BYTES - 2) + b"]", id="array of empty objects"),
        # The same JSON sent as the text of one event's data, which is parsed again:
        # 25 MiB RSS alone, 179 MiB for 16 at once.
        pytest.param(
            json.dumps(
                [
                    {
                        "id": "e",
                        "eventType": "ImagePushed",
                        "data": empty_objects(MAX_BODY_BYTES - 60).decode(),
                    }
                ]
            ).encode(),
            id="data as JSON text",
        ),
    ],
)
def test_a_1_mib_event_grid_body_costs_at_most_its_share(app: Settings, body: bytes) -> None:
    assert len(body) <= MAX_BODY_BYTES
    peak, _, response = traced(lambda: function_app.acr_eventgrid(post(body)))
    assert response.status_code == 400
    assert peak <= ONE_PARSE < PER_REQUEST_SHARE


def test_a_batch_of_5000_events_costs_at_most_its_share(app: Settings) -> None:
    """Event Grid's largest batch, each copy validated, merged into one write (5,000 distinct
    events: 11 MiB RSS alone, whose writes the local server cannot finish in 20 s for 16)."""
    data = payloads.numbered(1, compact=True)
    event = {"id": "e", "eventType": "Microsoft.ContainerRegistry.ImagePushed", "data": data}
    body = json.dumps([event] * 5000, separators=(",", ":")).encode()
    assert len(body) <= MAX_BODY_BYTES
    peak, _, response = traced(lambda: function_app.acr_eventgrid(post(body)))
    assert response.status_code == 200, response.get_body()
    assert peak <= ONE_PARSE < PER_REQUEST_SHARE


# --- the read endpoint -------------------------------------------------------------------------


def test_a_page_of_1000_of_the_widest_events_fits_a_requests_share(
    app: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read endpoint's largest page (limit=1000) of the largest documents the app writes
    (every field at its limit in 4-byte characters). Its answer was JSON with ASCII escapes,
    12 bytes per such character: 41 MiB, and the call's peak 101 MiB of Python memory (148
    MiB RSS), so a dozen such reads at once took an instance's memory. In UTF-8: 14 MiB.

    Measured in two parts, since the local server sends the page's 1001 documents in one
    answer of 14.6 MB, where Cosmos DB sends at most 4 MB per answer and the SDK asks for the
    rest: the documents as the app's read holds them, and what ``function_app.acr_events``
    allocates from them to its answer."""
    container = container_for(app)
    payload = worst_case_payload() | {"action": "push"}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for number in range(1001):
        payload["id"] = payload["id"][:-6] + f"{number:06d}"
        payload["timestamp"] = (start + timedelta(seconds=number)).isoformat()
        event = AcrEvent.model_validate(payload)
        container.create_item(to_document(event, start, "eventgrid", WIDEST * 512))
    query = parse_event_query({"limit": "1000"})
    _, documents_held, documents = traced(
        lambda: CosmosEventRepository(app).find_events(query, query.limit + 1)
    )
    in_memory = FakeEventRepository()
    in_memory.documents = {document["id"]: document for document in documents}
    monkeypatch.setattr(function_app, "event_reader", lambda: in_memory)
    request = func.HttpRequest(
        "GET", "http://localhost/api/acr/events", body=b"", params={"limit": "1000"}
    )
    peak, _, response = traced(lambda: function_app.acr_events(request))
    assert response.status_code == 200
    assert len(json.loads(response.get_body())["events"]) == 1000
    assert len(response.get_body()) < 15 * MIB
    # One answer of the database held three times over while it is read: the chunks, the
    # bytes they are joined into, and their text.
    assert documents_held + peak + 3 * COSMOS_ANSWER_BYTES < PER_REQUEST_SHARE


# --- the host's own limit ------------------------------------------------------------------------


def test_the_host_refuses_a_body_far_over_the_apps_limit_before_the_worker_holds_it() -> None:
    """The Functions host reads a body up to 100 MB (its Kestrel MaxRequestBodySize; README:
    "Azure's limit is 100 MB") and sends it whole to the worker, where req.get_body() holds it
    before handlers.parse_json answers 413: the app's 1 MiB does not bound a request's memory.
    The app setting FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (learn.microsoft.com, azure-functions,
    functions-app-settings) lowers the host's limit."""
    limit = app_settings().get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT")
    assert limit is not None
    # Above the app's own limit (its JSON 413), and the local host's, which README compares.
    assert MAX_BODY_BYTES < int(str(limit).strip("'")) == ServerLimits().max_body_bytes


def test_a_100_mb_body_costs_the_function_nothing_beyond_itself(app: Settings) -> None:
    """What the worker holds of such a body is the body alone: the function answers 413 from
    its length, with no copy (0 MiB over the body, whatever its size)."""
    body = b" " * (100 * 10**6)
    webhook = traced(lambda: function_app.acr_webhook(post(body)))
    eventgrid = traced(lambda: function_app.acr_eventgrid(post(body)))
    for peak, _, response in (webhook, eventgrid):
        assert response.status_code == 413
        assert peak < MIB
