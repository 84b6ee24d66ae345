import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

export default packageTestConfig("redis", {
  testTimeout: 60_000,
  typecheck: { enabled: true, include: ["test/**/*.test-d.ts"], tsconfig: "./tsconfig.json" },
});
