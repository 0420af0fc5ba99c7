// Connects an EXISTING container registry to the deployed app: a native ACR webhook
// and/or an Event Grid system topic subscription (deliveryMode).
//
// Deploy AFTER the code is published (az: after `func azure functionapp publish`; azd: the
// postdeploy hook does it): each endpoint carries its own function's key (acr_webhook for the
// webhook, acr_eventgrid for Event Grid), and a function has keys only once the code that
// defines it runs. Never the host key: it would also open GET /api/acr/events to anyone who
// can read the registry webhook's callback config.
//
//   az deployment group create -g <app rg> -f infra/webhook.bicep \
//     -p functionAppName=<app> registryName=<registry> [registryResourceGroup=<rg>]
targetScope = 'resourceGroup'

@description('Name of the deployed Function App (output AZURE_FUNCTION_APP_NAME of main.bicep), in this resource group.')
@minLength(2)
@maxLength(60)
param functionAppName string

@description('Name of the existing container registry.')
param registryName string

@description('Resource group of the registry. Defaults to the app resource group.')
param registryResourceGroup string = resourceGroup().name

@description('webhook: native ACR webhook (default). eventgrid: Event Grid system topic subscription. both: the two.')
@allowed([
  'webhook'
  'eventgrid'
  'both'
])
param deliveryMode string = 'webhook'

@description('ACR actions that trigger the native webhook.')
param webhookActions array = [
  'push'
  'delete'
  'chart_push'
  'chart_delete'
  'quarantine'
]

@description('Repository scope of the native webhook, e.g. "myrepo:*". Empty = all repositories.')
param webhookScope string = ''

@description('Native webhook name (5-50 letters and digits). Empty = derived from the app name.')
param webhookName string = ''

@description('Event Grid system topic name. A registry can have only one: pass the existing name if it has one.')
param systemTopicName string = ''

// Must match the API version of Microsoft.Web/sites used in modules/function-app.bicep.
var webApiVersion = '2024-11-01'

resource functionApp 'Microsoft.Web/sites@2024-11-01' existing = {
  name: functionAppName
}

var appHost = functionApp.properties.defaultHostName
// Function names as function_app.py defines them (the Python function names).
var webhookFunctionKey = listKeys('${functionApp.id}/functions/acr_webhook', webApiVersion).default
var eventGridFunctionKey = listKeys('${functionApp.id}/functions/acr_eventgrid', webApiVersion).default
var appSettings = list('${functionApp.id}/config/appsettings', webApiVersion).properties
// WEBHOOK_SECRET is set on the app by main.bicep only when a secret was given; read it back
// so the registry and the app can never disagree.
var webhookSecret = appSettings.?WEBHOOK_SECRET ?? ''
var customHeaders = empty(webhookSecret) ? {} : {
  Authorization: 'Bearer ${webhookSecret}'
}
var derivedWebhookName = take('acr${replace(functionAppName, '-', '')}', 50)
var effectiveWebhookName = (!empty(webhookName)) ? webhookName : derivedWebhookName
var effectiveSystemTopicName = (!empty(systemTopicName)) ? systemTopicName : '${registryName}-events'
// Event Grid allows 64 characters in a subscription name; an app name has up to 60.
var eventSubscriptionName = '${take(functionAppName, 54)}-eventgrid'
// Event Grid dead-letters into the app's own storage account, named by the app's host storage
// setting (main.bicep sets it: https://<account>.blob.<suffix>/).
var hostBlobEndpoint = appSettings.?AzureWebJobsStorage__blobServiceUri ?? ''
var deadLetterStorageAccountName = split(replace(hostBlobEndpoint, 'https://', ''), '.')[0]
var deadLetterContainerName = 'eventgrid-deadletter'
// Deployments into the registry's resource group are named per app and registry: two apps, or
// two registries of one app, in one resource group would otherwise replace each other's
// deployment record, or collide when run at the same time.
var registryDeploymentSuffix = uniqueString(resourceGroup().id, functionAppName, registryName)

module acrWebhook 'modules/acr-webhook.bicep' = if ((deliveryMode == 'webhook') || (deliveryMode == 'both')) {
  name: 'acr-webhook-${registryDeploymentSuffix}'
  scope: resourceGroup(registryResourceGroup)
  params: {
    registryName: registryName
    webhookName: effectiveWebhookName
    serviceUri: 'https://${appHost}/api/acr/webhook?code=${webhookFunctionKey}'
    customHeaders: customHeaders
    actions: webhookActions
    scope: webhookScope
  }
}

module acrEventGrid 'modules/acr-eventgrid.bicep' = if ((deliveryMode == 'eventgrid') || (deliveryMode == 'both')) {
  name: 'acr-eventgrid-${registryDeploymentSuffix}'
  scope: resourceGroup(registryResourceGroup)
  params: {
    registryName: registryName
    systemTopicName: effectiveSystemTopicName
    subscriptionName: eventSubscriptionName
    endpointUrl: 'https://${appHost}/api/acr/eventgrid?code=${eventGridFunctionKey}'
    webhookSecret: webhookSecret
    appResourceGroup: resourceGroup().name
    deadLetterStorageAccountName: deadLetterStorageAccountName
    deadLetterContainerName: deadLetterContainerName
  }
}

output ACR_WEBHOOK_URL string = 'https://${appHost}/api/acr/webhook'
output ACR_EVENTGRID_URL string = 'https://${appHost}/api/acr/eventgrid'
output ACR_DELIVERY_MODE string = deliveryMode
// Names for az acr webhook ping/list-events and az eventgrid system-topic ... (empty when unused).
output ACR_WEBHOOK_NAME string = (deliveryMode == 'eventgrid') ? '' : effectiveWebhookName
output ACR_SYSTEM_TOPIC_NAME string = (deliveryMode == 'webhook') ? '' : effectiveSystemTopicName
output ACR_EVENT_SUBSCRIPTION_NAME string = (deliveryMode == 'webhook') ? '' : eventSubscriptionName
// Where Event Grid keeps the events it could not deliver: container in the app's storage account.
output EVENTGRID_DEADLETTER string = (deliveryMode == 'webhook') ? '' : '${deadLetterStorageAccountName}/${deadLetterContainerName}'
