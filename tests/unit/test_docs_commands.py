"""The developers' guide: "Every command in the README and docs runs as written in a fresh
clone." What can be checked without Azure or a server: every shell block parses as bash, every
documented ``python -m acr_webhook`` command line is one the CLI accepts, the CLI's options
mirror the documented endpoint parameters, and the documented shapes (the README's document
fields, queries.md's ``view=pushes`` example) are the ones the code produces."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.queries import QueryError, handle_events_query, parse_event_query
from tests.support import payloads
from tests.support.fakes import FakeEventRepository

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = {"README.md": (REPO_ROOT / "README.md").read_text()} | {
    f"docs/{path.name}": path.read_text() for path in sorted((REPO_ROOT / "docs").glob("*.md"))
}
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# A fenced block, indented or not (list items indent theirs), with its language.
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.DOTALL | re.MULTILINE)


def blocks(language: set[str]) -> dict[str, str]:
    """``file[n]`` (the nth block of these languages in the file, from 0) -> its text."""
    found = {}
    for name, text in DOCS.items():
        matches = [m for m in FENCE.finditer(text) if m.group(2) in language]
        for number, match in enumerate(matches):
            found[f"{name}[{number}]"] = textwrap.dedent(match.group(3))
    return found


SHELL_BLOCKS = blocks({"bash", "sh"})


def test_the_docs_have_the_shell_blocks_this_file_checks() -> None:
    assert len(SHELL_BLOCKS) >= 40, sorted(SHELL_BLOCKS)


# A placeholder such as <token> in a command is read by bash as a redirection: pasted, the
# whole block stops with "syntax error near unexpected token `newline'".
@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is what the docs are written for")
@pytest.mark.parametrize("block", SHELL_BLOCKS)
def test_every_shell_block_parses_as_bash(block: str) -> None:
    checked = subprocess.run(
        ["bash", "-n"], input=SHELL_BLOCKS[block], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


# --- python -m acr_webhook, as documented ------------------------------------------------------

COMMAND = re.compile(r"python -m acr_webhook\b([^`\n#)]*)")


def documented_cli_commands() -> dict[str, list[str]]:
    """Every ``python -m acr_webhook ...`` the README and docs show, in text or code: where it
    is -> its arguments (shell variables and placeholders stay as written)."""
    commands = {}
    for name, text in DOCS.items():
        for match in COMMAND.finditer(text):
            arguments = shlex.split(match.group(1).rstrip("\\ "))
            line = text.count("\n", 0, match.start()) + 1
            commands[f"{name}:{line}"] = arguments
    return commands


CLI_COMMANDS = documented_cli_commands()
SUBCOMMANDS = ("serve", "provision", "redrive", "events", "reconcile", "erase")


def test_the_docs_show_every_subcommand() -> None:
    shown = {arguments[0] for arguments in CLI_COMMANDS.values() if arguments}
    assert shown == set(SUBCOMMANDS)


@pytest.mark.parametrize("where", sorted(CLI_COMMANDS))
def test_every_documented_command_line_is_accepted_by_the_cli(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsed by the real parser; what would run instead records the parsed arguments."""
    arguments = CLI_COMMANDS[where]
    if not arguments:  # the module named in prose ("python -m acr_webhook events" etc.)
        return
    ran: list[argparse.Namespace] = []

    def record(args: argparse.Namespace) -> int:
        ran.append(args)
        return 0

    for command in SUBCOMMANDS:
        monkeypatch.setattr(cli, f"_{command}", record)
    assert cli.main(arguments) == 0
    [parsed] = ran
    assert parsed.command == arguments[0]


