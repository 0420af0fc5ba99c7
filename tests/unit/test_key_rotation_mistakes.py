"""operations.md "Rotating keys", followed with a slip: a step run twice, a step that did not
take. The shell blocks run as written under bash against a stand-in of `az` that keeps the
function keys and what the registry connections send in a JSON file (no Azure, no network).
Already covered: the blocks parse as bash and take only variables the README defines
(tests/unit/test_docs_commands.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
ROTATION = (
    OPERATIONS.read_text().split("\n## Rotating keys\n")[1].split("\n### After a key leaks\n")[0]
)
BLOCKS = [
    textwrap.dedent(block)
    for block in re.findall(r"^ *```bash\n(.*?)^ *```", ROTATION, re.DOTALL | re.MULTILINE)
]
DELETE_OLD_KEYS = next(block for block in BLOCKS if "keys delete" in block)
KEEP_AND_RENEW = BLOCKS[0]

# The stand-in: `functionapp function keys list|set|delete` (a `--query` of one key name, as
# the runbook's), `deployment group create` of webhook.bicep (the registry connections take the
# current default keys: the webhook always, Event Grid only with deliveryMode eventgrid or both)
# and of main.bicep (nothing to do with keys).
AZ = """
import json, os, sys
path = os.environ["AZ_STATE"]
state = json.load(open(path))
args = sys.argv[1:]
def option(name, default=None):
    return args[args.index(name) + 1] if name in args else default
if args[:3] == ["functionapp", "function", "keys"]:
    keys = state["keys"][option("--function-name")]
    if args[3] == "list":
        query = option("--query")
        print(json.dumps(keys) if query is None else keys.get(query, ""))
    elif args[3] == "set":
        state["made"] += 1
        keys[option("--key-name")] = option("--key-value") or f"generated-{state['made']}"
    elif args[3] == "delete":
        keys.pop(option("--key-name"), None)
elif args[:3] == ["deployment", "group", "create"]:
    if option("--template-file") == "infra/webhook.bicep":
        mode = next((a.split("=", 1)[1] for a in args if a.startswith("deliveryMode=")), "webhook")
        if mode in ("webhook", "both"):
            state["registry"]["acr_webhook"] = state["keys"]["acr_webhook"]["default"]
        if mode in ("eventgrid", "both"):
            state["registry"]["acr_eventgrid"] = state["keys"]["acr_eventgrid"]["default"]
else:
    sys.exit(f"stand-in az: not modelled: {args}")
json.dump(state, open(path, "w"))
"""


def deployed() -> dict[str, Any]:
    """An app deployed with deliveryMode both: each function's one key, as the registry's
    webhook and its Event Grid subscription send them."""
    return {
        "keys": {
            "acr_webhook": {"default": "webhook-key-0"},
            "acr_eventgrid": {"default": "eventgrid-key-0"},
            "acr_events": {"default": "read-key-0"},
        },
        "registry": {"acr_webhook": "webhook-key-0", "acr_eventgrid": "eventgrid-key-0"},
        "made": 0,
    }


def run(block: str, tmp_path: Path) -> dict[str, Any]:
    """``block`` under bash -e with the README's variables set, against the stand-in."""
    state_file = tmp_path / "az-state.json"
    if not state_file.exists():
        state_file.write_text(json.dumps(deployed()))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    az = bin_dir / "az"
    az.write_text(f"#!{sys.executable}\n{AZ}")
    az.chmod(0o755)
    variables = {
        "ENV_NAME": "acrhook-dev",
        "ME": "00000000-0000-0000-0000-000000000000",
        "RG": "rg-acrhook-dev",
        "APP": "func-acrhook-dev",
        "REGISTRY": "myregistry",
        "REGISTRY_RG": "rg-registry",
        "WEBHOOK": "acrfuncacrhookdev",
    }
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "AZ_STATE": str(state_file)}
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run(
        [bash, "-e", "-c", block],
        env={**env, **variables},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    state: dict[str, Any] = json.loads(state_file.read_text())
    return state


def refused(state: dict[str, Any]) -> list[str]:
    """The registry connections whose key the app no longer accepts (each delivery: 401)."""
    return [
        function
        for function, sent in state["registry"].items()
        if sent not in state["keys"][function].values()
    ]


@pytest.mark.skipif(shutil.which("bash") is None, reason="the docs' blocks are bash")
def test_the_runbook_in_order_leaves_no_connection_refused(tmp_path: Path) -> None:
    """Steps 1, 3 (with the deliveryMode deployed with, as it says) and 5: the stand-in's
    model of the runbook done right."""
    run(KEEP_AND_RENEW, tmp_path)
    connect = next(block for block in BLOCKS if "infra/webhook.bicep" in block)
    run(
        connect.replace("registryResourceGroup=", "deliveryMode=both registryResourceGroup="),
        tmp_path,
    )
    state = run(DELETE_OLD_KEYS, tmp_path)
    assert refused(state) == []
    assert state["registry"]["acr_webhook"] != "webhook-key-0"


@pytest.mark.skipif(shutil.which("bash") is None, reason="the docs' blocks are bash")
def test_step_1_run_twice_keeps_the_key_the_registry_sends(tmp_path: Path) -> None:
    run(KEEP_AND_RENEW, tmp_path)
    state = run(KEEP_AND_RENEW, tmp_path)
    assert refused(state) == []


def test_the_check_before_deleting_the_old_keys_reads_what_each_connection_sends() -> None:
    before_delete = ROTATION.split("keys delete")[0]
    assert "get-config" in before_delete  # the webhook's service URI, with its ?code=
    assert "event-subscription" in before_delete  # the subscription's endpoint URL
