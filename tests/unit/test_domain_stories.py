"""The record against how registries are really used: the stories a team produces, delivered
through the real handlers (webhook, Event Grid, reconcile) and asked as a platform engineer
asks them, through the read endpoint's handler and the ``events`` CLI.

1. a multi-platform image: one manifest per platform pushed by digest, then the index by tag;
2. a tag moved from one digest to another, then the digest deleted;
3. one digest under two tags (retag), and pushed again (re-push);
4. quarantine, legacy Helm chart events and OCI artifacts (signatures, SBOMs);
5. who pushed, when the delivery names nobody.

Where the docs promise an answer the record cannot give, or leave out what a reader needs to
read it right, the test is a strict xfail naming the missing sentence.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from acr_webhook import __main__ as cli
from acr_webhook.eventgrid import handle_eventgrid
from acr_webhook.handlers import handle_webhook
from acr_webhook.reconcile import reconcile_entries
from tests.support import payloads
from tests.support.fakes import FakeEventRepository
from tests.support.history import history_entry
from tests.support.interleave import InlineExecutor
from tests.unit.test_docs_commands import DOCS
from tests.unit.test_eventgrid import event_grid
from tests.unit.test_queries import call

RECEIVED_AT = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
REPOSITORY = "team/api"
QUERIES = DOCS["docs/queries.md"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ORAS_ARTIFACT = "application/vnd.oci.artifact.manifest.v1+json"


def digest(mark: str) -> str:
    return f"sha256:{mark * 64}"


def acr_payload(
    at: str,
    digest_: str,
    tag: str = "",
    *,
    action: str = "push",
    media_type: str = OCI_MANIFEST,
    repository: str = REPOSITORY,
    **extra: Any,
) -> dict[str, Any]:
    """An ACR payload as the webhook posts it (``tag`` empty: pushed by digest; a delete carries
    no tag and no size), with ``extra`` top-level fields (Event Grid's ``actor``, ``location``)."""
    base = payloads.DELETE if action == "delete" else payloads.PUSH
    payload = payloads.with_new_id(base, repository=repository, digest=digest_)
    payload["target"]["mediaType"] = media_type
    if action != "delete":
        payload["target"]["tag"] = tag
    payload.update(action=action, timestamp=at, **extra)
    return payload


def by_webhook(reader: FakeEventRepository, *sent: dict[str, Any]) -> None:
    for payload in sent:
        result = handle_webhook(payloads.body(payload), reader, now=lambda: RECEIVED_AT)
        assert result.status == 201, result.body


def by_eventgrid(reader: FakeEventRepository, *data: dict[str, Any]) -> None:
    body = payloads.body([event_grid(one) for one in data])
    result = handle_eventgrid(body, {}, reader, now=lambda: RECEIVED_AT, executor=InlineExecutor())
    assert result.body == {"recorded": len(data), "duplicate": 0, "ignored": 0}


def pushes(reader: FakeEventRepository, **params: str) -> list[dict[str, Any]]:
    status, body = call({**params, "view": "pushes"}, reader)
    assert status == 200 and body["continuation"] is None, body
    rows: list[dict[str, Any]] = body["pushes"]
    return rows


def events(reader: FakeEventRepository, **params: str) -> list[dict[str, Any]]:
    status, body = call(params, reader)
    assert status == 200 and body["continuation"] is None, body
    found: list[dict[str, Any]] = body["events"]
    return found


def cli_rows(capsys: pytest.CaptureFixture[str], *arguments: str) -> list[dict[str, str]]:
    """The ``events`` table as printed, each line by its header's column names."""
    assert cli.main(["events", *arguments]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    names = header.lower().split()
    return [dict(zip(names, line.split(), strict=True)) for line in lines]


def under(heading: str) -> str:
    """The prose and blocks of docs/queries.md from ``heading`` to the next heading."""
    return re.split(r"\n#{2,4} ", QUERIES.split(f"\n{heading}\n", 1)[1], maxsplit=1)[0]


def paragraphs_saying(phrase: str) -> list[str]:
    """The paragraphs and list items of docs/queries.md that say ``phrase``."""
    parts = re.split(r"\n\n|\n- ", QUERIES)
    return [part for part in parts if phrase in part.replace("\n", " ")]


# --- 1. A multi-platform image -------------------------------------------------------------
# `docker buildx build --platform linux/amd64,linux/arm64 --push -t team/api:v1` PUTs each
# platform's manifest by digest (and, since buildx 0.10, an attestation manifest per platform),
# then the index under the tag: one ACR push event per manifest PUT, the by-digest ones with an
# empty tag. The reference docs say only that "a push by digest has an empty `tag`" and that
# "`mediaType` can be any Docker or OCI manifest / index type" (acr-delivery-facts.md); that one
# image push is several events is not written there. Public reports of the extra untagged
# event: dotnet/sdk-container-builds#456 (ACR: "webhook push an extra time without tag"),
# Commit451/skyhook#204 (buildx: five webhooks for one two-platform push).

PLATFORMS = {
    "amd64": digest("1"),
    "arm64": digest("2"),
    "amd64-attestation": digest("3"),
    "arm64-attestation": digest("4"),
}
INDEX = digest("9")


def multi_platform_push(reader: FakeEventRepository) -> None:
    manifests = [
        acr_payload(f"2026-11-23T10:00:0{n}.100000Z", manifest)
        for n, manifest in enumerate(PLATFORMS.values(), start=1)
    ]
    index = acr_payload("2026-11-23T10:00:05.100000Z", INDEX, "v1", media_type=OCI_INDEX)
    by_webhook(reader, *manifests, index)


def test_a_multi_platform_push_is_one_row_for_its_tag_and_one_untagged_row_per_manifest(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    """What happens: 5 rows for one `docker buildx --push` of two platforms, the index's tagged
    row first (its event is the newest), then 4 `<none>` rows, one per platform and attestation
    manifest. ``tag=v1`` is the only way to one row per tag, and it needs the tag known."""
    multi_platform_push(cli_reader)
    rows = pushes(cli_reader, repository=REPOSITORY, action="push")
    assert [(row["tag"], row["digest"]) for row in rows] == [
        ("v1", INDEX),
        *((None, manifest) for manifest in reversed(PLATFORMS.values())),
    ]
    printed = cli_rows(capsys, "--pushes", "--repository", REPOSITORY, "--action", "push")
    assert [row["tag"] for row in printed] == ["v1", *["<none>"] * 4]
    assert [row["tag"] for row in cli_rows(capsys, "--pushes", "--tag", "v1")] == ["v1"]
    # The events view is the only one that tells the index from its manifests: by mediaType.
    assert [event["mediaType"] for event in events(cli_reader, repository=REPOSITORY)] == [
        OCI_INDEX,
        *[OCI_MANIFEST] * 4,
    ]


def test_the_docs_say_a_multi_platform_push_is_a_row_per_manifest() -> None:
    assert re.search(r"multi-(platform|arch)|manifest list|per platform", QUERIES, flags=re.I)


def test_a_pushes_row_says_what_kind_of_manifest_was_pushed(
    cli_reader: FakeEventRepository,
) -> None:
    multi_platform_push(cli_reader)
    rows = pushes(cli_reader, repository=REPOSITORY, action="push")
    assert [row.get("mediaType") for row in rows] == [OCI_INDEX, *[OCI_MANIFEST] * 4]


# --- 2. A tag moved, then its digest deleted -------------------------------------------------

DIGEST_A, DIGEST_B = digest("a"), digest("b")
LATEST_AT_A = "2026-11-23T09:00:00.000000Z"
LATEST_AT_B = "2026-11-23T10:00:00.000000Z"
B_DELETED = "2026-11-23T10:30:00.000000Z"


def moved_then_deleted(reader: FakeEventRepository) -> None:
    by_webhook(
        reader,
        acr_payload(LATEST_AT_A, DIGEST_A, "latest"),
        acr_payload(LATEST_AT_B, DIGEST_B, "latest"),
        # `az acr repository delete --image team/api@<B>`: the manifest, and with it the tag.
        acr_payload(B_DELETED, DIGEST_B, action="delete"),
    )


def test_a_moved_tag_says_which_digest_it_has_now_and_since_when_it_had_the_last(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    """'Which digest is latest now?' is the newest push with the tag; 'when did latest point at
    A?' is from A's push to the next push of the tag: both in the events view and the CLI."""
    moved_then_deleted(cli_reader)
    history = events(cli_reader, repository=REPOSITORY, tag="latest")
    assert [(event["timestamp"], event["digest"]) for event in history] == [
        (LATEST_AT_B, DIGEST_B),
        (LATEST_AT_A, DIGEST_A),
    ]
    printed = cli_rows(capsys, "--repository", REPOSITORY, "--tag", "latest")
    assert [(row["timestamp"], row["digest"]) for row in printed] == [
        (LATEST_AT_B, "sha256:bbbbbbbbbbbb"),
        (LATEST_AT_A, "sha256:aaaaaaaaaaaa"),
    ]
    # The delete carries no tag: it is found by its digest, never by the tag.
    [deleted] = events(cli_reader, repository=REPOSITORY, digest=DIGEST_B, action="delete")
    assert (deleted["timestamp"], deleted["tag"]) == (B_DELETED, None)


def test_after_its_digest_is_deleted_the_tag_still_leads_with_that_digest(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    """What happens: asked by the tag, every view still answers 'latest is B' after B was
    deleted (the tag went with it); only a second question, by B's digest, shows the delete."""
    moved_then_deleted(cli_reader)
    [current, earlier] = pushes(cli_reader, repository=REPOSITORY, tag="latest")
    assert (current["digest"], current["action"]) == (DIGEST_B, "push")
    assert earlier["digest"] == DIGEST_A
    assert [row["action"] for row in cli_rows(capsys, "--pushes", "--tag", "latest")] == [
        "push",
        "push",
    ]
    # Without the tag filter the delete is there, as its own row above B's push.
    unfiltered = pushes(cli_reader, repository=REPOSITORY)
    assert [(row["action"], row["digest"]) for row in unfiltered][:2] == [
        ("delete", DIGEST_B),
        ("push", DIGEST_B),
    ]


def test_the_docs_claim_of_a_tags_current_image_names_deletes_and_untags() -> None:
    claims = paragraphs_saying("current image")
    assert claims
    for paragraph in claims:
        assert "delete" in paragraph and "untag" in paragraph, paragraph


# --- 3. One digest under two tags, and pushed again ------------------------------------------

RETAGGED = digest("c")
CI_BOT, ALICE, WEST = {"name": "ci-bot"}, {"name": "alice"}, "westeurope"


def test_a_retag_is_a_row_per_tag_and_a_re_push_joins_its_first_push(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/queries.md: a push is registry, repository, digest, tag and action, and 'the same
    image pushed again under the same tag later joins the same row ... and keeps the first
    time'. What happens: the retag is a row of its own; the re-push (a new event id, a day
    later, by another identity) is counted once, its row keeps the first push's time and actor,
    and the re-push reads as a second report of the same push ('westeurope,westeurope' in the
    CLI; '?,?' had both come by webhook)."""
    by_eventgrid(
        cli_reader,
        acr_payload("2026-11-20T10:00:00Z", RETAGGED, "v1", actor=CI_BOT, location=WEST),
        acr_payload("2026-11-20T10:05:00Z", RETAGGED, "stable", actor=CI_BOT, location=WEST),
        acr_payload("2026-11-21T10:00:00Z", RETAGGED, "v1", actor=ALICE, location=WEST),
    )
    rows = pushes(cli_reader, repository=REPOSITORY, action="push")
    assert [(row["tag"], row["timestamp"], row["actor"]) for row in rows] == [
        ("v1", "2026-11-20T10:00:00.000000Z", "ci-bot"),
        ("stable", "2026-11-20T10:05:00.000000Z", "ci-bot"),
    ]
    assert [region["timestamp"] for region in rows[0]["regions"]] == [
        "2026-11-20T10:00:00.000000Z",
        "2026-11-21T10:00:00.000000Z",
    ]
    printed = cli_rows(capsys, "--pushes", "--action", "push")
    assert [(row["tag"], row["actor"], row["regions"]) for row in printed] == [
        ("v1", "ci-bot", "westeurope,westeurope"),
        ("stable", "ci-bot", "westeurope"),
    ]
    # Only the events view (--json: the table has no actor) shows who pushed it again.
    assert [event["actor"] for event in events(cli_reader, tag="v1")] == ["alice", "ci-bot"]


def test_a_push_reported_by_two_regions_is_one_push_but_two_events_per_identity(
    cli_reader: FakeEventRepository,
) -> None:
    """A geo-replicated push: the region that took it and a replica each report it, with the
    same actor. view=pushes counts 1; the documented 'How many pushes each identity made'
    (COUNT(1) over push events, GROUP BY c.actor) counts each stored event: 2."""
    by_eventgrid(
        cli_reader,
        acr_payload("2026-11-23T10:00:00Z", RETAGGED, "v1", actor=CI_BOT, location=WEST),
        acr_payload("2026-11-23T10:00:09Z", RETAGGED, "v1", actor=CI_BOT, location="eastus"),
    )
    [row] = pushes(cli_reader, action="push")
    assert [region["location"] for region in row["regions"]] == ["westeurope", "eastus"]
    counted_by_the_documented_query = sum(
        event["actor"] == "ci-bot" for event in events(cli_reader, action="push")
    )
    assert counted_by_the_documented_query == 2
    assert "COUNT(1) AS pushes" in under("#### Who pushed (actor)")


def test_the_docs_per_identity_count_says_it_counts_each_region() -> None:
    count = under("#### Who pushed (actor)").split("How many pushes each identity made", 1)[1]
    assert re.search(r"region|location", count)


def test_the_docs_once_per_push_count_says_a_re_push_counts_again() -> None:
    section = under("#### What was pushed, once per push (geo-replicated registries)")
    assert re.search(r"again|re-push", section)


# --- 4. Quarantine, legacy Helm charts and OCI artifacts -------------------------------------


def test_quarantine_and_chart_events_are_kept_apart_from_image_pushes(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each is stored with its own action, found by it, and left out of action=push; chart
    events have no `request`, so no registry: a registry filter leaves them out."""
    quarantined = payloads.with_new_id(payloads.QUARANTINE)
    released = {**payloads.with_new_id(payloads.QUARANTINE), "action": "push"}
    released["timestamp"] = "2018-09-12T22:40:00Z"  # the scanner cleared it
    by_webhook(
        cli_reader,
        quarantined,
        released,
        payloads.with_new_id(payloads.CHART_PUSH),
        payloads.with_new_id(payloads.CHART_DELETE),
    )
    by_action = {
        action: [(row["repository"], row["tag"]) for row in pushes(cli_reader, action=action)]
        for action in ("push", "quarantine", "chart_push", "chart_delete")
    }
    assert by_action == {
        "push": [("alpine", "3.8")],
        "quarantine": [("alpine", "3.8")],
        "chart_push": [("repo", "wordpress-5.4.0.tgz")],
        "chart_delete": [("repo", "wordpress-5.4.0.tgz")],
    }
    [chart] = events(cli_reader, action="chart_push")
    assert (chart["chartName"], chart["chartVersion"], chart["registry"]) == (
        "wordpress",
        "5.4.0",
        None,
    )
    in_registry = events(cli_reader, registry="myregistry.azurecr.io")
    assert {event["action"] for event in in_registry} == {"push", "quarantine"}
    # Without an action, the "pushes" view lists every action, each row saying which.
    printed = cli_rows(capsys, "--pushes")
    assert sorted(row["action"] for row in printed) == [
        "chart_delete",
        "chart_push",
        "push",
        "quarantine",
    ]


SIGNED = digest("d")


def test_signatures_and_sboms_are_counted_as_pushes_of_the_repository(
    cli_reader: FakeEventRepository,
) -> None:
    """A cosign signature (an OCI image manifest under the tag `sha256-<digest>.sig`), a
    Notation signature (an OCI image manifest by digest, its artifactType and subject not in
    ACR's events: acr-event-sources.md) and an ORAS SBOM (an OCI artifact manifest by digest):
    each is a plain `push`, so one signed image with an SBOM is 4 rows of action=push."""
    signature_tag = f"sha256-{SIGNED.removeprefix('sha256:')}.sig"
    notation = acr_payload("2026-11-23T10:00:03Z", digest("e"))
    notation["target"]["artifactType"] = "application/vnd.cncf.notary.signature"
    by_webhook(
        cli_reader,
        acr_payload("2026-11-23T10:00:00Z", SIGNED, "v1"),
        acr_payload("2026-11-23T10:00:02Z", digest("f"), signature_tag),
        notation,
        acr_payload("2026-11-23T10:00:04Z", digest("0"), media_type=ORAS_ARTIFACT),
    )
    rows = pushes(cli_reader, repository=REPOSITORY, action="push")
    assert [row["tag"] for row in rows] == [None, None, signature_tag, "v1"]
    stored = {event["digest"]: event for event in events(cli_reader, repository=REPOSITORY)}
    assert stored[digest("0")]["mediaType"] == ORAS_ARTIFACT
    assert "artifactType" not in stored[digest("e")]  # not a field of the record


def test_the_docs_say_artifacts_are_recorded_as_pushes() -> None:
    assert re.search(r"signature|sbom|artifact", QUERIES, flags=re.I)


def test_the_documented_one_row_per_push_examples_ask_for_pushes_only() -> None:
    commands = re.compile(
        r"^(curl|\.venv/bin/python -m acr_webhook events) .*(--pushes|view=pushes)"
    )
    examples = [line for line in QUERIES.splitlines() if commands.search(line)]
    assert examples
    for line in examples:
        assert re.search(r"--action push|action=push", line), line


# --- 5. Who pushed, when the delivery names nobody -------------------------------------------

SERVICE_PRINCIPAL = "5f0c9a7e-3b1d-4c8e-9a2f-6d4b8e1c7a30"  # an application (client) id


def test_an_event_without_an_actor_shows_none_and_an_identity_shows_as_acr_named_it(
    cli_reader: FakeEventRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Event Grid docs' own ImagePushed example has no `actor`; the REST API's listEvents
    example has `actor: {}`; the webhook never has one. Each is stored `actor: null`, which
    `--pushes` shows as `-`; the events table has no actor column at all. A service principal
    is shown as the name ACR gives (here an application id), not looked up."""
    web = "team/web"
    by_eventgrid(cli_reader, acr_payload("2026-11-23T10:00:00Z", digest("1"), "eg", repository=web))
    without_actor = acr_payload(
        "2026-11-23T10:01:00Z", digest("2"), "history", repository=web, actor={}
    )
    outcome = reconcile_entries(
        [history_entry(without_actor)],
        cli_reader,
        received_at=RECEIVED_AT,
        report_invalid=lambda entry: pytest.fail(str(entry)),
    )
    assert outcome.counts.recorded == 1
    by_webhook(cli_reader, acr_payload("2026-11-23T10:02:00Z", digest("3"), "hook", repository=web))
    by_eventgrid(
        cli_reader,
        acr_payload(
            "2026-11-23T10:03:00Z",
            digest("4"),
            "sp",
            repository=web,
            actor={"name": SERVICE_PRINCIPAL},
        ),
    )
    stored = {event["tag"]: event for event in events(cli_reader, repository=web)}
    assert {tag: (e["source"], e["actor"]) for tag, e in stored.items()} == {
        "sp": ("eventgrid", SERVICE_PRINCIPAL),
        "hook": ("webhook", None),
        "history": ("reconcile", None),
        "eg": ("eventgrid", None),
    }
    printed = cli_rows(capsys, "--pushes", "--repository", web)
    assert [(row["tag"], row["actor"]) for row in printed] == [
        ("sp", SERVICE_PRINCIPAL),
        ("hook", "-"),
        ("history", "-"),
        ("eg", "-"),
    ]
    assert "actor" not in cli_rows(capsys, "--repository", web)[0]


def test_the_docs_say_an_event_grid_or_history_event_can_have_an_empty_actor() -> None:
    assert re.search(r"empty|blank|\{\}", under("#### Who pushed (actor)"))
