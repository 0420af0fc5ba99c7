// Cosmos DB for NoSQL: one account, database and container for ACR events.
// Only Entra ID (RBAC) data access is possible: disableLocalAuth removes the account keys
// from the data plane, so the app and people get access through sqlRoleAssignments below.

@description('Location for the Cosmos DB account.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Cosmos DB account name (3-44 lowercase letters, digits and hyphens).')
@minLength(3)
@maxLength(44)
param accountName string

@description('Database name; the app reads it from COSMOS_DATABASE.')
param databaseName string

@description('Container name; the app reads it from COSMOS_CONTAINER.')
param containerName string

@description('serverless: pay per request (default). provisioned: fixed RU/s. autoscale: RU/s between 10% and the max.')
@allowed([
  'serverless'
  'provisioned'
  'autoscale'
])
param capacityMode string = 'serverless'

@description('Container RU/s when capacityMode is provisioned.')
@minValue(400)
param throughput int = 400

@description('Container maximum RU/s when capacityMode is autoscale.')
@minValue(1000)
param autoscaleMaxThroughput int = 1000

@description('Days a document is kept after its last write (the container default time-to-live). 0 = forever. At most 24855: Cosmos DB stores the TTL in seconds as a 32-bit number.')
@minValue(0)
@maxValue(24855)
param retentionDays int = 0

@description('Continuous backup tier: point-in-time restore over the last 7 or 30 days.')
@allowed([
  'Continuous7Days'
  'Continuous30Days'
])
param backupTier string = 'Continuous7Days'

@description('Principal (object) id of the Function App managed identity.')
param appPrincipalId string

@description('Optional principal (object) id of a person or CI identity that should use Data Explorer. Empty = no assignment.')
param userPrincipalId string = ''

// Built-in "Cosmos DB Built-in Data Contributor" data-plane role.
var dataContributorRoleId = '00000000-0000-0000-0000-000000000002'
// Stable per account, so a redeploy updates the definition instead of adding another.
var appWriterRoleId = guid(accountName, 'acr-webhook app writer')

var serverlessCapabilities = [
  {
    name: 'EnableServerless'
  }
]

var provisionedOptions = {
  throughput: throughput
}

var autoscaleOptions = {
  autoscaleSettings: {
    maxThroughput: autoscaleMaxThroughput
  }
}

var containerOptions = (capacityMode == 'provisioned') ? provisionedOptions : ((capacityMode == 'autoscale') ? autoscaleOptions : {})

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: accountName
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_99: the Flex Consumption app has no VNet and no fixed outbound IPs, so an IP/VNet filter would lock it out; data access is Entra ID RBAC only (disableLocalAuth)
  // checkov:skip=CKV_AZURE_101: public network access must stay on: the Flex Consumption app (no VNet) and the portal Data Explorer reach the account over its public endpoint with Entra ID tokens
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: (capacityMode == 'serverless') ? serverlessCapabilities : []
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
    backupPolicy: {
      type: 'Continuous'
      continuousModeProperties: {
        tier: backupTier
      }
    }
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

// Index only the paths the read endpoint and docs/queries.md filter or sort on (a test keeps
// them in step); excluding '/*' keeps the request charge of each write low (docs/performance.md).
resource container 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: containerName
  properties: {
    options: containerOptions
    resource: {
      id: containerName
      // null = no time-to-live: documents are kept until deleted.
      defaultTtl: (retentionDays > 0) ? retentionDays * 86400 : null
      partitionKey: {
        paths: [
          '/repository'
        ]
        kind: 'Hash'
        version: 2
      }
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/registry/?'
          }
          {
            path: '/repository/?'
          }
          {
            path: '/tag/?'
          }
          {
            path: '/digest/?'
          }
          {
            path: '/action/?'
          }
          {
            path: '/timestamp/?'
          }
          {
            path: '/source/?'
          }
          {
            path: '/actor/?'
          }
        ]
        excludedPaths: [
          {
            path: '/*'
          }
        ]
        // No composite indexes: every query sorts by one property (timestamp) only.
        compositeIndexes: []
      }
    }
  }
}

// The app's own role: what its code calls (tests/integration/test_least_privilege_calls.py) and
// no more. Built-in Data Contributor would also let it delete or upsert any event of the record
// it exists to keep; only the operator's erase deletes, with the principalId's role below.
resource appWriter 'Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions@2024-11-15' = {
  parent: account
  name: appWriterRoleId
  properties: {
    roleName: 'acr-webhook app'
    type: 'CustomRole'
    assignableScopes: [
      account.id
    ]
    permissions: [
      {
        dataActions: [
          'Microsoft.DocumentDB/databaseAccounts/readMetadata'
          'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/create'
          'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read'
          'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/replace'
          // An SDK query needs both (Microsoft's data-plane RBAC guide).
          'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery'
          'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/readChangeFeed'
        ]
      }
    ]
  }
}

// The name still derives from Data Contributor, the role the first versions assigned: the same
// name updates every existing installation's assignment to the narrower role in place, where a
// new name would add a second assignment and leave the old role granted.
resource appDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: account
  name: guid(account.id, appPrincipalId, dataContributorRoleId)
  properties: {
    principalId: appPrincipalId
    roleDefinitionId: appWriter.id
    scope: account.id
  }
}

resource userDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = if (!empty(userPrincipalId)) {
  parent: account
  name: guid(account.id, userPrincipalId, dataContributorRoleId)
  properties: {
    principalId: userPrincipalId
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${dataContributorRoleId}'
    scope: account.id
  }
}

output accountName string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
output containerName string = container.name
