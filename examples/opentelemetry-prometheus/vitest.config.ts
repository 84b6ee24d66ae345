import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

// The example runs as a real process and is scraped over HTTP: generous bounds for a busy machine.
export default packageTestConfig("example-opentelemetry-prometheus", {
  testTimeout: 60_000,
  hookTimeout: 120_000,
});
