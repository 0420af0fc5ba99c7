"""Infra for reconciling from ACR's webhook history (issue 11): the settings the timer reads,
the one webhook-name rule main.bicep and webhook.bicep share, and a registry role that grants
exactly what listing a webhook's events needs."""

from __future__ import annotations

import json
from typing import Any

from azure.functions.decorators.timer import TimerTrigger

import function_app
from acr_webhook.config import DEFAULT_ARM_ENDPOINT, RECONCILE_SCHEDULE_SETTING
from acr_webhook.local.app_index import indexed_functions, triggered_by
from tests.infra.bicep import (
    INFRA,
    Json,
    accessor,
    conditional_branches,
    decorators,
    module,
    module_path,
    not_empty,
    output,
    param,
    resource,
    resources_of_type,
    template,
    var,
)
from tests.infra.test_main_template import app_settings

MAIN = "main.bicep"
WEBHOOK = "webhook.bicep"
FUNCTION_APP = "modules/function-app.bicep"
REGISTRY_ACCESS = "modules/registry-access.bicep"
TIMER = "reconcile_history"  # the timer function in function_app.py

RECONCILE_ACTIONS = [
    "Microsoft.ContainerRegistry/registries/read",
    "Microsoft.ContainerRegistry/registries/webhooks/read",
    "Microsoft.ContainerRegistry/registries/webhooks/listEvents/action",
]
# Built-in roles far wider than listing events: Owner, Contributor, AcrPush, AcrDelete.
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "8311e382-0749-4cb8-b61a-304f252e45ec",
    "c2f4ef07-c644-48eb-af81-4b1b4947fb11",
}


def single(resources: dict[str, Json]) -> tuple[str, Json]:
    assert len(resources) == 1, sorted(resources)
    return next(iter(resources.items()))


def trims_trailing_slash(value: Any, name: str) -> bool:
    """pycep's tree for ``endsWith(x, '/') ? substring(x, 0, length(x) - 1) : x``."""
    branches = conditional_branches(value)
    if branches is None:
        return False
    condition, trimmed, unchanged = branches
    return bool(
        condition == {"function": {"type": "ends_with", "parameters": {
            "string_to_search": name, "string_to_find": "/"}}}
        and trimmed == {"function": {"type": "substring", "parameters": {
            "string_to_parse": name,
            "start_index": 0,
            "length": {"operator": {"type": "substract", "operands": {
                "operand_1": {"function": {"type": "length", "parameters": {"arg_1": name}}},
                "operand_2": 1,
            }}},
        }}}
        and unchanged == name
    )  # fmt: skip


# --- the registry role -----------------------------------------------------------------------


def test_custom_role_allows_exactly_the_reconcile_actions() -> None:
    document = template(REGISTRY_ACCESS)
    name, _ = single(resources_of_type(document, "Microsoft.Authorization/roleDefinitions"))
    role = resource(document, name)["properties"]
    assert role["type"] == "CustomRole"
    assert role["permissions"] == [{"actions": RECONCILE_ACTIONS, "notActions": []}]
    assert "dataActions" not in json.dumps(role)
    assert role["assignableScopes"] == [
        {
            "function": {
                "type": "resource_group",
                "parameters": {"resource_group_name": None, "subscription_id": None},
                "property_name": "id",
            }
        }
    ]


def test_the_role_is_assigned_to_the_app_at_the_registry() -> None:
    document = template(REGISTRY_ACCESS)
    registry = document["resources"]["registry"]
    assert registry["type"] == "Microsoft.ContainerRegistry/registries"
    assert registry["existing"] is True
    role_name, _ = single(resources_of_type(document, "Microsoft.Authorization/roleDefinitions"))
    name, _ = single(resources_of_type(document, "Microsoft.Authorization/roleAssignments"))
    assignment = resource(document, name)
    assert assignment["scope"] == "registry"
    assert assignment["properties"] == {
        "roleDefinitionId": accessor(role_name, "id"),
        "principalId": "appPrincipalId",
        "principalType": "ServicePrincipal",
    }


def test_no_broad_role_on_the_registry_or_anywhere() -> None:
    for path in sorted(INFRA.rglob("*.bicep")):
        text = path.read_text().lower()
        for role_id in BROAD_ROLES:
            assert role_id not in text, f"{path.name} grants a broad built-in role"


