#!/bin/sh
# azd postdeploy hook: connect the container registry to the freshly deployed app by deploying
# infra/webhook.bicep. It runs after the code deploy because the webhook / Event Grid endpoint
# carries its function's own key, which exists only once the host runs the code.
#
# Reads the azd environment (azd passes it to hooks):
#   AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME  (set by azd / main.bicep)
#   ACR_REGISTRY_NAME               registry to connect (required; unset = skip with a hint)
#   ACR_REGISTRY_RESOURCE_GROUP     its resource group (default: AZURE_RESOURCE_GROUP)
#   ACR_DELIVERY_MODE               webhook (default) | eventgrid | both
#   ACR_WEBHOOK_SCOPE               e.g. "myrepo:*" (default: all repositories)
#   ACR_WEBHOOK_NAME                native webhook name (default: derived from the app name;
#                                   main.bicep reads the same variable for ACR_WEBHOOK_NAMES)
#   ACR_SYSTEM_TOPIC_NAME           existing Event Grid system topic of the registry, if any
#   ACR_CONNECT_RETRY_SECONDS       wait between attempts (default 30)
# Needs the Azure CLI signed in (az login) to the same tenant and subscription as azd.
set -eu

if [ -z "${ACR_REGISTRY_NAME:-}" ]; then
  echo "ACR_REGISTRY_NAME is not set, so no registry was connected. To connect one:"
  echo "  azd env set ACR_REGISTRY_NAME <registry name>"
  echo "  azd env set ACR_REGISTRY_RESOURCE_GROUP <its resource group>   # if not $AZURE_RESOURCE_GROUP"
  echo "  azd hooks run postdeploy"
  exit 0
fi

: "${AZURE_SUBSCRIPTION_ID:?is not set; run azd provision first}"
: "${AZURE_RESOURCE_GROUP:?is not set; run azd provision first}"
: "${AZURE_FUNCTION_APP_NAME:?is not set; run azd provision first}"

template="$(dirname "$0")/../webhook.bicep"
registry_rg="${ACR_REGISTRY_RESOURCE_GROUP:-$AZURE_RESOURCE_GROUP}"
mode="${ACR_DELIVERY_MODE:-webhook}"
retry_seconds="${ACR_CONNECT_RETRY_SECONDS:-30}"

echo "Connecting registry $ACR_REGISTRY_NAME ($registry_rg) to $AZURE_FUNCTION_APP_NAME, mode $mode ..."

# The host may need a moment after the deploy before it hands out its keys: retry a few times.
attempt=1
until az deployment group create \
  --subscription "$AZURE_SUBSCRIPTION_ID" \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name acr-webhook-connect \
  --template-file "$template" \
  --parameters \
    functionAppName="$AZURE_FUNCTION_APP_NAME" \
    registryName="$ACR_REGISTRY_NAME" \
    registryResourceGroup="$registry_rg" \
    deliveryMode="$mode" \
    webhookScope="${ACR_WEBHOOK_SCOPE:-}" \
    webhookName="${ACR_WEBHOOK_NAME:-}" \
    systemTopicName="${ACR_SYSTEM_TOPIC_NAME:-}" \
  --query properties.outputs \
  --output json
do
  if [ "$attempt" -ge 4 ]; then
    echo "webhook.bicep failed $attempt times; see the error above." >&2
    exit 1
  fi
  echo "Attempt $attempt failed; retrying in $retry_seconds s (the Functions host may still be starting) ..." >&2
  attempt=$((attempt + 1))
  sleep "$retry_seconds"
done
