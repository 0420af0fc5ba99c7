// Event Grid system topic on an existing registry plus a WebHook subscription to the app.
// Deployed into the registry's resource group. A registry can have only ONE system topic:
// if it already has one, pass that topic's name as systemTopicName.

@description('Name of the existing container registry.')
param registryName string

@description('System topic name (the existing one if the registry already has a system topic).')
param systemTopicName string

@description('Event subscription name.')
param subscriptionName string

@description('Full endpoint including ?code=<function key>. Secret: Event Grid never returns it.')
@secure()
param endpointUrl string

@description('Optional shared secret; sent as "Authorization: Bearer <secret>" on every delivery. Empty = no header.')
@secure()
param webhookSecret string = ''

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
  properties: {
    source: registry.id
    topicType: 'Microsoft.ContainerRegistry.Registries'
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
  }
}

output systemTopicName string = systemTopic.name
output subscriptionName string = eventSubscription.name
