"""Structure of infra/webhook.bicep: registry -> app delivery, created after the code deploy."""

from __future__ import annotations

import ast
import json
import re

from tests.infra.bicep import (
    REPO_ROOT,
    Json,
    accessor,
    conditional_branches,
    decorators,
    equals,
    is_secure,
    module,
    module_condition,
    module_path,
    output,
    param,
    resource,
    resources_of_type,
    template,
    var,
)

WEBHOOK = "webhook.bicep"
ACR_WEBHOOK = "modules/acr-webhook.bicep"
ACR_EVENTGRID = "modules/acr-eventgrid.bicep"
FUNCTION_APP = "modules/function-app.bicep"

ENDPOINT = re.compile(r"https://\$\{appHost\}(?P<path>/[^?]*)\?code=\$\{(?P<key>\w+)\}")


def endpoint(url: str) -> tuple[str, str]:
    """(path, key variable) of https://<app host><path>?code=<key variable>."""
    match = ENDPOINT.fullmatch(url)
    assert match, f"not https://<app host><path>?code=<function key>: {url}"
    return match["path"], match["key"]


def function_key_source(key_variable: str) -> str:
    """The function whose own key a variable holds: listKeys(<app>/functions/<name>).default."""
    key = var(template(WEBHOOK), key_variable)["operator"]
    assert key["type"] == "property_accessor"
    assert key["operands"]["operand_2"] == "default"
    list_call = key["operands"]["operand_1"]["function"]
    assert list_call["type"] == "list_func"
    assert list_call["parameters"]["func_name"] == "listKeys"
    # listKeys needs an API version the Microsoft.Web provider knows: the one the app uses.
    assert list_call["parameters"]["api_version"] == "webApiVersion"
    resource_id = list_call["parameters"]["resource_identifier"]
    match = re.fullmatch(r"\$\{functionApp\.id\}/functions/(?P<name>\w+)", resource_id)
    assert match, f"{key_variable} is not a function's own key: {resource_id}"
    return match["name"]


def http_functions() -> dict[str, str]:
    """route -> Python function name, as function_app.py declares them (the function names
    the Functions host gives keys to)."""
    tree = ast.parse((REPO_ROOT / "function_app.py").read_text())
    routes: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", "") == "route":
                route = next(k.value for k in decorator.keywords if k.arg == "route")
                assert isinstance(route, ast.Constant) and isinstance(route.value, str)
                routes[f"/api/{route.value}"] = node.name
    return routes


def mode_condition(*modes: str) -> Json:
    """pycep's tree for (deliveryMode == 'a') || (deliveryMode == 'b')."""
    first, second = (equals("deliveryMode", mode) for mode in modes)
    return {"operator": {"type": "or", "operands": {"operand_1": first, "operand_2": second}}}


def test_targets_the_existing_function_app() -> None:
    document = template(WEBHOOK)
    assert document["globals"]["scope"]["value"] == "resourceGroup"
    app = document["resources"]["functionApp"]
    assert app["type"] == "Microsoft.Web/sites"
    assert app["existing"] is True
    assert resource(document, "functionApp")["name"] == "functionAppName"
    assert var(document, "appHost") == accessor("functionApp", "properties", "defaultHostName")


def test_each_endpoint_carries_its_own_function_key_never_the_host_key() -> None:
    document = template(WEBHOOK)
    webhook_path, webhook_key = endpoint(module(document, "acrWebhook")["params"]["serviceUri"])
    event_grid_path, event_grid_key = endpoint(
        module(document, "acrEventGrid")["params"]["endpointUrl"]
    )
    routes = http_functions()
    assert function_key_source(webhook_key) == routes[webhook_path] == "acr_webhook"
    assert function_key_source(event_grid_key) == routes[event_grid_path] == "acr_eventgrid"
    assert "/host/" not in json.dumps(document), "the host key opens every function"

    app_api_versions = {
        entry["api_version"]
        for entry in resources_of_type(template(FUNCTION_APP), "Microsoft.Web/sites").values()
    }
    assert app_api_versions == {var(document, "webApiVersion")}
    assert document["resources"]["functionApp"]["api_version"] == var(document, "webApiVersion")


