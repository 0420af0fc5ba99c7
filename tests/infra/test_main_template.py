"""Structure of infra/main.bicep and its modules: the security and wiring the app relies on."""

from __future__ import annotations

import json
import re
from typing import Any

from acr_webhook.config import (
    BATCH_WRITE_THREADS,
    COSMOS_POOL_SIZE,
    DEFAULT_CONTAINER,
    DEFAULT_DATABASE,
    FALLBACK_QUEUE_NAME,
    HTTP_CONCURRENCY,
    load_settings,
    queue_settings,
)
from acr_webhook.models import EventQuery, Position
from acr_webhook.repository import events_sql
from tests.infra.bicep import (
    INFRA,
    REPO_ROOT,
    Json,
    accessor,
    conditional_branches,
    decorators,
    equals,
    is_secure,
    module,
    module_path,
    not_empty,
    output,
    param,
    resource,
    resource_condition,
    resources_of_type,
    template,
    var,
)
from tests.unit.test_config import SOVEREIGN_QUEUE_ENDPOINT

MAIN = "main.bicep"
FUNCTION_APP = "modules/function-app.bicep"
STORAGE = "modules/storage.bicep"
COSMOS = "modules/cosmos.bicep"
ROLES = "modules/role-assignments.bicep"
MONITORING = "modules/monitoring.bicep"

COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"

# Settings the Python code and the Functions host read (exact names).
REQUIRED_APP_SETTINGS = {
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "AZURE_CLIENT_ID",
    "COSMOS_ENDPOINT",
    "COSMOS_DATABASE",
    "COSMOS_CONTAINER",
    "WEBHOOK_SECRET_HEADER",
    "WEBHOOK_SECRET",
    "PYTHON_THREADPOOL_THREAD_COUNT",
    "RETENTION_DAYS",
}


def single(resources: dict[str, Json]) -> tuple[str, Json]:
    assert len(resources) == 1, f"expected exactly one, got {sorted(resources)}"
    return next(iter(resources.items()))


def function_app() -> Json:
    name, _ = single(resources_of_type(template(FUNCTION_APP), "Microsoft.Web/sites"))
    return resource(template(FUNCTION_APP), name)


def _setting_objects(document: Json, value: Any) -> list[Json]:
    """Every object a settings expression can evaluate to (vars, union(), ternaries)."""
    if isinstance(value, str) and value in document.get("variables", {}):
        return _setting_objects(document, var(document, value))
    branches = conditional_branches(value)
    if branches is not None:
        return _setting_objects(document, branches[1]) + _setting_objects(document, branches[2])
    if isinstance(value, dict) and value.get("function", {}).get("type") == "union":
        objects: list[Json] = []
        for argument in value["function"]["parameters"].values():
            objects += _setting_objects(document, argument)
        return objects
    assert isinstance(value, dict) and "function" not in value and "operator" not in value, value
    return [value]


def app_settings() -> dict[str, Any]:
    """All app settings the site can get: name -> value expression (as pycep gives it)."""
    document = template(FUNCTION_APP)
    loop = function_app()["properties"]["siteConfig"]["appSettings"]
    assert loop["loop_type"]["type"] == "object", "appSettings must be built from an object"
    assert loop["config"] == {
        "name": accessor("setting", "key"),
        "value": accessor("setting", "value"),
    }
    settings: dict[str, Any] = {}
    for settings_object in _setting_objects(document, loop["loop_type"]["detail"]["object_name"]):
        # A name that is not an identifier is quoted in Bicep: 'AzureWebJobs.<fn>.Disabled'.
        settings.update({name.strip("'"): value for name, value in settings_object.items()})
    return settings


# --- Function App ----------------------------------------------------------------------------


