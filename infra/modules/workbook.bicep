// Azure Monitor workbook on the Application Insights component: the app's decisions, what it
// rejected or queued, store latency, Cosmos DB and Storage calls, and push activity.
// The content is workbook.json beside this file; its queries are the ones docs/operations.md
// documents, with the time range picker in place of ago(...) (tests/infra/test_workbook.py
// keeps the two the same).

@description('Location of the workbook.')
param location string

@description('Tags applied to the workbook.')
param tags object = {}

@description('Resource id of the Application Insights component the workbook queries; the workbook is listed under it (Workbooks).')
param applicationInsightsId string

@description('Name shown in the portal.')
param displayName string = 'acr-webhook: decisions and pushes'

// The queries run against the component when the workbook is opened outside its blade, too.
var content = union(loadJsonContent('workbook.json'), {
  fallbackResourceIds: [
    applicationInsightsId
  ]
})

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name is a GUID; derived from the component, so a new deployment updates the
  // same workbook instead of adding another.
  name: guid(applicationInsightsId, 'acr-webhook-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    version: 'Notebook/1.0'
    serializedData: string(content)
  }
}

output id string = workbook.id
