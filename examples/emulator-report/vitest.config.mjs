import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

// The test starts the app as a child process: room for a busy machine.
export default packageTestConfig("example-emulator-report", {
  include: ["test/**/*.test.mjs"],
  testTimeout: 120_000,
});