def test_function_app_is_python_311_on_flex_consumption() -> None:
    document = template(FUNCTION_APP)
    plan_name, _ = single(resources_of_type(document, "Microsoft.Web/serverfarms"))
    plan = resource(document, plan_name)
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True  # Linux

    app = function_app()
    assert app["kind"] == "functionapp,linux"
    assert app["properties"]["serverFarmId"] == accessor(plan_name, "id")
    config = app["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}


def test_deployment_package_container_uses_the_identity() -> None:
    config_storage = function_app()["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert config_storage["type"] == "blobContainer"
    assert config_storage["value"] == "${storageBlobEndpoint}${deploymentContainerName}"
    assert config_storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    # ... and that container is the one the storage module creates.
    main = template(MAIN)
    assert module(main, "storage")["params"]["deploymentContainerName"] == "deploymentContainerName"
    assert (
        module(main, "functionApp")["params"]["deploymentContainerName"]
        == "deploymentContainerName"
    )
    container_name, _ = single(
        resources_of_type(
            template(STORAGE), "Microsoft.Storage/storageAccounts/blobServices/containers"
        )
    )
    assert resource(template(STORAGE), container_name)["name"] == "deploymentContainerName"


def test_function_app_is_https_only_tls12_without_ftp() -> None:
    properties = function_app()["properties"]
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    # FTP is off through the publishing policy, not siteConfig.ftpsState (Flex rejects that).

    document = template(FUNCTION_APP)
    policies = resources_of_type(document, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    allowed = {
        resource(document, n)["name"]: resource(document, n)["properties"]["allow"]
        for n in policies
    }
    assert allowed == {"ftp": False, "scm": False}


def test_function_app_runs_as_the_user_assigned_identity() -> None:
    identity = function_app()["identity"]
    assert identity["type"] == "UserAssigned"
    assert list(identity["userAssignedIdentities"]) == ["'${identityId}'"]

    main = template(MAIN)
    identity_name, _ = single(
        resources_of_type(main, "Microsoft.ManagedIdentity/userAssignedIdentities")
    )
    params = module(main, "functionApp")["params"]
    assert params["identityId"] == accessor(identity_name, "id")
    assert params["identityClientId"] == accessor(identity_name, "properties", "clientId")

    settings = app_settings()
    # DefaultAzureCredential picks the user-assigned identity by AZURE_CLIENT_ID.
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"


def test_host_storage_is_identity_based() -> None:
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "AzureWebJobsStorage" not in settings  # a connection string would carry a key


STORAGE_SERVICES = {"blob": "Blob", "queue": "Queue", "table": "Table"}


def test_host_storage_uses_the_storage_accounts_own_endpoints() -> None:
    """Each service URI is the account's primaryEndpoints value (the right DNS suffix in every
    cloud), passed through a storage output and a function-app parameter, never built here."""
    settings = app_settings()
    main_params = module(template(MAIN), "functionApp")["params"]
    storage = template(STORAGE)
    account_name, _ = single(resources_of_type(storage, "Microsoft.Storage/storageAccounts"))
    for service, capitalized in STORAGE_SERVICES.items():
        param_name = f"storage{capitalized}Endpoint"
        assert settings[f"AzureWebJobsStorage__{service}ServiceUri"] == param_name
        assert param_name in template(FUNCTION_APP)["parameters"]
        assert main_params[param_name] == accessor("storage", "outputs", f"{service}Endpoint")
        assert output(storage, f"{service}Endpoint") == accessor(
            account_name, "properties", "primaryEndpoints", service
        )


def test_account_name_is_set_only_where_the_host_infers_the_same_endpoints() -> None:
    """The host builds https://<name>.<service>.<public suffix> from __accountName: right only in
    the public cloud for an account with default endpoints, so the setting is conditional."""
    document = template(FUNCTION_APP)
    storage_settings = var(document, "hostStorageAppSettings")
    assert storage_settings["function"]["type"] == "union"
    always, optional = storage_settings["function"]["parameters"].values()
    assert "AzureWebJobsStorage__accountName" not in always
    branches = conditional_branches(optional)
    assert branches is not None
    condition, when_true, when_false = branches
    assert when_true == {"AzureWebJobsStorage__accountName": "storageAccountName"}
    assert when_false == {}
    assert condition == "hostCanInferStorageEndpoints"

    public_cloud, default_endpoint = _and_operands(var(document, condition))
    assert public_cloud == equals(
        {"function": {"type": "environment", "property_name": "name"}}, "AzureCloud"
    )
    assert default_endpoint == equals(
        "storageBlobEndpoint",
        "https://${storageAccountName}.blob.${environment().suffixes.storage}/",
    )


def _and_operands(value: Any) -> tuple[Any, Any]:
    assert value["operator"]["type"] == "and", value
    operands = value["operator"]["operands"]
    return operands["operand_1"], operands["operand_2"]


def test_no_template_hard_codes_the_public_storage_suffix() -> None:
    """Sovereign clouds have other suffixes; endpoints come from the account or environment()."""
    offenders = [
        path.relative_to(INFRA).as_posix()
        for path in sorted(INFRA.rglob("*"))
        if path.is_file() and "core.windows.net" in path.read_text(errors="replace").lower()
    ]
    assert offenders == []


def test_the_app_finds_the_fallback_queue_from_the_template_settings_in_any_cloud() -> None:
    """What config.py reads is what the template sets: a sovereign account's queue endpoint
    (trailing slash as primaryEndpoints gives it, no __accountName) is the fallback queue's."""
    names = set(app_settings())
    values = {name: "" for name in names}
    values.pop("AzureWebJobsStorage__accountName")
    values["AzureWebJobsStorage__queueServiceUri"] = SOVEREIGN_QUEUE_ENDPOINT
    queue = queue_settings(values)
    assert queue is not None
    assert queue.queue_service_uri == SOVEREIGN_QUEUE_ENDPOINT
    assert queue.connection_string is None
    assert queue.queue_name == FALLBACK_QUEUE_NAME


def test_app_settings_are_complete() -> None:
    assert set(app_settings()) >= REQUIRED_APP_SETTINGS


def test_cosmos_names_default_to_the_code_defaults() -> None:
    settings = app_settings()
    assert settings["COSMOS_DATABASE"] == "cosmosDatabaseName"
    assert settings["COSMOS_CONTAINER"] == "cosmosContainerName"
    function_app_params = template(FUNCTION_APP)["parameters"]
    assert "cosmosDatabaseName" in function_app_params
    assert "cosmosContainerName" in function_app_params

    main = template(MAIN)
    # The same main parameters name the app setting and the database/container created.
    assert module(main, "functionApp")["params"]["cosmosDatabaseName"] == "cosmosDatabaseName"
    assert module(main, "functionApp")["params"]["cosmosContainerName"] == "cosmosContainerName"
    assert module(main, "cosmos")["params"]["databaseName"] == "cosmosDatabaseName"
    assert module(main, "cosmos")["params"]["containerName"] == "cosmosContainerName"
    assert param(main, "cosmosDatabaseName")["default"] == DEFAULT_DATABASE
    assert param(main, "cosmosContainerName")["default"] == DEFAULT_CONTAINER


def test_cosmos_endpoint_setting_is_the_document_endpoint() -> None:
    assert app_settings()["COSMOS_ENDPOINT"] == "cosmosEndpoint"
    main = template(MAIN)
    assert module(main, "functionApp")["params"]["cosmosEndpoint"] == accessor(
        "cosmos", "outputs", "endpoint"
    )
    account_name, _ = single(
        resources_of_type(template(COSMOS), "Microsoft.DocumentDB/databaseAccounts")
    )
    assert output(template(COSMOS), "endpoint") == accessor(
        account_name, "properties", "documentEndpoint"
    )


def test_fallback_queue_is_the_one_the_code_names() -> None:
    # A fixed name, not an app setting: the queue trigger and the writer share the constant.
    assert "FALLBACK_QUEUE_NAME" not in app_settings()
    main = template(MAIN)
    assert var(main, "fallbackQueueName") == FALLBACK_QUEUE_NAME == "acr-events-fallback"
    assert module(main, "storage")["params"]["fallbackQueueName"] == "fallbackQueueName"
    storage = template(STORAGE)
    queue_name, _ = single(
        resources_of_type(storage, "Microsoft.Storage/storageAccounts/queueServices/queues")
    )
    assert resource(storage, queue_name)["name"] == "fallbackQueueName"
    assert output(storage, "fallbackQueueName") == accessor(queue_name, "name")


def test_no_cosmos_key_or_connection_string_anywhere() -> None:
    for name, value in app_settings().items():
        text = f"{name}={json.dumps(value)}".lower()
        if "cosmos" in text:
            assert "key" not in text and "connection" not in text, text
        assert "accountkey=" not in text, text
    for path in (MAIN, FUNCTION_APP, COSMOS):
        text = json.dumps(template(path))
        for secret_source in (
            "listKeys",
            "listConnectionStrings",
            "primaryMasterKey",
            "AccountKey=",
        ):
            assert secret_source not in text, f"{path} uses {secret_source}"


def test_webhook_secret_is_optional_and_secure() -> None:
    settings = app_settings()
    assert settings["WEBHOOK_SECRET_HEADER"] == "Authorization"
    assert settings["WEBHOOK_SECRET"] == "webhookSecret"
    document = template(FUNCTION_APP)
    branches = conditional_branches(var(document, "secretAppSettings"))
    assert branches is not None, "WEBHOOK_SECRET must only be set when a secret is given"
    condition, when_empty, when_given = branches
    assert condition == {
        "function": {"type": "empty", "parameters": {"item_to_test": "webhookSecret"}}
    }
    assert when_empty == {}
    assert when_given == {"WEBHOOK_SECRET": "webhookSecret"}
    assert is_secure(param(document, "webhookSecret"))

    main = template(MAIN)
    assert is_secure(param(main, "webhookSecret"))
    assert param(main, "webhookSecret")["default"] == ""
    assert module(main, "functionApp")["params"]["webhookSecret"] == "webhookSecret"


def test_application_insights_uses_the_identity() -> None:
    settings = app_settings()
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "Authorization=AAD;ClientId=${identityClientId}"
    )
    # The worker's own Azure Monitor setup would export everything a second time, and its
    # trace propagation setting fails every invocation on some worker versions
    # (azure-functions-python-worker#1881): telemetry.py exports the app's telemetry itself.
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in settings
    assert "PYTHON_ENABLE_OPENTELEMETRY" not in settings
    assert (
        settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "applicationInsightsConnectionString"
    )
    monitoring = template(MONITORING)
    workspace_name, _ = single(
        resources_of_type(monitoring, "Microsoft.OperationalInsights/workspaces")
    )
    insights_name, _ = single(resources_of_type(monitoring, "Microsoft.Insights/components"))
    insights = resource(monitoring, insights_name)["properties"]
    assert insights["WorkspaceResourceId"] == accessor(workspace_name, "id")
    assert insights["DisableLocalAuth"] is True


# --- Storage ---------------------------------------------------------------------------------


def test_storage_account_is_locked_down() -> None:
    storage = template(STORAGE)
    account_name, _ = single(resources_of_type(storage, "Microsoft.Storage/storageAccounts"))
    properties = resource(storage, account_name)["properties"]
    assert properties["allowBlobPublicAccess"] is False
    assert properties["allowSharedKeyAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True


def assignments_to(principal: str) -> dict[str, tuple[str, str]]:
    """role-assignments.bicep's assignments to ``principal`` (a parameter's name): symbolic
    name -> (scope, role definition id)."""
    roles = template(ROLES)
    found = {}
    for name in resources_of_type(roles, "Microsoft.Authorization/roleAssignments"):
        body = resource(roles, name)
        if body["properties"]["principalId"] == principal:
            role_reference = body["properties"]["roleDefinitionId"]["function"]["parameters"]
            found[name] = (body["scope"], var(roles, role_reference["resource_name_1"]))
    return found


def test_app_identity_has_storage_and_metrics_roles() -> None:
    roles = template(ROLES)
    granted = assignments_to("appPrincipalId")
    for name in granted:
        assert resource_condition(roles, name) is None, f"{name} must not be conditional"
        assert resource(roles, name)["properties"]["principalType"] == "ServicePrincipal"
    assert set(granted.values()) == {
        ("storage", STORAGE_BLOB_DATA_OWNER),
        ("storage", STORAGE_QUEUE_DATA_CONTRIBUTOR),
        ("storage", STORAGE_TABLE_DATA_CONTRIBUTOR),
        ("applicationInsights", MONITORING_METRICS_PUBLISHER),
    }
    main = template(MAIN)
    identity_name, _ = single(
        resources_of_type(main, "Microsoft.ManagedIdentity/userAssignedIdentities")
    )
    assert module(main, "roleAssignments")["params"]["appPrincipalId"] == accessor(
        identity_name, "properties", "principalId"
    )


def test_deploying_user_may_inspect_the_queues_and_read_dead_letters_only() -> None:
    """docs/operations.md: the user given as principalId peeks at and re-drives the fallback
    queue and downloads what Event Grid dead-lettered; nothing more, and only when given."""
    granted = assignments_to("userPrincipalId")
    for name in granted:
        assert resource_condition(template(ROLES), name) == not_empty("userPrincipalId")
    assert set(granted.values()) == {
        ("storage", STORAGE_QUEUE_DATA_CONTRIBUTOR),
        ("storage", STORAGE_BLOB_DATA_READER),
    }


# --- Cosmos DB -------------------------------------------------------------------------------


def cosmos_account() -> tuple[str, Json]:
    document = template(COSMOS)
    name, _ = single(resources_of_type(document, "Microsoft.DocumentDB/databaseAccounts"))
    return name, resource(document, name)


def test_cosmos_account_allows_entra_id_only() -> None:
    _, account = cosmos_account()
    assert account["kind"] == "GlobalDocumentDB"
    properties = account["properties"]
    assert properties["disableLocalAuth"] is True
    assert properties["disableKeyBasedMetadataWriteAccess"] is True
    assert properties["minimalTlsVersion"] == "Tls12"


def test_cosmos_capacity_mode_is_serverless_by_default() -> None:
    modes = ["serverless", "provisioned", "autoscale"]
    for document, name in (
        (template(MAIN), "cosmosCapacityMode"),
        (template(COSMOS), "capacityMode"),
    ):
        assert decorators(param(document, name))["allowed"] == modes
        assert param(document, name)["default"] == "serverless"
    assert module(template(MAIN), "cosmos")["params"]["capacityMode"] == "cosmosCapacityMode"

    document = template(COSMOS)
    _, account = cosmos_account()
    capabilities = conditional_branches(account["properties"]["capabilities"])
    assert capabilities is not None
    condition, serverless, other = capabilities
    assert condition["operator"]["operands"] == {
        "operand_1": "capacityMode",
        "operand_2": "serverless",
    }
    assert var(document, serverless) == [{"name": "EnableServerless"}]
    assert other == []

    outer = conditional_branches(var(document, "containerOptions"))
    assert outer is not None
    _, provisioned, rest = outer
    inner = conditional_branches(rest)
    assert inner is not None
    _, autoscale, serverless_options = inner
    assert var(document, provisioned) == {"throughput": "throughput"}
    assert var(document, autoscale) == {
        "autoscaleSettings": {"maxThroughput": "autoscaleMaxThroughput"}
    }
    assert serverless_options == {}  # serverless containers must not set throughput


def cosmos_container() -> Json:
    document = template(COSMOS)
    name, _ = single(
        resources_of_type(document, "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")
    )
    body = resource(document, name)
    assert body["properties"]["options"] == "containerOptions"
    container: Json = body["properties"]["resource"]
    return container


def test_cosmos_container_is_partitioned_by_repository() -> None:
    assert cosmos_container()["partitionKey"]["paths"] == ["/repository"]


# The indexed paths (issue 14): what the read endpoint and docs/queries.md filter or sort on.
INDEXED_PATHS = {
    "registry",
    "repository",
    "tag",
    "digest",
    "action",
    "timestamp",
    "source",
    "actor",
}


def test_cosmos_container_indexes_only_queried_paths() -> None:
    policy = cosmos_container()["indexingPolicy"]
    assert policy["excludedPaths"] == [{"path": "/*"}]
    assert [entry["path"] for entry in policy["includedPaths"]] == [
        f"/{name}/?" for name in ("registry", "repository", "tag", "digest", "action", "timestamp")
    ] + ["/source/?", "/actor/?"]
    assert {entry["path"] for entry in policy["includedPaths"]} == {
        f"/{name}/?" for name in INDEXED_PATHS
    }
    # Each composite index costs every write; one-property ORDER BY needs none.
    assert policy["compositeIndexes"] == []


def test_app_identity_has_its_own_cosmos_role_and_the_operator_data_contributor() -> None:
    document = template(COSMOS)
    account_name, _ = cosmos_account()
    assert var(document, "dataContributorRoleId") == COSMOS_DATA_CONTRIBUTOR
    assignments = resources_of_type(
        document, "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"
    )
    by_principal = {
        resource(document, name)["properties"]["principalId"]: name for name in assignments
    }
    assert set(by_principal) == {"appPrincipalId", "userPrincipalId"}

    for principal, name in by_principal.items():
        body = resource(document, name)
        assert body["parent"] == account_name
        assert body["properties"]["scope"] == accessor(account_name, "id"), (
            "scope must be the account"
        )
        condition = resource_condition(document, name)
        if principal == "appPrincipalId":
            # Its own role (test_least_privilege.py holds its data actions to the app's calls).
            assert body["properties"]["roleDefinitionId"] == accessor("appWriter", "id")
            definition = resource(document, "appWriter")
            assert definition["parent"] == account_name
            assert definition["properties"]["assignableScopes"] == [accessor(account_name, "id")]
            assert condition is None, "the app's assignment must always be created"
        else:  # the deploying user's: only when principalId was given
            assert body["properties"]["roleDefinitionId"] == (
                f"${{{account_name}.id}}/sqlRoleDefinitions/${{dataContributorRoleId}}"
            )
            assert condition == not_empty(principal)

    main = template(MAIN)
    identity_name, _ = single(
        resources_of_type(main, "Microsoft.ManagedIdentity/userAssignedIdentities")
    )
    params = module(main, "cosmos")["params"]
    assert params["appPrincipalId"] == accessor(identity_name, "properties", "principalId")
    assert params["userPrincipalId"] == "principalId"
    assert param(main, "principalId")["default"] == ""


# --- main.bicep as a whole -------------------------------------------------------------------


def test_main_is_resource_group_scoped() -> None:
    assert template(MAIN)["globals"]["scope"]["value"] == "resourceGroup"


def test_main_wires_the_local_modules() -> None:
    main = template(MAIN)
    assert {name: module_path(main, name) for name in main["modules"]} == {
        "monitoring": MONITORING,
        "storage": STORAGE,
        "cosmos": COSMOS,
        "roleAssignments": ROLES,
        "functionApp": FUNCTION_APP,
        "registryAccess": "modules/registry-access.bicep",
        "workbook": "modules/workbook.bicep",
        "alerts": "modules/alerts.bicep",
    }


def test_azd_finds_the_app_by_its_service_tag() -> None:
    tags = function_app()["tags"]["function"]
    assert tags["type"] == "union"
    assert tags["parameters"]["arg_2"] == {"'azd-service-name'": "serviceName"}
    assert module(template(MAIN), "functionApp")["params"]["serviceName"] == "api"


def test_outputs_for_azd_and_the_webhook_step() -> None:
    main = template(MAIN)
    outputs = main["outputs"]
    assert set(outputs) >= {
        "AZURE_RESOURCE_GROUP",
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_FUNCTION_APP_HOST",
        "ACR_WEBHOOK_URL",
        "COSMOS_ENDPOINT",
        "COSMOS_DATABASE",
        "COSMOS_CONTAINER",
    }
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in outputs), sorted(outputs)
    assert output(main, "AZURE_FUNCTION_APP_NAME") == accessor("functionApp", "outputs", "name")
    assert (
        output(main, "ACR_WEBHOOK_URL")
        == "https://${functionApp.outputs.defaultHostName}/api/acr/webhook"
    )
    assert "code=" not in json.dumps(outputs), "outputs must not carry the function key"


def _filtered_properties(sql: str) -> set[str]:
    """Document properties a query filters, sorts or groups on (what the index must cover)."""
    clauses = re.split(r"\bWHERE\b|\bORDER BY\b|\bGROUP BY\b", sql, flags=re.IGNORECASE)
    return {name for clause in clauses[1:] for name in re.findall(r"\bc\.(\w+)", clause)}


def _endpoint_sql() -> str:
    every_filter = EventQuery(
        repository="r",
        tag="t",
        digest="d",
        action="push",
        since="a",
        until="b",
        after=Position(timestamp="c"),
    )
    sql, _ = events_sql(every_filter, 10)
    return sql


def _documented_sql() -> list[str]:
    docs = (REPO_ROOT / "docs" / "queries.md").read_text()
    doc_sql = re.findall(r"```sql\n(.*?)```", docs, flags=re.DOTALL)
    assert len(doc_sql) >= 5, "docs/queries.md lost its Data Explorer queries"
    return doc_sql


def _indexed_paths() -> set[str]:
    paths = {entry["path"] for entry in cosmos_container()["indexingPolicy"]["includedPaths"]}
    assert all(path.startswith("/") and path.endswith("/?") for path in paths), paths
    return {path[1:-2] for path in paths}


def test_indexing_covers_what_the_app_and_the_documented_queries_filter_on() -> None:
    used = {"endpoint": _filtered_properties(_endpoint_sql())}
    for number, sql in enumerate(_documented_sql(), start=1):
        used[f"docs/queries.md query {number}"] = _filtered_properties(sql)
    indexed = _indexed_paths()
    # id is always indexed by Cosmos DB.
    missing = {
        where: sorted(names - indexed - {"id"})
        for where, names in used.items()
        if names - indexed - {"id"}
    }
    assert not missing, f"filtered, sorted or grouped on but not indexed: {missing}"


def test_every_indexed_path_is_used_by_the_endpoint_or_a_documented_query() -> None:
    """An index no query uses only adds to the charge of every write."""
    used = _filtered_properties(_endpoint_sql()).union(
        *map(_filtered_properties, _documented_sql())
    )
    unused = _indexed_paths() - used
    assert not unused, f"indexed but no query filters or sorts on it: {sorted(unused)}"


def test_the_endpoint_filters_and_sorts_only_on_indexed_paths() -> None:
    assert _filtered_properties(_endpoint_sql()) <= _indexed_paths() | {"id"}


# --- Location --------------------------------------------------------------------------------

# Regions that offer Flex Consumption: the @allowed list of the official template
# (Azure-Samples/functions-quickstart-python-http-azd, infra/main.bicep, 2025-11-24).
FLEX_CONSUMPTION_REGIONS = [
    "australiaeast",
    "australiasoutheast",
    "brazilsouth",
    "canadacentral",
    "centralindia",
    "centralus",
    "eastasia",
    "eastus",
    "eastus2",
    "eastus2euap",
    "francecentral",
    "germanywestcentral",
    "italynorth",
    "japaneast",
    "koreacentral",
    "northcentralus",
    "northeurope",
    "norwayeast",
    "southafricanorth",
    "southcentralus",
    "southeastasia",
    "southindia",
    "spaincentral",
    "swedencentral",
    "uaenorth",
    "uksouth",
    "ukwest",
    "westcentralus",
    "westeurope",
    "westus",
    "westus2",
    "westus3",
]


def test_location_is_limited_to_flex_consumption_regions() -> None:
    location = param(template(MAIN), "location")
    rules = decorators(location)
    assert rules["allowed"] == FLEX_CONSUMPTION_REGIONS
    assert rules["metadata"] == {"azd": {"type": "location"}}  # azd offers only these
    assert location["default"]["function"]["type"] == "resource_group"
    for name in ("monitoring", "storage", "cosmos", "functionApp"):
        assert module(template(MAIN), name)["params"]["location"] == "location"


# --- Retention and backup --------------------------------------------------------------------

RETENTION_ENABLED = {
    "operator": {
        "type": "greater_than",
        "operands": {"operand_1": "retentionDays", "operand_2": 0},
    }
}


def test_retention_days_sets_the_container_time_to_live_in_seconds() -> None:
    ttl = conditional_branches(cosmos_container()["defaultTtl"])
    assert ttl is not None
    condition, when_set, when_forever = ttl
    assert condition == RETENTION_ENABLED
    assert when_set == {
        "operator": {
            "type": "multiply",
            "operands": {"operand_1": "retentionDays", "operand_2": 24 * 60 * 60},
        }
    }
    assert when_forever is None  # no time-to-live: kept until deleted


def test_retention_days_parameter_reaches_the_container_and_the_app() -> None:
    main = template(MAIN)
    retention = param(main, "retentionDays")
    assert retention["default"] == 0  # keep forever
    # Cosmos DB keeps the TTL in seconds as a 32-bit number: 24855 days is the most it holds.
    assert decorators(retention)["max_value"] == 24855 == (2**31 - 1) // 86400
    for document in (template(COSMOS), template(FUNCTION_APP)):
        rules = decorators(param(document, "retentionDays"))
        assert (rules["min_value"], rules["max_value"]) == (0, 24855)
    assert module(main, "cosmos")["params"]["retentionDays"] == "retentionDays"
    assert module(main, "functionApp")["params"]["retentionDays"] == "retentionDays"


def test_retention_app_setting_only_when_documents_expire() -> None:
    assert app_settings()["RETENTION_DAYS"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "retentionDays"}}
    }
    branches = conditional_branches(var(template(FUNCTION_APP), "retentionAppSettings"))
    assert branches is not None
    condition, _, when_forever = branches
    assert condition == RETENTION_ENABLED
    assert when_forever == {}  # the app reads "no setting" as keep forever


