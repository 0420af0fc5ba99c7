from __future__ import annotations

import json

import azure.functions as func
import pytest

import function_app
from acr_webhook.handlers import UNAUTHORIZED
from acr_webhook.local.host import LocalFunctionsHost
from tests.support import payloads
from tests.support.fakes import FakeEventRepository

KEY = "test-key"
URL = "/api/acr/webhook"


@pytest.fixture
def repository(app_repository: FakeEventRepository) -> FakeEventRepository:
    return app_repository


@pytest.fixture
def host() -> LocalFunctionsHost:
    return LocalFunctionsHost(function_app.app, KEY)


def test_routes_come_from_the_function_app_decorators(host: LocalFunctionsHost) -> None:
    assert set(host.routes) == {"/api/acr/webhook", "/api/acr/eventgrid", "/api/acr/events"}
    webhook = host.routes["/api/acr/webhook"]
    assert webhook.methods == {"POST"}
    assert webhook.needs_key


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        (f"{URL}?code={KEY}", {}),
        (URL, {"x-functions-key": KEY}),
        (URL, {"X-Functions-Key": KEY}),
        (f"/API/ACR/Webhook/?code={KEY}", {}),
    ],
)
def test_key_in_query_or_header_reaches_the_function(
    host: LocalFunctionsHost,
    repository: FakeEventRepository,
    target: str,
    headers: dict[str, str],
) -> None:
    reply = host.dispatch("POST", target, headers, payloads.body(payloads.PUSH), "http://h")
    assert reply.status == 201
    assert reply.headers["Content-Type"].startswith("application/json")
    assert json.loads(reply.body)["id"] == payloads.PUSH["id"]


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        (URL, {}),
        (f"{URL}?code=wrong", {}),
        (URL, {"x-functions-key": "wrong"}),
        (f"{URL}?code=", {}),
    ],
)
def test_missing_or_wrong_key_is_401_and_nothing_runs(
    host: LocalFunctionsHost,
    repository: FakeEventRepository,
    target: str,
    headers: dict[str, str],
) -> None:
    reply = host.dispatch("POST", target, headers, payloads.body(payloads.PUSH), "http://h")
    assert reply.status == 401
    assert json.loads(reply.body) == UNAUTHORIZED
    assert repository.add_calls == 0


def test_unknown_path_is_404_and_wrong_method_is_405(host: LocalFunctionsHost) -> None:
    assert host.dispatch("POST", f"/api/nope?code={KEY}", {}, b"", "http://h").status == 404
    reply = host.dispatch("GET", f"{URL}?code={KEY}", {}, b"", "http://h")
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"


def test_ping_reply_has_no_body_or_content_type(
    host: LocalFunctionsHost, repository: FakeEventRepository
) -> None:
    reply = host.dispatch("POST", f"{URL}?code={KEY}", {}, b'{"action":"ping"}', "http://h")
    assert (reply.status, reply.body) == (204, b"")
    assert "Content-Type" not in reply.headers


def test_a_crashing_function_is_a_500_without_traceback() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="boom", methods=["GET"])
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("secret detail")

    reply = LocalFunctionsHost(app, KEY).dispatch("GET", "/api/boom", {}, b"", "http://h")
    assert reply.status == 500
    assert b"secret detail" not in reply.body
    assert b"Traceback" not in reply.body
    assert json.loads(reply.body) == {"error": "internal error"}


def test_anonymous_routes_need_no_key() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="open", methods=["GET"])
    def open_route(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.params.get("q", ""), status_code=200)

    reply = LocalFunctionsHost(app, KEY).dispatch("GET", "/api/open?q=hi", {}, b"", "http://h")
    assert (reply.status, reply.body) == (200, b"hi")
