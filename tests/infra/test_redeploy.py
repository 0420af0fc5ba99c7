"""What a second deployment of the templates does to a running installation.

Teams deploy main.bicep and webhook.bicep again: after a pull, to change a parameter, from
another machine or from CI. These tests hold the rules that make such a run change nothing when
the parameters are the same, each a fact from Microsoft's documentation:

- Role assignments are identified by their name, a GUID; their principal, role and scope
  cannot change under it (RoleAssignmentUpdateNotPermitted), and a second assignment of the same
  principal, role and scope under another name is refused (RoleAssignmentExists). So each name
  is guid() of exactly its scope, principal and role, and a name once deployed never changes
  (learn.microsoft.com/azure/role-based-access-control/troubleshooting, "ARM template role
  assignment returns BadRequest status"; learn.microsoft.com/azure/azure-resource-manager/bicep/
  scenarios-rbac, "Name").
- Resource Manager's default, incremental mode leaves a resource the template does not name as
  it is; complete mode deletes it (learn.microsoft.com/azure/azure-resource-manager/templates/
  deployment-modes). The dead-letter container and the registry's webhook are made by
  webhook.bicep, not main.bicep: a complete-mode run of main.bicep would delete them.
- Function keys live in the host's storage, not in the templates: webhook.bicep reads the
  current key with listKeys() on every run, so a redeploy follows a rotated key and never writes
  an old one back.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import (
    INFRA,
    REPO_ROOT,
    Json,
    accessor,
    bicep_files,
    resource,
    resources_of_type,
    template,
    var,
)
from tests.infra.test_deploy_docs import DEPLOY, DOCS, section
from tests.infra.test_main_template import app_settings

ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
COSMOS_ROLE_ASSIGNMENT = "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"


def role_assignments() -> list[tuple[str, str]]:
    """(template under infra/, symbolic name) of every role assignment the templates make."""
    found = []
    for path in bicep_files():
        relative = path.relative_to(INFRA).as_posix()
        for kind in (ROLE_ASSIGNMENT, COSMOS_ROLE_ASSIGNMENT):
            found += [(relative, name) for name in resources_of_type(template(relative), kind)]
    return sorted(found)


def guid_arguments(name: Any) -> list[Any]:
    """The arguments of ``guid(a, b, ...)`` as pycep gives them, in order."""
    assert isinstance(name, dict) and name.get("function", {}).get("type") == "guid", name
    parameters: Json = name["function"]["parameters"]
    return [parameters["base_string"]] + [
        parameters[key] for key in sorted(parameters) if key.startswith("extra_string_")
    ]


def identity_of(relative: str, name: str) -> tuple[Any, Any, Any]:
    """(scope id, principal, role) expressions of a role assignment: what Azure keys it by."""
    body = resource(template(relative), name)
    properties = body["properties"]
    if relative.endswith("cosmos.bicep"):
        # sqlRoleAssignments carry their scope as a property and name their role definition as
        # '${account.id}/sqlRoleDefinitions/${<role variable>}', or <custom definition>.id.
        role_definition = properties["roleDefinitionId"]
        if not isinstance(role_definition, str):
            return properties["scope"], properties["principalId"], spelled(role_definition)
        role = re.fullmatch(r".*/sqlRoleDefinitions/\$\{(\w+)\}", role_definition)
        assert role, role_definition
        return properties["scope"], properties["principalId"], role[1]
    role_definition = properties["roleDefinitionId"]
    function = role_definition.get("function", {}) if isinstance(role_definition, dict) else {}
    if function.get("type") == "subscription_resource_id":  # a built-in role, by its variable
        role_definition = function["parameters"]["resource_name_1"]
    return accessor(body["scope"], "id"), properties["principalId"], role_definition


DEAD_LETTER_ROLE = ("modules/eventgrid-deadletter.bicep", "topicBlobDataContributor")
# The dead-letter role is named guid(container.id, systemTopicId, role), without the topic's
# principal: a topic deleted and made again under the same name (a new identity) meets the old
# assignment and webhook.bicep fails with RoleAssignmentUpdateNotPermitted. Renaming it would
# make every existing Event Grid installation's next run fail with RoleAssignmentExists instead,
# so the name stays and docs/deploy.md removes the assignment with the topic
# (test_deploy_md_removes_the_dead_letter_role_with_the_topic).
# The app's Cosmos DB assignment is still named after Data Contributor, the role the first
# versions gave it: a Cosmos DB role assignment can change its role, so the same name moves every
# installation to the narrower custom role in place, where a new name would add a second
# assignment and leave Data Contributor granted.
APP_COSMOS_ROLE = ("modules/cosmos.bicep", "appDataContributor")
ASSIGNMENTS = [
    pytest.param(*entry, id=f"{entry[0]}:{entry[1]}")
    for entry in role_assignments()
    if entry not in (DEAD_LETTER_ROLE, APP_COSMOS_ROLE)
]


def test_every_template_role_assignment_is_checked() -> None:
    assert len(ASSIGNMENTS) == 8
    assert {DEAD_LETTER_ROLE, APP_COSMOS_ROLE} <= set(role_assignments())


def test_the_apps_cosmos_assignment_keeps_its_name_and_holds_the_custom_role() -> None:
    scope, principal, role = identity_of(*APP_COSMOS_ROLE)
    assert role == "appWriter.id"
    arguments = guid_arguments(resource(template(APP_COSMOS_ROLE[0]), APP_COSMOS_ROLE[1])["name"])
    assert arguments == [scope, principal, "dataContributorRoleId"]


@pytest.mark.parametrize(("relative", "name"), ASSIGNMENTS)
def test_role_assignment_name_is_a_guid_of_its_scope_principal_and_role(
    relative: str, name: str
) -> None:
    """Same parameters, same name, same assignment: nothing to update. Another principal (a new
    identity, another deploying user) gets a name of its own instead of an update Azure refuses."""
    arguments = guid_arguments(resource(template(relative), name)["name"])
    scope, principal, role = identity_of(relative, name)
    assert arguments == [scope, principal, role]


# The names every existing installation has. A role assignment renamed in the template (another
# argument, another order) is a second assignment of the same principal, role and scope, which
# Azure refuses with RoleAssignmentExists: the next deployment of every installation fails until
# someone deletes the old one by hand.
FROZEN_NAMES = {
    DEAD_LETTER_ROLE: "container.id systemTopicId storageBlobDataContributor",
    (
        "modules/cosmos.bicep",
        "appDataContributor",
    ): "account.id appPrincipalId dataContributorRoleId",
    ("modules/cosmos.bicep", "userDataContributor"): (
        "account.id userPrincipalId dataContributorRoleId"
    ),
    ("modules/registry-access.bicep", "appHistoryReader"): (
        "registry.id appPrincipalId historyReader.id"
    ),
    ("modules/role-assignments.bicep", "appBlobDataOwner"): (
        "storage.id appPrincipalId storageBlobDataOwner"
    ),
    ("modules/role-assignments.bicep", "appQueueDataContributor"): (
        "storage.id appPrincipalId storageQueueDataContributor"
    ),
    ("modules/role-assignments.bicep", "appTableDataContributor"): (
        "storage.id appPrincipalId storageTableDataContributor"
    ),
    ("modules/role-assignments.bicep", "appMetricsPublisher"): (
        "applicationInsights.id appPrincipalId monitoringMetricsPublisher"
    ),
    ("modules/role-assignments.bicep", "userQueueDataContributor"): (
        "storage.id userPrincipalId storageQueueDataContributor"
    ),
    ("modules/role-assignments.bicep", "userBlobDataReader"): (
        "storage.id userPrincipalId storageBlobDataReader"
    ),
}


def spelled(argument: Any) -> str:
    """``a.b`` for pycep's property accessor, the name itself for a reference."""
    if isinstance(argument, str):
        return argument
    operands = argument["operator"]["operands"]
    return f"{spelled(operands['operand_1'])}.{spelled(operands['operand_2'])}"