def test_the_read_endpoint_is_a_function_of_its_own() -> None:
    """GET /api/acr/events has its own key, which no registry connection carries."""
    assert http_functions()["/api/acr/events"] == "acr_events"
    assert "acr_events" not in json.dumps(template(WEBHOOK))


def test_delivery_mode_parameter() -> None:
    delivery_mode = param(template(WEBHOOK), "deliveryMode")
    assert decorators(delivery_mode)["allowed"] == ["webhook", "eventgrid", "both"]
    assert delivery_mode["default"] == "webhook"


def test_native_webhook_posts_to_the_webhook_route_with_the_key() -> None:
    document = template(WEBHOOK)
    assert module_path(document, "acrWebhook") == ACR_WEBHOOK
    assert module_condition(document, "acrWebhook") == mode_condition("webhook", "both")
    webhook = module(document, "acrWebhook")
    assert webhook["scope"] == {
        "function": {
            "type": "resource_group",
            "parameters": {"resource_group_name": "registryResourceGroup", "subscription_id": None},
        }
    }
    params = webhook["params"]
    assert endpoint(params["serviceUri"])[0] == "/api/acr/webhook"
    assert params["registryName"] == "registryName"
    assert params["actions"] == "webhookActions"
    assert params["scope"] == "webhookScope"
    assert params["customHeaders"] == "customHeaders"
    assert param(document, "webhookActions")["default"] == [
        "push",
        "delete",
        "chart_push",
        "chart_delete",
        "quarantine",
    ]
    assert param(document, "webhookScope")["default"] == ""


def test_native_webhook_resource() -> None:
    document = template(ACR_WEBHOOK)
    registry = document["resources"]["registry"]
    assert registry["type"] == "Microsoft.ContainerRegistry/registries"
    assert registry["existing"] is True
    (name, entry), *others = resources_of_type(
        document, "Microsoft.ContainerRegistry/registries/webhooks"
    ).items()
    assert not others
    assert not entry["existing"]
    webhook = resource(document, name)
    assert webhook["parent"] == "registry"
    assert webhook["name"] == "webhookName"
    assert webhook["location"] == accessor("registry", "location")
    assert webhook["properties"]["serviceUri"] == "serviceUri"
    assert webhook["properties"]["customHeaders"] == "customHeaders"
    assert webhook["properties"]["actions"] == "actions"
    assert webhook["properties"]["scope"] == "scope"
    # serviceUri carries the function key and customHeaders the shared secret.
    assert is_secure(param(document, "serviceUri"))
    assert is_secure(param(document, "customHeaders"))
    name_rules = decorators(param(document, "webhookName"))
    assert (name_rules["min_length"], name_rules["max_length"]) == (5, 50)


def test_default_webhook_name_is_alphanumeric() -> None:
    document = template(WEBHOOK)
    assert module(document, "acrWebhook")["params"]["webhookName"] == "effectiveWebhookName"
    assert output(document, "ACR_WEBHOOK_NAME")["operator"]["operands"]["false_value"] == (
        "effectiveWebhookName"
    )
    webhook_name = conditional_branches(var(document, "effectiveWebhookName"))
    assert webhook_name is not None
    _, given, derived = webhook_name
    assert (given, derived) == ("webhookName", "derivedWebhookName")
    take = var(document, "derivedWebhookName")["function"]
    assert take["type"] == "take"
    assert take["parameters"]["number_to_take"] == 50
    # App names are letters, digits and hyphens; the hyphens are removed.
    assert take["parameters"]["original_value"] == "acr${replace(functionAppName, '-', '')}"


def test_shared_secret_becomes_a_bearer_header() -> None:
    document = template(WEBHOOK)
    assert "${functionApp.id}/config/appsettings" in str(var(document, "appSettings"))
    secret = var(document, "webhookSecret")
    assert "appSettings" in str(secret)
    assert "WEBHOOK_SECRET" in str(secret)
    headers = conditional_branches(var(document, "customHeaders"))
    assert headers is not None
    condition, when_empty, when_given = headers
    assert condition == {
        "function": {"type": "empty", "parameters": {"item_to_test": "webhookSecret"}}
    }
    assert when_empty == {}
    assert when_given == {"Authorization": "Bearer ${webhookSecret}"}