def test_main_deploys_the_role_to_the_registry_group_only_when_reconciling() -> None:
    main = template(MAIN)
    assert module_path(main, "registryAccess") == REGISTRY_ACCESS
    assert main["modules"]["registryAccess"]["config"]["condition"] == "reconcileEnabled"
    access = module(main, "registryAccess")
    assert access["scope"] == {
        "function": {
            "type": "resource_group",
            "parameters": {
                "resource_group_name": "effectiveRegistryResourceGroup",
                "subscription_id": None,
            },
        }
    }
    assert access["params"]["registryName"] == "registryName"
    identity = next(
        iter(resources_of_type(main, "Microsoft.ManagedIdentity/userAssignedIdentities"))
    )
    assert access["params"]["appPrincipalId"] == accessor(identity, "properties", "principalId")
    group = conditional_branches(var(main, "effectiveRegistryResourceGroup"))
    assert group is not None
    assert group[1:] == (
        "registryResourceGroup",
        {
            "function": {
                "type": "resource_group",
                "parameters": {"resource_group_name": None, "subscription_id": None},
                "property_name": "name",
            }
        },
    )


def test_reconcile_needs_a_registry_and_a_native_webhook() -> None:
    main = template(MAIN)
    assert param(main, "registryName")["default"] == ""  # empty = no reconcile
    assert param(main, "registryResourceGroup")["default"] == ""
    assert var(main, "reconcileEnabled") == {
        "operator": {
            "type": "and",
            "operands": {
                "operand_1": not_empty("registryName"),
                "operand_2": {
                    "operator": {
                        "type": "not_equals",
                        "operands": {"operand_1": "deliveryMode", "operand_2": "eventgrid"},
                    }
                },
            },
        }
    }
    # Same choices as webhook.bicep, which creates the webhook whose history is read.
    for name in ("deliveryMode",):
        assert (
            decorators(param(main, name))["allowed"]
            == decorators(param(template(WEBHOOK), name))["allowed"]
        )
        assert param(main, name)["default"] == param(template(WEBHOOK), name)["default"]


# --- app settings ----------------------------------------------------------------------------


def test_registry_and_webhook_settings_only_when_reconciling() -> None:
    settings = app_settings()
    assert settings["ACR_REGISTRY_ID"] == "registryId"
    assert settings["ACR_WEBHOOK_NAMES"] == "webhookNames"
    branches = conditional_branches(var(template(FUNCTION_APP), "reconcileAppSettings"))
    assert branches is not None
    condition, when_none, _ = branches
    assert condition == {
        "function": {"type": "empty", "parameters": {"item_to_test": "registryId"}}
    }
    # No ACR_REGISTRY_ID: nothing to reconcile, so the timer function is switched off (the
    # name is function_app.py's timer function).
    assert when_none == {"'AzureWebJobs.reconcile_history.Disabled'": "true"}
    assert TIMER in {f.get_function_name() for f in indexed_functions(function_app.app)}

    main = template(MAIN)
    params = module(main, "functionApp")["params"]
    assert params["registryId"] == "registryId"
    registry_id = conditional_branches(var(main, "registryId"))
    assert registry_id is not None
    condition, resource_id, disabled = registry_id
    assert (condition, disabled) == ("reconcileEnabled", "")
    assert resource_id["function"]["type"] == "resource_id"
    assert set(resource_id["function"]["parameters"].values()) >= {
        "effectiveRegistryResourceGroup",
        "Microsoft.ContainerRegistry/registries",
        "registryName",
    }
    names = conditional_branches(params["webhookNames"])
    assert names == ("reconcileEnabled", "effectiveWebhookName", "")
    assert output(main, "ACR_WEBHOOK_NAMES") == params["webhookNames"]
    assert output(main, "ACR_REGISTRY_ID") == "registryId"


def test_reconcile_schedule_is_always_set() -> None:
    """The timer trigger reads %RECONCILE_SCHEDULE%; the host cannot index it without one."""
    settings = app_settings()
    assert RECONCILE_SCHEDULE_SETTING in settings
    assert settings[RECONCILE_SCHEDULE_SETTING] == "reconcileSchedule"
    ((timer, trigger),) = triggered_by(function_app.app, TimerTrigger)
    assert timer.get_function_name() == TIMER
    assert trigger.schedule == f"%{RECONCILE_SCHEDULE_SETTING}%"
    main = template(MAIN)
    assert param(main, "reconcileSchedule")["default"] == "0 */5 * * * *"
    assert module(main, "functionApp")["params"]["reconcileSchedule"] == "reconcileSchedule"


