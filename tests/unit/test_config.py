from __future__ import annotations

import json
from pathlib import Path

import pytest

from acr_webhook.config import (
    DEFAULT_CONTAINER,
    DEFAULT_DATABASE,
    ConfigurationError,
    load_settings,
)
from acr_webhook.repository import is_loopback


def write_settings(path: Path, values: dict[str, str]) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


def test_defaults_apply_when_only_the_endpoint_is_set(tmp_path: Path) -> None:
    settings = load_settings(
        {"COSMOS_ENDPOINT": "https://a.documents.azure.com:443/"}, tmp_path / "absent.json"
    )
    assert settings.cosmos_database == DEFAULT_DATABASE == "acr"
    assert settings.cosmos_container == DEFAULT_CONTAINER == "events"
    assert settings.cosmos_key is None
    assert settings.local_function_key is None


def test_local_settings_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    file = write_settings(
        tmp_path / "local.settings.json",
        {
            "COSMOS_ENDPOINT": "https://127.0.0.1:8081/",
            "COSMOS_KEY": "k",
            "COSMOS_CONTAINER": "from-file",
            "LOCAL_FUNCTION_KEY": "file-key",
        },
    )
    settings = load_settings({"COSMOS_CONTAINER": "from-env"}, file)
    assert settings.cosmos_endpoint == "https://127.0.0.1:8081/"
    assert settings.cosmos_key == "k"
    assert settings.cosmos_container == "from-env"
    assert settings.local_function_key == "file-key"


def test_missing_endpoint_is_a_configuration_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="COSMOS_ENDPOINT"):
        load_settings({}, tmp_path / "absent.json")


def test_broken_settings_file_is_reported(tmp_path: Path) -> None:
    file = tmp_path / "local.settings.json"
    file.write_text("{oops")
    with pytest.raises(ConfigurationError, match=r"local\.settings\.json"):
        load_settings({"COSMOS_ENDPOINT": "https://x/"}, file)


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("https://127.0.0.1:8081/", True),
        ("https://127.10.0.3:8081/", True),
        ("https://localhost:8081/", True),
        ("https://[::1]:8081/", True),
        ("https://myaccount.documents.azure.com:443/", False),
        ("https://10.0.0.4:8081/", False),
        ("https://127.0.0.1.evil.example/", False),
        ("https://localhost.evil.example/", False),
    ],
)
def test_tls_verification_is_skipped_only_for_loopback(endpoint: str, loopback: bool) -> None:
    assert is_loopback(endpoint) is loopback
