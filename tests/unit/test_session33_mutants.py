"""Mutation audit of the product changes after 4394f77: the pushes row's mediaType, the CLI
tables' terminal columns, the 403/5300 fix, main.bicep's cosmosAccountName, scripts/dev's one
stop deadline, and up to 3001757 the national clouds' management endpoint and statsbeat, and a
rollback's parked actions and newer tokens (the earlier rounds are
tests/unit/test_session26_mutants.py onwards).

Each test below kills hand-made mutants that the earlier tests let through (named in its
docstring). Every one asserts what a doc, Unicode or the code's own comment says, not the mutant.
The strict xfails are defects found on the way: each says what happens today and what should.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.config import DEFAULT_ARM_ENDPOINT, load_settings
from acr_webhook.models import MAX_NAME_LENGTH, InvalidQueuedEventError
from acr_webhook.replay import replay_queued_event
from tests.e2e import test_dev_script_e2e as dev_script_e2e
from tests.infra.bicep import (
    Json,
    accessor,
    conditional_branches,
    module,
    not_empty,
    output,
    template,
    var,
)
from tests.infra.test_deploy_docs import main_table, parameter_rows
from tests.infra.test_main_template import FUNCTION_APP
from tests.support import payloads
from tests.support.cosmos_server import REPO_ROOT
from tests.support.fakes import FakeEventRepository
from tests.unit.test_config import BASE, REGISTRY_ID
from tests.unit.test_queries import DIGEST_A, STAMP, UNFILTERED, call, forged
from tests.unit.test_rollback import as_queued, newer_document

# --- __main__._columns_taken: what a cell takes in a terminal ----------------------------------


def actor_columns(*actors: str) -> list[str]:
    """The ACTOR and REGIONS columns of the pushes table, one push per actor."""
    pushes = [
        {
            "timestamp": "2026-11-23T10:00:00.000000Z",
            "action": "push",
            "repository": "team/api",
            "tag": "v1",
            "digest": DIGEST_A,
            "registry": "myregistry.azurecr.io",
            "actor": actor,
            "regions": [{"location": "westeurope", "timestamp": "2026-11-23T10:00:00.000000Z"}],
        }
        for actor in actors
    ]
    lines = cli.format_pushes_table(pushes).splitlines()
    return [line.split("myregistry.azurecr.io  ", 1)[1] for line in lines[1:]]


def test_a_wide_name_sets_the_column_and_ambiguous_halfwidth_and_voicing_marks_do_not_widen() -> (
    None
):
    """Mutants killed: the column's width by code points (a name of 3 CJK characters takes 6
    columns, past ACTOR's 5), East Asian Ambiguous (é) or Halfwidth (ｱ) counted 2 ("everything
    else 1"), everything but Narrow counted 2, and the wide test before the combining one
    (U+3099, the voicing mark of a decomposed ガ, is East Asian Wide and takes no column)."""
    assert actor_columns("\u5f20\u4f1f\u660e", "Jos\u00e9", "\uff71\uff72", "\u30ab\u3099") == [
        "\u5f20\u4f1f\u660e  westeurope",  # 6 columns: the column's width
        "Jos\u00e9    westeurope",  # 4
        "\uff71\uff72      westeurope",  # halfwidth katakana: 1 each
        "\u30ab\u3099      westeurope",  # 2: the mark on top of its wide letter
    ]


def test_a_name_with_thai_or_devanagari_marks_keeps_the_next_column_in_line() -> None:
    assert actor_columns(
        "\u0e2a\u0e21\u0e28\u0e31\u0e01\u0e14\u0e34\u0e4c", "\u0915\u0941\u092e\u093e\u0930", "bob"
    ) == [
        "\u0e2a\u0e21\u0e28\u0e31\u0e01\u0e14\u0e34\u0e4c  westeurope",  # 5 columns: ACTOR's
        "\u0915\u0941\u092e\u093e\u0930   westeurope",  # 4
        "bob    westeurope",
    ]


# --- infra/main.bicep: cosmosAccountName and the output azd keeps ------------------------------


def as_bicep_reads_it(value: Any) -> Any:
    """pycep reads ``!a ? b : c`` as ``!(a ? b : c)``; Bicep's ``!`` binds tighter than
    ``?:`` (its operator precedence), so the template means ``(!a) ? b : c``."""
    negated = value.get("operator", {}) if isinstance(value, dict) else {}
    if negated.get("type") == "not":
        branches = conditional_branches(negated["operands"]["bool_value"])
        if branches is not None:
            condition, true_value, false_value = branches
            negation: Json = {"operator": {"type": "not", "operands": {"bool_value": condition}}}
            return {
                "operator": {
                    "type": "conditional",
                    "operands": {
                        "condition": negation,
                        "true_value": true_value,
                        "false_value": false_value,
                    },
                }
            }
    return value


def test_an_empty_cosmos_account_name_is_the_documented_generated_one_and_a_given_one_is_used() -> (
    None
):
    """Mutants killed: the condition flipped (``empty(...) ? cosmosAccountName : ...``: the
    restored account ignored and a first provision given an empty name), the branches
    swapped, and another generated name than deploy.md's ``cosmos-<token>``."""
    main = template("main.bicep")
    assert parameter_rows(main_table())["cosmosAccountName"][0] == "empty (`cosmos-<token>`)"
    account_name = as_bicep_reads_it(module(main, "cosmos")["params"]["accountName"])
    assert conditional_branches(account_name) == (
        not_empty("cosmosAccountName"),
        "cosmosAccountName",
        "cosmos-${resourceToken}",
    )


