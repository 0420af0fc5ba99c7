"""`reconcile --events-file` given the wrong file, as an operator at 3 a.m. might: another
command's JSON array, or the right command's output in another shape. delivery.md promises exit
2 for a file that is "not JSON or not the array `az` writes", and a refusal should name the
command that writes the right one. Shapes already covered (tests/unit/test_reconcile.py,
tests/e2e/test_reconcile_e2e.py): UTF-16 from PowerShell's `>`, a byte order mark, a truncated
file, the REST answer's object, a scalar, an array of scalars, nesting too deep.

The store is a port nobody listens on: a run that tried to write would be exit 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from tests.support import payloads
from tests.support.history import history_entry

RIGHT_COMMAND = "az acr webhook list-events"


def reconcile(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.chdir(path.parent)  # no local.settings.json
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("COSMOS_KEY", "")
    status = cli.main(["reconcile", "--events-file", str(path)])
    out = capsys.readouterr()
    return status, out.out, out.err


def dead_letter_blob() -> list[dict[str, Any]]:
    """What operations.md's dead-letter runbook downloads (dead-letters.json): Event Grid
    events, each with Event Grid's record of why, a JSON array of objects as az's output is."""
    return [
        {
            "id": "8e17f9a4-0000-4000-8000-000000000001",
            "topic": "/subscriptions/s/resourceGroups/g/providers/"
            "Microsoft.ContainerRegistry/registries/myregistry",
            "subject": "hello-world:v1",
            "eventType": "Microsoft.ContainerRegistry.ImagePushed",
            "eventTime": "2026-11-23T16:52:01.343145347Z",
            "data": payloads.with_new_id(payloads.ENRICHED_PUSH),
            "dataVersion": "1.0",
            "deadLetterReason": "MaxDeliveryAttemptsExceeded",
            "deliveryAttempts": 30,
            "lastDeliveryOutcome": "Probation",
            "lastHttpStatusCode": 503,
        }
    ]


def webhook_list() -> list[dict[str, Any]]:
    """`az acr webhook list --registry R --output json`: the webhooks, not their events."""
    return [
        {
            "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/"
            "registries/myregistry/webhooks/acrwebhook",
            "name": "acrwebhook",
            "actions": ["push", "delete"],
            "status": "enabled",
            "scope": "",
            "type": "Microsoft.ContainerRegistry/registries/webhooks",
        }
    ]


@pytest.mark.parametrize(
    "entries", [dead_letter_blob(), webhook_list()], ids=["dead-letter", "webhook-list"]
)
def test_another_commands_array_is_refused_as_not_the_history(
    entries: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps(entries))

    status, _, err = reconcile(path, monkeypatch, capsys)

    assert status == 2, err
    assert RIGHT_COMMAND in err, err


def test_a_history_with_some_entries_that_are_not_history_goes_on_with_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the refusal above must not change: one odd entry among real ones is listed and
    counted, and the run goes on (here to the store, which is not there: exit 1)."""
    path = tmp_path / "events.json"
    ping = history_entry({**payloads.with_new_id(payloads.PUSH), "action": "ping"})
    path.write_text(json.dumps([ping, *webhook_list()]))

    status, out, err = reconcile(path, monkeypatch, capsys)

    assert (status, out) == (0, "recorded=0 already=0 skipped=1 invalid=1\n"), err
    assert err.startswith("invalid entry 1 (id '/subscriptions/"), err


def history_lines() -> str:
    """JSON lines (`jq -c '.[]'`, or a log shipper's export): one entry per line."""
    entries = [history_entry(payloads.with_new_id(payloads.PUSH)) for _ in range(2)]
    return "".join(json.dumps(entry) + "\n" for entry in entries)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Id                                    Status\n------------------------------------  "
        "--------\n8e17f9a4-0000-4000-8000-000000000001  504\n",
        history_lines(),
        "- id: 8e17f9a4-0000-4000-8000-000000000001\n  eventRequestMessage:\n    content: {}\n",
    ],
    ids=["empty", "table", "json-lines", "yaml"],
)
def test_a_file_in_another_output_format_is_refused_naming_the_command_that_writes_it(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.json"
    path.write_text(text)

    status, out, err = reconcile(path, monkeypatch, capsys)

    assert (status, out, err.count("\n")) == (2, "", 1), err
    assert RIGHT_COMMAND in err and "--output json" in err, err
