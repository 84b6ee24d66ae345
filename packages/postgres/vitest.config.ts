import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

export default packageTestConfig("postgres", {
  globalSetup: ["./test/postgres-available.ts"],
  testTimeout: 120_000,
  hookTimeout: 60_000,
  typecheck: { enabled: true, include: ["test/**/*.test-d.ts"], tsconfig: "./tsconfig.json" },
});
