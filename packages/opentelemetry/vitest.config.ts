import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

// Real servers over loopback on a shared, busy machine: generous bounds.
export default packageTestConfig("opentelemetry", { testTimeout: 60_000, hookTimeout: 120_000 });
