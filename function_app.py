"""Azure Functions entry point (Python v2 programming model).

Thin by design: routes, auth level, the queue and timer triggers, and translation between HTTP
and the framework-free handlers (``handlers``, ``eventgrid``, ``queries``, ``replay`` and
``reconcile`` in ``acr_webhook``). No business logic lives here.
"""
# ruff: noqa: E402  (the imports run with the garbage collector off; see gc below)

import gc

# No cyclic garbage collection while the imports below build their long-lived objects
# (pydantic validators, the SDKs' tables): re-enabled, with all of it frozen, at the end.
gc.disable()

from acr_webhook.telemetry import configure_telemetry

configure_telemetry()  # Application Insights when configured; Azure SDK loggers at WARNING

import json

import azure.functions as func

from acr_webhook.config import FALLBACK_QUEUE_NAME, RECONCILE_SCHEDULE_SETTING, STORAGE_CONNECTION
from acr_webhook.eventgrid import handle_eventgrid, handle_eventgrid_options
from acr_webhook.handlers import handle_webhook
from acr_webhook.queries import handle_events_query
from acr_webhook.reconcile import reconcile_webhooks
from acr_webhook.replay import replay_queued_event
from acr_webhook.results import Result
from acr_webhook.runtime import (
    batch_executor,
    event_reader,
    event_repository,
    eventgrid_repository,
    fallback_queue,
    reconciled_events,
    settings,
    shared_secret,
    webhook_history,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _http_response(result: Result) -> func.HttpResponse:
    if result.body is None:
        return func.HttpResponse(status_code=result.status, headers=result.headers)
    # UTF-8, not ASCII escapes: a page of events in 4-byte characters is a third of the size,
    # and the answer is what a read's memory peaks on (tests/integration/test_peak_memory.py).
    # A lone surrogate cannot be UTF-8: it goes as its JSON escape (the read endpoint has made
    # an earlier version's U+FFFD already; this is for any other answer).
    return func.HttpResponse(
        json.dumps(result.body, ensure_ascii=False).encode(errors="backslashreplace"),
        status_code=result.status,
        headers=result.headers,
        mimetype="application/json",
    )


@app.route(route="acr/webhook", methods=["POST"])
def acr_webhook(req: func.HttpRequest) -> func.HttpResponse:
    """ACR webhook endpoint: POST /api/acr/webhook?code=<function key>."""
    result = handle_webhook(
        req.get_body(),
        event_repository(),
        headers=req.headers,
        secret=shared_secret(),
        fallback=fallback_queue(),
    )
    return _http_response(result)


@app.route(route="acr/eventgrid", methods=["POST", "OPTIONS"])
def acr_eventgrid(req: func.HttpRequest) -> func.HttpResponse:
    """Event Grid endpoint: POST /api/acr/eventgrid?code=<function key> (Event Grid or
    CloudEvents schema); OPTIONS is the CloudEvents abuse-protection handshake."""
    headers = {name.lower(): value for name, value in req.headers.items()}
    if req.method.upper() == "OPTIONS":
        return _http_response(handle_eventgrid_options(headers))
    # Event Grid's own client rides out throttling longer; its writes fan out on one bounded pool.
    result = handle_eventgrid(
        req.get_body(),
        headers,
        eventgrid_repository(),
        executor=batch_executor(),
        secret=shared_secret(),
    )
    return _http_response(result)


@app.route(route="acr/events", methods=["GET"])
def acr_events(req: func.HttpRequest) -> func.HttpResponse:
    """Recorded events, newest first: GET /api/acr/events?code=<function key>&repository=...
    (filters: repository, tag, digest, action, since, until; limit; continuation)."""
    return _http_response(handle_events_query(req.params, event_reader()))


@app.queue_trigger(
    arg_name="message", queue_name=FALLBACK_QUEUE_NAME, connection=STORAGE_CONNECTION
)
def replay_fallback(message: func.QueueMessage) -> None:
    """Events the webhook parked while Cosmos DB was down. While it still is, the event goes
    back with a longer delay; only a message that can never be stored, or one the queue cannot
    take back either, raises, and after maxDequeueCount (host.json) the runtime moves it to the
    poison queue."""
    replay_queued_event(
        message.get_body(),
        event_repository(),
        fallback_queue(),
        settings().replay_max_delay_s,
        message.dequeue_count,
    )


@app.timer_trigger(
    schedule=f"%{RECONCILE_SCHEDULE_SETTING}%", arg_name="timer", run_on_startup=False
)
def reconcile_history(timer: func.TimerRequest) -> None:
    """Every RECONCILE_SCHEDULE (NCRONTAB): store the events in the configured webhooks'
    delivery history (ACR_REGISTRY_ID, ACR_WEBHOOK_NAMES) that the record lacks."""
    reconcile_webhooks(
        settings().reconcile, event_repository(), webhook_history(), stored=reconciled_events()
    )


# Everything built so far lives as long as the process. Frozen, the collector never walks it
# again: otherwise the collections that creating the Cosmos client triggers on the first
# event each walk all of it (~35 ms of a cold start, measured by bench/).
gc.freeze()
gc.enable()
