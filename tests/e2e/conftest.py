from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from acr_webhook.config import Settings
from tests.conftest import fresh_settings
from tests.support.cosmos_proxy import FaultyCosmosProxy
from tests.support.cosmos_server import LocalCosmosServer
from tests.support.ingestion import Ingestion, exporting_env
from tests.support.serve import ServeProcess


@pytest.fixture
def served(cosmos_settings: Settings, tmp_path: Path) -> Iterator[ServeProcess]:
    """``python -m acr_webhook serve`` on a fresh container, stopped after the test."""
    process = ServeProcess(cosmos_settings, tmp_path)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def served_per_module(
    cosmos_server: LocalCosmosServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServeProcess, Settings]]:
    """One host and container for a whole module: a process per test costs ~1-2 s of CI time.
    Its tests tell their events apart by id, and count what they store themselves."""
    settings = fresh_settings(cosmos_server)
    process = ServeProcess(settings, tmp_path_factory.mktemp("served"))
    yield process, settings
    process.stop()


@pytest.fixture(scope="module")
def served_for_hostile_input(
    served_per_module: tuple[ServeProcess, Settings],
) -> tuple[ServeProcess, Settings]:
    """One host and container for a module's hostile cases: none of them may store anything,
    and a process per case cost ~1-2 s of CI time each (45 cases per route)."""
    return served_per_module


@pytest.fixture
def proxy(cosmos_settings: Settings, tmp_path: Path) -> Iterator[FaultyCosmosProxy]:
    """A FaultyCosmosProxy in front of the test's container's server; the requests it holds
    are released at the end, so that none outlives the test."""
    server = FaultyCosmosProxy(cosmos_settings.cosmos_endpoint, tmp_path)
    server.start()
    yield server
    for hold in server.holds:
        hold.release()
    server.stop()


@pytest.fixture
def ingestion() -> Iterator[Ingestion]:
    """A stand-in for Application Insights' ingestion endpoint (tests/support/ingestion.py)."""
    stand_in = Ingestion()
    yield stand_in
    stand_in.close()


@pytest.fixture
def served_exporting(
    cosmos_settings: Settings, ingestion: Ingestion, tmp_path: Path
) -> Iterator[ServeProcess]:
    """``serve`` on a fresh container, its telemetry exported to ``ingestion`` only, its
    temporary directory (the exporters' offline storage) ``tmp_path / "tmp"``; killed after
    the test (the tests of a graceful stop send their own SIGTERM first)."""
    (tmp_path / "tmp").mkdir()
    env = exporting_env(ingestion, tmp_path / "tmp")
    process = ServeProcess(cosmos_settings, tmp_path, extra_env=env)
    yield process
    ingestion.close()
    process.stop(signal.SIGKILL)
