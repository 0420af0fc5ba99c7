"""`redrive` run against the deployed storage account as operations.md shows, but without the
empty `AzureWebJobsStorage=` it says "matters in the repository root": the connection string in
the `local.settings.json` that ./scripts/dev copied (Azurite's) wins over the
`AzureWebJobsStorage__queueServiceUri` the operator gave in the environment. It worked on
Azurite and said "Moved 0 ... Left ...: 0", exit 0, naming neither: the deployed poison queue
untouched, its messages expiring 7 days after they were poisoned.

Already covered: an account without the queues is exit 2 naming the setting
(tests/integration/test_misconfiguration.py), an unreachable service exit 1, a refused key exit
1 (tests/integration/test_redrive.py). Here the wrong account has the queues (./scripts/dev made
them), so nothing stops the run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from acr_webhook.config import QueueSettings
from tests.support.azurite import LocalAzurite
from tests.support.serve import run_cli


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

    # Refused before any request, naming both settings and the fix operations.md shows.
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == (
        "configuration error: AzureWebJobsStorage__queueServiceUri is set in the environment, "
        "but AzureWebJobsStorage in local.settings.json (a connection string) wins over it: set "
        "AzureWebJobsStorage= in the environment too (docs/operations.md)\n"
    )

    env["AzureWebJobsStorage"] = ""  # as operations.md's command: the environment's account
    again = run_cli(["redrive"], tmp_path, env)
    assert again.returncode == 1, again.stderr  # tried, and refused: nobody listens there
