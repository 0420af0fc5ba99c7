// Preloaded into the tests' Azurite (node --require). Azurite loads the Application Insights
// SDK as it starts, even with --disableTelemetry, which never uses it: 1.3 s of a 1.9 s start,
// and the tests start Azurite many times. With telemetry off, an empty module does the same.
const Module = require("module");
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === "applicationinsights") return {};
  return load.call(this, request, ...rest);
};