def test_the_output_azd_keeps_is_the_account_the_deployment_used() -> None:
    """Mutants killed: the output as the generated name (after a restore, ``azd env set
    COSMOS_ACCOUNT_NAME`` would be overwritten by the next provision and the one after would
    move the app back to the damaged account) and as the parameter (empty on a first
    provision, where deploy.md's ``COSMOS=$COSMOS_ACCOUNT_NAME`` names the account)."""
    main = template("main.bicep")
    assert output(main, "COSMOS_ACCOUNT_NAME") == accessor("cosmos", "outputs", "accountName")
    assert output(template("modules/cosmos.bicep"), "accountName") == accessor("account", "name")


# --- scripts/dev: one deadline for everything it started ---------------------------------------

DEV = REPO_ROOT / "scripts" / "dev"


def stop_functions() -> str:
    """scripts/dev's ``stop_pids`` and ``stop_started``, as written."""
    found = re.search(
        r"^stop_pids\(\) \{\n.*?^\}\n^stop_started\(\) \{\n.*?^\}\n", DEV.read_text(), re.M | re.S
    )
    assert found is not None
    return found.group(0)


# Runs ``stop_started`` on a sleep standing in for serve and two for the servers; the ones named
# in $HUNG are stopped (SIGSTOP: deaf to all but KILL). The watchdog's ``sleep`` waits for the
# file $OPEN, made at once, never, or when the stop waits for the pid $OPEN_ON; each
# ``kill -KILL`` is logged with the pids it names.
STOP_HARNESS = """\
set -euo pipefail
kill() { if [ "$1" = -KILL ]; then echo "${*:2}" >>"$KILLED"; fi; command kill "$@"; }
sleep() { until [ -e "$OPEN" ]; do command sleep 0.01; done; }
wait() { if [ "${1:-}" = "${open_on:-}" ]; then : >"$OPEN"; fi; builtin wait "$@"; }
@STOP_FUNCTIONS@
command sleep 300 & serve_pid=$!
command sleep 300 & first=$!
command sleep 300 & second=$!
servers=" $first $second"
cosmos_log=""
for role in $HUNG; do
  command kill -STOP "${!role}"  # asynchronous: a TERM sent before it stops is taken first
  until [ "$(cut -d' ' -f3 "/proc/${!role}/stat")" = T ]; do command sleep 0.01; done
done
case "$OPEN_ON" in now) : >"$OPEN" ;; never) ;; *) open_on=${!OPEN_ON} ;; esac
echo "$serve_pid $first $second"
stop_started
builtin wait  # the watchdog too, unless it was killed
echo stopped
"""


