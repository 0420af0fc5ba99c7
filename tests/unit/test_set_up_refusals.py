"""A set-up the database refuses (a missing data role, a wrong key, a container that is not there):
said with what to fix first, then the answer's kind, then the SDK's words; never as an outage to
wait out, on the write routes, the read route and the CLI alike.
"""

from __future__ import annotations

import pytest
from azure.cosmos.exceptions import CosmosHttpResponseError

from acr_webhook.repository import CosmosEventRepository, DatabaseHealth
from acr_webhook.store import RepositoryUnavailableError, StoreNotFoundError
from tests.unit.test_database_health import REFUSING

# --- repository._failure: a missing container is StoreNotFoundError, not an outage --------------


@pytest.mark.parametrize(
    ("sub_status", "raised"),
    [
        (None, StoreNotFoundError),
        (0, StoreNotFoundError),
        (1003, StoreNotFoundError),  # the owner resource (database or container) does not exist
        (1002, RepositoryUnavailableError),  # a session not yet readable: not "run provision"
    ],
)
def test_a_writes_404_for_a_missing_container_is_store_not_found_and_not_remembered(
    sub_status: int | None, raised: type[Exception]
) -> None:
    """_failure: "The container or its database is missing: answered at once, so nothing to
    remember"; 1002 "passes" (_MISSING_SUB_STATUS). Kills the 404 branch dropped, its
    sub-status check dropped or inverted, a plain RepositoryUnavailableError for it, and it
    remembered."""
    health = DatabaseHealth()
    repository = CosmosEventRepository(REFUSING, health=health)  # nothing is contacted
    answer = CosmosHttpResponseError(status_code=404, message="NotFound", sub_status=sub_status)  # type: ignore[no-untyped-call]
    error = repository._failure(answer)
    assert type(error) is raised
    if raised is StoreNotFoundError:
        health.check()
