"""Every tracked file reads the same on every machine: UTF-8 without a byte-order mark, LF line
endings, a final newline, no trailing whitespace. ruff holds the Python files to this; nothing
else held the Markdown, Bicep, JSON, shell and JavaScript files (a CRLF in a shell script breaks
it on Linux; a BOM breaks a shebang and some JSON readers)."""

from __future__ import annotations

import re

from tests.support.cosmos_server import REPO_ROOT
from tests.support.repository import tracked_files

TRAILING_WHITESPACE = re.compile(rb"[ \t]+\r?$", re.MULTILINE)


def contents() -> dict[str, bytes]:
    return {name: (REPO_ROOT / name).read_bytes() for name in tracked_files()}


def test_the_repository_holds_only_text() -> None:
    """No binary (a NUL byte) was committed: a new one would be a deliberate choice."""
    assert [name for name, data in contents().items() if b"\0" in data] == []


def test_every_tracked_file_is_utf8_without_a_byte_order_mark() -> None:
    bad = []
    for name, data in contents().items():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(name)
        if data.startswith(b"\xef\xbb\xbf"):
            bad.append(name)
    assert bad == []


def test_every_tracked_file_has_lf_line_endings_and_a_final_newline() -> None:
    crlf = [name for name, data in contents().items() if b"\r" in data]
    unterminated = [name for name, data in contents().items() if data and data[-1:] != b"\n"]
    assert (crlf, unterminated) == ([], [])


def test_no_tracked_file_has_trailing_whitespace() -> None:
    found = {}
    for name, data in contents().items():
        lines = [data.count(b"\n", 0, m.start()) + 1 for m in TRAILING_WHITESPACE.finditer(data)]
        if lines:
            found[name] = lines[:5]
    assert found == {}
