"""The CLI as scripts and CI jobs use it (unit level, the fake as Cosmos DB): ``--json`` is one
JSON document whatever the stored text, the table cannot be forged by a stored value, the
printed ``--continuation`` hint works when pasted into a shell, and an unusable setting is
exit 2 with a message naming it (docs/queries.md: "Bad options or missing settings exit with
status 2 and a message naming them"), never a traceback.

The real-process side (pipes, a full disk, a closed stdout, signals) is in
tests/e2e/test_cli_pipelines_e2e.py."""

from __future__ import annotations

import json
import shlex
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acr_webhook import __main__ as cli
from acr_webhook.models import AcrEvent, to_document
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.properties import DETERMINISTIC

DIGEST = "sha256:" + "a" * 64
RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def document(n: int, **fields: Any) -> dict[str, Any]:
    """A stored push, as the webhook writes it, with ``fields`` over it (as an earlier version
    may have stored them)."""
    payload = payloads.numbered(n)
    payload["target"].update(tag=f"v{n}", digest=DIGEST)
    return {**to_document(AcrEvent.model_validate(payload), RECEIVED), **fields}


# --- --json: one document, whatever the stored text -------------------------------------------

# What stored text may hold: earlier versions (before 3ccf54c) kept repository, tag, digest and
# registry exactly as ACR sent them, control characters included; userAgent is free text.
ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from('\n\r\t\x00\x1b\x07\x7f\x9b\u202e\u200f\u2028\ufeff\U0001f600\u00e9"\\'),
        st.characters(exclude_categories=["Cs"]),
    ),
    min_size=1,
    max_size=12,
)


@DETERMINISTIC
@given(
    st.lists(
        st.fixed_dictionaries(
            {"repository": ODD_TEXT, "tag": ODD_TEXT | st.none(), "userAgent": ODD_TEXT}
        ),
        max_size=5,
    ),
    st.booleans(),
)
def test_json_output_is_one_document_holding_every_stored_value_as_stored(
    odd: list[dict[str, Any]], pushes: bool
) -> None:
    """0, 1 or many events with newlines, tabs, ESC, RTL marks, emoji: stdout is exactly one
    JSON document (what docs/queries.md shows, not JSON lines) and gives back each value."""
    fake = FakeEventRepository()
    stored = [document(n, **fields) for n, fields in enumerate(odd)]
    for doc in stored:
        fake.add(doc)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
        patch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _settings: fake)
        out = _stdout_of(["events", "--json", "--limit", "1000", *(["--pushes"] * pushes)])
    parsed = json.loads(out)  # one document: a second one, or a stray line, fails here
    assert out.endswith("}\n") and out.count("\n}\n") == 1
    assert out.isascii()  # escaped: nothing a terminal or a non-UTF-8 pipe can trip on
    if pushes:
        assert parsed["continuation"] is None
        shown = {(p["repository"], p["tag"]) for p in parsed["pushes"]}
        assert shown == {(d["repository"], d["tag"]) for d in stored}
    else:
        assert parsed == {
            "events": sorted(stored, key=lambda d: d["timestamp"], reverse=True),
            "continuation": None,
        }


