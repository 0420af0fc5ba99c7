"""Azure Functions entry point (Python v2 programming model).

Thin by design: routes, auth level and translation between HTTP and the framework-free
handlers in ``acr_webhook.handlers``. No business logic lives here.
"""

import json

import azure.functions as func

from acr_webhook.eventgrid import handle_eventgrid, handle_eventgrid_options
from acr_webhook.handlers import Result, handle_webhook
from acr_webhook.runtime import event_repository

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _http_response(result: Result) -> func.HttpResponse:
    if result.body is None:
        return func.HttpResponse(status_code=result.status, headers=result.headers)
    return func.HttpResponse(
        json.dumps(result.body),
        status_code=result.status,
        headers=result.headers,
        mimetype="application/json",
    )


@app.route(route="acr/webhook", methods=["POST"])
def acr_webhook(req: func.HttpRequest) -> func.HttpResponse:
    """ACR webhook endpoint: POST /api/acr/webhook?code=<function key>."""
    return _http_response(handle_webhook(req.get_body(), event_repository()))


@app.route(route="acr/eventgrid", methods=["POST", "OPTIONS"])
def acr_eventgrid(req: func.HttpRequest) -> func.HttpResponse:
    """Event Grid endpoint: POST /api/acr/eventgrid?code=<function key> (Event Grid or
    CloudEvents schema); OPTIONS is the CloudEvents abuse-protection handshake."""
    headers = {name.lower(): value for name, value in req.headers.items()}
    if req.method.upper() == "OPTIONS":
        return _http_response(handle_eventgrid_options(headers))
    return _http_response(handle_eventgrid(req.get_body(), headers, event_repository()))
