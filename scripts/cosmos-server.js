// Local Cosmos DB API server for development and tests (in-memory, self-signed TLS).
// Keep-alive matters: without it every SDK call pays a new TLS handshake (~40 ms instead of ~3 ms).
// Usage: .venv/bin/node scripts/cosmos-server.js [port]   (port 0 picks a free one; default 8081, like the emulator)
"use strict";

// The package answers a read of a document that does not exist (with a partition key, as the
// SDK sends it) with a 500, reading a field of the missing document; Cosmos DB answers 404.
// Patched before the package's routes take the handler.
const readDocument = require("@vercel/cosmosdb-server/lib/handler/read-document");
const partitionHeader = require("@vercel/cosmosdb-server/lib/utils/get-partition-from-header");
const readFoundDocument = readDocument.default;
readDocument.default = (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  const partitionKey = partitionHeader.default(req);
  if (collection.read() && partitionKey !== undefined) {
    const parsed = partitionHeader.parsePartitionKey(partitionKey, params.docId);
    if (!collection.document(params.docId, parsed).read()) {
      res.statusCode = 404;
      return { code: "NotFound", message: "Entity with the specified id does not exist in the system." };
    }
  }
  return readFoundDocument(account, req, res, params);
};

const { createHttpsServer } = require("@vercel/cosmosdb-server");
const Collections = require("@vercel/cosmosdb-server/lib/account/collections").default;

// The package replaces a container (a changed default time-to-live, say) with a new, empty
// one; Cosmos DB keeps its documents, and so does this server: the replacement takes over the
// old container's documents, partition key ranges and functions.
const replaceContainer = Collections.prototype.replace;
Collections.prototype.replace = function replaceKeepingDocuments(data, original) {
  const before = this._data.get(original._rid);
  const replaced = replaceContainer.call(this, data, original);
  const after = this._data.get(replaced._rid);
  for (const children of ["documents", "partitionKeyRanges", "userDefinedFunctions"]) {
    after[children] = before[children];
    after[children]._parent = after;
  }
  return replaced;
};

const port = Number.parseInt(process.argv[2] ?? process.env.COSMOS_SERVER_PORT ?? "8081", 10);
const server = createHttpsServer({ keepAlive: true });
// Node.js closes a connection left idle for 5 s (Node.js 24 waits a second more). The benchmark
// sets a longer time: its floors (the bare SDK, which sends a write once) broke on a request
// sent just as a connection that sat out another floor's round closed. The app sends such a
// write once more; tests keep Node.js's default.
const keepAliveSeconds = Number.parseFloat(process.env.COSMOS_SERVER_KEEP_ALIVE_S ?? "");
if (keepAliveSeconds > 0) {
  server.keepAliveTimeout = keepAliveSeconds * 1000;
}

server.listen(port, "127.0.0.1", () => {
  // Callers (tests, the dev script) wait for this exact line to learn the port.
  console.log(`cosmosdb-server listening on https://127.0.0.1:${server.address().port}/`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    // Keep-alive sockets would hold close() open; the data is in memory anyway.
    setTimeout(() => process.exit(0), 200).unref();
  });
}
