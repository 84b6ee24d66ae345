import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

export default packageTestConfig("mysql", {
  globalSetup: ["./test/mysql-available.ts"],
  testTimeout: 120_000,
  hookTimeout: 60_000,
});
