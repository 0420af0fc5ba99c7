"""The master key's reach into the record: in Azure it runs any non-HTTP function with an input
of its choosing (`POST /admin/functions/replay_fallback`, body `{"input": ...}`), as does
anyone who can write to the fallback queue (the storage account). Replay checks only the four
keys a parked document needs and writes the rest as given, so its caller names the `source` and
`receivedAt` that every HTTP route sets itself. Called here as the worker calls the queue
trigger, against the local Cosmos DB server."""

from __future__ import annotations

import json

import azure.functions as func

import function_app
from acr_webhook.config import Settings
from tests.integration.test_keyholder_writes import app, documents, real_push, webhook

__all__ = ["app"]  # the fixture, used by name


def test_a_crafted_parked_document_is_stored_with_the_provenance_its_sender_chose(
    app: Settings,
) -> None:
    """Blast radius of the master key (and of the queue): a document that looks stored by
    reconcile, received in 2001, with fields no route writes. It changes no stored event:
    a real event's id in its repository stays a duplicate with its values kept."""
    forged = {
        "id": "forged-by-replay",
        "repository": "payments/api",
        "action": "push",
        "timestamp": "2026-01-01T00:00:00.000000Z",
        "source": "reconcile",
        "receivedAt": "2001-01-01T00:00:00.000000Z",
        "actor": "someone-else@contoso.com",
        "note": "no route writes this field",
    }
    function_app.replay_fallback(func.QueueMessage(body=json.dumps(forged).encode()))
    [document] = documents(app, "forged-by-replay")
    assert document == forged

    real = real_push()
    assert webhook(real) == 201
    before = documents(app, real["id"])
    rewrite = {**before[0], "digest": "sha256:" + "0" * 64, "source": "reconcile", "size": 1}
    function_app.replay_fallback(func.QueueMessage(body=json.dumps(rewrite).encode()))
    assert documents(app, real["id"]) == before
