from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acr_webhook.config import Settings
from tests.support.serve import ServeProcess


@pytest.fixture
def served(cosmos_settings: Settings, tmp_path: Path) -> Iterator[ServeProcess]:
    """``python -m acr_webhook serve`` on a fresh container, stopped after the test."""
    process = ServeProcess(cosmos_settings, tmp_path)
    yield process
    process.stop()
