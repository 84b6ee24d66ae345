import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

export default packageTestConfig("sqlite", {
  globalSetup: ["./test/driver-available.ts"],
  testTimeout: 120_000,
  hookTimeout: 60_000,
});
