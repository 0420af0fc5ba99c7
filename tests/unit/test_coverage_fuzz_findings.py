"""What coverage-guided fuzzing (atheris, one harness per entry point, kept outside the repo)
found, each as a small deterministic test (each defect fixed since; the test says what it was).

The harnesses fed the webhook and Event Grid handlers, the read API's parameters and
continuation tokens, the reconcile events file and the local host's dispatch with mutations of
the real payloads (tests/support/payloads.py), and checked each answer against what the
handlers promise and, for the local host, against what the Azure host (ASP.NET Core, .NET's
OrdinalIgnoreCase) would answer."""

from __future__ import annotations

import pytest

import function_app
from acr_webhook.handlers import handle_webhook
from acr_webhook.local.host import LocalFunctionsHost, azure_params
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.unit.test_http_properties import KEY, NOT_FOUND, Stores, dispatch
from tests.unit.test_local_host import call_wsgi
from tests.unit.test_queries import UNFILTERED, call, event, forged, seed

# --- the local host: names compared as .NET's OrdinalIgnoreCase compares them ---------------
# OrdinalIgnoreCase upper-cases each UTF-16 unit by ICU's simple mapping, except that the
# dotless i (U+0131) and the long s (U+017F) stay as they are (dotnet/runtime,
# System.Globalization.Native, GlobalizationNative_InitOrdinalCasingPage: "Disable Turkish I
# behavior on Ordinal operations"). Python's str.upper maps them to "I" and "S".


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/ap%C4%B1/acr/webhook"), ("GET", "/api/acr/event%C5%BF")],
)
def test_a_dotless_i_or_a_long_s_in_the_path_matches_no_route(method: str, path: str) -> None:
    """route_key upper-cased U+0131 to "I" and U+017F to "S": both paths reached the
    functions (201 and 200) where the Azure host answers an empty 404."""
    body = payloads.body(payloads.with_new_id(payloads.PUSH)) if method == "POST" else b""
    assert dispatch(Stores(), method, f"{path}?code={KEY}", {}, body) == NOT_FOUND


@pytest.mark.parametrize(
    ("query", "params"),
    [
        ([("\u00b5", "1"), ("\u03bc", "2")], {"\u00b5": "1,2"}),
        ([("\u212a", "1"), ("k", "2")], {"\u212a": "1", "k": "2"}),
    ],
)
def test_query_names_are_one_parameter_when_ordinal_ignore_case_says_so(
    query: list[tuple[str, str]], params: dict[str, str]
) -> None:
    """Names were grouped by str.lower: the micro sign and the Greek mu stayed two
    parameters, the Kelvin sign and "k" became one."""
    assert azure_params(query) == params


def test_a_request_target_that_is_no_path_nor_url_is_a_400(
    app_repository: FakeEventRepository,
) -> None:
    """POST x/api/acr/webhook was routed and stored (201): azure_path dropped its first
    segment."""
    body = payloads.body(payloads.with_new_id(payloads.PUSH))
    host = LocalFunctionsHost(function_app.app, KEY)
    status, _ = call_wsgi(host, "POST", f"x/api/acr/webhook?code={KEY}", body)
    assert status.startswith("400 ")
    assert app_repository.add_calls == 0


# --- the read API: a continuation token is one this endpoint wrote, or a 400 -----------------


def test_a_token_whose_timestamp_is_not_in_ascii_digits_is_not_ours() -> None:
    """_STORED_TIMESTAMP matched \\d, any script's digits: the forged token was taken (200),
    and as such text sorts after every stored time, paging started over from the newest."""
    reader = FakeEventRepository()
    seed(reader, event(at="2026-11-23T10:00:00Z"), event(at="2026-11-23T12:00:00Z"))
    arabic_indic = "\u0662\u0660\u0662\u0666-11-23T11:00:00.000000Z"  # 2026 in U+0660-U+0669
    token = forged({"v": 2, "q": UNFILTERED, "t": arabic_indic, "k": None, "w": [None, None]})
    status, body = call({"continuation": token}, reader)
    assert (status, body) == (
        400,
        {"error": "continuation: is not a continuation token from this endpoint; start without it"},
    )


# --- the webhook: the one-pass parse answers as the step-by-step checks do -------------------
# handlers._recorded_event first tries pydantic-core on the bytes, then json.loads and the checks
# one at a time. The fuzzer compared every answer with the step-by-step one alone and found no
# difference; these bodies are where the two JSON parsers could differ, kept as a pin.

EVENT = '{"id":"a","timestamp":"2026-01-01T00:00:00Z","action":"push","target":{"repository":"r"}'


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (EVENT + ',"x":NaN}', 400),  # not JSON, though both parsers take it (0934429)
        (EVENT + ',"x":-Infinity}', 400),
        (EVENT + ',"x":1e400}', 201),
        (EVENT + ',"x":"\\ud800"}', 201),  # a lone surrogate in a field that is not kept
        (EVENT + ',"action":"ping"}', 204),  # a repeated key: the last one counts, both ways
        ('{"action":"ping",' + EVENT[1:] + "}", 201),
        (EVENT + ',"x":' + "1" * 5000 + "}", 400),  # past Python's 4,300 digits, both ways
        (EVENT + "}\x00", 400),
        ("\ufeff" + EVENT + "}", 400),
    ],
)
def test_the_one_pass_parse_and_the_step_by_step_checks_agree(body: str, status: int) -> None:
    repository = FakeEventRepository()
    result = handle_webhook(body.encode("utf-8", "surrogatepass"), repository)
    assert result.status == status
    assert repository.add_calls == (1 if status == 201 else 0)
    if status == 400:
        assert result.body is not None and result.body["error"].startswith("body ")