def test_the_app_accepts_every_retention_the_template_allows() -> None:
    retention = decorators(param(template(MAIN), "retentionDays"))
    for days in (1, retention["max_value"]):
        settings = load_settings(
            {"COSMOS_ENDPOINT": "https://example.documents.azure.com", "RETENTION_DAYS": str(days)},
            settings_file=REPO_ROOT / "no-such-file.json",
        )
        assert settings.retention_days == days


def test_continuous_backup_tier_is_a_parameter() -> None:
    _, account = cosmos_account()
    assert account["properties"]["backupPolicy"] == {
        "type": "Continuous",
        "continuousModeProperties": {"tier": "backupTier"},
    }
    tiers = ["Continuous7Days", "Continuous30Days"]
    main = template(MAIN)
    assert decorators(param(main, "cosmosBackupTier"))["allowed"] == tiers
    assert decorators(param(template(COSMOS), "backupTier"))["allowed"] == tiers
    assert param(main, "cosmosBackupTier")["default"] == "Continuous7Days"
    assert module(main, "cosmos")["params"]["backupTier"] == "cosmosBackupTier"


# --- Concurrency -----------------------------------------------------------------------------


def test_http_concurrency_and_thread_pool_match_the_code() -> None:
    """Flex gives an instance perInstanceConcurrency requests at once; each holds one worker
    thread while it waits on Cosmos DB, so the pool and the code's sizing use the same number."""
    document = template(FUNCTION_APP)
    assert var(document, "httpConcurrency") == HTTP_CONCURRENCY == 16
    scale = function_app()["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["triggers"] == {"http": {"perInstanceConcurrency": "httpConcurrency"}}
    assert app_settings()["PYTHON_THREADPOOL_THREAD_COUNT"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "httpConcurrency"}}
    }
    # The Python worker caps its thread pool at 32; the Cosmos pool has a connection for every
    # request thread and every batch-write thread.
    assert HTTP_CONCURRENCY <= 32
    assert COSMOS_POOL_SIZE >= HTTP_CONCURRENCY + BATCH_WRITE_THREADS
