// Event Grid system topic on an existing registry plus a WebHook subscription to the app,
// with dead-lettering into the app's storage account (eventgrid-deadletter.bicep, in the app's
// resource group): a delivery the app refuses (400) or that fails for 24 hours is kept there.
// Deployed into the registry's resource group. A registry can have only ONE system topic:
// if it already has one, pass that topic's name as systemTopicName. The topic gets a
// system-assigned identity, which writes the dead letters.

@description('Name of the existing container registry.')
param registryName string

@description('System topic name (the existing one if the registry already has a system topic).')
param systemTopicName string

@description('Event subscription name: 3-64 letters, digits and hyphens (Event Grid\'s rule).')
@minLength(3)
@maxLength(64)
param subscriptionName string

@description('Full endpoint including ?code=<function key>. Secret: Event Grid never returns it.')
@secure()
param endpointUrl string

@description('Optional shared secret; sent as "Authorization: Bearer <secret>" on every delivery. Empty = no header.')
@secure()
param webhookSecret string = ''

@description('Resource group of the app and its storage account.')
param appResourceGroup string

@description('The app\'s storage account (its AzureWebJobsStorage), in appResourceGroup.')
param deadLetterStorageAccountName string

@description('Blob container for the events Event Grid cannot deliver.')
param deadLetterContainerName string

var authorizationHeader = [
  {
    name: 'Authorization'
    type: 'Static'
    properties: {
      value: 'Bearer ${webhookSecret}'
      isSecret: true
    }
  }
]

resource registry 'Microsoft.ContainerRegistry/registries@2025-04-01' existing = {
  name: registryName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  location: registry.location
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: registry.id
    topicType: 'Microsoft.ContainerRegistry.Registries'
  }
}

// The role before the subscription that relies on it, as Event Grid's documentation orders it.
module deadLetter 'eventgrid-deadletter.bicep' = {
  name: 'eventgrid-deadletter-${uniqueString(systemTopic.id, subscriptionName)}'
  scope: resourceGroup(appResourceGroup)
  params: {
    storageAccountName: deadLetterStorageAccountName
    containerName: deadLetterContainerName
    systemTopicId: systemTopic.id
    systemTopicPrincipalId: systemTopic.identity.principalId
  }
}

resource eventSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: subscriptionName
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: endpointUrl
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
        deliveryAttributeMappings: empty(webhookSecret) ? [] : authorizationHeader
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.ContainerRegistry.ImagePushed'
        'Microsoft.ContainerRegistry.ImageDeleted'
        'Microsoft.ContainerRegistry.ChartPushed'
        'Microsoft.ContainerRegistry.ChartDeleted'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetter.outputs.storageAccountId
          blobContainerName: deadLetter.outputs.containerName
        }
      }
    }
  }
}

output systemTopicName string = systemTopic.name
output subscriptionName string = eventSubscription.name