@pytest.mark.parametrize("pushes", [False, True])
def test_json_output_gives_a_stored_lone_surrogate_as_u_fffd(pushes: bool) -> None:
    """89721c0 stored a webhook body's "\\ud800" as a lone surrogate. Written back as that
    escape, the page was JSON grammar that jq refuses ("Invalid \\uXXXX\\uXXXX surrogate pair
    escape"), failing every event on it: each lone one is U+FFFD, a real pair stays."""
    fake = FakeEventRepository()
    fake.add(document(1, repository="team/\ud800a", tag="v\udc00", userAgent="\U0001f600\ud83d"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
        patch.setattr("acr_webhook.repository.CosmosEventRepository", lambda _settings: fake)
        out = _stdout_of(["events", "--json", *(["--pushes"] * pushes)])
    parsed = json.loads(out)
    json.dumps(parsed, ensure_ascii=False).encode("utf-8")  # no lone surrogate left to refuse
    shown = parsed["pushes" if pushes else "events"][0]
    assert (shown["repository"], shown["tag"]) == ("team/\ufffda", "v\ufffd")
    if not pushes:
        assert shown["userAgent"] == "\U0001f600\ufffd"


def _stdout_of(argv: list[str]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    return out.getvalue()


# --- the table: a stored value cannot forge rows, columns or terminal escapes -----------------

FORGING = {
    "newline forges a row": {
        "repository": "team/a\n2026-12-01T00:00:00.000000Z  delete  team/forged  v9"
    },
    "carriage return overwrites the row": {"tag": "v1\rFORGED"},
    "ESC clears the screen and sets the title": {"tag": "v1\x1b[2J\x1b]0;pwned\x07"},
    "C1 CSI colours the rest": {"tag": "v1\x9b31m"},
    "tab shifts the columns": {"repository": "team/a\tb"},
}


@pytest.mark.parametrize("pushes", [False, True], ids=["events", "pushes"])
@pytest.mark.parametrize("fields", FORGING.values(), ids=FORGING.keys())
def test_a_stored_value_cannot_forge_table_rows_or_terminal_escapes(
    cli_reader: FakeEventRepository,
    capsys: pytest.CaptureFixture[str],
    fields: dict[str, str],
    pushes: bool,
) -> None:
    """Documents stored by versions before 3ccf54c keep ACR's text as sent (89721c0's Target
    took any str), and docs/operations.md promises they are "shown (endpoint and `events`) as
    they were stored": the table must show such a character visibly (escaped, or U+FFFD as
    the userAgent is stored), one line per event, no control character reaching the terminal."""
    cli_reader.add(document(1, **fields))
    cli_reader.add(document(2))
    assert cli.main(["events", *(["--pushes"] * pushes)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 3, lines  # the header and one line per event (or push)
    controls = {c for c in out if unicodedata.category(c) == "Cc"} - {"\n"}
    assert not controls, sorted(controls)


# --- the --continuation hint, pasted into a shell -------------------------------------------


@pytest.mark.parametrize("pushes", [False, True], ids=["events", "pushes"])
def test_the_printed_continuation_works_pasted_into_a_shell(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str], pushes: bool
) -> None:
    """The hint "More events: add --continuation TOKEN": the words after "add", split as bash
    splits them (no quoting needed: base64url never starts with "-" nor holds a shell character),
    added to the same command, page through every event once."""
    for n in range(7):
        cli_reader.add(document(n, tag=f"v{n}", digest="sha256:" + f"{n:x}" * 64))
    command = ["events", "--repository", "team/api", "--limit", "3", *(["--pushes"] * pushes)]
    seen: list[str] = []
    added: list[str] = []
    for _ in range(5):
        assert cli.main(command + added) == 0
        out = capsys.readouterr().out
        seen += [line.split()[3] for line in out.splitlines()[1:] if line.startswith("2026-")]
        hint = [line for line in out.splitlines() if line.startswith("More ")]
        if not hint:
            break
        (line,) = hint
        words = shlex.split(line.split(": add ", 1)[1])
        token = words[-1]
        assert shlex.quote(token) == token and not token.startswith("-")
        assert words == [*(["--pushes"] * pushes), "--continuation", token]
        added = ["--continuation", token]
    assert sorted(seen) == [f"v{n}" for n in range(7)]


# --- an unusable setting: exit 2 naming it, not a traceback -------------------------------------


@pytest.mark.parametrize("command", [["events"], ["provision"]])
def test_a_cosmos_key_that_is_not_base64_is_exit_2_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """A key pasted with a character missing. Fails before any request is sent (the SDK
    signs each request with the decoded key), so no server is needed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("COSMOS_KEY", "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DDJBQ9WyKQ5")
    try:
        code = cli.main(command)
    except Exception as error:  # what escapes main is a traceback to a user
        pytest.fail(f"{type(error).__name__} escaped main: {error}")
    assert code == 2
    err = capsys.readouterr().err
    assert "COSMOS_KEY" in err
    assert "C2y6yDjf5" not in err  # the key itself is never shown


def test_a_malformed_storage_connection_string_is_exit_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/operations.md: redrive exits 2 when AzureWebJobsStorage is not set; one that is set
    but unusable (a variable holding a name instead of the string) is the same mistake."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AzureWebJobsStorage", "my-storage-account")
    try:
        code = cli.main(["redrive"])
    except Exception as error:
        pytest.fail(f"{type(error).__name__} escaped main: {error}")
    assert code == 2
    assert "AzureWebJobsStorage" in capsys.readouterr().err


def test_a_storage_account_key_that_is_not_base64_is_exit_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A connection string whose AccountKey lost a character: the storage SDK fails to sign the
    first request, which redrive reported as "unavailable or refused" with exit 1 ("run
    again"). It is a setting: exit 2, the key never shown. Port 1: nothing is contacted."""
    monkeypatch.chdir(tmp_path)
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq"
    monkeypatch.setenv(
        "AzureWebJobsStorage",
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;accountkey={key}a;"
        "QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;",
    )
    code = cli.main(["redrive"])
    assert code == 2
    err = capsys.readouterr().err
    assert "AzureWebJobsStorage" in err
    assert "AccountKey" in err
    assert key not in err


# --- serve's arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("port", ["65536", "99999", "-1"])
def test_serve_refuses_a_port_outside_0_to_65535(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    """A script that starts `serve --port $PORT` and then calls that port must get a usage
    error for a typo, as argparse gives for `--port abc`, not a host on some other port."""
    served: list[int] = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("LOCAL_FUNCTION_KEY", "k")
    monkeypatch.setattr(
        "acr_webhook.local.host.serve", lambda _app, _host, port, _key: served.append(port)
    )
    with pytest.raises(SystemExit) as stopped:
        cli.main(["serve", "--port", port])
    assert stopped.value.code == 2
    assert served == []
    assert "--port" in capsys.readouterr().err


def test_serve_names_an_app_module_that_does_not_exist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve --app typo`: a usage error naming the option, not a ModuleNotFoundError
    traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("LOCAL_FUNCTION_KEY", "k")
    assert cli.main(["serve", "--app", "no_such_function_app"]) == 2
    assert capsys.readouterr().err.startswith("--app: No module named 'no_such_function_app'")
