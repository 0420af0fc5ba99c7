// Linux Function App (Python 3.11) on the Flex Consumption plan (FC1), running as a
// user-assigned managed identity. No keys or connection strings: storage, Application
// Insights and Cosmos DB are all reached with that identity.

@description('Location for the plan and the app.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Function App name (globally unique host name).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('azd service name; azd finds the app to deploy to by this tag.')
param serviceName string = 'api'

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

@description('Name of the storage account for AzureWebJobsStorage and the deployment package.')
param storageAccountName string

@description('Blob endpoint of that storage account (its primaryEndpoints.blob, ending in /).')
param storageBlobEndpoint string

@description('Queue endpoint of that storage account (its primaryEndpoints.queue, ending in /).')
param storageQueueEndpoint string

@description('Table endpoint of that storage account (its primaryEndpoints.table, ending in /).')
param storageTableEndpoint string

@description('Blob container that holds the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string (not a secret: local auth is disabled).')
param applicationInsightsConnectionString string

@description('Cosmos DB account document endpoint.')
param cosmosEndpoint string

@description('Cosmos DB database name.')
param cosmosDatabaseName string

@description('Cosmos DB container name.')
param cosmosContainerName string

@description('Optional shared secret ACR sends in the Authorization header. Empty = no WEBHOOK_SECRET setting.')
@secure()
param webhookSecret string = ''

@description('Days a document is kept (app setting RETENTION_DAYS, read by provision). 0 = forever: no setting.')
@minValue(0)
@maxValue(24855)
param retentionDays int = 0

@description('Resource id of the registry the reconcile timer reads (app setting ACR_REGISTRY_ID). Empty = no reconcile.')
param registryId string = ''

@description('Comma-separated names of the registry webhooks to reconcile (app setting ACR_WEBHOOK_NAMES).')
param webhookNames string = ''

@description('NCRONTAB schedule of the reconcile timer (app setting RECONCILE_SCHEDULE; the trigger needs it even when nothing is reconciled).')
param reconcileSchedule string = '0 */5 * * * *'

// 40 is this template's floor (the preview's); the platform now takes 1-1000.
@description('Upper bound of Flex Consumption instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances for the HTTP functions. 0 = scale to zero (cold starts can exceed the 5 s ACR waits).')
@minValue(0)
@maxValue(10)
param alwaysReadyInstances int = 0

@description('Zone-redundant plan; only in regions where Flex Consumption supports availability zones.')
param zoneRedundant bool = false

@description('Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// Concurrency, sized together with acr_webhook/config.py (HTTP_CONCURRENCY; a test keeps the two
// equal), and set explicitly: Flex gives Python apps an HTTP concurrency of 1 by default. Each request holds a worker thread while it waits on Cosmos DB, so the Python worker's
// thread pool is as large as the HTTP requests an instance is given at once; the Cosmos DB
// connection pool (COSMOS_POOL_SIZE = 32) covers these 16 threads plus the 16 batch-write threads.
var httpConcurrency = 16

// The management endpoint and token audience of this cloud (sovereign clouds differ), without
// the trailing slash environment() gives them.
var resourceManager = environment().resourceManager
var armEndpoint = endsWith(resourceManager, '/') ? substring(resourceManager, 0, length(resourceManager) - 1) : resourceManager
var armAudience = environment().authentication.audiences[0]
var armTokenAudience = endsWith(armAudience, '/') ? substring(armAudience, 0, length(armAudience) - 1) : armAudience

// Host storage (and the app's fallback queue) through the identity, at the storage account's
// own endpoints, so each cloud gets its own DNS suffix. __accountName is the documented
// alternative only for an account with the public cloud's default endpoints (the host infers
// them with the public suffix); where both are set, the host uses the service URIs. It is added
// exactly there, because with __blobServiceUri alone the host can fail to create its blob
// client at startup (azure-functions-host#11787); anywhere else it would name wrong hosts.
var hostCanInferStorageEndpoints = (environment().name == 'AzureCloud') && (storageBlobEndpoint == 'https://${storageAccountName}.blob.${environment().suffixes.storage}/')

var hostStorageAppSettings = union({
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: storageTableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
}, hostCanInferStorageEndpoints ? {
  AzureWebJobsStorage__accountName: storageAccountName
} : {})

// The exporter sends its own usage statistics (statsbeat) to the public cloud's ingestion
// endpoint whatever the connection string names: in another cloud they would leave it.
var statsbeatAppSettings = (environment().name == 'AzureCloud') ? {} : {
  APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL: 'true'
}

var baseAppSettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  // Local auth is off on Application Insights: the host and the azure-monitor-opentelemetry
  // exporter send with an Entra ID token of this identity (Monitoring Metrics Publisher).
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  // PYTHON_ENABLE_OPENTELEMETRY is left unset on purpose: with it, worker versions that turn
  // trace propagation on without creating the propagator fail every invocation
  // (azure-functions-python-worker#1881). The app exports its own telemetry (telemetry.py).
  AZURE_CLIENT_ID: identityClientId
  COSMOS_ENDPOINT: cosmosEndpoint
  COSMOS_DATABASE: cosmosDatabaseName
  COSMOS_CONTAINER: cosmosContainerName
  WEBHOOK_SECRET_HEADER: 'Authorization'
  PYTHON_THREADPOOL_THREAD_COUNT: string(httpConcurrency)
  // The host reads a body whole and hands it to the worker before the app's own 1 MiB check:
  // at its default 100 MB, 16 requests at once could hold 1.6 GB of the instance's memory.
  // Twice the app's limit, as the local host's, so the app still answers 413 in its JSON shape.
  FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: '2097152'
  RECONCILE_SCHEDULE: reconcileSchedule
  ARM_ENDPOINT: armEndpoint
  ARM_AUDIENCE: armTokenAudience
}

var secretAppSettings = empty(webhookSecret) ? {} : {
  WEBHOOK_SECRET: webhookSecret
}

var retentionAppSettings = (retentionDays > 0) ? {
  RETENTION_DAYS: string(retentionDays)
} : {}

// Without a registry to reconcile, the timer is switched off rather than woken every few
// minutes only to log that it has nothing to do.
var reconcileAppSettings = empty(registryId) ? {
  'AzureWebJobs.reconcile_history.Disabled': 'true'
} : {
  ACR_REGISTRY_ID: registryId
  ACR_WEBHOOK_NAMES: webhookNames
}

var appSettings = union(hostStorageAppSettings, baseAppSettings, statsbeatAppSettings, secretAppSettings, retentionAppSettings, reconcileAppSettings)

var alwaysReady = (alwaysReadyInstances > 0) ? [
  {
    name: 'http'
    instanceCount: alwaysReadyInstances
  }
] : []

resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {
  name: planName
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_225: zone redundancy is the zoneRedundant parameter (off by default) because not every Flex Consumption region supports it
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2024-11-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  // checkov:skip=CKV_AZURE_222: ACR webhooks and Event Grid call the app from the public internet (no fixed source IPs); requests are authenticated by the function key and optional WEBHOOK_SECRET
  // checkov:skip=CKV_AZURE_17: ACR and Event Grid cannot present client certificates
  // checkov:skip=CKV_AZURE_212: numberOfWorkers does not apply to Flex Consumption, which scales per function (see alwaysReadyInstances)
  // checkov:skip=CKV_AZURE_213: App Service health-check probing does not apply to the serverless Flex Consumption plan (it scales to zero; the platform replaces unhealthy instances)
  kind: 'functionapp,linux'
  // checkov:skip=CKV_AZURE_78: Flex Consumption rejects the siteConfig ftpsState property with BadRequest 51021, so FTP is off through the ftp publishing credentials policy below
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        alwaysReady: alwaysReady
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        triggers: {
          http: {
            perInstanceConcurrency: httpConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Basic-auth publishing (FTP and SCM/Kudu with user/password) is off; Core Tools and azd
// publish with an Entra ID token instead.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
