"""The CLI as terminals, pipes and scripts meet it: its command line read as typed, its standard
output gone, full or closed (the exit statuses docs/queries.md gives), ``serve``'s banner and
ports, a console that cannot show a stored name, and the tables: each character that could
reorder or forge a cell shown as U+FFFD, and the columns kept in line by what each cell takes in
a terminal.
"""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.handlers import handle_webhook
from tests.support import payloads
from tests.support.fakes import FakeEventRepository

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# --- __main__: a console that cannot show a stored name -----------------------------------------


def test_the_cli_escapes_only_what_the_console_cannot_show(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """__main__: "shows it escaped" ("w\\xf6rld"), as stderr does; not dropped nor replaced."""
    repository = FakeEventRepository()
    payload = payloads.with_new_id(payloads.PUSH, repository="team/w\u00f6rld")
    handle_webhook(payloads.body(payload), repository, now=lambda: NOW)
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _s: repository)
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii", write_through=True))
    assert cli.main(["events"]) == 0
    assert "team/w\\xf6rld" in raw.getvalue().decode("ascii")


# --- __main__: the command line as typed --------------------------------------------------------


def test_the_cli_reads_its_own_command_line_as_typed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m acr_webhook`` calls ``main()`` with no argv: it reads ``sys.argv[1:]``, each
    argument as typed (``_as_typed``: in the C locale a non-ASCII name arrives as lone
    surrogates). Mutant: ``sys.argv`` whole, the program name taken for the command."""
    name = "team/w\u00f6rld"
    fake = FakeEventRepository()
    fake.documents["e1"] = {
        "id": "e1",
        "repository": name,
        "action": "push",
        "timestamp": "2026-11-23T10:00:00.000000Z",
    }
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _settings: fake)
    as_the_c_locale_reads_it = name.encode().decode("ascii", "surrogateescape")
    argv = ["python -m acr_webhook", "events", "--repository", as_the_c_locale_reads_it, "--json"]
    monkeypatch.setattr(sys, "argv", argv)
    assert cli.main() == 0
    [listed] = json.loads(capsys.readouterr().out)["events"]
    assert listed["id"] == "e1"