def test_management_endpoint_and_audience_come_from_the_cloud() -> None:
    settings = app_settings()
    document = template(FUNCTION_APP)
    assert settings["ARM_ENDPOINT"] == "armEndpoint"
    assert var(document, "resourceManager") == {
        "function": {"type": "environment", "property_name": "resourceManager"}
    }
    assert trims_trailing_slash(var(document, "armEndpoint"), "resourceManager")
    assert settings["ARM_AUDIENCE"] == "armTokenAudience"
    assert var(document, "armAudience") == {
        "operator": {
            "type": "property_accessor",
            "operands": {
                "operand_1": {
                    "function": {"type": "environment", "property_name": "authentication"}
                },
                "operand_2": {
                    "operator": {
                        "type": "index_accessor",
                        "operands": {"operand_1": "audiences", "operand_2": 0},
                    }
                },
            },
        }
    }
    assert trims_trailing_slash(var(document, "armTokenAudience"), "armAudience")
    # The code's default is the public cloud's endpoint, written the same way (no slash).
    assert not DEFAULT_ARM_ENDPOINT.endswith("/")


# --- one webhook-name rule -------------------------------------------------------------------


def test_main_and_webhook_bicep_name_the_webhook_by_the_same_rule() -> None:
    main, webhook = template(MAIN), template(WEBHOOK)
    # Same expression; only the name of the app-name variable differs.
    main_rule = json.dumps(var(main, "derivedWebhookName")).replace("appName", "APP")
    webhook_rule = json.dumps(var(webhook, "derivedWebhookName")).replace("functionAppName", "APP")
    assert main_rule == webhook_rule
    assert var(main, "effectiveWebhookName") == var(webhook, "effectiveWebhookName")
    assert param(main, "webhookName")["default"] == param(webhook, "webhookName")["default"] == ""
    # ... and the app name main.bicep uses is the one it deploys (webhook.bicep gets it back).
    assert module(main, "functionApp")["params"]["name"] == "appName"


# --- deployments in the registry's resource group ------------------------------------------

# pycep's tree for resourceGroup().id: the deploying (the app's) resource group.
THIS_RESOURCE_GROUP_ID = {
    "function": {
        "type": "resource_group",
        "parameters": {"resource_group_name": None, "subscription_id": None},
        "property_name": "id",
    }
}


def unique_string_inputs(document: Json, variable: str) -> list[Any]:
    """What ``variable``, a ``uniqueString(...)`` (maybe inside ``toLower``), is derived from."""
    value = var(document, variable)
    if value["function"]["type"] == "to_lower":
        value = value["function"]["parameters"]["string_to_change"]
    assert value["function"]["type"] == "unique_string", variable
    return list(value["function"]["parameters"].values())


def test_deployments_into_the_registrys_resource_group_are_named_per_app() -> None:
    """Several apps may connect registries of one resource group: a fixed nested deployment name
    there would replace another app's deployment record, or collide when both run at once."""
    # (template, module) -> (deployment name, its suffix variable, what else makes it per app)
    expected = {
        (MAIN, "registryAccess"): (
            "registry-access-${resourceToken}",
            "resourceToken",
            "environmentName",
        ),
        (WEBHOOK, "acrWebhook"): (
            "acr-webhook-${registryDeploymentSuffix}",
            "registryDeploymentSuffix",
            "functionAppName",
        ),
        (WEBHOOK, "acrEventGrid"): (
            "acr-eventgrid-${registryDeploymentSuffix}",
            "registryDeploymentSuffix",
            "functionAppName",
        ),
    }
    for (path, name), (deployment_name, suffix, per_app) in expected.items():
        document = template(path)
        declared = module(document, name)
        assert declared["scope"]["function"]["type"] == "resource_group", name
        assert declared["name"] == deployment_name, name
        inputs = unique_string_inputs(document, suffix)
        assert THIS_RESOURCE_GROUP_ID in inputs, name
        assert per_app in inputs, name
    # No other module of these templates leaves their resource group.
    for path in (MAIN, WEBHOOK):
        document = template(path)
        elsewhere = {name for name in document["modules"] if "scope" in module(document, name)}
        assert elsewhere == {name for template_path, name in expected if template_path == path}
