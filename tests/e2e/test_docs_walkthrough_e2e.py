"""A new user's walk through the README and docs, against the local servers: the README's test
events as its curl commands send them, every Data Explorer query the docs print, and
``./scripts/dev`` next to a Cosmos DB server that already listens (the README: "it uses that
instead, and leaves it running")."""

from __future__ import annotations

import contextlib
import re
import socket
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from azure.cosmos.exceptions import CosmosHttpResponseError

from acr_webhook.config import Settings
from acr_webhook.models import AcrEvent, to_document
from tests.conftest import container_for
from tests.e2e.test_dev_script_e2e import (
    SAMPLE_KEY,
    ctrl_c,
    left_running_after_stop,
    printed_until_serving,
    started_dev_script,
)
from tests.support import payloads
from tests.support.cosmos_server import REPO_ROOT, LocalCosmosServer
from tests.support.serve import ServeProcess, post_json

README = (REPO_ROOT / "README.md").read_text()
DOCS = {"README.md": README} | {
    f"docs/{name}": (REPO_ROOT / "docs" / name).read_text() for name in ("queries.md", "deploy.md")
}


def section(text: str, heading: str, next_heading: str) -> str:
    return text.split(f"\n{heading}\n", 1)[1].split(f"\n{next_heading}\n", 1)[0]


def fenced(text: str, language: str) -> list[str]:
    pattern = rf"^( *)```{language}\n(.*?)^\1```"
    return [textwrap.dedent(body) for _, body in re.findall(pattern, text, re.DOTALL | re.M)]


# --- the README's test events -------------------------------------------------------------


# A query of the README's that names its test push (its repository, or its full digest).
ABOUT_THE_README_PUSH = re.compile(r"([\"'])hello-world\1|\"sha256:80f0d5c8[0-9a-f]{56}\"")


def readme_test_events() -> list[bytes]:
    """The bodies the README's "Send a test event" curl commands send, in order."""
    [block] = fenced(section(README, "### Send a test event", "### Answers"), "bash")
    return [body.encode() for body in re.findall(r"-d '(.*?)'", block, re.DOTALL)]


def readme_events_query() -> dict[str, str]:
    """The ``-d name=value`` pairs of the README's ``curl -sG .../api/acr/events``."""
    [command] = re.findall(r'curl -sG "[^"]*/api/acr/events".*?\n\s*(.*?)\n', README)
    return dict(pair.split("=", 1) for pair in re.findall(r"-d (\S+)", command))


@pytest.fixture
def served_with_the_sample_key(cosmos_settings: Settings, tmp_path: Path) -> Iterator[ServeProcess]:
    process = ServeProcess(cosmos_settings, tmp_path, function_key=SAMPLE_KEY)
    yield process
    process.stop()


def test_the_readme_test_events_are_answered_as_it_says(
    served_with_the_sample_key: ServeProcess, cosmos_settings: Settings
) -> None:
    """ "ping: 204, nothing stored"; "a push: 201 the first time, 200 for the same event id
    again"; then the README's GET lists it."""
    host = served_with_the_sample_key
    ping, push = readme_test_events()
    url = host.url(key=SAMPLE_KEY)

    answer = post_json(url, ping)
    assert (answer.status_code, answer.content) == (204, b"")
    assert [post_json(url, push).status_code for _ in range(2)] == [201, 200]

    listed = requests.get(
        host.url("acr/events", key=SAMPLE_KEY), params=readme_events_query(), timeout=10
    )
    assert listed.status_code == 200
    [document] = listed.json()["events"]
    assert (document["id"], document["repository"], document["tag"]) == (
        "cb8c3971-9adc-488b-aaaa-43cbb4974ff5",
        "hello-world",
        "v1",
    )
    assert listed.json()["continuation"] is None

    queried = data_explorer_answers(cosmos_settings)
    # The README's own queries about that push find it.
    for statement, rows in queried.items():
        if ABOUT_THE_README_PUSH.search(statement):
            assert isinstance(rows, list) and len(rows) == 1, statement


# --- the Data Explorer queries ------------------------------------------------------------


def documented_sql() -> list[str]:
    """Every statement of every ``sql`` block (a README block holds several)."""
    statements: list[str] = []
    for text in DOCS.values():
        for block in fenced(text, "sql"):
            lines = [line.strip() for line in block.splitlines()]
            current: list[str] = []
            for line in [*lines, ""]:
                if line.startswith("SELECT") or not line or line.startswith("--"):
                    if current:
                        statements.append(" ".join(current))
                    current = []
                if line and not line.startswith("--"):
                    current.append(line)
    return statements


def needs_real_cosmos_db(statement: str) -> bool:
    """queries.md: the GROUP BY queries need real Cosmos DB; the README and queries.md: the
    local server has no GetCurrentDateTimeStatic()."""
    return "GROUP BY" in statement or "GetCurrentDateTimeStatic" in statement


def data_explorer_answers(settings: Settings) -> dict[str, list[object] | str]:
    container = container_for(settings)
    answers: dict[str, list[object] | str] = {}
    for statement in documented_sql():
        try:
            answers[statement] = list(
                container.query_items(statement, enable_cross_partition_query=True)
            )
        except CosmosHttpResponseError as error:
            answers[statement] = f"{error.status_code}: {str(error)[:200]}"
    return answers


def test_every_documented_query_runs_on_the_local_server_unless_the_docs_say_it_cannot(
    cosmos_settings: Settings,
) -> None:
    # The local server finds a function it lacks only when it has a document to apply it to.
    document = to_document(AcrEvent.model_validate(payloads.PUSH), datetime.now(UTC))
    container_for(cosmos_settings).create_item(document)
    answers = data_explorer_answers(cosmos_settings)
    assert len(answers) >= 15, list(answers)
    refused = {statement for statement, rows in answers.items() if isinstance(rows, str)}
    assert refused == {statement for statement in answers if needs_real_cosmos_db(statement)}, {
        statement: answers[statement] for statement in refused
    }


# --- ./scripts/dev next to a server that already listens ----------------------------------


def listens(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    with (
        contextlib.suppress(OSError),
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 443), timeout=1),
    ):
        return True
    return False


def test_dev_uses_a_cosmos_db_server_that_already_listens_and_leaves_it_running(
    cosmos_server: LocalCosmosServer, tmp_path: Path
) -> None:
    with started_dev_script(tmp_path, cosmos_server.endpoint) as dev:
        printed = printed_until_serving(dev.process)
        where = urlsplit(cosmos_server.endpoint)
        assert f"Something already listens on {where.hostname}:{where.port}" in printed
        assert "Local Cosmos DB API server" not in printed
        push = payloads.body(payloads.with_new_id(payloads.PUSH))
        url = f"http://127.0.0.1:{dev.port}/api/acr/webhook?code={SAMPLE_KEY}"
        assert post_json(url, push).status_code == 201

        ctrl_c(dev.process)
        assert left_running_after_stop(dev.process) == []
    assert listens(cosmos_server.endpoint), "the server the script found was stopped"
    assert list(dev.temp.iterdir()) == []
