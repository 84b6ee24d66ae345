import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

// Real servers on loopback and a 1,000-job load test: generous bounds for a busy 2-core machine.
export default packageTestConfig("emulator", {
  testTimeout: 120_000,
  hookTimeout: 120_000,
  typecheck: { enabled: true, include: ["test/**/*.test-d.ts"], tsconfig: "./tsconfig.json" },
});
