"""ACR webhook payloads as ACR sends them, documented and messy."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from acr_webhook.models import MAX_REPOSITORY_LENGTH, MAX_SIZE

PUSH: dict[str, Any] = {
    "id": "cb8c3971-9adc-488b-aaaa-43cbb4974ff5",
    "timestamp": "2017-11-17T16:52:01.343145347Z",
    "action": "push",
    "target": {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "size": 524,
        "digest": "sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d",
        "length": 524,
        "repository": "hello-world",
        "tag": "v1",
    },
    "request": {
        "id": "3cbb6949-7549-4fa1-aaaa-a6d5451dffc7",
        "host": "myregistry.azurecr.io",
        "method": "PUT",
        "useragent": "docker/17.09.0-ce go/go1.8.3 git-commit/afdb6d4 kernel/4.10.0-27-generic",
    },
}

DELETE: dict[str, Any] = {
    "id": "afc359ce-df7f-4e32-bdde-1ff8aa80927b",
    "timestamp": "2017-11-17T16:54:53.657764628Z",
    "action": "delete",
    "target": {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "digest": "sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d",
        "repository": "hello-world",
    },
    "request": {
        "id": "3d78b540-ab61-4f75-807f-7ca9ecf559b3",
        "host": "myregistry.azurecr.io",
        "method": "DELETE",
        "useragent": "python-requests/2.18.4",
    },
}

CHART_PUSH: dict[str, Any] = {
    "id": "6356e9e0-627f-4fed-ae51-d9059b5143ac",
    "timestamp": "2019-03-05T23:45:31.2614267Z",
    "action": "chart_push",
    "target": {
        "mediaType": "application/vnd.acr.helm.chart",
        "size": 25265,
        "digest": "sha256:8ee58075264b5ba7c14c23672d2552ae6a3ebac1c47916e4efe19cd624d2f0f1",
        "repository": "repo",
        "tag": "wordpress-5.4.0.tgz",
        "name": "wordpress",
        "version": "5.4.0",
    },
}

CHART_DELETE: dict[str, Any] = {
    "id": "338a3ef7-ad68-4128-8b3e-7e46b28e5b8b",
    "timestamp": "2019-03-05T23:50:10.1234567Z",
    "action": "chart_delete",
    "target": {
        "mediaType": "application/vnd.acr.helm.chart",
        "size": 25265,
        "digest": "sha256:8ee58075264b5ba7c14c23672d2552ae6a3ebac1c47916e4efe19cd624d2f0f1",
        "repository": "repo",
        "tag": "wordpress-5.4.0.tgz",
        "name": "wordpress",
        "version": "5.4.0",
    },
}

QUARANTINE: dict[str, Any] = {
    "id": "0d799b14-404b-4859-b2f6-50c5ee2a2c3a",
    "timestamp": "2018-09-12T22:37:08.5619466Z",
    "action": "quarantine",
    "target": {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "size": 1791,
        "digest": "sha256:0ce58d5f0cdb1bd7ca2c3ddd8abf0a7ed3d95c1e4b1ec6c6e4a1e1b8e5a5f0a1",
        "length": 1791,
        "repository": "alpine",
        "tag": "3.8",
    },
    "request": {"id": "r-q", "host": "myregistry.azurecr.io", "method": "PUT"},
}

# Push by digest (empty tag), no user agent, an OCI index and a nanosecond timestamp.
PUSH_BY_DIGEST_OCI: dict[str, Any] = {
    "id": "1f4a3c0e-7b7e-4c1b-9d87-9f5cf1d1c001",
    "timestamp": "2024-05-02T08:15:42.123456789Z",
    "action": "push",
    "target": {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "size": 1609,
        "digest": "sha256:4c9b7a3dfb6e6b7f5f0f1d0a4f0e3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a",
        "length": 1609,
        "repository": "team/api",
        "tag": "",
    },
    "request": {"id": "r-oci", "host": "myregistry.azurecr.io", "method": "PUT"},
}

# The same push as Event Grid's ``data`` carries it: the webhook payload plus who pushed, from
# which address, through which replica and connected registry (reference: event sources).
ENRICHED_PUSH: dict[str, Any] = {
    **copy.deepcopy(PUSH),
    "id": "7c1ee3d2-5d4a-4f0e-9d8b-2f3e6a1b9c10",
    "actor": {"name": "ci-bot@contoso.com"},
    "location": "westeurope",
    "connectedRegistry": {"name": "edge01"},
    "source": {"addr": "myregistry-node-1:443", "instanceID": "0a1b2c3d-4e5f"},
}
ENRICHED_PUSH["request"]["addr"] = "203.0.113.7:51234"
ENRICHED_PUSH["target"]["url"] = "https://myregistry.azurecr.io/v2/hello-world/manifests/v1"

RECORDED = {
    "push": PUSH,
    "delete": DELETE,
    "chart_push": CHART_PUSH,
    "chart_delete": CHART_DELETE,
    "quarantine": QUARANTINE,
    "push_by_digest_oci": PUSH_BY_DIGEST_OCI,
}


def with_new_id(payload: dict[str, Any], **target: Any) -> dict[str, Any]:
    """A copy with a fresh event id (and target fields overridden)."""
    fresh = copy.deepcopy(payload)
    fresh["id"] = str(uuid.uuid4())
    fresh["target"].update(target)
    return fresh


def numbered(
    number: int, repository: str = "team/api", *, enriched: bool = False, compact: bool = False
) -> dict[str, Any]:
    """The push numbered ``number``: its id and a timestamp of its own follow from it, so that
    thousands can be made. ``enriched`` adds who pushed and where (Event Grid's fields);
    ``compact`` leaves out the digest and the request, so that Event Grid's 5,000 events fit in
    the 1 MiB a batch may be."""
    target: dict[str, Any] = {"repository": repository, "tag": "v1"}
    data: dict[str, Any] = {
        "id": f"ev{number:06d}",
        "timestamp": f"2026-01-01T{number // 3600 % 24:02d}:{number // 60 % 60:02d}:"
        f"{number % 60:02d}.{number:06d}Z",
        "action": "push",
        "target": target,
    }
    if not compact:
        target["digest"] = f"sha256:{number:064x}"
        data["request"] = {"id": "r", "host": "myregistry.azurecr.io"}
    if enriched:
        data["actor"] = {"name": "ci-bot"}
        data["location"] = "westeurope"
    return data


def mutated(path: str, value: Any) -> dict[str, Any]:
    """A fresh copy of ENRICHED_PUSH with the field at the dotted ``path`` set to ``value``."""
    payload = with_new_id(ENRICHED_PUSH)
    *parents, last = path.split(".")
    node = payload
    for key in parents:
        node = node[key]
    node[last] = value
    return payload


# Each value issue 10 found, or that Cosmos DB or the queue would refuse: (field, value, what
# the 400 says).
HOSTILE: list[tuple[str, Any, str]] = [
    ("id", "tab\tinside", "control characters"),
    ("id", "line\nend", "control characters"),
    ("id", "carriage\rreturn", "control characters"),
    ("id", "nul\x00", "control characters"),
    ("id", "c1\x85", "control characters"),
    ("id", "ends-with-space ", "nor end with a space"),
    ("id", "a/b", "'/'"),
    ("id", "a\\b", "'/'"),
    ("id", "a?b", "'/'"),
    ("id", "a#b", "'/'"),
    ("id", "x" * 256, "at most 255 characters"),
    ("id", "", "at least 1 character"),
    ("target.repository", "r" * (MAX_REPOSITORY_LENGTH + 1), "at most 255 characters"),
    ("target.repository", "r" * 1024, "at most 255 characters"),
    # 1,024 characters of 4 bytes each: 4 KB, twice Cosmos DB's limit for a partition key.
    ("target.repository", "\U0001f600" * 1024, "at most 255 characters"),
    ("target.repository", "team/\napi", "control characters"),
    ("target.tag", "t" * 129, "at most 128 characters"),
    ("target.tag", "x" * 100_000, "at most 128 characters"),
    ("target.digest", "sha256:" + "a" * 249, "at most 255 characters"),
    ("target.mediaType", "m" * 256, "at most 255 characters"),
    ("target.name", "n" * 256, "at most 255 characters"),
    ("target.version", "v" * 129, "at most 128 characters"),
    ("request.host", "h" * 256, "at most 255 characters"),
    ("request.id", "i" * 256, "at most 255 characters"),
    ("request.method", "M" * 33, "at most 32 characters"),
    ("request.addr", "1" * 65, "at most 64 characters"),
    ("actor.name", "a" * 256, "at most 255 characters"),
    ("actor.name", "bot\u0007", "control characters"),
    ("location", "l" * 65, "at most 64 characters"),
    ("connectedRegistry.name", "c" * 65, "at most 64 characters"),
    ("timestamp", "0001-01-01T00:00:00+01:00", "year must be from 1000 to 9999"),
    ("timestamp", "9999-12-31T23:59:59-01:00", "year must be from 1000 to 9999"),
    ("timestamp", "0999-12-31T23:59:59Z", "year must be from 1000 to 9999"),
    ("timestamp", "1000-01-01T00:30:00+01:00", "year must be from 1000 to 9999"),
    ("timestamp", "0009-06-01T00:00:00Z", "year must be from 1000 to 9999"),
    ("target.size", True, "valid integer"),
    ("target.size", "12", "valid integer"),
    ("target.size", 12.0, "valid integer"),
    ("target.size", 1e30, "valid integer"),
    ("target.size", 10**30, "less than or equal to 9007199254740991"),
    ("target.size", 10**400, "less than or equal to 9007199254740991"),
    ("target.size", MAX_SIZE + 1, "less than or equal to 9007199254740991"),
    ("target.size", -1, "greater than or equal to 0"),
    ("target.length", False, "valid integer"),
    ("target.length", 2**64, "less than or equal to 9007199254740991"),
]


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def padded_body(payload: Any, size: int) -> bytes:
    """``payload`` (a JSON object or array) as a body of exactly ``size`` bytes: spaces before
    its closing bracket."""
    raw = body(payload)
    return raw[:-1] + b" " * (size - len(raw)) + raw[-1:]
