"""Each identity's grants against what its code calls (tests/integration/
test_least_privilege_calls.py records it; tests/support/data_actions.py maps it to Microsoft's
data actions): nothing it needs refused, nothing harmful it never needs granted.

Who gets what (every assignment the templates make):

| Identity | Role | Scope |
| --- | --- | --- |
| app (user-assigned) | custom: readMetadata, items create/read/replace, queries | the account |
| app | Storage Blob Data Owner, Queue Data Contributor, Table Data Contributor | storage account |
| app | Monitoring Metrics Publisher | Application Insights |
| app | custom: registries/read, webhooks/read, webhooks/listEvents/action | the registry |
| principalId | Cosmos DB Built-in Data Contributor | the account |
| principalId | Storage Queue Data Contributor | storage account |
| principalId | Storage Blob Data Reader | storage account; a condition: the dead-letter container |
| Event Grid system topic | Storage Blob Data Contributor | the dead-letter container |

principalId is optional (empty: none of its three). The storage roles are what Microsoft's
Functions docs give host storage (Blob Data Owner; Table Data Contributor for diagnostic events;
"Connecting to host storage with an identity") and the queue trigger and the fallback queue
need; test_main_template.py pins them, test_redeploy.py their names, test_reconcile_infra.py and
test_webhook_template.py the registry's and the topic's.
"""

from __future__ import annotations

import re
from typing import Any

from tests.infra.bicep import (
    INFRA,
    Json,
    bicep_files,
    param,
    resource,
    resources_of_type,
    template,
    var,
)
from tests.infra.test_deploy_docs import DEPLOY
from tests.support.data_actions import (
    ALL_COSMOS_DATA_ACTIONS,
    APP_COSMOS_DATA_ACTIONS,
    COSMOS_DATA_CONTRIBUTOR,
    DELETE,
    OPERATOR_COSMOS_DATA_ACTIONS,
    READ_CHANGE_FEED,
    READ_METADATA,
    UPSERT,
    allowed_of,
)

COSMOS = "modules/cosmos.bicep"
SQL_ROLE_ASSIGNMENT = "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"
SQL_ROLE_DEFINITION = "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions"

# The Cosmos DB built-in data roles (how-to-setup-rbac, "Built-in role definitions").
BUILT_IN_SQL_ROLES: dict[str, tuple[str, ...]] = {
    "00000000-0000-0000-0000-000000000001": (
        READ_METADATA,
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery",
        READ_CHANGE_FEED,
    ),
    "00000000-0000-0000-0000-000000000002": COSMOS_DATA_CONTRIBUTOR,
}

# Every built-in Azure role a template may assign: data roles on one resource. Owner,
# Contributor, User Access Administrator, Role Based Access Control Administrator, Storage
# Account Contributor (listKeys) and the like are not among them.
NARROW_BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


def cosmos_data_actions_of(principal: str) -> frozenset[str]:
    """The data actions cosmos.bicep's assignment to ``principal`` (a parameter) allows: a
    built-in role by its id, or a custom sqlRoleDefinitions resource of the same file."""
    document = template(COSMOS)
    assignments = [
        resource(document, name)["properties"]
        for name in resources_of_type(document, SQL_ROLE_ASSIGNMENT)
        if resource(document, name)["properties"]["principalId"] == principal
    ]
    assert len(assignments) == 1, (principal, assignments)
    role = assignments[0]["roleDefinitionId"]
    patterns: list[str] = []
    if isinstance(role, str):  # '${account.id}/sqlRoleDefinitions/${<variable or id>}'
        named = re.fullmatch(r"\$\{\w+\.id\}/sqlRoleDefinitions/(?:\$\{(\w+)\}|([0-9a-f-]+))", role)
        assert named, role
        role_id = var(document, named[1]) if named[1] else named[2]
        if role_id in BUILT_IN_SQL_ROLES:
            patterns = list(BUILT_IN_SQL_ROLES[role_id])
        else:
            patterns = _custom_data_actions(document, role_id)
    else:  # <definition>.id
        operands = role["operator"]["operands"]
        assert operands["operand_2"] == "id", role
        patterns = _data_actions(resource(document, operands["operand_1"]))
    return allowed_of(patterns, ALL_COSMOS_DATA_ACTIONS)


def _data_actions(definition: Json) -> list[str]:
    """What a sqlRoleDefinitions resource's permissions list."""
    return [a for p in definition["properties"]["permissions"] for a in p["dataActions"]]


def _custom_data_actions(document: Json, role_id: Any) -> list[str]:
    for name in resources_of_type(document, SQL_ROLE_DEFINITION):
        body = resource(document, name)
        if body["name"] == role_id:
            return _data_actions(body)
    raise AssertionError(f"no role definition {role_id!r} in {COSMOS}")


# --- nothing needed is refused -----------------------------------------------------------------


def test_the_apps_cosmos_role_allows_every_call_its_code_makes() -> None:
    """A narrower role that left one out would answer that path 403 (the webhook's create,
    Event Grid's fill-in read and replace, the read endpoint's query)."""
    assert cosmos_data_actions_of("appPrincipalId") >= APP_COSMOS_DATA_ACTIONS


def test_the_operators_cosmos_role_allows_events_reconcile_and_erase() -> None:
    assert cosmos_data_actions_of("userPrincipalId") >= OPERATOR_COSMOS_DATA_ACTIONS


# --- nothing harmful granted that is never needed ---------------------------------------------


