"""`redrive` run against the deployed storage account as operations.md shows, but without the
empty `AzureWebJobsStorage=` it says "matters in the repository root": the connection string in
the `local.settings.json` that ./scripts/dev copied (Azurite's) wins over the
`AzureWebJobsStorage__queueServiceUri` the operator gave in the environment.

Already covered: an account without the queues is exit 2 naming the setting
(tests/integration/test_misconfiguration.py), an unreachable service exit 1, a refused key exit
1 (tests/integration/test_redrive.py). Here the wrong account has the queues (./scripts/dev made
them), so nothing stops the run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from acr_webhook.config import QueueSettings
from tests.support.azurite import LocalAzurite
from tests.support.serve import run_cli


@pytest.mark.xfail(
    strict=True,
    reason="DEFECT: with AzureWebJobsStorage__queueServiceUri given in the environment and "
    "local.settings.json's AzureWebJobsStorage (Azurite), redrive works on Azurite and says "
    "'Moved 0 ... Left in ...: 0', exit 0, naming neither account nor file: the deployed "
    "poison queue is untouched and its messages expire 7 days after they were poisoned",
)
def test_a_queue_service_uri_given_in_the_environment_is_not_overridden_in_silence(
    azurite: LocalAzurite,
    queues: QueueSettings,
    tmp_path: Path,
    refusing_port: Callable[[], int],
) -> None:
    (tmp_path / "local.settings.json").write_text(
        json.dumps(
            {"IsEncrypted": False, "Values": {"AzureWebJobsStorage": azurite.connection_string}}
        )
    )
    deployed = f"https://127.0.0.1:{refusing_port()}/acrhookstorage"
    env = {
        "AzureWebJobsStorage__queueServiceUri": deployed,
        # Were the environment's account used, the token request would stay on loopback too:
        # App Service's identity endpoint, refusing (no IMDS, no Entra ID).
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{refusing_port()}/msi/token",
        "IDENTITY_HEADER": "not-a-secret",
        "HOME": str(tmp_path),
    }

    result = run_cli(["redrive"], tmp_path, env)

    said = result.stdout + result.stderr
    # Either the environment's account is the one used (here unreachable: not exit 0), or the
    # run says that the file's setting won, before it reports on that account.
    assert result.returncode != 0 or "local.settings.json" in said, said
