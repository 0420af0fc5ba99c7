# azd postdeploy hook (Windows): same as postdeploy.sh. Connects the container registry to the
# deployed app by deploying infra/webhook.bicep after the code deploy (each endpoint carries its
# function's own key, which exists only once the host runs the code).
# Needs the Azure CLI signed in (az login) to the same tenant and subscription as azd.
$ErrorActionPreference = 'Stop'

if (-not $env:ACR_REGISTRY_NAME) {
  Write-Host 'ACR_REGISTRY_NAME is not set, so no registry was connected. To connect one:'
  Write-Host '  azd env set ACR_REGISTRY_NAME <registry name>'
  Write-Host "  azd env set ACR_REGISTRY_RESOURCE_GROUP <its resource group>   # if not $env:AZURE_RESOURCE_GROUP"
  Write-Host '  azd hooks run postdeploy'
  exit 0
}

foreach ($name in 'AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME') {
  if (-not [Environment]::GetEnvironmentVariable($name)) {
    throw "$name is not set; run azd provision first"
  }
}

$template = Join-Path $PSScriptRoot '..' 'webhook.bicep'
$registryRg = if ($env:ACR_REGISTRY_RESOURCE_GROUP) { $env:ACR_REGISTRY_RESOURCE_GROUP } else { $env:AZURE_RESOURCE_GROUP }
$mode = if ($env:ACR_DELIVERY_MODE) { $env:ACR_DELIVERY_MODE } else { 'webhook' }
$retrySeconds = if ($env:ACR_CONNECT_RETRY_SECONDS) { [int]$env:ACR_CONNECT_RETRY_SECONDS } else { 30 }

Write-Host "Connecting registry $env:ACR_REGISTRY_NAME ($registryRg) to $env:AZURE_FUNCTION_APP_NAME, mode $mode ..."

for ($attempt = 1; ; $attempt++) {
  az deployment group create `
    --subscription $env:AZURE_SUBSCRIPTION_ID `
    --resource-group $env:AZURE_RESOURCE_GROUP `
    --name acr-webhook-connect `
    --template-file $template `
    --parameters `
      "functionAppName=$env:AZURE_FUNCTION_APP_NAME" `
      "registryName=$env:ACR_REGISTRY_NAME" `
      "registryResourceGroup=$registryRg" `
      "deliveryMode=$mode" `
      "webhookScope=$env:ACR_WEBHOOK_SCOPE" `
      "webhookName=$env:ACR_WEBHOOK_NAME" `
      "systemTopicName=$env:ACR_SYSTEM_TOPIC_NAME" `
    --query properties.outputs `
    --output json
  if ($LASTEXITCODE -eq 0) { break }
  if ($attempt -ge 4) { throw "webhook.bicep failed $attempt times; see the error above." }
  Write-Warning "Attempt $attempt failed; retrying in $retrySeconds s (the Functions host may still be starting) ..."
  Start-Sleep -Seconds $retrySeconds
}
