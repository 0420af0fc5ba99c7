// What the reconcile timer needs on the registry, and nothing more: a custom role that can read
// the registry and its webhooks and list each webhook's delivery history (listEvents), assigned
// to the app's identity at the registry's scope. Not Contributor: that could change the webhook
// and read its callback config, which carries the function key. Deployed into the registry's
// resource group; creating a role definition needs Owner or User Access Administrator there.

@description('Name of the existing container registry.')
param registryName string

@description('Principal (object) id of the Function App managed identity.')
param appPrincipalId string

resource registry 'Microsoft.ContainerRegistry/registries@2025-04-01' existing = {
  name: registryName
}

// Role names are unique in a tenant: one definition per registry, shared by every app that
// reconciles it (same id and name, so deploying it again changes nothing).
resource historyReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(registry.id, 'acr-webhook-history-reader')
  properties: {
    roleName: 'ACR webhook history reader (${registryName}, ${resourceGroup().name})'
    description: 'Read a container registry and its webhooks, and list the events each webhook delivered (acr-webhook reconcile).'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.ContainerRegistry/registries/read'
          'Microsoft.ContainerRegistry/registries/webhooks/read'
          'Microsoft.ContainerRegistry/registries/webhooks/listEvents/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource appHistoryReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, appPrincipalId, historyReader.id)
  scope: registry
  properties: {
    roleDefinitionId: historyReader.id
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output registryId string = registry.id
output roleDefinitionId string = historyReader.id
