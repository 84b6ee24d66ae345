import { packageTestConfig } from "@mappa-webhooks/tooling/vitest";

export default packageTestConfig("nestjs", {
  typecheck: { enabled: true, include: ["test/**/*.test-d.ts"], tsconfig: "./tsconfig.json" },
});
