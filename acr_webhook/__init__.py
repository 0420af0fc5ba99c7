"""Turn Azure Container Registry webhook calls into a queryable record in Cosmos DB."""
