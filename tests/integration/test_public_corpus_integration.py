"""The public corpus (tests/fixtures/public_corpus/) against the local Cosmos DB API server:
every sample through function_app's routes and the reconcile CLI, one after another into one
container, as a registry's deliveries would arrive; then all of them again.

The unit module checks each sample alone against the in-memory store; here the real database
must answer the same and end with the documents README's rules make of the whole sequence: one
per event id and repository, the first delivery's, with the enrichment fields it lacked taken
from the later ones.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from acr_webhook.config import Settings
from acr_webhook.models import ENRICHMENT_FIELDS
from acr_webhook.repository import without_system_fields
from tests.conftest import read_all
from tests.e2e.test_reconcile_e2e import cosmos_env
from tests.integration.test_earlier_versions import deployed
from tests.unit.test_public_corpus import (
    SAMPLES,
    Answer,
    Sample,
    deliver,
    reconcile_summary,
)


def key(document: dict[str, Any]) -> tuple[str, str]:
    """A document's identity in the container: its id within its partition."""
    return document["id"], document["repository"]


def expected_answer(sample: Sample, stored: dict[tuple[str, str], Any]) -> Answer:
    """README's answer to ``sample`` after the documents ``stored`` (a duplicate for each of its
    events already there)."""
    expected = sample.expected
    new = [doc for doc in expected["documents"] if key(doc) not in stored]
    old = len(expected["documents"]) - len(new)
    if sample.route == "history":
        return Answer(0, reconcile_summary(sample, len(new), old))
    if sample.route == "eventgrid" and expected["status"] == 200:
        return Answer(200, {"recorded": len(new), "duplicate": old, "ignored": 0})
    if expected["status"] == 201 and old:
        return Answer(200, {"status": "duplicate", "id": sample.body["id"]})
    return Answer(expected["status"], expected.get("body"))


def take(stored: dict[tuple[str, str], dict[str, Any]], sample: Sample) -> None:
    """README's rule for each document of ``sample``: stored when new; when not, only the
    enrichment fields the stored one lacks are filled in."""
    for document in sample.expected["documents"]:
        kept = stored.setdefault(key(document), copy.deepcopy(document))
        for name in ENRICHMENT_FIELDS:
            if kept[name] is None and document[name] is not None:
                kept[name] = document[name]


def documents(settings: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    """The container's documents as written (no system fields), with their ``_etag``."""
    found = {}
    for item in read_all(settings):
        document = without_system_fields(item)
        document["_etag"] = item["_etag"]
        found[key(document)] = document
    return found


def test_the_whole_corpus_in_one_container_is_answered_and_stored_as_readme_says(
    cosmos_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in cosmos_env(cosmos_settings).items():
        monkeypatch.setenv(name, value)  # the reconcile CLI's settings
    expected: dict[tuple[str, str], dict[str, Any]] = {}

    with deployed(cosmos_settings):
        for sample in SAMPLES:
            wanted = expected_answer(sample, expected)
            answer = deliver(sample.route, sample.body, tmp_path, capsys)
            if "errors" in sample.expected:
                assert answer.status == wanted.status, sample.name
                assert all(problem in answer.body["error"] for problem in sample.expected["errors"])
            else:
                assert answer == wanted, sample.name
            take(expected, sample)
        first = documents(cosmos_settings)

        # Everything again, as Event Grid's redeliveries and reconcile's next run bring it.
        for sample in SAMPLES:
            if sample.expected["documents"]:
                answer = deliver(sample.route, sample.body, tmp_path, capsys)
                assert answer == expected_answer(sample, expected), sample.name

    after = documents(cosmos_settings)
    assert after == first  # nothing rewritten: the _etags are the same
    for document in after.values():
        del document["_etag"], document["receivedAt"]
    assert after == expected
    # 30 samples stored (of 36), 17 events: the same event in several forms, and copied ids.
    assert len(after) == 17