def test_the_apps_cosmos_role_allows_only_what_its_code_calls() -> None:
    """A custom sqlRoleDefinition of exactly readMetadata, items/create, items/read,
    items/replace (the ETag-conditioned fill-in), executeQuery and readChangeFeed (Microsoft:
    an SDK query needs both). Not items/delete: only the operator's erase deletes, with the
    principalId's role."""
    granted = cosmos_data_actions_of("appPrincipalId")
    assert DELETE not in granted and UPSERT not in granted
    assert granted == APP_COSMOS_DATA_ACTIONS


def assigned_role_ids() -> dict[tuple[str, str], str]:
    """(template, assignment) -> the built-in role id, or 'custom:<definition>'."""
    found = {}
    for path in bicep_files():
        relative = path.relative_to(INFRA).as_posix()
        document = template(relative)
        for name in resources_of_type(document, "Microsoft.Authorization/roleAssignments"):
            role = resource(document, name)["properties"]["roleDefinitionId"]
            function = role.get("function", {}) if isinstance(role, dict) else {}
            if function.get("type") == "subscription_resource_id":
                found[relative, name] = var(document, function["parameters"]["resource_name_1"])
            else:
                operands = role["operator"]["operands"]
                assert operands["operand_2"] == "id", role
                found[relative, name] = f"custom:{operands['operand_1']}"
    return found


def test_every_azure_role_assigned_is_a_narrow_data_role_or_a_custom_one() -> None:
    """An allow-list, where test_reconcile_infra.py's BROAD_ROLES is a deny-list of four: User
    Access Administrator, Role Based Access Control Administrator or Storage Account
    Contributor (which lists the account keys) would fail here too."""
    assigned = assigned_role_ids()
    assert len(assigned) == 8
    for (relative, name), role_id in assigned.items():
        if role_id.startswith("custom:"):
            definition = resource(template(relative), role_id.removeprefix("custom:"))
            for permission in definition["properties"]["permissions"]:
                for action in permission["actions"]:
                    assert "*" not in action, (name, action)
                    assert not action.startswith("Microsoft.Authorization/"), (name, action)
                assert "dataActions" not in permission
        else:
            assert role_id in NARROW_BUILT_IN_ROLES, (relative, name, role_id)


# --- principalId's grants are optional and documented -----------------------------------------


def test_the_docs_name_exactly_the_roles_principal_id_gets() -> None:
    """deploy.md's parameter table and main.bicep's description: what a person (or CI principal)
    given as principalId may do, named as Azure names the roles."""
    roles = "modules/role-assignments.bicep"
    granted = {
        NARROW_BUILT_IN_ROLES[role_id]
        for (relative, name), role_id in assigned_role_ids().items()
        if relative == roles
        and resource(template(roles), name)["properties"]["principalId"] == "userPrincipalId"
    }
    assert granted == {"Storage Queue Data Contributor", "Storage Blob Data Reader"}
    (row,) = [line for line in DEPLOY.splitlines() if line.startswith("| `principalId` |")]
    named = set(re.findall(r"(?:Cosmos DB Built-in|Storage \w+) Data \w+", row))
    assert named == granted | {"Cosmos DB Built-in Data Contributor"}
    assert "empty = none" in row
    description = param(template("main.bicep"), "principalId")["decorators"][0]["argument"]
    for role in granted:
        assert role in description
    assert param(template("main.bicep"), "principalId")["default"] == ""


def test_the_apps_role_is_a_custom_role_named_as_the_403_fix_names_it() -> None:
    """A 403 tells the operator to check the app's role by its name in the portal. Kills: the
    definition's roleName changed without the message, a type other than CustomRole (Azure
    refuses a definition of another type)."""
    from acr_webhook.repository import _SET_UP_FIXES

    properties = resource(template(COSMOS), "appWriter")["properties"]
    assert properties["type"] == "CustomRole"
    assert f"main.bicep's '{properties['roleName']}' role" in _SET_UP_FIXES[403]


# Storage Blob Data Reader's data actions (Azure built-in roles, Storage): the one a condition
# must hold. Its other two permissions are control-plane actions (list containers, a user
# delegation key), which conditions do not apply to and which read no blob.
BLOB_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"


def test_principal_ids_blob_reader_reads_the_dead_letter_container_alone() -> None:
    """Storage Blob Data Reader on the whole account would let the operator (or a CI principal)
    read the Functions host's containers, its keys and the deployment package among them: a
    condition holds reading and listing blobs (one data action, BLOB_READ) to the container
    webhook.bicep dead-letters into, in the form of Microsoft's example ("Read blobs in a named
    container", role-based-access-control/conditions-format). Kills: the condition dropped, a
    container name out of step with webhook.bicep's."""
    roles = template("modules/role-assignments.bicep")
    reader = resource(roles, "userBlobDataReader")["properties"]
    container = var(template("webhook.bicep"), "deadLetterContainerName")
    assert var(roles, "deadLetterContainerName") == container == "eventgrid-deadletter"
    condition = (
        reader["condition"].replace("\\'", "'").replace("${deadLetterContainerName}", container)
    )
    assert (reader["conditionVersion"], condition) == (
        "2.0",
        f"((!(ActionMatches{{'{BLOB_READ}'}})) OR "
        "(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name]"
        f" StringEquals '{container}'))",
    )


def test_the_docs_say_principal_ids_blob_reader_is_held_to_the_dead_letter_container() -> None:
    """deploy.md's parameter table tells the operator what principalId may read: only what
    Event Grid dead-lettered, so a 403 on another container is expected, not a missing
    assignment. Kills: the row's words on the condition dropped."""
    (row,) = [line for line in DEPLOY.splitlines() if line.startswith("| `principalId` |")]
    held = "(what Event Grid dead-lettered: a condition holds it to that container)"
    assert f"Storage Blob Data Reader {held}" in row
