"""Rolling back: what the NEXT version may leave behind, met by this one.

A rollback (the previous package published again) or Flex Consumption's rolling update puts
this version's code in front of what a newer one wrote: documents with fields or values it does
not know, parked messages in a newer envelope, continuation tokens of a newer format. Each must
be tolerated, or refused with a 400 that says why; no event may be lost and nothing may be a
500. The inputs are built here, as a newer version would plausibly write them: the tests need
no git history.

Seen when older commits' own code met what this version writes (worktrees of 4394f77, 0ff15aa,
6e76088, 3ccf54c and f012627, against the local Cosmos DB server and Azurite): each version
since 6e76088 read this version's documents (200, all 6 of them) and, on a re-delivery, filled
in only the enrichment fields a document lacked, keeping every field it did not know; 4394f77
and 0ff15aa paged this version's tokens to the same events. The integration side is
tests/integration/test_rollback.py.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.models import MAX_NAME_LENGTH, AcrEvent, InvalidQueuedEventError, to_document
from acr_webhook.queries import TOKEN_VERSION
from acr_webhook.redrive import is_event_message
from acr_webhook.replay import replay_queued_event
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.unit.test_queries import STAMP, UNFILTERED, call, forged

RECEIVED = datetime(2026, 12, 7, 12, tzinfo=UTC)
# Fields a newer version might add to a document (an image's platform, a referrer's subject,
# its annotations): this version knows none of them.
NEWER_FIELDS: dict[str, Any] = {
    "platform": "linux/amd64",
    "subject": "sha256:" + "1" * 64,
    "annotations": {"org.opencontainers.image.source": "https://example.test/app"},
}


def newer_document(base: dict[str, Any], event_id: str, **changes: Any) -> dict[str, Any]:
    """``base``'s document as this version makes it, with the newer version's fields."""
    payload = copy.deepcopy(base)
    payload["id"] = event_id
    document = to_document(AcrEvent.model_validate(payload), RECEIVED)
    return {**document, **NEWER_FIELDS, **changes}


def as_queued(envelope: object) -> str:
    """A message as the queue holds it: base64 of its JSON (the queue trigger's encoding)."""
    return base64.b64encode(json.dumps(envelope).encode()).decode()


# --- parked messages ------------------------------------------------------------------------

DOCUMENT = newer_document(payloads.PUSH, "newer-parked")
NEWER_ENVELOPES = [
    pytest.param({"v": 3, "document": DOCUMENT, "attempts": 2}, id="a format marker"),
    pytest.param(
        {"document": DOCUMENT, "attempts": 0, "parkedAt": "2026-12-08T00:00:00Z", "route": "x"},
        id="keys this version does not know",
    ),
]


@pytest.mark.parametrize("envelope", NEWER_ENVELOPES)
def test_a_newer_envelope_is_replayed_with_its_whole_document(envelope: dict[str, Any]) -> None:
    """Replay stores the parked document as it was, fields it does not know included, and
    redrive takes such a poisoned message for an event (moved back, not kept)."""
    repository = FakeEventRepository()
    message = as_queued(envelope)

    assert replay_queued_event(base64.b64decode(message), repository, None, 60) == "recorded"
    assert repository.documents == {DOCUMENT["id"]: DOCUMENT}
    assert is_event_message(message)


def test_a_parked_event_with_an_action_this_version_does_not_know_is_stored() -> None:
    document = newer_document(payloads.DELETE, "newer-action", action="untag")
    message = as_queued({"document": document, "attempts": 0})
    repository = FakeEventRepository()

    assert is_event_message(message)
    assert replay_queued_event(base64.b64decode(message), repository, None, 60) == "recorded"
    assert repository.documents == {"newer-action": document}


# --- documents ------------------------------------------------------------------------------


def stored_by_a_newer_version() -> list[dict[str, Any]]:
    """Documents as a newer version might store them: fields this one does not know, an action
    it does not know, and a document that leaves out its empty fields instead of storing null."""
    sparse = newer_document(payloads.PUSH, "newer-sparse", tag="v2")
    sparse = {name: value for name, value in sparse.items() if value is not None}
    return [
        newer_document(payloads.PUSH, "newer-push"),
        newer_document(payloads.DELETE, "newer-untag", action="untag"),
        newer_document(payloads.CHART_PUSH, "newer-chart"),
        sparse,
    ]


def test_documents_a_newer_version_stored_are_paged_as_stored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both views and the CLI's tables: a 200 with every document once, as stored."""
    reader = FakeEventRepository()
    documents = stored_by_a_newer_version()
    for document in documents:
        reader.add(document)

    seen: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(len(documents) + 1):
        params = {"limit": "1", **({"continuation": token} if token else {})}
        status, body = call(params, reader)
        assert status == 200, body
        seen += body["events"]
        token = body["continuation"]
        if token is None:
            break
    assert sorted(seen, key=lambda d: d["id"]) == sorted(documents, key=lambda d: d["id"])

    status, pushes = call({"view": "pushes"}, reader)
    assert status == 200, pushes
    assert sum(len(row["regions"]) for row in pushes["pushes"]) == len(documents)

    table = cli.format_table(seen).splitlines()
    assert len(table) == 1 + len(documents)
    assert any(" untag " in line for line in table)
    assert len(cli.format_pushes_table(pushes["pushes"]).splitlines()) == 1 + len(pushes["pushes"])
    assert capsys.readouterr().out == ""


# --- continuation tokens --------------------------------------------------------------------


def a_token(reader: FakeEventRepository, **changes: Any) -> str:
    """This version's first token for ``?limit=1``, its payload changed as a newer one's."""
    token = call({"limit": "1"}, reader)[1]["continuation"]
    payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    payload.update(changes)
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
def reader() -> FakeEventRepository:
    reader = FakeEventRepository()
    for document in stored_by_a_newer_version():
        reader.add(document)
    return reader


def test_a_token_from_a_newer_version_is_a_400_that_says_so(reader: FakeEventRepository) -> None:
    newer = a_token(reader, v=TOKEN_VERSION + 1)
    status, body = call({"limit": "1", "continuation": newer}, reader)

    assert status == 400
    assert "newer version" in body["error"]
    assert "start without it" in body["error"]


def test_a_token_for_a_filter_this_version_does_not_know_never_pages_another_query(
    reader: FakeEventRepository,
) -> None:
    """The newer filter repeated with its token is an unknown parameter; left out, the token's
    fingerprint (of filters this version cannot name) is another query's: a 400 either way,
    never a page of the unfiltered query."""
    # As models.filters_fingerprint would name a filter added after registry: its value
    # appended to the others', only when given.
    given = [None] * 6 + ["application/x"]
    token = a_token(reader, q=hashlib.sha256(json.dumps(given).encode()).hexdigest()[:16])

    params = {"limit": "1", "continuation": token}
    status, body = call({**params, "mediaType": "application/x"}, reader)
    assert status == 400
    assert body["error"].startswith("mediaType: unknown parameter")

    status, body = call(params, reader)
    assert status == 400
    assert "belongs to a query with other filters" in body["error"]


def test_a_token_for_a_view_this_version_does_not_know_is_a_400(
    reader: FakeEventRepository,
) -> None:
    token = a_token(reader, view="manifests")
    status, body = call({"limit": "1", "continuation": token}, reader)

    assert status == 400
    assert body["error"].startswith("continuation: ")


# --- parked actions no version records, and newer versions' tokens ------------------------------


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


def test_a_token_two_versions_newer_is_a_newer_one() -> None:
    """Mutant killed: only TOKEN_VERSION + 1 taken for a newer version's token: rolled back
    over two releases, a client's token is still "from a newer version", not a forgery."""
    token = forged(
        {"v": TOKEN_VERSION + 2, "q": UNFILTERED, "t": STAMP, "k": None, "w": [None, None]}
    )
    assert call({"continuation": token}, FakeEventRepository()) == (
        400,
        {"error": "continuation: is from a newer version of this endpoint; start without it"},
    )