def stop_started(tmp_path: Path, hung: str, open_on: str) -> tuple[list[str], list[set[str]]]:
    """(serve's and the servers' pids, the pids each ``kill -KILL`` named) once
    ``stop_started`` returned and the watchdog is gone; fails if that takes 10 s."""
    killed = tmp_path / "killed"
    killed.touch()
    env = {**os.environ, "KILLED": str(killed), "OPEN": str(tmp_path / "open")}
    env.update(HUNG=hung, OPEN_ON=open_on)
    harness = subprocess.Popen(
        ["bash", "-c", STOP_HARNESS.replace("@STOP_FUNCTIONS@", stop_functions())],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = harness.communicate(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(harness.pid, signal.SIGKILL)  # a mutant's stop that never ends
        harness.wait()
    started, stopped = out.splitlines()
    assert (stopped, harness.returncode) == ("stopped", 0)
    return started.split(), [set(line.split()) for line in killed.read_text().splitlines()]


def test_one_deadline_kills_a_hung_serve_and_a_hung_server_together(tmp_path: Path) -> None:
    """Mutants killed: a watchdog per step (two deadlines, 6 s: the comment's "a deadline per
    step added up to 6 s"), and the one watchdog naming serve or the servers only (the other
    never dies: the stop never ends)."""
    started, killed = stop_started(tmp_path, hung="serve_pid first", open_on="now")
    assert killed == [set(started)]


def test_the_deadline_covers_a_server_hung_after_serve_stopped(tmp_path: Path) -> None:
    """Mutant killed: the watchdog ended once serve had stopped, before the servers' step (a
    server deaf to TERM is then waited for forever)."""
    started, killed = stop_started(tmp_path, hung="second", open_on="second")
    assert killed == [set(started)]


def test_a_stop_that_ends_in_time_leaves_no_watchdog(tmp_path: Path) -> None:
    """Mutant killed: the watchdog left running after everything stopped (it would outlive
    the script by up to 3 s, then KILL pids that may be another process's by then)."""
    assert stop_started(tmp_path, hung="", open_on="never")[1] == []


def test_the_dev_script_tests_hold_the_script_s_lock_while_it_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Mutants killed: no lock, and a shared one (two test processes would both hold it and
    share Azurite's fixed ports: the first one's stop takes it from the second)."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "dev").write_text("")
    monkeypatch.setattr(dev_script_e2e, "REPO_ROOT", tmp_path)
    held: list[bool] = []

    @contextlib.contextmanager
    def started(*_args: Any) -> Iterator[None]:
        with (tmp_path / "scripts" / "dev").open("rb") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(True)
            else:
                held.append(False)
        yield

    monkeypatch.setattr(dev_script_e2e, "_started_dev_script", started)

    with dev_script_e2e.started_dev_script(tmp_path, "https://127.0.0.1:1/"):
        pass

    assert held == [True]


# --- config: the management endpoint of the Cosmos DB account's cloud ---------------------------


def test_a_host_that_only_contains_a_national_cloud_s_suffix_keeps_the_public_endpoint(
    tmp_path: Path,
) -> None:
    """Mutant killed: the suffix looked for anywhere in the host (``in`` for ``endswith``): an
    account reached by a name of the public cloud's (a custom domain that merely starts with a
    Government account's host) is no Government account."""
    values = {
        **BASE,
        "COSMOS_ENDPOINT": "https://acct.documents.azure.us.contoso.com:443/",
        "ACR_REGISTRY_ID": REGISTRY_ID,
        "ACR_WEBHOOK_NAMES": "hook",
    }
    reconcile = load_settings(values, tmp_path / "absent.json").reconcile
    assert reconcile is not None
    assert reconcile.arm_endpoint == DEFAULT_ARM_ENDPOINT


# --- infra/modules/function-app.bicep: statsbeat outside the public cloud ---------------------


def test_statsbeat_is_turned_off_in_every_cloud_but_the_public_one() -> None:
    """Mutants killed: the condition flipped (off in the public cloud, on where it leaves the
    cloud), never off, and a value the exporter does not read as off (it disables statsbeat
    only for ``true``, in any case: azure-monitor-opentelemetry-exporter's
    ``is_statsbeat_enabled``)."""
    statsbeat = var(template(FUNCTION_APP), "statsbeatAppSettings")
    in_the_cloud: Json = {"function": {"type": "environment", "property_name": "name"}}
    assert conditional_branches(statsbeat) == (
        {
            "operator": {
                "type": "equals",
                "operands": {"operand_1": in_the_cloud, "operand_2": "AzureCloud"},
            }
        },
        {},
        {"APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"},
    )


# --- a rollback: parked actions and newer tokens ----------------------------------------------


@pytest.mark.parametrize(
    "action", ["", "x" * (MAX_NAME_LENGTH + 1)], ids=["empty", "past MAX_NAME_LENGTH"]
)
def test_a_parked_action_no_version_records_is_refused_not_stored(action: str) -> None:
    """Mutant killed: ParkedDocument.action any string (it takes any action a newer version may
    record, not one none records: an empty one, or one past the names' bound that every
    decision record then carries). The message is the app's own no more: replay refuses it."""
    document = newer_document(payloads.PUSH, "bad-action", action=action)
    repository = FakeEventRepository()

    with pytest.raises(InvalidQueuedEventError):
        replay_queued_event(
            base64.b64decode(as_queued({"document": document})), repository, None, 60
        )
    assert repository.documents == {}


def test_a_token_whose_version_is_a_float_is_not_ours_not_a_newer_one() -> None:
    """Mutant killed: any number above TOKEN_VERSION taken for a newer version's token. Every
    version wrote ``v`` as an int, as the earlier-version check reads it: 9.0 is forged."""
    token = forged({"v": 9.0, "q": UNFILTERED, "t": STAMP, "k": None, "w": [None, None]})
    reader = FakeEventRepository()
    assert call({"continuation": token}, reader) == (
        400,
        {"error": "continuation: is not a continuation token from this endpoint; start without it"},
    )
