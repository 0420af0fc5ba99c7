// Where Event Grid keeps what it cannot deliver to the app: a blob container in the app's own
// storage account, written by the registry's system topic with its system-assigned identity
// (the account takes no shared keys). Deployed into the app's resource group by
// acr-eventgrid.bicep before the event subscription that names it.

@description('The app\'s storage account (its AzureWebJobsStorage), in this resource group.')
param storageAccountName string

@description('Blob container for the dead-lettered events; created if missing.')
param containerName string

@description('Resource id of the Event Grid system topic: names the role assignment.')
param systemTopicId string

@description('Principal (object) id of the system topic\'s system-assigned identity.')
param systemTopicPrincipalId string

// Built-in role: Storage Blob Data Contributor, the role Event Grid's managed identity needs
// on a blob dead-letter destination (learn.microsoft.com/azure/event-grid/add-identity-roles).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' existing = {
  parent: storage
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}

resource topicBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, systemTopicId, storageBlobDataContributor)
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output storageAccountId string = storage.id
output containerName string = container.name