def test_role_assignment_names_of_existing_installations_stay_the_same() -> None:
    assert set(FROZEN_NAMES) == set(role_assignments())
    for (relative, name), expected in FROZEN_NAMES.items():
        arguments = guid_arguments(resource(template(relative), name)["name"])
        assert " ".join(spelled(argument) for argument in arguments) == expected, (relative, name)


def test_the_custom_role_definition_keeps_its_name() -> None:
    """Role definition names (GUIDs) and role names are unique; one made again under another
    GUID with the same roleName is refused. Derived from the registry alone, every app that
    reconciles a registry deploys the same definition again, which changes nothing."""
    document = template("modules/registry-access.bicep")
    (name,) = resources_of_type(document, "Microsoft.Authorization/roleDefinitions")
    body = resource(document, name)
    assert [spelled(argument) for argument in guid_arguments(body["name"])] == [
        "registry.id",
        "acr-webhook-history-reader",
    ]
    assert body["properties"]["roleName"] == (
        "ACR webhook history reader (${registryName}, ${resourceGroup().name})"
    )


CLOCK_OR_RANDOM = re.compile(r"\b(utcNow|newGuid)\s*\(")


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.relative_to(INFRA).as_posix())
def test_nothing_is_drawn_from_the_clock_or_at_random(path: Path) -> None:
    """utcNow() and newGuid() (allowed only as parameter defaults) give every run another
    value: a name or setting built from one changes on each deployment with the same
    parameters. The templates need neither."""
    assert not CLOCK_OR_RANDOM.findall(path.read_text())


def test_generated_names_depend_only_on_the_subscription_group_environment_and_location() -> None:
    """Every generated name (func-, st, cosmos-, plan-, id-func-, log-, appi-<token>) is stable
    across runs. The flip side: another environmentName or location is another token, so a whole
    second installation beside the first, not a change of it."""
    token = var(template("main.bicep"), "resourceToken")["function"]
    assert token["type"] == "to_lower"
    unique = token["parameters"]["string_to_change"]["function"]
    assert unique["type"] == "unique_string"
    inputs = unique["parameters"]
    assert inputs["base_string"]["function"]["type"] == "subscription"
    assert inputs["extra_string_1"]["function"]["type"] == "resource_group"
    assert [inputs["extra_string_2"], inputs["extra_string_3"]] == ["environmentName", "location"]


