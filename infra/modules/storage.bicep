// Storage account for the Functions host (AzureWebJobsStorage), the Flex Consumption
// deployment package container and the durable fallback queue. Shared keys are disabled:
// everything authenticates with Entra ID (the app's managed identity).

@description('Location for the storage account.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Queue the app writes events to when Cosmos DB is unavailable.')
param fallbackQueueName string

@description('Replication. LRS by default: the account holds the fallback queue, whose events wait there only while Cosmos DB is unavailable, and the deployment package.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  name: name
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_35: the Flex Consumption app has no VNet and no fixed outbound IPs, so a deny-by-default firewall would lock the Functions host out; access is Entra ID only (shared keys off)
  // checkov:skip=CKV_AZURE_59: public network access must stay on: the Flex Consumption host (no VNet) reaches AzureWebJobsStorage and the fallback queue over the public endpoint with its managed identity
  // checkov:skip=CKV_AZURE_206: replication is the skuName parameter (main.bicep storageSkuName); LRS by default because the account only holds the fallback queue, whose events wait there only while Cosmos DB is unavailable (replayed within about 70 s of its return, README), and a re-creatable deployment package
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2024-01-01' = {
  parent: storage
  name: 'default'
}

resource fallbackQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2024-01-01' = {
  parent: queueService
  name: fallbackQueueName
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output fallbackQueueName string = fallbackQueue.name
