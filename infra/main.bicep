// acr-webhook: everything except the ACR webhook / Event Grid subscription.
// Those need their functions' own keys, which exist only after the code is deployed, so they
// live in webhook.bicep and are deployed afterwards (azd: the postdeploy hook).
//
// Scope: an existing resource group.
//   az deployment group create -g <rg> -f infra/main.bicep -p environmentName=<name> ...
targetScope = 'resourceGroup'

@description('Short environment name (azd: AZURE_ENV_NAME); part of the generated resource names.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Location of all resources. Defaults to the resource group location. Only regions that offer Flex Consumption (the list of the official template, Azure-Samples/functions-quickstart-python-http-azd).')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'eastus2euap'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string = resourceGroup().location

@description('Object id of a user (or CI principal) that gets Cosmos DB Data Contributor (Data Explorer with Entra ID), Storage Queue Data Contributor (fallback queue) and Storage Blob Data Reader (Event Grid dead letters). Empty = skip.')
param principalId string = ''

@description('Function App name. Empty = generated (func-<token>).')
@maxLength(60)
param functionAppName string = ''

@description('Cosmos DB account name; empty = cosmos-<token>. After a point-in-time restore into a new account, its name: the app then uses it and its identity gets its data role there.')
param cosmosAccountName string = ''

@description('Cosmos DB capacity: serverless (default), provisioned (fixed RU/s) or autoscale.')
@allowed([
  'serverless'
  'provisioned'
  'autoscale'
])
param cosmosCapacityMode string = 'serverless'

@description('Container RU/s when cosmosCapacityMode is provisioned.')
@minValue(400)
param cosmosThroughput int = 400

@description('Container maximum RU/s when cosmosCapacityMode is autoscale.')
@minValue(1000)
param cosmosAutoscaleMaxThroughput int = 1000

@description('Cosmos DB database name (app setting COSMOS_DATABASE).')
param cosmosDatabaseName string = 'acr'

@description('Cosmos DB container name (app setting COSMOS_CONTAINER).')
param cosmosContainerName string = 'events'

@description('Days an event document is kept after its last write (Cosmos DB default time-to-live, app setting RETENTION_DAYS). 0 = forever (default).')
@minValue(0)
@maxValue(24855)
param retentionDays int = 0

@description('Cosmos DB continuous backup tier: point-in-time restore over the last 7 days (free) or 30 days.')
@allowed([
  'Continuous7Days'
  'Continuous30Days'
])
param cosmosBackupTier string = 'Continuous7Days'

@description('Optional shared secret. When set it becomes app setting WEBHOOK_SECRET and webhook.bicep makes ACR send "Authorization: Bearer <secret>".')
@secure()
param webhookSecret string = ''

@description('Existing container registry the app reconciles from (its webhook history; app settings ACR_REGISTRY_ID and ACR_WEBHOOK_NAMES, and a custom role on it). Empty = no reconcile. Same value as registryName of webhook.bicep.')
param registryName string = ''

@description('Resource group of that registry. Empty = this resource group.')
param registryResourceGroup string = ''

@description('How webhook.bicep connects the registry (its deliveryMode). Only a native webhook keeps a history to reconcile from, so eventgrid alone turns reconcile off.')
@allowed([
  'webhook'
  'eventgrid'
  'both'
])
param deliveryMode string = 'webhook'

@description('Name of the native webhook webhook.bicep creates (its webhookName). Empty = derived from the app name, by the same rule as webhook.bicep.')
param webhookName string = ''

@description('When the reconcile timer runs (NCRONTAB with seconds; app setting RECONCILE_SCHEDULE).')
param reconcileSchedule string = '0 */5 * * * *'

@description('Upper bound of Flex Consumption instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready (pre-warmed) instances for the HTTP functions. 0 = scale to zero; 1 avoids cold starts longer than the 5 s ACR waits, at a constant cost.')
@minValue(0)
@maxValue(10)
param alwaysReadyInstances int = 0

@description('Zone-redundant Flex Consumption plan (only where the region supports it).')
param zoneRedundant bool = false

@description('Replication of the storage account (host storage, deployment package, fallback queue).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Deploy the Azure Monitor workbook "acr-webhook: decisions and pushes" on Application Insights (decisions, rejected and queued events, store latency, Cosmos DB and Storage calls, pushes; the queries of docs/operations.md). false = none.')
param deployWorkbook bool = true