def events_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main(["events", "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def endpoint_parameters() -> list[str]:
    """The first column of queries.md's parameter table for GET /api/acr/events."""
    table = DOCS["docs/queries.md"].split("| Parameter | Meaning |")[1].split("\n\n")[0]
    return re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)


def test_the_events_options_mirror_the_endpoint_parameters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """queries.md: "Options mirror the parameters"; view=pushes is --pushes."""
    parameters = endpoint_parameters()
    assert "view" in parameters
    options = set(re.findall(r"(--[a-z-]+)", events_help(capsys)))
    mirrored = {f"--{name}" for name in parameters if name != "view"} | {"--pushes", "--json"}
    assert options - {"--help"} == mirrored


# --- documented shapes ----------------------------------------------------------------------


def documented_fields(section: str) -> list[str]:
    """The backticked names in the first column of the first table under the README's
    ``section`` heading."""
    table: list[str] = []
    for line in DOCS["README.md"].split(f"\n{section}\n")[1].splitlines():
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return [name for row in table[2:] for name in re.findall(r"`(\w+)`", row.split("|")[1])]


def test_the_readme_documents_table_lists_every_stored_field() -> None:
    document = to_document(AcrEvent.model_validate(payloads.PUSH), NOW)
    assert sorted(documented_fields("### Documents")) == sorted(document)


def pushes_example() -> Any:
    [example] = blocks({"json"}).values()
    return json.loads(example)


def test_the_pushes_example_has_the_shape_the_endpoint_answers() -> None:
    reader = FakeEventRepository()
    for location, at in (
        ("westeurope", "2026-11-23T10:00:00Z"),
        ("eastus", "2026-11-23T10:00:09Z"),
    ):
        payload = payloads.with_new_id(payloads.PUSH, repository="team/api")
        payload["timestamp"] = at
        document = to_document(AcrEvent.model_validate(payload), NOW)
        document.update(location=location, actor="ci-bot")
        assert reader.add(document)
    result = handle_events_query({"view": "pushes"}, reader, now=lambda: NOW)
    assert result.status == 200 and result.body is not None

    example = pushes_example()
    [row] = result.body["pushes"]
    [documented_row] = example["pushes"]
    assert set(example) == set(result.body)
    assert set(documented_row) == set(row)
    assert [set(region) for region in documented_row["regions"]] == [
        set(region) for region in row["regions"]
    ]


# --- the digest the CLI's table prints --------------------------------------------------------


def shortened_digest_the_table_prints() -> str:
    document = to_document(AcrEvent.model_validate(payloads.PUSH), NOW)
    row = cli.format_table([document]).splitlines()[1].split()
    [shortened] = [cell for cell in row if cell.startswith("sha256:")]
    assert shortened != document["digest"]
    assert document["digest"].startswith(shortened)
    return shortened


def test_a_digest_shortened_as_the_cli_table_prints_it_is_refused() -> None:
    """queries.md: `digest` is a full digest, `sha256:<64 hex>` ("a full digest: a shortened
    one is a 400"); the CLI's table shortens digests to 12 hex digits, so pasting one from it
    must not silently list nothing."""
    with pytest.raises(QueryError, match="digest"):
        parse_event_query({"digest": shortened_digest_the_table_prints()}, now=lambda: NOW)


# --- shell variables a section takes from elsewhere -------------------------------------------


def readme_deploy_variables() -> set[str]:
    """The shell variables the README's Deploy section assigns (ENV_NAME=..., APP=$(...))."""
    deploy = DOCS["README.md"].split("\n## Deploy\n")[1].split("\n## Performance\n")[0]
    return set(re.findall(r"(?:^|; )(\w+)=", deploy, re.MULTILINE))


def key_rotation() -> tuple[set[str], set[str]]:
    """operations.md "Rotating keys": the variables it says come from the README's deploy
    section ("With `RG`, `APP`, ... as in the README's deploy section"), and the ones its
    commands use without assigning them."""
    rotation = DOCS["docs/operations.md"].split("\n## Rotating keys\n")[1].split("\n## ")[0]
    stated = set(re.findall(r"`(\w+)`", rotation.split("With ", 1)[1].split(" as in ", 1)[0]))
    assigned = set(re.findall(r"^\s*(\w+)=", rotation, re.MULTILINE))
    assigned |= set(re.findall(r"^\s*for (\w+) in ", rotation, re.MULTILINE))
    used = set(re.findall(r"\$\{?(\w+)", rotation))
    return stated, used - assigned


def test_the_key_rotation_takes_only_variables_the_readme_defines() -> None:
    stated, taken = key_rotation()
    assert {"RG", "APP"} <= stated
    assert stated | taken <= readme_deploy_variables()


def test_the_key_rotation_names_every_variable_it_takes_from_the_readme() -> None:
    """Unset in a new shell, `environmentName=""` fails (and another name makes a second app)
    and `--name ""` pings no webhook: the section must say it needs them."""
    stated, taken = key_rotation()
    assert taken <= stated, sorted(taken - stated)
