"""Property-based fuzzing of both delivery routes: whatever arrives, never a 5xx, and nothing
is written unless the payload is a valid recorded event that Cosmos DB and the fallback queue
both take."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from azure.cosmos._base import _validate_resource
from hypothesis import given, settings
from hypothesis import strategies as st

from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import SharedSecret, handle_webhook
from acr_webhook.models import RECORDED_ACTIONS, AcrEvent
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.properties import DETERMINISTIC
from tests.unit.test_eventgrid import POOL, cloud_event, event_grid

# Regression-sized: coverage-guided fuzzing (atheris, 16.4M runs of these entry points, see
# test_coverage_fuzz_findings.py) found nothing these had missed; CI time is what they cost.
FUZZ = settings(DETERMINISTIC, max_examples=500)

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


def assert_storable(document: dict[str, Any]) -> None:
    """What Cosmos DB and the fallback queue would refuse never reaches them."""
    _validate_resource(document)  # the Cosmos SDK's own id check (a ValueError in issue 10)
    assert len(document["repository"].encode("utf-8")) <= 2048  # partition key value limit
    assert int(document["timestamp"][:4]) >= 1000 and document["timestamp"][4] == "-"
    size = document["size"]
    assert size is None or (type(size) is int and 0 <= size < 2**53)
    assert len(base64.b64encode(json.dumps(document).encode())) < 64 * 1024


def check_answer(result: Any, body: bytes) -> None:
    assert result.status < 500, (result, body[:200])
    if result.status >= 400 and result.status != 401:
        assert result.body is not None and isinstance(result.body["error"], str)
        json.dumps(result.body)


def check(body: bytes, payload: Any = None) -> None:
    repository = FakeEventRepository()
    result = handle_webhook(body, repository)
    check_answer(result, body)
    if repository.add_calls:
        assert isinstance(payload, dict) and payload.get("action") in RECORDED_ACTIONS
        # As received: JSON joins an escaped surrogate pair into one character.
        assert is_valid_event(json.loads(body))
    for document in repository.documents.values():
        assert_storable(document)


def check_eventgrid(body: bytes) -> None:
    repository = FakeEventRepository()
    result = handle_eventgrid(body, {}, repository, executor=POOL)
    check_answer(result, body)
    if result.status != 200:
        assert repository.add_calls == 0  # invalid input never writes, not even in part
    for document in repository.documents.values():
        assert_storable(document)


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


@settings(DETERMINISTIC, max_examples=50)
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


# --- hostile values (issue 10): control characters, extreme dates, huge numbers, long strings ---

control_text = st.text(
    st.sampled_from(list("\t\r\n\x00\x1f\x7f\x85\u2028 /\\?#a\u00e9\U0001f600")), max_size=12
)
long_text = st.builds(
    lambda unit, count: unit * count,
    st.sampled_from(["x", "\u00e9", "\U0001f600", '"']),
    st.integers(100, 3000),
)
lone_surrogates = st.sampled_from(["\ud800", "a\udfff", "\udbff\udc00x"])


@st.composite
def extreme_timestamps(draw: st.DrawFn) -> str:
    """ISO 8601 near the ends of the calendar, with offsets that push past them, and 0-9
    fractional digits."""
    year = draw(st.sampled_from([1, 9, 999, 1000, 1001, 2024, 9998, 9999]) | st.integers(1, 9999))
    month, day = draw(st.sampled_from([(1, 1), (12, 31), (6, 15), (2, 28)]))
    hour, minute = draw(st.sampled_from([(0, 0), (0, 30), (23, 59), (12, 0)]))
    digits = draw(st.integers(0, 9))
    fraction = "." + "9" * digits if digits else ""
    zone = draw(
        st.sampled_from(["Z", "", "+00:00", "+01:00", "-01:00", "+14:00", "-12:00", "+23:59"])
    )
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:59{fraction}{zone}"


huge_numbers = (
    st.integers(-(2**70), 2**70)
    | st.sampled_from([2**53 - 1, 2**53, 10**30, 10**400, -1, 0, True, False])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["12", "1e30", "", "0x10"])
)
hostile_values = (
    control_text | long_text | lone_surrogates | extreme_timestamps() | huge_numbers | st.none()
)
FIELD_PATHS = [
    "id",
    "timestamp",
    "action",
    "target.repository",
    "target.tag",
    "target.digest",
    "target.mediaType",
    "target.size",
    "target.length",
    "target.name",
    "target.version",
    "request.id",
    "request.host",
    "request.method",
    "request.useragent",
    "request.addr",
    "actor.name",
    "location",
    "connectedRegistry.name",
]


@st.composite
def hostile_events(draw: st.DrawFn) -> dict[str, Any]:
    """The enriched push with up to four fields set to hostile values (timestamps get the
    extreme ones more often: they broke both routes)."""
    payload = copy.deepcopy(payloads.ENRICHED_PUSH)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(FIELD_PATHS))
        value = draw(extreme_timestamps() if path == "timestamp" else hostile_values)
        *parents, last = path.split(".")
        node = payload
        for key in parents:
            node = node[key]
        node[last] = value
    return payload


HOSTILE_FUZZ = settings(DETERMINISTIC, max_examples=300)


@HOSTILE_FUZZ
@given(hostile_events())
def test_hostile_webhook_payloads(payload: dict[str, Any]) -> None:
    check(json.dumps(payload).encode(), payload)


@HOSTILE_FUZZ
@given(st.lists(hostile_events(), min_size=1, max_size=4), st.booleans())
def test_hostile_event_grid_batches(events: list[dict[str, Any]], as_cloud_events: bool) -> None:
    envelope = cloud_event if as_cloud_events else event_grid
    batch = []
    for data in events:
        target = data.get("target")
        repository = target.get("repository") if isinstance(target, dict) else None
        # The helpers read the repository and action to build the envelope.
        safe = {**data, "target": {"repository": str(repository)}, "action": "push"}
        wrapped = envelope(safe)
        wrapped["data"] = data
        batch.append(wrapped)
    check_eventgrid(json.dumps(batch).encode())


@FUZZ
@given(st.binary(max_size=2000) | json_values.map(lambda value: json.dumps(value).encode()))
def test_random_event_grid_bodies(body: bytes) -> None:
    check_eventgrid(body)


@settings(DETERMINISTIC, max_examples=200)
@given(st.binary(max_size=500), st.dictionaries(st.text(max_size=20), st.text(max_size=40)))
def test_without_the_secret_nothing_is_read_on_either_route(
    body: bytes, headers: dict[str, str]
) -> None:
    secret = SharedSecret("the-secret")
    repository = FakeEventRepository()
    lowered = {name.lower(): value for name, value in headers.items()}
    lowered.pop("aeg-event-type", None)
    webhook = handle_webhook(body, repository, headers=lowered, secret=secret)
    eventgrid = handle_eventgrid(body, lowered, repository, executor=POOL, secret=secret)
    assert (webhook.status, webhook.body) == (401, None)
    assert (eventgrid.status, eventgrid.body) == (401, None)
    assert repository.add_calls == 0