def test_event_grid_subscription_posts_to_the_eventgrid_route() -> None:
    document = template(WEBHOOK)
    assert module_path(document, "acrEventGrid") == ACR_EVENTGRID
    assert module_condition(document, "acrEventGrid") == mode_condition("eventgrid", "both")
    event_grid = module(document, "acrEventGrid")
    assert (
        event_grid["scope"]["function"]["parameters"]["resource_group_name"]
        == "registryResourceGroup"
    )
    assert endpoint(event_grid["params"]["endpointUrl"])[0] == "/api/acr/eventgrid"
    assert event_grid["params"]["webhookSecret"] == "webhookSecret"


def event_subscription() -> Json:
    """The one event subscription of the Event Grid module."""
    (name, _), *others = resources_of_type(
        template(ACR_EVENTGRID), "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    ).items()
    assert not others
    return resource(template(ACR_EVENTGRID), name)


def test_event_grid_resources() -> None:
    document = template(ACR_EVENTGRID)
    (topic_name, _), *others = resources_of_type(
        document, "Microsoft.EventGrid/systemTopics"
    ).items()
    assert not others
    topic = resource(document, topic_name)
    assert topic["location"] == accessor("registry", "location")
    assert topic["properties"] == {
        "source": accessor("registry", "id"),
        "topicType": "Microsoft.ContainerRegistry.Registries",
    }
    subscription = event_subscription()
    assert subscription["parent"] == topic_name
    properties = subscription["properties"]
    assert properties["destination"]["endpointType"] == "WebHook"
    assert properties["destination"]["properties"]["endpointUrl"] == "endpointUrl"
    assert is_secure(param(document, "endpointUrl"))
    assert properties["eventDeliverySchema"] == "EventGridSchema"
    assert set(properties["filter"]["includedEventTypes"]) == {
        "Microsoft.ContainerRegistry.ImagePushed",
        "Microsoft.ContainerRegistry.ImageDeleted",
        "Microsoft.ContainerRegistry.ChartPushed",
        "Microsoft.ContainerRegistry.ChartDeleted",
    }


def test_event_grid_sends_one_event_per_delivery_and_retries_30_times_over_24_hours() -> None:
    """docs/delivery.md: one event per delivery; Event Grid's maximum retry policy."""
    properties = event_subscription()["properties"]
    assert properties["destination"]["properties"]["maxEventsPerBatch"] == 1
    assert properties["retryPolicy"] == {
        "maxDeliveryAttempts": 30,
        "eventTimeToLiveInMinutes": 24 * 60,
    }


def test_outputs_do_not_leak_the_key() -> None:
    document = template(WEBHOOK)
    assert output(document, "ACR_WEBHOOK_URL") == "https://${appHost}/api/acr/webhook"
    assert output(document, "ACR_EVENTGRID_URL") == "https://${appHost}/api/acr/eventgrid"
    assert "FunctionKey" not in str(document["outputs"])
    assert "webhookSecret" not in str(document["outputs"])


EVENTGRID_DEADLETTER = "modules/eventgrid-deadletter.bicep"
# Built-in role the docs name for a managed identity writing to a blob dead-letter destination
# (learn.microsoft.com/azure/event-grid/add-identity-roles): Storage Blob Data Contributor.
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"


def test_event_grid_dead_letters_with_the_topics_own_identity() -> None:
    """docs/delivery.md: what Event Grid cannot deliver (a 400, or 24 hours of failures) is
    kept, not dropped. The app's storage account takes no shared keys, so the topic writes with
    its system-assigned identity (deadLetterWithResourceIdentity, not deadLetterDestination)."""
    document = template(ACR_EVENTGRID)
    (topic_name, _), *_ = resources_of_type(document, "Microsoft.EventGrid/systemTopics").items()
    assert resource(document, topic_name)["identity"] == {"type": "SystemAssigned"}
    properties = event_subscription()["properties"]
    assert "deadLetterDestination" not in properties
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    destination = dead_letter["deadLetterDestination"]
    assert destination["endpointType"] == "StorageBlob"
    # Named through the module's outputs: the subscription waits for the container and the role.
    assert destination["properties"] == {
        "resourceId": accessor("deadLetter", "outputs", "storageAccountId"),
        "blobContainerName": accessor("deadLetter", "outputs", "containerName"),
    }


def test_the_topic_may_write_only_to_the_dead_letter_container() -> None:
    document = template(ACR_EVENTGRID)
    assert module_path(document, "deadLetter") == "eventgrid-deadletter.bicep"
    dead_letter = module(document, "deadLetter")
    assert (
        dead_letter["scope"]["function"]["parameters"]["resource_group_name"] == "appResourceGroup"
    )
    assert dead_letter["params"] == {
        "storageAccountName": "deadLetterStorageAccountName",
        "containerName": "deadLetterContainerName",
        "systemTopicId": accessor("systemTopic", "id"),
        "systemTopicPrincipalId": accessor("systemTopic", "identity", "principalId"),
    }
    access = template(EVENTGRID_DEADLETTER)
    (container_name, _), *others = resources_of_type(
        access, "Microsoft.Storage/storageAccounts/blobServices/containers"
    ).items()
    assert not others
    assert resource(access, container_name)["properties"] == {"publicAccess": "None"}
    (role_name, _), *others = resources_of_type(
        access, "Microsoft.Authorization/roleAssignments"
    ).items()
    assert not others
    role = resource(access, role_name)
    assert role["scope"] == container_name
    assert role["properties"]["principalId"] == "systemTopicPrincipalId"
    assert role["properties"]["principalType"] == "ServicePrincipal"
    assert var(access, "storageBlobDataContributor") == STORAGE_BLOB_DATA_CONTRIBUTOR
    assert "storageBlobDataContributor" in str(role["properties"]["roleDefinitionId"])


def test_dead_letters_go_to_the_apps_own_storage_account() -> None:
    """webhook.bicep finds the account from the setting main.bicep gives the app (its blob
    endpoint, https://<account>.blob.<suffix>/: test_main_template pins it to the account's
    primaryEndpoints), in the app's own resource group."""
    document = template(WEBHOOK)
    params = module(document, "acrEventGrid")["params"]
    assert params["deadLetterStorageAccountName"] == "deadLetterStorageAccountName"
    assert params["deadLetterContainerName"] == "deadLetterContainerName"
    assert params["appResourceGroup"] == {
        "function": {
            "type": "resource_group",
            "parameters": {"resource_group_name": None, "subscription_id": None},
            "property_name": "name",
        }
    }
    endpoint_setting = str(var(document, "hostBlobEndpoint"))
    assert "appSettings" in endpoint_setting
    assert "AzureWebJobsStorage__blobServiceUri" in endpoint_setting
    assert "hostBlobEndpoint" in str(var(document, "deadLetterStorageAccountName"))
    assert var(document, "deadLetterContainerName") == "eventgrid-deadletter"
    assert "AzureWebJobsStorage__blobServiceUri" in str(template(FUNCTION_APP)["variables"])
    where = conditional_branches(output(document, "EVENTGRID_DEADLETTER"))
    assert where is not None
    _, when_webhook_only, otherwise = where
    assert (when_webhook_only, otherwise) == (
        "",
        "${deadLetterStorageAccountName}/${deadLetterContainerName}",
    )


def test_the_app_and_subscription_names_declare_azures_limits() -> None:
    """An app's name is 2-60 characters (Microsoft.Web/sites), an Event Grid subscription's 3-64:
    the module-call check bounds '<app>-eventgrid' by these declarations. Kills: either
    @maxLength dropped or raised, either @minLength dropped."""
    app = decorators(param(template(WEBHOOK), "functionAppName"))
    assert (app["min_length"], app["max_length"]) == (2, 60)
    subscription = decorators(param(template(ACR_EVENTGRID), "subscriptionName"))
    assert (subscription["min_length"], subscription["max_length"]) == (3, 64)
