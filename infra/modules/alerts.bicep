// The log alerts docs/operations.md recommends ("Recommended alerts"), as log search alert rules
// on Application Insights: each fires when its query returns a row, evaluated every 5 minutes,
// and resolves itself once it returns none. The queries are the documented ones, word for word
// (tests/infra/test_alerts.py keeps the two in step). With an e-mail address, an action group
// sends each one there; without, they show under Alerts in the portal only.

@description('Location for the alert rules.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Prefix of the rule names (the app name).')
param namePrefix string

@description('Resource id of the Application Insights component the queries read.')
param applicationInsightsId string

@description('E-mail address that gets every alert. Empty = no action group: alerts show in the portal only.')
param alertEmail string = ''

var alerts = [
  {
    name: 'poison'
    displayName: 'acr-webhook: a message reached the poison queue'
    description: 'A parked event the replay could not store went to acr-events-fallback-poison; it needs a person (docs/operations.md, Re-driving poison messages).'
    severity: 1
    windowSize: 'PT10M'
    query: '''
traces
| where timestamp > ago(10m) and message has "acr-events-fallback-poison"
'''
  }
  {
    name: 'replay-rejected'
    displayName: 'acr-webhook: the replay was refused an event'
    description: 'The database refused a parked event; after 5 tries it goes to the poison queue.'
    severity: 2
    windowSize: 'PT10M'
    query: '''
traces
| where timestamp > ago(10m) and tostring(customDimensions.decision) == "rejected"
    and tostring(customDimensions.route) == "replay"
'''
  }
  {
    name: 'queued-30-minutes'
    displayName: 'acr-webhook: an event has waited in the fallback queue for 30 minutes'
    description: 'Cosmos DB has been unavailable, throttling every write, refusing the app\'s set-up, or an event\'s repository has filled its partition (20 GB), that long: the reason of the queued decisions names which.'
    severity: 1
    windowSize: 'PT5M'
    // The query looks two days back for events queued and never replayed.
    overrideQueryTimeRange: 'P2D'
    query: '''
traces
| where timestamp > ago(2d)
| extend decision = tostring(customDimensions.decision), route = tostring(customDimensions.route),
    event_id = tostring(customDimensions.event_id)
| where (decision == "queued" and route != "replay")
    or (route == "replay" and decision in ("replayed", "duplicate", "rejected"))
| summarize queued_at = minif(timestamp, decision == "queued" and route != "replay"),
    done = countif(route == "replay" and decision != "queued") by event_id
| where isnotnull(queued_at) and done == 0 and queued_at < ago(30m)
'''
  }
  {
    name: 'server-errors'
    displayName: 'acr-webhook: 5xx answers'
    description: 'An event is not known to be stored: the database and the fallback queue both failed.'
    severity: 1
    windowSize: 'PT5M'
    query: '''
requests
| where timestamp > ago(5m) and toint(resultCode) >= 500
| summarize failures = count() by name, resultCode
'''
  }
  {
    name: 'unavailable'
    displayName: 'acr-webhook: unavailable decisions'
    description: 'The database and the fallback queue both failed an event; the reason names each failure.'
    severity: 2
    windowSize: 'PT5M'
    query: '''
traces
| where timestamp > ago(5m) and tostring(customDimensions.decision) == "unavailable"
'''
  }
  {
    name: 'reconcile-refused'
    displayName: 'acr-webhook: reconcile cannot read a webhook history'
    description: 'ARM refuses the timer (403: the role ACR webhook history reader) or cannot find the webhook (404: ACR_REGISTRY_ID, ACR_WEBHOOK_NAMES).'
    severity: 2
    windowSize: 'PT15M'
    query: '''
traces
| where timestamp > ago(15m) and message has "history unreadable"
'''
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${namePrefix}-alerts'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'acrwebhook'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for alert in alerts: {
  name: '${namePrefix}-${alert.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: alert.displayName
    description: alert.description
    severity: alert.severity
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: alert.windowSize
    overrideQueryTimeRange: alert.?overrideQueryTimeRange
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: alert.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: empty(alertEmail) ? [] : [
        actionGroup.id
      ]
    }
  }
}]