# --- Function keys ---------------------------------------------------------------------------

KEY_RESOURCE = re.compile(r"Microsoft\.Web/sites/(host|functions)/", re.IGNORECASE)


def test_no_template_writes_a_function_key() -> None:
    """A template that set a key would put it back over one an operator rotated
    (docs/operations.md, Rotating keys). The templates only read keys (listKeys in
    webhook.bicep), on every run, so connecting again always sends the current one."""
    for path in bicep_files():
        document = template(path.relative_to(INFRA).as_posix())
        types = {entry["type"] for entry in document.get("resources", {}).values()}
        assert not {kind for kind in types if KEY_RESOURCE.match(kind)}, path
    # Where the host keeps its keys: its storage account by default. Another store, set by a
    # redeploy, would start from no keys and leave the registry's URL with a dead one.
    assert "AzureWebJobsSecretStorageType" not in app_settings()


# --- Deployment mode -------------------------------------------------------------------------


def test_no_documented_deployment_uses_complete_mode() -> None:
    """Complete mode deletes what the template does not name: a complete-mode run of main.bicep
    would delete what webhook.bicep made in the app's resource group (the dead-letter container's
    role) and every resource someone added there."""
    sources = dict(DOCS) | {
        path.name: path.read_text() for path in (INFRA / "hooks").iterdir() if path.is_file()
    }
    sources["azure.yaml"] = (REPO_ROOT / "azure.yaml").read_text()
    for name, text in sources.items():
        assert not re.search(r"--mode\s+complete|-Mode\s+Complete", text, re.IGNORECASE), name


# --- The azd hooks ---------------------------------------------------------------------------

HOOKS = INFRA / "hooks"


def sh_parameters(text: str) -> list[str]:
    block = text.split("--parameters \\\n", 1)[1].split("--query", 1)[0]
    return re.findall(r"^\s+(\w+)=", block, re.MULTILINE)


def ps1_parameters(text: str) -> list[str]:
    block = text.split("--parameters `\n", 1)[1].split("--query", 1)[0]
    return re.findall(r'^\s+"(\w+)=', block, re.MULTILINE)


def test_both_postdeploy_hooks_connect_the_registry_alike() -> None:
    """A redeploy from Windows (postdeploy.ps1) must leave the registry as one from Linux or
    macOS (postdeploy.sh) does: the same deployment record, the same parameters, the same
    defaults. A parameter one hook left out would go back to its default on every azd deploy
    from that system."""
    sh = (HOOKS / "postdeploy.sh").read_text()
    ps1 = (HOOKS / "postdeploy.ps1").read_text()
    assert sh_parameters(sh) == ps1_parameters(ps1)
    assert len(sh_parameters(sh)) == 7
    for text in (sh, ps1):
        assert re.search(r"--name acr-webhook-connect\b", text)
    assert 'mode="${ACR_DELIVERY_MODE:-webhook}"' in sh
    assert "$mode = if ($env:ACR_DELIVERY_MODE) { $env:ACR_DELIVERY_MODE } else { 'webhook' }" in (
        ps1
    )


# --- What docs/deploy.md should say ----------------------------------------------------------

# Parameters whose change on a live installation a later run cannot take back, or which leave
# something behind (deployment-modes: incremental mode keeps resources the template no longer
# names; a location or type change of an existing resource fails).
ONE_WAY = (
    "environmentName",  # another resource token: a second installation beside the first
    "location",  # likewise
    "functionAppName",  # another app, key and webhook URL; the old app keeps running
    "cosmosDatabaseName",  # a new empty database or container; the old one keeps the data
    "cosmosContainerName",
    "cosmosCapacityMode",  # serverless -> provisioned is a one-time portal migration, no way back
    "storageSkuName",  # zone redundancy (ZRS, GZRS) needs a storage migration, not a SKU change
    "retentionDays",  # a shorter time-to-live deletes older documents at once
    "deliveryMode",  # the webhook or Event Grid subscription of the old mode stays and delivers
    "deployAlerts",  # false leaves the rules already deployed (incremental mode)
    "deployWorkbook",
)


def test_deploy_md_says_what_a_second_deployment_changes() -> None:
    text = section(DEPLOY, "## Deploying again")
    missing = [name for name in ONE_WAY if f"`{name}`" not in text]
    assert not missing, missing
    assert "`REPLAY_MAX_DELAY_SECONDS`" in text
    assert "`webhookSecret`" in text


def test_deploy_md_removes_the_dead_letter_role_with_the_topic() -> None:
    """The topic's role goes before the topic, so that a topic made again can be given it."""
    removal = section(DEPLOY, "## Remove everything")
    role_deleted = removal.index("az role assignment delete --ids")
    assert '--assignee "$TOPIC_PRINCIPAL"' in removal
    assert removal.index("identity.principalId") < role_deleted
    assert role_deleted < removal.index("az eventgrid system-topic delete")
    assert "RoleAssignmentUpdateNotPermitted" in section(DEPLOY, "## Deploying again")