@description('Deploy the log alert rules docs/operations.md recommends (poison queue, refused replay, events queued 30 minutes, 5xx answers, unavailable decisions, reconcile refused), evaluated every 5 minutes. false = none.')
param deployAlerts bool = true

@description('E-mail address that gets every alert (an action group). Empty = alerts show in the portal only.')
param alertEmail string = ''

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var appName = (!empty(functionAppName)) ? functionAppName : 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var fallbackQueueName = 'acr-events-fallback'
// The native webhook's name: the same rule and expression as webhook.bicep (a test compares them).
var derivedWebhookName = take('acr${replace(appName, '-', '')}', 50)
var effectiveWebhookName = (!empty(webhookName)) ? webhookName : derivedWebhookName
var effectiveRegistryResourceGroup = (!empty(registryResourceGroup)) ? registryResourceGroup : resourceGroup().name
var reconcileEnabled = (!empty(registryName)) && (deliveryMode != 'eventgrid')
var registryId = reconcileEnabled ? resourceId(effectiveRegistryResourceGroup, 'Microsoft.ContainerRegistry/registries', registryName) : ''

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-func-${resourceToken}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
  }
}

module workbook 'modules/workbook.bicep' = if (deployWorkbook) {
  name: 'workbook'
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

module alerts 'modules/alerts.bicep' = if (deployAlerts) {
  name: 'alerts'
  params: {
    location: location
    tags: tags
    namePrefix: appName
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    name: 'st${resourceToken}'
    deploymentContainerName: deploymentContainerName
    fallbackQueueName: fallbackQueueName
    skuName: storageSkuName
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  params: {
    location: location
    tags: tags
    accountName: !empty(cosmosAccountName) ? cosmosAccountName : 'cosmos-${resourceToken}'
    databaseName: cosmosDatabaseName
    containerName: cosmosContainerName
    capacityMode: cosmosCapacityMode
    throughput: cosmosThroughput
    autoscaleMaxThroughput: cosmosAutoscaleMaxThroughput
    retentionDays: retentionDays
    backupTier: cosmosBackupTier
    appPrincipalId: appIdentity.properties.principalId
    userPrincipalId: principalId
  }
}

module roleAssignments 'modules/role-assignments.bicep' = {
  name: 'role-assignments'
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: appIdentity.properties.principalId
    userPrincipalId: principalId
  }
}

module registryAccess 'modules/registry-access.bicep' = if (reconcileEnabled) {
  // Named per app: it is deployed into the registry's resource group, which other apps may share.
  name: 'registry-access-${resourceToken}'
  scope: resourceGroup(effectiveRegistryResourceGroup)
  params: {
    registryName: registryName
    appPrincipalId: appIdentity.properties.principalId
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    location: location
    tags: tags
    name: appName
    planName: 'plan-${resourceToken}'
    serviceName: 'api'
    identityId: appIdentity.id
    identityClientId: appIdentity.properties.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabaseName: cosmosDatabaseName
    cosmosContainerName: cosmosContainerName
    webhookSecret: webhookSecret
    retentionDays: retentionDays
    registryId: registryId
    webhookNames: reconcileEnabled ? effectiveWebhookName : ''
    reconcileSchedule: reconcileSchedule
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyInstances: alwaysReadyInstances
    zoneRedundant: zoneRedundant
  }
  // The host must be able to reach its storage as soon as it starts.
  dependsOn: [
    roleAssignments
  ]
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_HOST string = functionApp.outputs.defaultHostName
output AZURE_FUNCTION_APP_IDENTITY_CLIENT_ID string = appIdentity.properties.clientId
output ACR_WEBHOOK_URL string = 'https://${functionApp.outputs.defaultHostName}/api/acr/webhook'
output ACR_EVENTGRID_URL string = 'https://${functionApp.outputs.defaultHostName}/api/acr/eventgrid'
output COSMOS_ACCOUNT_NAME string = cosmos.outputs.accountName
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output COSMOS_DATABASE string = cosmos.outputs.databaseName
output COSMOS_CONTAINER string = cosmos.outputs.containerName
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output FALLBACK_QUEUE_NAME string = fallbackQueueName
// Empty when the app reconciles from no registry.
output ACR_REGISTRY_ID string = registryId
output ACR_WEBHOOK_NAMES string = reconcileEnabled ? effectiveWebhookName : ''
