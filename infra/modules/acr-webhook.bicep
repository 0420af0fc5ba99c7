// Native ACR webhook on an existing registry. Deployed into the registry's resource group.

@description('Name of the existing container registry.')
param registryName string

@description('Webhook name: 5-50 letters and digits.')
@minLength(5)
@maxLength(50)
param webhookName string

@description('Full endpoint including ?code=<function key>. Secret: ACR never returns it on GET.')
@secure()
param serviceUri string

@description('Extra headers ACR sends with every call (e.g. Authorization). Secret as well.')
@secure()
param customHeaders object = {}

@description('Actions that trigger the webhook.')
param actions array

@description('Repository scope, e.g. "repo:*" or "repo:tag". Empty = all repositories.')
param scope string = ''

resource registry 'Microsoft.ContainerRegistry/registries@2025-04-01' existing = {
  name: registryName
}

resource webhook 'Microsoft.ContainerRegistry/registries/webhooks@2025-04-01' = {
  parent: registry
  name: webhookName
  location: registry.location
  properties: {
    serviceUri: serviceUri
    customHeaders: customHeaders
    actions: actions
    scope: scope
    status: 'enabled'
  }
}

output name string = webhook.name
output id string = webhook.id
