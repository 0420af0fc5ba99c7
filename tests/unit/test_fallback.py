"""How a queue message's text becomes the body the queue trigger hands the function."""

from __future__ import annotations

import base64

import pytest

from acr_webhook.fallback import decode_message

BODY = b'{"document": {"id": "e1"}, "attempts": 0}'
ENCODED = base64.b64encode(BODY).decode()


@pytest.mark.parametrize("whitespace", [" ", "\t", "\r", "\n", "\r\n"])
def test_the_whitespace_dotnet_skips_is_skipped(whitespace: str) -> None:
    """Convert.FromBase64String ignores space, tab, CR and LF anywhere in the text."""
    spread = whitespace.join(ENCODED[i : i + 7] for i in range(0, len(ENCODED), 7))
    assert decode_message(whitespace + spread + whitespace) == BODY


@pytest.mark.parametrize("other", ["\v", "\f", "\u00a0", "!", "-", "é"])
def test_any_other_character_fails_as_the_runtime_fails(other: str) -> None:
    with pytest.raises(ValueError):
        decode_message(ENCODED[:8] + other + ENCODED[8:])


def test_text_that_is_not_whole_base64_fails() -> None:
    with pytest.raises(ValueError):
        decode_message(ENCODED[:-1])
