"""No credential was ever committed: every file of every commit (not only the tip: a key removed
later is still in every clone), and every commit message. The keys the repository holds are the
two published development keys, which are not secrets: the Cosmos DB emulator's
(learn.microsoft.com/azure/cosmos-db/emulator, "Authentication") and Azurite's
devstoreaccount1 (learn.microsoft.com/azure/storage/common/storage-use-azurite, "Well-known
storage account and key"). A full history scan with detect-secrets 1.5.0 found nothing else;
these checks keep the patterns that matter here without that package. CI clones with history
(a shallow clone checks only the commits it has, and says so as a skip)."""

from __future__ import annotations

import re
import subprocess
from functools import cache

import pytest

from tests.support.azurite import ACCOUNT_KEY
from tests.support.cosmos_server import EMULATOR_KEY, REPO_ROOT

PUBLISHED_KEYS = {EMULATOR_KEY, ACCOUNT_KEY}
# An Azure account key (Cosmos DB, Storage, Event Grid, Service Bus): 64 random bytes in
# base64. npm's `sha512-` integrity values have the same shape and are left out.
ACCOUNT_KEY_SHAPE = re.compile(rb"(?<![A-Za-z0-9+/-])[A-Za-z0-9+/]{86}==")
PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
# A SAS token's signature (`sig=` then a URL-encoded base64 HMAC) and a signed JWT.
SAS_SIGNATURE = re.compile(rb"[?&;]sig=[A-Za-z0-9%+/=]{20,}")
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")
INSTRUMENTATION_KEY = re.compile(rb"InstrumentationKey=([0-9a-fA-F-]{36})")
# Files that hold a machine's settings or keys, wherever they are.
SECRET_FILE = re.compile(
    r"(^|/)(local\.settings\.json|\.env(\..*)?|\.azure/.*|.*\.(pem|key|pfx|p12)|id_(rsa|ed25519))$"
)


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, check=True).stdout


@cache
def every_blob() -> dict[str, bytes]:
    """Every file content any commit of any branch or tag ever held, by object id."""
    objects = git("rev-list", "--all", "--objects").decode().splitlines()
    ids = "".join(line.split(" ", 1)[0] + "\n" for line in objects)
    listed = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=REPO_ROOT,
        input=ids.encode(),
        capture_output=True,
        check=True,
    ).stdout
    blobs, at = {}, 0
    while at < len(listed):
        header_end = listed.index(b"\n", at)
        object_id, kind, size = listed[at:header_end].decode().split()
        body = listed[header_end + 1 : header_end + 1 + int(size)]
        at = header_end + 1 + int(size) + 1
        if kind == "blob":
            blobs[object_id] = body
    return blobs


def every_commit_message() -> bytes:
    return git("log", "--all", "--format=%B")


def found(pattern: re.Pattern[bytes]) -> set[bytes]:
    hits = set(pattern.findall(every_commit_message()))
    for body in every_blob().values():
        hits.update(pattern.findall(body))
    return hits


def test_the_scan_reads_the_whole_history() -> None:
    if git("rev-parse", "--is-shallow-repository").strip() == b"true":
        pytest.skip("a shallow clone: the checks below saw only the commits it has")
    assert len(git("rev-list", "--all").split()) > 1
    assert any(EMULATOR_KEY.encode() in body for body in every_blob().values())


def test_no_file_of_a_machine_s_settings_or_keys_was_ever_committed() -> None:
    """local.settings.json (the local host's key, a real account's COSMOS_KEY), .env files,
    azd's .azure/<env>/.env (WEBHOOK_SECRET), key and certificate files: in no commit."""
    paths = git("log", "--all", "--no-renames", "--format=", "--name-only").decode().split("\n")
    assert sorted({path for path in paths if SECRET_FILE.search(path)}) == []


def test_the_only_account_keys_ever_committed_are_the_published_development_keys() -> None:
    assert {key.decode() for key in found(ACCOUNT_KEY_SHAPE)} == PUBLISHED_KEYS


def test_no_private_key_sas_signature_or_signed_token_was_ever_committed() -> None:
    assert (found(PRIVATE_KEY), found(SAS_SIGNATURE), found(JWT)) == (set(), set(), set())


def test_the_only_instrumentation_key_ever_committed_is_the_zero_placeholder() -> None:
    assert found(INSTRUMENTATION_KEY) <= {b"00000000-0000-0000-0000-000000000000"}


def test_the_patterns_catch_what_they_are_for() -> None:
    # Each sample is put together here so that this file, once committed, matches nothing.
    made_up = b"A" * 43 + b"b" * 43 + b"=="
    assert ACCOUNT_KEY_SHAPE.findall(b'"AccountKey=' + made_up + b'"') == [made_up]
    assert ACCOUNT_KEY_SHAPE.findall(b'"integrity": "sha512-' + made_up + b'"') == []
    assert PRIVATE_KEY.search(b"-----BEGIN RSA " + b"PRIVATE KEY-----\nMIIE")
    assert SAS_SIGNATURE.search(b"q?sv=2022-11-02&" + b"sig=" + b"Zm9v%2B" * 4)
    assert JWT.search(
        b".".join([b"eyJ" + b"0eXAiOiJKV1Qi", b"eyJ" + b"hdWQiOiJodHRw", b"c2ln" * 5])
    )
    assert found(INSTRUMENTATION_KEY)  # the placeholder is there, so the check is not vacuous
    for path in ("local.settings.json", ".env", ".env.local", ".azure/dev/.env", "tls/dev.pem"):
        assert SECRET_FILE.search(path), path
    assert not SECRET_FILE.search("local.settings.sample.json")
