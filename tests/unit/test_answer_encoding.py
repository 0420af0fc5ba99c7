"""function_app's answers: JSON in UTF-8 (a third of ASCII escapes' size for 4-byte characters:
tests/integration/test_peak_memory.py), whatever text a body holds."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

import function_app
from acr_webhook.results import Result

# Any code point, lone surrogates often (st.text() never draws them by default).
TEXT = st.text(st.characters(exclude_categories=()) | st.characters(categories=["Cs"]))


@given(st.dictionaries(TEXT, TEXT | st.integers() | st.none(), max_size=5))
@example({"pair": "\ud83d\ude00"})  # two lone surrogates that read back as one character
def test_every_answer_reads_back_as_its_ascii_escaped_json_did(body: dict[str, object]) -> None:
    """Lone surrogates included: one cannot be UTF-8, and failing to encode it would be a 500
    for a body that a test of the handler alone passes. (A high surrogate then a low one read
    back as one character, as their ASCII escapes did: compared with those, not the body.)"""
    answer = function_app._http_response(Result(200, body))
    assert json.loads(answer.get_body()) == json.loads(json.dumps(body))
    assert answer.mimetype == "application/json"
    assert answer.charset == "utf-8"


def test_text_goes_as_utf_8_and_a_lone_surrogate_as_its_escape() -> None:
    answer = function_app._http_response(Result(200, {"actor": "\U0001f600\ud800é"}))
    assert answer.get_body() == '{"actor": "\U0001f600\\ud800é"}'.encode()
