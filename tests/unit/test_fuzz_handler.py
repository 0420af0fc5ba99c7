"""Property-based fuzzing of the webhook handler: whatever arrives, never a 5xx, and nothing
is written unless the payload is a valid recorded event."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acr_webhook.handlers import handle_webhook
from acr_webhook.models import RECORDED_ACTIONS, AcrEvent
from tests.support import payloads
from tests.support.fakes import FakeEventRepository

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
actions = st.sampled_from([*sorted(RECORDED_ACTIONS), "ping", "tag_delete", ""]) | st.text()


def is_valid_event(payload: Any) -> bool:
    try:
        AcrEvent.model_validate(payload)
    except Exception:
        return False
    return True


def check(body: bytes, payload: Any = None) -> None:
    repository = FakeEventRepository()
    result = handle_webhook(body, repository)
    assert result.status < 500, (result, body[:200])
    if result.status >= 400:
        assert result.body is not None and isinstance(result.body["error"], str)
        json.dumps(result.body)
    if repository.add_calls:
        assert isinstance(payload, dict) and payload.get("action") in RECORDED_ACTIONS
        assert is_valid_event(payload)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(body: bytes) -> None:
    check(body)


@FUZZ
@given(json_values)
def test_random_json(payload: Any) -> None:
    check(json.dumps(payload).encode(), payload)


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """Real payloads with fields removed, retyped, oversized or replaced."""
    payload: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(list(payloads.RECORDED.values()))))
    payload["action"] = draw(actions)
    for _ in range(draw(st.integers(0, 4))):
        node = payload if draw(st.booleans()) else payload.get("target")
        if not isinstance(node, dict) or not node:
            continue
        key = draw(st.sampled_from(sorted(node)))
        change = draw(st.sampled_from(["drop", "value", "huge", "unicode", "nest"]))
        if change == "drop":
            del node[key]
        elif change == "value":
            node[key] = draw(json_values)
        elif change == "huge":
            node[key] = "x" * draw(st.integers(1_000, 200_000))
        elif change == "unicode":
            node[key] = draw(st.text(min_size=1, max_size=30))
        else:
            node[key] = {"deep": [[[[{"x": node.get(key)}]]]]}
    return payload


@FUZZ
@given(mutated_events())
def test_mutated_real_payloads(payload: dict[str, Any]) -> None:
    check(json.dumps(payload).encode(), payload)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 200_000))
def test_deep_nesting(depth: int) -> None:
    check(b'{"action": "push", "x": ' + b"[" * depth + b"]" * depth + b"}")


def _slow_path(body: bytes) -> AcrEvent | None:
    try:
        return AcrEvent.model_validate(json.loads(body))
    except Exception:
        return None


def _fast_path(body: bytes) -> AcrEvent | None:
    try:
        return AcrEvent.model_validate_json(body)
    except Exception:
        return None


@FUZZ
@given(mutated_events())
def test_one_pass_json_validation_agrees_with_json_loads_then_validate(
    payload: dict[str, Any],
) -> None:
    """The handler validates the raw bytes in one pass and falls back to json.loads only to
    explain a rejection; both must accept the same events and read them the same way."""
    body = json.dumps(payload).encode()
    assert _fast_path(body) == _slow_path(body)
